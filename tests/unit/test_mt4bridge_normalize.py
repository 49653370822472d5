"""MT4 bridge: wire decoding and normalization, on the doc's examples and designed payloads."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradebus import times
from tradebus.adapters.mt4bridge import normalize, wire
from tradebus.adapters.mt4bridge.adapter import ws_url
from tradebus.schemas.events import (
    AccountData,
    AccountUpdated,
    OrderData,
    OrderFilled,
    OrderPartiallyFilled,
    OrderRejected,
    PositionClosed,
    PositionData,
    PositionOpened,
    PositionUpdated,
    QuoteData,
    QuoteUpdated,
)

DATA = Path(__file__).parents[2] / "examples" / "upstreams" / "mt4bridge"
RECEIVED = "2026-06-09T14:32:02.000Z"
SRC = "mt4"
ACCOUNT = "demo-mt4-01"


def _read(name: str) -> bytes:
    return (DATA / name).read_bytes()


def _one(name: str) -> wire.Message:
    decoded = wire.decode_frame(_read(name))
    assert decoded.unknown == []
    assert decoded.bad == []
    assert len(decoded.messages) == 1
    return decoded.messages[0]


def test_session_open_request_matches_the_docs_example() -> None:
    """The body the adapter sends for the doc's values encodes to the doc's own example."""
    body = wire.SessionOpenRequest(
        account_id="demo-mt4-01", server="Broker-Demo", login=120045, password="<terminal-password>"
    )
    assert msgspec.json.decode(wire.encoder.encode(body)) == msgspec.json.decode(
        _read("session_open_request.json")
    )
    decoded = msgspec.json.decode(_read("session_open_request.json"), type=wire.SessionOpenRequest)
    assert decoded == body


def test_order_request_decodes_the_docs_example() -> None:
    """The doc's order body decodes field by field into the order task struct."""
    order = msgspec.json.decode(_read("order_request.json"), type=wire.OrderRequest)
    assert order == wire.OrderRequest(
        symbol="EURUSD", type="BUY", volume=0.2, sl=1.0735, tp=1.0790, comment="alpha-engine"
    )


def test_session_and_error_bodies_decode() -> None:
    """Session open response and the BridgeUnavailable error body decode; extras are ignored."""
    assert wire.session_decoder.decode(_read("session_open_response.json")) == wire.SessionInfo(
        session_id="sess_mt4_demo_01",
        expires_at="2026-06-09T14:37:01.000Z",
        account_id="demo-mt4-01",
    )
    assert wire.error_decoder.decode(_read("error_bridge_unavailable.json")) == wire.ErrorBody(
        code="BridgeUnavailable",
        message="The bridge lost connectivity to the terminal or broker server.",
    )


def test_account_normalizes_with_exact_fields() -> None:
    """GET /account → account.updated with every balance field and the configured account."""
    data = normalize.account_data(wire.account_decoder.decode(_read("account.json")))
    event = normalize.account(data, SRC, ACCOUNT, RECEIVED)
    assert event == AccountUpdated(
        id=f"{SRC}:account:{RECEIVED}",
        source=SRC,
        provider="mt4bridge",
        time=RECEIVED,
        received=RECEIVED,
        account=ACCOUNT,
        data=AccountData(
            balance=10000.0,
            equity=10012.5,
            margin=415.2,
            free_margin=9597.3,
            margin_level=2411.44,
            profit=12.5,
            currency="USD",
        ),
    )


def test_positions_decode_and_reconcile_to_position_opened() -> None:
    """GET /positions: market positions become position.opened; pending orders are kept apart."""
    snapshot = wire.positions_decoder.decode(_read("positions.json"))
    assert isinstance(snapshot, wire.Positions)
    assert [p.ticket for p in snapshot.orders] == [50013]
    assert not normalize.is_open_position(snapshot.orders[0])
    first, second = snapshot.positions
    assert normalize.is_open_position(first)
    assert normalize.position_event(
        "opened", first, SRC, ACCOUNT, RECEIVED, refused=times.Refusals()
    ) == PositionOpened(
        id=f"{SRC}:pos:50011:opened",
        source=SRC,
        provider="mt4bridge",
        time="2026-06-09T14:30:12.250Z",
        received=RECEIVED,
        account=ACCOUNT,
        symbol="EURUSD",
        data=PositionData(
            position_id="50011",
            side="buy",
            volume=0.2,
            open_price=1.0762,
            current_price=1.07745,
            stop_loss=1.0735,
            take_profit=1.079,
            unrealized_profit=25.0,
        ),
    )
    closed = normalize.position_event(
        "closed", second, SRC, ACCOUNT, RECEIVED, refused=times.Refusals(), reason="reconciled"
    )
    assert closed == PositionClosed(
        id=f"{SRC}:pos:50012:closed",
        source=SRC,
        provider="mt4bridge",
        time=RECEIVED,
        received=RECEIVED,
        account=ACCOUNT,
        symbol="GBPUSD",
        data=PositionData(
            position_id="50012",
            side="sell",
            volume=0.1,
            open_price=1.2701,
            close_price=1.2711,
            profit=-10.0,
            reason="reconciled",
        ),
    )


