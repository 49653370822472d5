"""TTMT: wire decoding and normalization, on the upstream doc's own examples."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradebus import times
from tradebus.adapters.ttmt import wire
from tradebus.adapters.ttmt.normalize import SymbolCache, normalize
from tradebus.schemas.events import (
    BreakevenData,
    Event,
    OrderData,
    OrderFilled,
    Origin,
    PositionBreakevenFailed,
    PositionBreakevenSet,
    PositionClosed,
    PositionData,
    PositionUpdated,
    TradeClosed,
    TradeData,
    TradeOpened,
    TradeTpHit,
)
from tradebus.sse import SSEDecoder

DATA = Path(__file__).parents[2] / "examples" / "upstreams" / "ttmt"
SOURCE = "ttmt-main"
RECEIVED = "2026-06-09T14:50:00.007Z"
ACCOUNT = "a1b2c3d4-uuid"
ORIGIN = Origin(signal_id="f3c1a2b4-uuid", telegram_message_id=12345)


def golden(name: str) -> bytes:
    return (DATA / f"{name}.json").read_bytes()


def events_of(name: str) -> list[Event]:
    return normalize(wire.decode(golden(name)), SOURCE, RECEIVED, times.Refusals())


def test_position_update_single_delta() -> None:
    """The single-delta position_update gives one position.updated, id without a suffix."""
    assert events_of("position_update_single") == [
        PositionUpdated(
            id="ttmt-main:10",
            source=SOURCE,
            provider="ttmt",
            time="2026-06-09T14:32:01.123Z",
            received=RECEIVED,
            account=ACCOUNT,
            symbol="XAUUSD",
            origin=ORIGIN,
            data=PositionData(
                position_id="abc-metaapi-id", current_price=3312.80, unrealized_profit=42.50
            ),
        )
    ]


def test_position_update_batch() -> None:
    """A batch position_update gives one position.updated per position, ids #1.. even for one."""
    assert events_of("position_update_batch") == [
        PositionUpdated(
            id="ttmt-main:11#1",
            source=SOURCE,
            provider="ttmt",
            time="2026-06-09T14:32:01.456Z",
            received=RECEIVED,
            account=ACCOUNT,
            symbol="XAUUSD",
            origin=None,
            data=PositionData(
                position_id="abc-metaapi-id", current_price=3312.80, unrealized_profit=42.50
            ),
        )
    ]


def test_position_update_batch_of_three_numbers_each_position() -> None:
    """Every position of a batch gets its own 1-based suffix, in the upstream's order."""
    doc = json.loads(golden("position_update_batch"))
    first = doc["data"]["positions"][0]
    doc["data"]["positions"] = [
        first,
        {**first, "id": "p2", "symbol": "EURUSD", "currentPrice": 1.08512},
        {"id": "p3"},
    ]
    events = normalize(wire.decode(json.dumps(doc)), SOURCE, RECEIVED, times.Refusals())
    assert [e.id for e in events] == ["ttmt-main:11#1", "ttmt-main:11#2", "ttmt-main:11#3"]
    assert [e.symbol for e in events] == ["XAUUSD", "EURUSD", None]
    assert events[1].data == PositionData(
        position_id="p2", current_price=1.08512, unrealized_profit=42.50
    )
    assert events[2].data == PositionData(position_id="p3")


def test_position_update_empty_batch_gives_nothing() -> None:
    """An empty ``positions`` list is a batch of no positions: no event."""
    raw = b'{"type":"position_update","eventId":3,"data":{"positions":[]}}'
    assert normalize(wire.decode(raw), SOURCE, RECEIVED, times.Refusals()) == []


def test_position_update_without_any_position_is_rejected() -> None:
    """A position_update with neither positionId nor positions is unusable: ValueError."""
    raw = b'{"type":"position_update","eventId":3,"data":{"symbol":"XAUUSD"}}'
    with pytest.raises(ValueError, match="positionId"):
        normalize(wire.decode(raw), SOURCE, RECEIVED, times.Refusals())


def test_order_fill() -> None:
    """order_fill gives order.filled with the fill price, volume and layer."""
    assert events_of("order_fill") == [
        OrderFilled(
            id="ttmt-main:15",
            source=SOURCE,
            provider="ttmt",
            time="2026-06-09T14:33:00.000Z",
            received=RECEIVED,
            account=ACCOUNT,
            symbol="XAUUSD",
            origin=ORIGIN,
            data=OrderData(
                order_id="order-metaapi-id",
                position_id="pos-metaapi-id",
                volume=0.03,
                filled_volume=0.03,
                price=3310.50,
                layer=2,
            ),
        )
    ]


