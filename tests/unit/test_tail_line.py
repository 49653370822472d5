"""``tradebus tail``'s line: time of day, source, type, symbol and the payload fields that
matter, coloured by kind only on request; and the stream URL it asks for."""

from __future__ import annotations

from tradebus.tail import line, stream_url

ORDER = {
    "type": "order.filled",
    "id": "ttmt-main:7#1",
    "seq": 12,
    "source": "ttmt-main",
    "provider": "ttmt",
    "time": "2026-06-09T14:32:01.123Z",
    "symbol": "EURUSD",
    "data": {"order_id": "9", "side": "buy", "volume": 0.5, "price": 1.0841, "layer": 1},
}


def test_a_line_shows_time_source_type_symbol_and_fields() -> None:
    """Exact columns; order_id and layer are not among the fields shown."""
    assert line(ORDER) == (
        "14:32:01.123 ttmt-main    order.filled           EURUSD   side=buy volume=0.5 price=1.0841"
    )


def test_colour_is_an_escape_around_the_type_only() -> None:
    """With colour the type is wrapped (green for orders); the text stays the same."""
    coloured = line(ORDER, color=True)
    assert "\033[32morder.filled" in coloured
    assert coloured.replace("\033[32m", "").replace("\033[0m", "") == line(ORDER)


def test_a_status_event_without_symbol_shows_a_dash_and_its_reason() -> None:
    """status.* events have no symbol: '-' holds the column."""
    gap = {
        "type": "status.gap",
        "source": "journal",
        "time": "2026-06-09T14:32:02.000Z",
        "symbol": None,
        "data": {"first_missing": 3, "last_missing": 9, "reason": "retention"},
    }
    assert line(gap) == (
        "14:32:02.000 journal      status.gap             -        "
        "reason=retention first_missing=3 last_missing=9"
    )


def test_the_stream_url_carries_the_filters() -> None:
    """Repeated options join with commas; from is always given."""
    url = stream_url(
        "http://127.0.0.1:9464/",
        types=["order.", "position."],
        sources=["a"],
        symbols=[],
        start="earliest",
    )
    assert url == (
        "http://127.0.0.1:9464/api/v1/events?from=earliest&types=order.%2Cposition.&sources=a"
    )
