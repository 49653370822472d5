"""TradingPartners alerts: wire decoding and normalization, on the upstream doc's own examples."""

from __future__ import annotations

import itertools
from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradebus import times
from tradebus.adapters.tpalerts import wire
from tradebus.adapters.tpalerts.normalize import (
    AlertCache,
    AlertContext,
    context_of,
    event_id,
    normalize,
)
from tradebus.schemas.events import (
    SignalAborted,
    SignalActive,
    SignalClosed,
    SignalData,
    SignalDetected,
)
from tradebus.sse import SSEDecoder

DATA = Path(__file__).parents[2] / "examples" / "upstreams" / "tpalerts"
RECEIVED = "2024-04-06T12:47:52.001Z"
TOKEN = "1d81fe2a-699c-4a90-b182-b0e0d2ea3968"
# What the doc's working example gives every later event of alert 35443.
CONTEXT = AlertContext(
    symbol="BTC/USD",
    strategy="short",
    market="CRYPTOCURRENCIES",
    entry=69002.0,
    target=69872.4,
    stop=68997.0,
    started_at="2024-03-27T19:50:11.946Z",
)


def golden(name: str) -> tuple[str, str]:
    """The event name and data of one golden SSE frame, read through our SSE decoder."""
    (message,) = SSEDecoder().feed((DATA / f"{name}.sse").read_bytes())
    return message.event, message.data


def decode_golden(name: str) -> wire.WireMessage:
    event, data = golden(name)
    message = wire.decode(event, data)
    assert message is not None
    return message


def test_ping_with_the_docs_trailing_comma_decodes_as_ping() -> None:
    """The doc's ``event: ping,`` is the ping event, and a ping gives no canonical event."""
    event, _ = golden("ping")
    assert event == "ping,"
    assert wire.event_name(event) == "ping"
    message = decode_golden("ping")
    assert message == wire.Ping(ping="2024-03-27T20:12:11.614599318Z")
    assert normalize(message, "alerts", RECEIVED, times.Refusals()) == []


def test_working_is_signal_detected_with_every_field() -> None:
    """The doc's ``working`` example becomes signal.detected, timed by startedAt."""
    message = decode_golden("working")
    assert message == wire.Working(
        id=35443,
        duration_strategy="short",
        instrument="CRYPTOCURRENCIES",
        ticker="BTC/USD",
        start=69002.0,
        target=69872.4,
        stop=68997.0,
        started_at="2024-03-27T19:50:11.946Z",
        token=TOKEN,
    )
    assert normalize(message, "alerts", RECEIVED, times.Refusals()) == [
        SignalDetected(
            id="alerts:35443:working",
            source="alerts",
            provider="tpalerts",
            time="2024-03-27T19:50:11.946Z",
            received=RECEIVED,
            account=None,
            symbol="BTC/USD",
            data=SignalData(
                alert_id=35443,
                strategy="short",
                market="CRYPTOCURRENCIES",
                entry=69002.0,
                target=69872.4,
                stop=68997.0,
                token=TOKEN,
                started_at="2024-03-27T19:50:11.946Z",
            ),
        )
    ]


def test_ongoing_is_signal_active_filled_from_the_working_context() -> None:
    """The doc's ``onGoing`` becomes signal.active at receipt time, with the alert's context."""
    message = decode_golden("ongoing")
    assert message == wire.OnGoing(id=35443, token=TOKEN)
    assert normalize(message, "alerts", RECEIVED, times.Refusals(), CONTEXT) == [
        SignalActive(
            id="alerts:35443:onGoing",
            source="alerts",
            provider="tpalerts",
            time=RECEIVED,
            received=RECEIVED,
            symbol="BTC/USD",
            data=SignalData(
                alert_id=35443,
                strategy="short",
                market="CRYPTOCURRENCIES",
                entry=69002.0,
                target=69872.4,
                stop=68997.0,
                token=TOKEN,
                started_at="2024-03-27T19:50:11.946Z",
            ),
        )
    ]


def test_aborted_is_signal_aborted_with_token_state() -> None:
    """The doc's ``aborted`` becomes signal.aborted with tokenState and the alert's context."""
    message = decode_golden("aborted")
    assert message == wire.Aborted(id=35443, token=TOKEN, token_state="REIMBURSED")
    assert normalize(message, "alerts", RECEIVED, times.Refusals(), CONTEXT) == [
        SignalAborted(
            id="alerts:35443:aborted",
            source="alerts",
            provider="tpalerts",
            time=RECEIVED,
            received=RECEIVED,
            symbol="BTC/USD",
            data=SignalData(
                alert_id=35443,
                strategy="short",
                market="CRYPTOCURRENCIES",
                entry=69002.0,
                target=69872.4,
                stop=68997.0,
                token=TOKEN,
                token_state="REIMBURSED",
                started_at="2024-03-27T19:50:11.946Z",
            ),
        )
    ]