def test_position_closed() -> None:
    """position_closed gives position.closed with its reason and trade id, symbol unknown."""
    assert events_of("position_closed") == [
        PositionClosed(
            id="ttmt-main:20",
            source=SOURCE,
            provider="ttmt",
            time="2026-06-09T14:35:00.000Z",
            received=RECEIVED,
            account=ACCOUNT,
            symbol=None,
            origin=ORIGIN,
            data=PositionData(
                position_id="pos-metaapi-id", trade_id="trade-db-uuid", reason="tp_hit"
            ),
        )
    ]


def test_trade_executed() -> None:
    """trade_executed gives trade.opened with channel and the position/order counts."""
    assert events_of("trade_executed") == [
        TradeOpened(
            id="ttmt-main:5",
            source=SOURCE,
            provider="ttmt",
            time="2026-06-09T14:30:00.000Z",
            received=RECEIVED,
            account=ACCOUNT,
            symbol="XAUUSD",
            origin=ORIGIN,
            data=TradeData(
                trade_id="trade-db-uuid",
                channel="Gold Signals Pro",
                positions_count=3,
                orders_count=12,
            ),
        )
    ]


def test_trade_finalized() -> None:
    """trade_finalized gives trade.closed with the terminal status and P&L."""
    assert events_of("trade_finalized") == [
        TradeClosed(
            id="ttmt-main:25",
            source=SOURCE,
            provider="ttmt",
            time="2026-06-09T14:40:00.000Z",
            received=RECEIVED,
            account=ACCOUNT,
            symbol=None,
            origin=ORIGIN,
            data=TradeData(trade_id="trade-db-uuid", status="closed_profit", profit_loss=87.20),
        )
    ]


def test_tp_hit() -> None:
    """tp_hit gives trade.tp_hit with the TP level."""
    assert events_of("tp_hit") == [
        TradeTpHit(
            id="ttmt-main:18",
            source=SOURCE,
            provider="ttmt",
            time="2026-06-09T14:34:00.000Z",
            received=RECEIVED,
            account=ACCOUNT,
            symbol=None,
            origin=ORIGIN,
            data=TradeData(trade_id="trade-db-uuid", tp_level="TP2"),
        )
    ]


def test_breakeven_set() -> None:
    """breakeven_set gives position.breakeven_set with the new stop loss and no origin."""
    assert events_of("breakeven_set") == [
        PositionBreakevenSet(
            id="ttmt-main:19",
            source=SOURCE,
            provider="ttmt",
            time="2026-06-09T14:34:30.000Z",
            received=RECEIVED,
            account=ACCOUNT,
            symbol=None,
            origin=None,
            data=BreakevenData(position_id="pos-db-uuid", new_stop_loss=3310.00),
        )
    ]


def test_breakeven_set_origin_is_null_even_if_a_signal_is_sent() -> None:
    """The doc says breakeven_set's signal is always null: a stray one is not trusted."""
    doc = json.loads(golden("breakeven_set"))
    doc["data"]["signal"] = json.loads(golden("signal"))["signal"]
    (event,) = normalize(wire.decode(json.dumps(doc)), SOURCE, RECEIVED, times.Refusals())
    assert event.origin is None


def test_breakeven_failed() -> None:
    """breakeven_failed gives position.breakeven_failed naming the position and trade."""
    assert events_of("breakeven_failed") == [
        PositionBreakevenFailed(
            id="ttmt-main:22",
            source=SOURCE,
            provider="ttmt",
            time="2026-06-09T14:34:45.000Z",
            received=RECEIVED,
            account=ACCOUNT,
            symbol=None,
            origin=ORIGIN,
            data=BreakevenData(position_id="pos-db-uuid", trade_id="trade-db-uuid"),
        )
    ]


def test_auth_revoked_decodes_its_reason_and_is_left_to_the_adapter() -> None:
    """auth_revoked decodes with its reason; as connection control it gives no event here."""
    message = wire.decode(golden("auth_revoked"))
    assert message == wire.AuthRevoked(
        event_id=99,
        timestamp="2026-06-09T15:00:00.000Z",
        data=wire.ReasonData(reason="key_revoked"),
    )
    assert normalize(message, SOURCE, RECEIVED, times.Refusals()) == []