def test_mt4_terminal_time_format_is_read_as_utc() -> None:
    """ "2026.06.09 14:31:05" (the terminal's format) becomes the canonical UTC time."""
    assert (
        normalize.upstream_time("2026.06.09 14:31:05", RECEIVED, times.Refusals())
        == "2026-06-09T14:31:05.000Z"
    )
    assert (
        normalize.upstream_time(1781015521123, RECEIVED, times.Refusals())
        == "2026-06-09T14:32:01.123Z"
    )
    assert (
        normalize.upstream_time(1781015521.5, RECEIVED, times.Refusals())
        == "2026-06-09T14:32:01.500Z"
    )
    assert normalize.upstream_time("not a time", RECEIVED, times.Refusals()) == RECEIVED
    assert normalize.upstream_time(None, RECEIVED, times.Refusals()) == RECEIVED


def test_quote_normalizes_with_content_id() -> None:
    """A quote message → quote.updated with bid/ask, its own time and a content-derived id."""
    msg = _one("ws_quote.json")
    assert isinstance(msg, wire.Quote)
    assert normalize.quote(msg, SRC, ACCOUNT, RECEIVED, times.Refusals()) == QuoteUpdated(
        id=f"{SRC}:quote:EURUSD:2026-06-09T14:32:01.123Z:1.07741:1.07749",
        source=SRC,
        provider="mt4bridge",
        time="2026-06-09T14:32:01.123Z",
        received=RECEIVED,
        account=ACCOUNT,
        symbol="EURUSD",
        data=QuoteData(bid=1.07741, ask=1.07749),
    )


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False) | st.none(), min_size=1))
def test_quote_ids_write_each_price_as_an_f_string_does(prices: list[float | None]) -> None:
    """Remembered price texts are exactly what the id always wrote (0.0 and -0.0 apart, a
    missing price as None), however often a price repeats."""
    for n, bid in enumerate(prices):
        ask = prices[-n - 1]
        msg = wire.Quote(symbol="EURUSD", bid=bid, ask=ask, time="2026-06-09T14:32:01.123Z")
        event = normalize.quote(msg, SRC, ACCOUNT, RECEIVED, times.Refusals())
        assert event.id == f"{SRC}:quote:EURUSD:2026-06-09T14:32:01.123Z:{bid}:{ask}"


def test_profit_normalizes_to_position_updated() -> None:
    """A profit message → position.updated carrying the floating profit and current price."""
    msg = _one("ws_profit.json")
    assert isinstance(msg, wire.Profit)
    assert normalize.profit(msg, SRC, ACCOUNT, RECEIVED, times.Refusals()) == PositionUpdated(
        id=f"{SRC}:profit:50011:2026-06-09T14:32:01.123Z:24.2",
        source=SRC,
        provider="mt4bridge",
        time="2026-06-09T14:32:01.123Z",
        received=RECEIVED,
        account=ACCOUNT,
        symbol="EURUSD",
        data=PositionData(position_id="50011", current_price=1.07741, unrealized_profit=24.2),
    )


def test_order_filled_normalizes_with_task_id() -> None:
    """An order "filled" → order.filled, id from the task id, all execution fields kept."""
    msg = _one("ws_order_filled.json")
    assert isinstance(msg, wire.Order)
    assert normalize.order(msg, SRC, ACCOUNT, RECEIVED, times.Refusals()) == OrderFilled(
        id=f"{SRC}:order:task_8f2a1c:filled",
        source=SRC,
        provider="mt4bridge",
        time="2026-06-09T14:30:12.250Z",
        received=RECEIVED,
        account=ACCOUNT,
        symbol="EURUSD",
        data=OrderData(
            order_id="task_8f2a1c",
            position_id="50011",
            side="buy",
            order_type="market",
            volume=0.2,
            filled_volume=0.2,
            remaining_volume=0.0,
            price=1.0762,
        ),
    )


def test_order_partially_filled_id_carries_the_filled_volume() -> None:
    """Each partial fill of one task gets its own id (the filled volume so far)."""
    msg = _one("ws_order_partially_filled.json")
    assert isinstance(msg, wire.Order)
    event = normalize.order(msg, SRC, ACCOUNT, RECEIVED, times.Refusals())
    assert isinstance(event, OrderPartiallyFilled)
    assert event.id == f"{SRC}:order:task_8f2a1d:partially_filled:0.4"
    assert event.symbol == "XAUUSD"
    assert event.data == OrderData(
        order_id="task_8f2a1d",
        position_id="50014",
        side="sell",
        order_type="limit",
        volume=1.0,
        filled_volume=0.4,
        remaining_volume=0.6,
        price=2331.5,
    )