def test_closed_is_signal_closed_timed_by_closed_at() -> None:
    """The doc's ``closed`` becomes signal.closed with exit, gain, closedAt as its time."""
    message = decode_golden("closed")
    assert message == wire.Closed(
        id=35443,
        exit=69870.4,
        gain=868.4,
        closed_at="2024-04-06T12:47:51.327Z",
        token=TOKEN,
        token_state="REIMBURSED",
    )
    assert normalize(message, "alerts", RECEIVED, times.Refusals(), CONTEXT) == [
        SignalClosed(
            id="alerts:35443:closed",
            source="alerts",
            provider="tpalerts",
            time="2024-04-06T12:47:51.327Z",
            received=RECEIVED,
            symbol="BTC/USD",
            data=SignalData(
                alert_id=35443,
                strategy="short",
                market="CRYPTOCURRENCIES",
                entry=69002.0,
                target=69872.4,
                stop=68997.0,
                exit=69870.4,
                gain=868.4,
                token=TOKEN,
                token_state="REIMBURSED",
                started_at="2024-03-27T19:50:11.946Z",
                closed_at="2024-04-06T12:47:51.327Z",
            ),
        )
    ]


def test_closed_without_context_has_null_symbol_and_prices() -> None:
    """A close whose working event was never seen keeps its own fields and nulls the rest."""
    (event,) = normalize(decode_golden("closed"), "alerts", RECEIVED, times.Refusals(), None)
    assert event.symbol is None
    assert event.data == SignalData(
        alert_id=35443,
        exit=69870.4,
        gain=868.4,
        token=TOKEN,
        token_state="REIMBURSED",
        closed_at="2024-04-06T12:47:51.327Z",
    )


def test_unknown_event_name_has_no_decoder() -> None:
    """An event name the doc does not list decodes to None (counted, not an error)."""
    assert wire.decode("promoted", '{"id": 1}') is None
    assert wire.decode("message", '{"id": 1}') is None
    assert wire.decoder_for("promoted") is None


def test_trailing_comma_is_dropped_from_any_name() -> None:
    """The comma the doc shows after ``ping`` is tolerated after every event name."""
    assert wire.event_name("working,") == "working"
    assert wire.event_name("onGoing , ") == "onGoing"
    assert wire.decode("closed,", '{"id": 9}') == wire.Closed(id=9)


def test_malformed_json_raises_decode_error() -> None:
    """Broken JSON and JSON of the wrong shape raise msgspec errors for the adapter to count."""
    with pytest.raises(msgspec.DecodeError):
        wire.decode("working", '{"id": 35443,,}')
    with pytest.raises(msgspec.ValidationError, match=r"Expected `int`, got `str` - at `\$.id`"):
        wire.decode("working", '{"id": "35443"}')
    with pytest.raises(msgspec.ValidationError, match="missing required field `id`"):
        wire.decode("closed", '{"exit": 1.5}')


def test_missing_optional_fields_decode_as_none() -> None:
    """A working event with only its id still normalizes; time falls back to receipt time."""
    message = wire.decode("working", '{"id": 7}')
    assert message == wire.Working(id=7)
    assert normalize(message, "alerts", RECEIVED, times.Refusals()) == [
        SignalDetected(
            id="alerts:7:working",
            source="alerts",
            provider="tpalerts",
            time=RECEIVED,
            received=RECEIVED,
            data=SignalData(alert_id=7),
        )
    ]


def test_unparseable_time_falls_back_to_receipt_time() -> None:
    """A startedAt that is not a date leaves started_at null and times the event on receipt."""
    (event,) = normalize(
        wire.Working(id=8, started_at="yesterday"), "alerts", RECEIVED, times.Refusals()
    )
    assert event.time == RECEIVED
    assert event.data == SignalData(alert_id=8)


def test_nanosecond_and_offset_times_are_made_canonical() -> None:
    """A closedAt with nanoseconds and an offset becomes the canonical millisecond UTC form."""
    message = wire.Closed(id=9, closed_at="2024-04-06T14:47:51.327999999+02:00")
    (event,) = normalize(message, "alerts", RECEIVED, times.Refusals())
    assert event.time == "2024-04-06T12:47:51.327Z"
    assert event.data == SignalData(alert_id=9, closed_at="2024-04-06T12:47:51.327Z")