@pytest.mark.parametrize("name", ["recycle", "recycle_bare"])
def test_recycle_in_both_doc_shapes_decodes_and_gives_no_event(name: str) -> None:
    """Both of the doc's recycle shapes decode with reason max_lifetime; neither is an event."""
    message = wire.decode(golden(name))
    assert isinstance(message, wire.Recycle)
    assert message.why == "max_lifetime"
    assert message.event_id == (100 if name == "recycle" else None)
    assert normalize(message, SOURCE, RECEIVED, times.Refusals()) == []


def test_signal_object_decodes_to_origin() -> None:
    """The doc's signal provenance object maps field for field onto Origin."""
    signal = msgspec.json.decode(golden("signal"), type=dict[str, wire.Signal])["signal"]
    assert signal == wire.Signal(signal_id="f3c1a2b4-uuid", telegram_message_id=12345)


def test_unknown_type_is_told_apart_from_malformed() -> None:
    """An unknown ``type`` raises UnknownTypeError with its name, not a decode error."""
    with pytest.raises(wire.UnknownTypeError) as info:
        wire.decode(b'{"type":"margin_call","eventId":7,"data":{"level":50}}')
    assert info.value.name == "margin_call"


@pytest.mark.parametrize(
    "raw",
    [
        b'{"type":"tp_hit","eventId":18,',  # truncated JSON
        b"not json at all",
        b"[1, 2, 3]",  # JSON, not an envelope
        b'{"eventId":7,"data":{}}',  # no type
        b'{"type":7,"eventId":7}',  # type not a string
        b'{"type":"tp_hit","eventId":18,"data":{"tpLevel":"TP1"}}',  # tradeId missing
        b'{"type":"tp_hit","eventId":"18","data":{"tradeId":"t"}}',  # eventId a string
        b'{"type":"tp_hit","data":{"tradeId":"t"}}',  # eventId missing
    ],
)
def test_malformed_payloads_raise_decode_errors(raw: bytes) -> None:
    """Malformed JSON, or a known type with a broken body, is a msgspec.DecodeError."""
    with pytest.raises(msgspec.DecodeError):
        wire.decode(raw)


def test_missing_optional_fields_are_null() -> None:
    """Only the identifying fields are required: the rest decode as null, time falls back."""
    raw = b'{"type":"order_fill","eventId":15,"data":{"orderId":"o1"}}'
    assert normalize(wire.decode(raw), SOURCE, RECEIVED, times.Refusals()) == [
        OrderFilled(
            id="ttmt-main:15",
            source=SOURCE,
            provider="ttmt",
            time=RECEIVED,
            received=RECEIVED,
            data=OrderData(order_id="o1"),
        )
    ]


def test_unparseable_timestamp_falls_back_to_receipt_time() -> None:
    """A timestamp that is not RFC 3339 is replaced by the receipt time."""
    raw = b'{"type":"tp_hit","eventId":1,"timestamp":"yesterday","data":{"tradeId":"t"}}'
    (event,) = normalize(wire.decode(raw), SOURCE, RECEIVED, times.Refusals())
    assert event.time == RECEIVED


def test_timestamp_with_offset_is_made_canonical() -> None:
    """A timestamp with an offset becomes canonical UTC with milliseconds."""
    raw = (
        b'{"type":"tp_hit","eventId":1,"timestamp":"2026-06-09T16:32:01+02:00",'
        b'"data":{"tradeId":"t"}}'
    )
    (event,) = normalize(wire.decode(raw), SOURCE, RECEIVED, times.Refusals())
    assert event.time == "2026-06-09T14:32:01.000Z"


def test_extra_unknown_fields_are_ignored() -> None:
    """Fields the doc does not list, at every level, change nothing."""
    doc = json.loads(golden("order_fill"))
    doc["newTopLevel"] = {"x": 1}
    doc["data"]["commission"] = -0.21
    doc["data"]["signal"]["confidence"] = 0.9
    assert normalize(wire.decode(json.dumps(doc)), SOURCE, RECEIVED, times.Refusals()) == events_of(
        "order_fill"
    )


def test_signal_with_both_fields_null_is_no_origin() -> None:
    """A signal object whose fields are both null says nothing: origin is null."""
    raw = b'{"type":"tp_hit","eventId":1,"data":{"tradeId":"t","signal":{"signal_id":null}}}'
    (event,) = normalize(wire.decode(raw), SOURCE, RECEIVED, times.Refusals())
    assert event.origin is None