def test_order_rejected_keeps_reason() -> None:
    """An order "rejected" without a ticket → order.rejected with the broker's reason."""
    msg = _one("ws_order_rejected.json")
    assert isinstance(msg, wire.Order)
    assert normalize.order(msg, SRC, ACCOUNT, RECEIVED, times.Refusals()) == OrderRejected(
        id=f"{SRC}:order:task_8f2a1e:rejected",
        source=SRC,
        provider="mt4bridge",
        time="2026-06-09T14:33:10.000Z",
        received=RECEIVED,
        account=ACCOUNT,
        symbol="EURUSD",
        data=OrderData(
            order_id="task_8f2a1e",
            side="buy",
            order_type="market",
            volume=50.0,
            reason="not enough money",
        ),
    )


def test_order_opened_and_closed_give_position_events_with_reconcile_ids() -> None:
    """WS "opened"/"closed" → position.opened/closed under the same ids reconciliation uses."""
    opened = _one("ws_order_opened.json")
    closed = _one("ws_order_closed.json")
    assert isinstance(opened, wire.Order)
    assert isinstance(closed, wire.Order)
    assert normalize.order(opened, SRC, ACCOUNT, RECEIVED, times.Refusals()) == PositionOpened(
        id=f"{SRC}:pos:50011:opened",
        source=SRC,
        provider="mt4bridge",
        time="2026-06-09T14:30:12.250Z",
        received=RECEIVED,
        account=ACCOUNT,
        symbol="EURUSD",
        data=PositionData(
            position_id="50011",
            side="buy",
            volume=0.2,
            open_price=1.0762,
            stop_loss=1.0735,
            take_profit=1.079,
        ),
    )
    assert normalize.order(closed, SRC, ACCOUNT, RECEIVED, times.Refusals()) == PositionClosed(
        id=f"{SRC}:pos:50011:closed",
        source=SRC,
        provider="mt4bridge",
        time="2026-06-09T15:02:44.500Z",
        received=RECEIVED,
        account=ACCOUNT,
        symbol="EURUSD",
        data=PositionData(
            position_id="50011",
            side="buy",
            volume=0.2,
            open_price=1.0762,
            close_price=1.0779,
            profit=34.0,
            reason="tp",
        ),
    )


def test_order_unknown_event_and_missing_ids() -> None:
    """An unknown order event gives None; one naming no task nor ticket is a ValueError."""
    assert (
        normalize.order(
            wire.Order(event="expired", task_id="t1"), SRC, None, RECEIVED, times.Refusals()
        )
        is None
    )
    with pytest.raises(ValueError, match="without a taskId or ticket"):
        normalize.order(wire.Order(event="filled"), SRC, None, RECEIVED, times.Refusals())
    with pytest.raises(ValueError, match="without a ticket"):
        normalize.order(
            wire.Order(event="opened", task_id="t1"), SRC, None, RECEIVED, times.Refusals()
        )


def test_batch_frame_splits_known_unknown_and_broken() -> None:
    """One array frame: known messages decode, an unknown type is named, a broken one is bad."""
    decoded = wire.decode_frame(_read("ws_batch.json"))
    assert decoded.messages == [
        wire.Subscribed(channels=["quotes", "profit", "orders"], symbols=["EURUSD"]),
        wire.Quote(symbol="EURUSD", bid=1.07741, ask=1.07749, time=1781015521123),
    ]
    assert decoded.unknown == ["depth"]
    assert [raw for raw, _ in decoded.bad] == [b'{"type": "quote", "bid": 1.1}']


def test_broken_json_is_bad_input() -> None:
    """A truncated frame is one bad input, never an exception."""
    decoded = wire.decode_frame(b'{"type": "quote", "sym')
    assert decoded.messages == []
    assert decoded.unknown == []
    assert [raw for raw, _ in decoded.bad] == [b'{"type": "quote", "sym']


@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "symbol": st.sampled_from(["EURUSD", "XAUUSD", "GBPUSD.m"]),
                "bid": st.floats(0.0001, 1e6),
                "ask": st.floats(0.0001, 1e6),
            }
        ),
        min_size=1,
        max_size=20,
    )
)
def test_any_quote_batch_decodes_in_order(quotes: list[dict[str, object]]) -> None:
    """Any batch of quotes decodes in one pass to the same quotes, in order."""
    raw = msgspec.json.encode([{"type": "quote", **q} for q in quotes])
    decoded = wire.decode_frame(raw)
    assert decoded.bad == []
    assert [(m.symbol, m.bid, m.ask) for m in decoded.messages if isinstance(m, wire.Quote)] == [
        (q["symbol"], q["bid"], q["ask"]) for q in quotes
    ]


def test_ws_url_is_derived_from_the_rest_base() -> None:
    """WS /events sits under the configured base: http → ws, https → wss."""
    assert ws_url("http://127.0.0.1:8080/mt4/client") == "ws://127.0.0.1:8080/mt4/client/events"
    assert (
        ws_url("https://api.metatraderapi.xyz/mt4/client/")
        == "wss://api.metatraderapi.xyz/mt4/client/events"
    )
