"""Trader WS: golden wire payloads decode and normalize to exact canonical events."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradebus import times
from tradebus.adapters.traderws import normalize, wire
from tradebus.schemas.events import (
    AccountData,
    AccountUpdated,
    DepthData,
    DepthLevel,
    DepthUpdated,
    OrderData,
    PositionClosed,
    PositionData,
    PositionOpened,
    PositionUpdated,
    QuoteData,
    QuoteUpdated,
    StatusData,
    StatusError,
    event_type,
)

DATA = Path(__file__).parents[2] / "examples" / "upstreams" / "traderws"
SRC = "tws"
RECEIVED = "2026-06-01T12:00:09.999Z"


def golden(name: str) -> bytes:
    return (DATA / name).read_bytes()


def test_doc_quote_event_normalizes_to_quote_updated() -> None:
    """The doc's quoteEvent example becomes one quote.updated with its own ts and prices."""
    msg = wire.decode(golden("quoteEvent.json"))
    assert isinstance(msg, wire.QuoteEvent)
    assert normalize.quote(msg, SRC, RECEIVED, times.Refusals()) == [
        QuoteUpdated(
            id="tws:quote:EURUSD:2026-06-01T12:00:00Z:1.0843:1.0844",
            source=SRC,
            provider="traderws",
            time="2026-06-01T12:00:00.000Z",
            received=RECEIVED,
            symbol="EURUSD",
            data=QuoteData(bid=1.0843, ask=1.0844),
        )
    ]


def quote_id(bid: float | None, ask: float | None) -> str:
    raw = msgspec.json.encode(
        {"type": "quoteEvent", "payload": {"symbol": "X", "bid": bid, "ask": ask, "ts": "t"}}
    )
    msg = wire.decode(raw)
    assert isinstance(msg, wire.QuoteEvent)
    [event] = normalize.quote(msg, SRC, RECEIVED, times.Refusals())
    return event.id


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False) | st.none(), min_size=1))
def test_quote_ids_write_each_price_as_its_repr(prices: list[float | None]) -> None:
    """Remembered price texts are the float's own repr (0.0 and -0.0 apart); no price is empty."""
    for n, bid in enumerate(prices):
        ask = prices[-n - 1]
        text = ["" if p is None else repr(p) for p in (bid, ask)]
        assert quote_id(bid, ask) == f"tws:quote:X:t:{text[0]}:{text[1]}"


def test_quote_ids_stay_right_past_the_price_memo() -> None:
    """Tens of thousands of distinct prices, each seen twice, keep their exact text."""
    for n in range(20_000):
        bid = 1.0 + n / 100_000
        assert quote_id(bid, bid) == quote_id(bid, bid) == f"tws:quote:X:t:{bid!r}:{bid!r}"


def test_quote_without_ts_uses_receipt_time() -> None:
    """A quote without ts is stamped (and identified) by its receipt time."""
    msg = wire.decode(b'{"type":"quoteEvent","payload":{"symbol":"X","bid":1,"extra":{"a":1}}}')
    assert isinstance(msg, wire.QuoteEvent)
    [event] = normalize.quote(msg, SRC, RECEIVED, times.Refusals())
    assert (event.id, event.time) == (f"tws:quote:X:{RECEIVED}:1.0:", RECEIVED)


def test_depth_event_normalizes_levels_and_content_id() -> None:
    """depthEvent becomes depth.updated with [price, volume] levels and a content-derived id."""
    msg = wire.decode(golden("depthEvent.json"))
    assert isinstance(msg, wire.DepthEvent)
    [event] = normalize.depth(msg, SRC, RECEIVED, times.Refusals())
    assert isinstance(event, DepthUpdated)
    assert event.id.startswith("tws:depth:EURUSD:2026-06-01T12:00:00.500Z:")
    assert len(event.id.rsplit(":", 1)[1]) == 8
    again = wire.decode(golden("depthEvent.json"))
    assert normalize.depth(again, SRC, "other", times.Refusals())[0].id == event.id  # type: ignore[arg-type]
    assert (event.time, event.symbol) == ("2026-06-01T12:00:00.500Z", "EURUSD")
    assert event.data == DepthData(
        bids=(DepthLevel(1.0843, 1500000), DepthLevel(1.0842, 3000000)),
        asks=(DepthLevel(1.0844, 1000000), DepthLevel(1.0845, 2500000)),
    )