def test_extra_unknown_fields_are_ignored() -> None:
    """Fields the doc does not list (upstreams add some) are ignored, known ones kept."""
    _, data = golden("ongoing")
    extended = data[:-1] + ',"score":0.93,"tags":["x"],"nested":{"a":1}}'
    assert wire.decode("onGoing", extended) == wire.OnGoing(id=35443, token=TOKEN)


def test_event_id_names_source_alert_and_event() -> None:
    """The id is ``<source>:<alert id>:<event name>`` with the upstream's own spelling."""
    assert event_id("alerts", wire.OnGoing(id=35443)) == "alerts:35443:onGoing"
    assert event_id("tp-main", wire.Closed(id=1)) == "tp-main:1:closed"


def test_cache_fills_later_events_and_forgets_terminal_ones() -> None:
    """The cache gives onGoing/closed the working context, then forgets the closed alert."""
    cache = AlertCache(maxsize=10)
    working = decode_golden("working")
    assert isinstance(working, wire.Working)
    assert context_of(working, times.Refusals()) == CONTEXT
    detected = cache.events(working, "alerts", RECEIVED, times.Refusals())
    assert [e.symbol for e in detected] == ["BTC/USD"]
    assert len(cache) == 1
    (active,) = cache.events(decode_golden("ongoing"), "alerts", RECEIVED, times.Refusals())
    assert (
        active
        == normalize(decode_golden("ongoing"), "alerts", RECEIVED, times.Refusals(), CONTEXT)[0]
    )
    (closed,) = cache.events(decode_golden("closed"), "alerts", RECEIVED, times.Refusals())
    assert (
        closed
        == normalize(decode_golden("closed"), "alerts", RECEIVED, times.Refusals(), CONTEXT)[0]
    )
    assert len(cache) == 0
    assert cache.events(decode_golden("ping"), "alerts", RECEIVED, times.Refusals()) == []


def test_cache_is_bounded_and_drops_the_oldest_alert() -> None:
    """Past ``maxsize`` live alerts the oldest loses its context; the newer keep theirs."""
    cache = AlertCache(maxsize=2)
    for alert_id, ticker in ((1, "EUR/USD"), (2, "GBP/USD"), (3, "USD/JPY")):
        cache.events(wire.Working(id=alert_id, ticker=ticker), "alerts", RECEIVED, times.Refusals())
    assert len(cache) == 2
    symbols = [
        cache.events(wire.Aborted(id=alert_id), "alerts", RECEIVED, times.Refusals())[0].symbol
        for alert_id in (1, 2, 3)
    ]
    assert symbols == [None, "GBP/USD", "USD/JPY"]
    assert len(cache) == 0


prices = st.none() | st.floats(allow_nan=False, allow_infinity=False)


@given(
    alert_id=st.integers(min_value=0, max_value=2**63 - 1),
    ticker=st.none() | st.text(max_size=20),
    start=prices,
    target=prices,
    stop=prices,
)
def test_any_working_payload_round_trips_into_the_event(
    alert_id: int, ticker: str | None, start: float | None, target: float | None, stop: float | None
) -> None:
    """Whatever values a working payload carries arrive unchanged in signal.detected."""
    payload = {"id": alert_id, "ticker": ticker, "start": start, "target": target, "stop": stop}
    message = wire.decode("working", msgspec.json.encode(payload))
    assert message is not None
    (event,) = normalize(message, "s", RECEIVED, times.Refusals())
    assert event.id == f"s:{alert_id}:working"
    assert event.symbol == ticker
    assert event.data == SignalData(alert_id=alert_id, entry=start, target=target, stop=stop)


@given(cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=30))
def test_golden_feed_gives_the_same_events_however_it_is_chunked(cuts: list[int]) -> None:
    """The doc's frames, split anywhere, give the same canonical events as read whole."""
    feed = b"".join(
        (DATA / f"{name}.sse").read_bytes() for name in ("ping", "working", "ongoing", "closed")
    )
    bounds = sorted({0, len(feed), *(c % (len(feed) + 1) for c in cuts)})
    decoder, cache = SSEDecoder(), AlertCache(maxsize=10)
    events = []
    for start, end in itertools.pairwise(bounds):
        for message in decoder.feed(feed[start:end]):
            decoded = wire.decode(message.event, message.data)
            assert decoded is not None
            events.extend(cache.events(decoded, "alerts", RECEIVED, times.Refusals()))
    assert [e.id for e in events] == [
        "alerts:35443:working",
        "alerts:35443:onGoing",
        "alerts:35443:closed",
    ]
    assert [e.symbol for e in events] == ["BTC/USD"] * 3
    assert (
        events[2]
        == normalize(decode_golden("closed"), "alerts", RECEIVED, times.Refusals(), CONTEXT)[0]
    )