def test_symbol_cache_fills_later_events_of_the_doc_trade() -> None:
    """tp_hit, position_closed, breakeven_* and trade_finalized get the symbol learnt earlier."""
    cache = SymbolCache(100)
    names = [
        "trade_executed",
        "order_fill",
        "tp_hit",
        "breakeven_failed",
        "breakeven_set",
        "position_closed",
        "trade_finalized",
    ]
    events = [e for name in names for e in cache.apply(events_of(name))]
    assert [e.symbol for e in events] == ["XAUUSD"] * len(names)
    assert [e.id for e in events] == [
        "ttmt-main:5",
        "ttmt-main:15",
        "ttmt-main:18",
        "ttmt-main:22",
        "ttmt-main:19",
        "ttmt-main:20",
        "ttmt-main:25",
    ]


def test_symbol_cache_is_bounded_and_leaves_unknown_ids_null() -> None:
    """Past its size the cache forgets the oldest trade; an unknown trade keeps symbol null."""
    cache = SymbolCache(2)
    for n in range(3):
        raw = (
            f'{{"type":"trade_executed","eventId":{n},"data":{{"tradeId":"t{n}","symbol":"S{n}"}}}}'
        )
        cache.apply(normalize(wire.decode(raw), SOURCE, RECEIVED, times.Refusals()))
    tp = '{{"type":"tp_hit","eventId":9,"data":{{"tradeId":"{}"}}}}'
    symbols = [
        cache.apply(normalize(wire.decode(tp.format(t)), SOURCE, RECEIVED, times.Refusals()))[
            0
        ].symbol
        for t in ("t0", "t1", "t2", "nope")
    ]
    assert symbols == [None, "S1", "S2", None]


def test_symbol_cache_forgets_the_id_learnt_longest_ago_and_relearns_it() -> None:
    """Eviction goes by when an id was learnt; its next event that names the symbol teaches it."""
    cache = SymbolCache(2)
    executed = '{{"type":"trade_executed","eventId":1,"data":{{"tradeId":"{}","symbol":"{}"}}}}'
    tp = '{{"type":"tp_hit","eventId":9,"data":{{"tradeId":"{}"}}}}'

    def learn(trade: str, symbol: str) -> None:
        cache.apply(
            normalize(
                wire.decode(executed.format(trade, symbol)), SOURCE, RECEIVED, times.Refusals()
            )
        )

    def symbol_of(trade: str) -> str | None:
        return cache.apply(
            normalize(wire.decode(tp.format(trade)), SOURCE, RECEIVED, times.Refusals())
        )[0].symbol

    learn("t0", "S0")
    learn("t1", "S1")
    learn("t0", "S0")  # already known: not learnt again, so still the oldest
    learn("t2", "S2")
    assert [symbol_of(t) for t in ("t0", "t1", "t2")] == [None, "S1", "S2"]
    learn("t0", "S0")
    learn("t2", "S9")  # a changed symbol is learnt again
    assert [symbol_of(t) for t in ("t0", "t1", "t2")] == ["S0", None, "S9"]


def test_sse_frame_through_decoder_and_wire() -> None:
    """An SSE frame as the doc shows it (``id:`` then ``data:``) yields the same event."""
    frame = b"id: 18\ndata: " + json.dumps(json.loads(golden("tp_hit"))).encode() + b"\n\n"
    (message,) = SSEDecoder().feed(frame)
    assert message.id == "18"
    assert normalize(wire.decode(message.data), SOURCE, RECEIVED, times.Refusals()) == events_of(
        "tp_hit"
    )


@given(st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=30))
def test_any_chunking_of_the_doc_stream_gives_the_same_events(cuts: list[int]) -> None:
    """The doc's examples as one SSE stream decode to the same events however it is chunked."""
    names = ["trade_executed", "order_fill", "position_update_batch", "tp_hit", "breakeven_set"]
    stream = b"".join(
        b"id: %d\ndata: %s\n\n"
        % (json.loads(golden(n))["eventId"], json.dumps(json.loads(golden(n))).encode())
        for n in names
    )
    decoder = SSEDecoder()
    messages = []
    pos = 0
    for cut in cuts:
        messages += decoder.feed(stream[pos : pos + cut])
        pos += cut
    messages += decoder.feed(stream[pos:])
    events = [
        e
        for m in messages
        for e in normalize(wire.decode(m.data), SOURCE, RECEIVED, times.Refusals())
    ]
    assert events == [e for n in names for e in events_of(n)]