@pytest.mark.parametrize(
    ("name", "type_", "expected"),
    [
        ("new", "order.accepted", (0.0, 10000.0, None, None)),
        ("partially_filled", "order.partially_filled", (4000.0, 6000.0, 1.0844, "pos-000001")),
        ("filled", "order.filled", (10000.0, 0.0, 1.08445, "pos-000001")),
    ],
)
def test_execution_status_maps_to_order_event(
    name: str, type_: str, expected: tuple[float, float, float | None, str | None]
) -> None:
    """executionEvent's status picks the order.* type; fields map one to one."""
    filled, remaining, price, position = expected
    msg = wire.decode(golden(f"executionEvent_{name}.json"))
    assert isinstance(msg, wire.ExecutionEvent)
    [event] = normalize.execution(msg, SRC, RECEIVED, times.Refusals())
    assert event_type(event) == type_
    ex = msg.payload.execution_id
    assert (event.id, event.account, event.symbol) == (f"tws:exec:{ex}", "acc_123", "EURUSD")
    assert event.time == msg.payload.ts
    assert event.data == OrderData(
        order_id="ord-000001",
        position_id=position,
        execution_id=ex,
        side="buy",
        order_type="market",
        volume=10000.0,
        filled_volume=filled,
        remaining_volume=remaining,
        price=price,
    )


def test_execution_cancelled_and_rejected_keep_reason() -> None:
    """CANCELLED and REJECTED executions become order.cancelled / order.rejected with a reason."""
    cancelled = normalize.execution(
        wire.decode(golden("executionEvent_cancelled.json")),  # type: ignore[arg-type]
        SRC,
        RECEIVED,
        times.Refusals(),
    )[0]
    rejected = normalize.execution(
        wire.decode(golden("executionEvent_rejected.json")),  # type: ignore[arg-type]
        SRC,
        RECEIVED,
        times.Refusals(),
    )[0]
    assert event_type(cancelled) == "order.cancelled"
    assert cancelled.data == OrderData(
        order_id="ord-000002",
        execution_id="ex-000005",
        side="sell",
        order_type="limit",
        volume=5000.0,
        filled_volume=0.0,
        remaining_volume=5000.0,
        price=1.2710,
        reason="cancelled by client",
    )
    assert event_type(rejected) == "order.rejected"
    assert (rejected.id, rejected.data.reason) == ("tws:exec:ex-000006", "insufficient margin")  # type: ignore[union-attr]


def test_unknown_execution_status_raises_value_error() -> None:
    """An execution status the model cannot take is a ValueError (counted as bad input)."""
    raw = b'{"type":"executionEvent","payload":{"executionId":"e","orderId":"o","status":"WEIRD"}}'
    with pytest.raises(ValueError, match="WEIRD"):
        normalize.execution(wire.decode(raw), SRC, RECEIVED, times.Refusals())  # type: ignore[arg-type]


def test_portfolio_event_gives_positions_then_account() -> None:
    """portfolioEvent: one position.* per position (by change), then account.updated, ids #n."""
    msg = wire.decode(golden("portfolioEvent.json"))
    assert isinstance(msg, wire.PortfolioEvent)
    events = normalize.portfolio(msg, SRC, RECEIVED, times.Refusals())
    assert [event_type(e) for e in events] == [
        "position.opened",
        "position.closed",
        "account.updated",
    ]
    base = events[0].id[: -len("#1")]
    assert base.startswith("tws:portfolio:acc_123:2026-06-01T12:00:01.350Z:")
    assert [e.id for e in events] == [f"{base}#1", f"{base}#2", f"{base}#3"]
    opened, closed, account = events
    assert isinstance(opened, PositionOpened)
    assert (opened.account, opened.symbol, opened.time) == (
        "acc_123",
        "EURUSD",
        "2026-06-01T12:00:01.350Z",
    )
    assert opened.data == PositionData(
        position_id="pos-000001",
        side="buy",
        volume=10000.0,
        open_price=1.08445,
        current_price=1.0849,
        unrealized_profit=4.5,
    )
    assert isinstance(closed, PositionClosed)
    assert closed.data == PositionData(
        position_id="pos-000000",
        side="sell",
        volume=5000.0,
        open_price=1.2710,
        close_price=1.2700,
        profit=5.0,
    )
    assert isinstance(account, AccountUpdated)
    assert account.data == AccountData(
        balance=100000.0,
        equity=100004.5,
        margin=361.48,
        free_margin=99643.02,
        margin_level=27664.2,
        profit=4.5,
        currency="USD",
    )


def test_portfolio_position_without_change_infers_type() -> None:
    """Without ``change``, quantity 0 means closed and anything else updated; one event, no #n."""
    raw = (
        b'{"type":"portfolioEvent","payload":{"accountId":"a","ts":"2026-06-01T12:00:00Z",'
        b'"positions":[{"positionId":"p1","quantity":0}]}}'
    )
    [event] = normalize.portfolio(wire.decode(raw), SRC, RECEIVED, times.Refusals())  # type: ignore[arg-type]
    assert isinstance(event, PositionClosed)
    assert "#" not in event.id
    raw2 = raw.replace(b'"quantity":0', b'"quantity":2')
    [event2] = normalize.portfolio(wire.decode(raw2), SRC, RECEIVED, times.Refusals())  # type: ignore[arg-type]
    assert isinstance(event2, PositionUpdated)


def test_metrics_event_normalizes_to_account_updated() -> None:
    """metricsEvent becomes account.updated with equity, margin and P&L."""
    msg = wire.decode(golden("metricsEvent.json"))
    assert isinstance(msg, wire.MetricsEvent)
    [event] = normalize.metrics(msg, SRC, RECEIVED, times.Refusals())
    assert isinstance(event, AccountUpdated)
    assert event.id.startswith("tws:metrics:acc_123:2026-06-01T12:00:02Z:")
    assert (event.time, event.account, event.symbol) == (
        "2026-06-01T12:00:02.000Z",
        "acc_123",
        None,
    )
    assert event.data == AccountData(
        balance=100000.0,
        equity=100004.5,
        margin=361.48,
        free_margin=99643.02,
        margin_level=27664.2,
        profit=4.5,
        currency="USD",
    )


def test_error_normalizes_to_status_error() -> None:
    """error becomes status.error with the upstream's code and message."""
    msg = wire.decode(golden("error.json"))
    assert isinstance(msg, wire.Error)
    assert normalize.error(msg, SRC, RECEIVED, times.Refusals()) == [
        StatusError(
            id=f"tws:error:{RECEIVED}:UNKNOWN_SYMBOL",
            source=SRC,
            provider="traderws",
            time=RECEIVED,
            received=RECEIVED,
            data=StatusData(
                reason="depthSubscribe",
                code="UNKNOWN_SYMBOL",
                message="symbol XAUEUR is not tradable",
            ),
        )
    ]


def test_doc_subscribed_and_history_replies_decode() -> None:
    """The doc's subscribed ack and the history replies decode into their structs."""
    ack = wire.decode(golden("subscribed.json"))
    assert isinstance(ack, wire.Subscribed)
    assert (ack.payload.symbols, ack.payload.events) == (
        ["EURUSD", "GBPUSD"],
        ["quoteEvent", "executionEvent"],
    )
    deals = wire.decode(golden("dealHistory.json"))
    assert isinstance(deals, wire.DealHistory)
    assert deals.payload.request_id == "dealHistory-2-1"
    assert [d.execution_id for d in deals.payload.deals] == ["ex-000003"]
    orders = wire.decode(golden("orderHistory.json"))
    assert isinstance(orders, wire.OrderHistory)
    assert [o.status for o in orders.payload.orders] == ["NEW"]


def test_doc_client_messages_encode_as_documented() -> None:
    """subscribe and createOrder encode exactly as the doc's examples."""
    sub = wire.ClientMessage(
        "subscribe",
        wire.SubscribeRequest(["EURUSD", "GBPUSD"], ["quoteEvent", "executionEvent"]),
    )
    assert msgspec.json.decode(wire.encode(sub)) == msgspec.json.decode(golden("subscribe.json"))
    order = wire.ClientMessage(
        "createOrder", wire.CreateOrderRequest("acc_123", "EURUSD", "BUY", 10000, "MARKET")
    )
    assert msgspec.json.decode(wire.encode(order)) == msgspec.json.decode(
        golden("createOrder.json")
    )


def test_login_response_and_unknown_type() -> None:
    """The login reply gives token and expiresIn; an unknown type is named, not decoded."""
    login = wire.decode_login(golden("login.json"))
    assert (login.token[:6], login.expires_in) == ("eyJhbG", 3600.0)
    with pytest.raises(msgspec.ValidationError):
        wire.decode(b'{"type":"newsEvent","payload":{}}')
    assert wire.message_type(b'{"type":"newsEvent","payload":{}}') == "newsEvent"
    assert wire.message_type(b"not json") is None


GOLDEN_STREAM = [
    "quoteEvent.json",
    "depthEvent.json",
    "executionEvent_filled.json",
    "portfolioEvent.json",
    "metricsEvent.json",
    "error.json",
]
_extra = st.dictionaries(
    st.text(min_size=1, max_size=8).filter(lambda k: k[0] == "x"),
    st.one_of(st.none(), st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=3)),
    max_size=4,
)


@given(extra=_extra, outer=_extra)
def test_unknown_fields_are_ignored(extra: dict[str, object], outer: dict[str, object]) -> None:
    """Fields the upstream adds (in the envelope or the payload) change nothing decoded."""
    for name in GOLDEN_STREAM:
        doc = msgspec.json.decode(golden(name))
        doc["payload"] = {**extra, **doc["payload"]}
        widened = msgspec.json.encode({**outer, **doc})
        assert wire.decode(widened) == wire.decode(golden(name))
