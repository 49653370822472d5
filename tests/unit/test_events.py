"""The line contract: payload fields without a value are absent, the envelope is whole."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.deliverykit import RecordingSink, Rig
from tradebus.schemas.events import (
    PROVIDER_MAX,
    DepthData,
    DepthLevel,
    DepthUpdated,
    Event,
    OrderData,
    OrderFilled,
    PositionData,
    PositionUpdated,
    Side,
    StatusConnected,
    StatusData,
    TradeData,
    TradeTpHit,
    decoder,
    json_schema,
)
from tradebus.schemas.filter import EventFilter
from tradebus.schemas.subject import Head, SubjectTemplate

T = "2026-06-09T14:32:01.123Z"


def ev(cls: type[Any], id: str, data: object, symbol: str | None = None) -> Event:
    """An event of ``cls`` with a fixed envelope."""
    event: Event = cls(
        id=id, source="s", provider="ttmt", time=T, received=T, symbol=symbol, data=data
    )
    return event


maybe_float = st.none() | st.floats(allow_nan=False, allow_infinity=False)
maybe_text = st.none() | st.text(max_size=8)


def test_a_payload_field_without_a_value_is_absent_and_the_envelope_keeps_nulls() -> None:
    event = ev(TradeTpHit, "s:1", TradeData(trade_id="t", tp_level="TP2"))
    line = msgspec.json.encode(event)
    assert line == (
        b'{"type":"trade.tp_hit","id":"s:1","seq":0,"source":"s","provider":"ttmt",'
        b'"time":"2026-06-09T14:32:01.123Z","received":"2026-06-09T14:32:01.123Z",'
        b'"account":null,"symbol":null,"origin":null,"data":{"trade_id":"t","tp_level":"TP2"}}'
    )
    assert decoder.decode(line) == event


def test_an_empty_depth_side_is_written() -> None:
    """No bids is information (the book side is empty), not a missing value."""
    data = DepthData(bids=(), asks=(DepthLevel(1.5, 2.0),))
    event = ev(DepthUpdated, "s:d", data)
    line = msgspec.json.encode(event)
    assert line.endswith(b'"data":{"bids":[],"asks":[[1.5,2.0]]}}')
    assert decoder.decode(line) == event


def test_the_schema_requires_only_identifying_payload_fields_and_both_depth_sides() -> None:
    defs = json_schema()["$defs"]
    assert isinstance(defs, dict)
    assert defs["PositionData"].get("required") == ["position_id"]
    assert defs["QuoteData"].get("required", []) == []
    assert defs["DepthData"]["required"] == ["bids", "asks"]
    assert set(defs["PositionUpdated"]["required"]) >= {"id", "source", "time", "data"}


@given(
    volume=maybe_float,
    price=maybe_float,
    side=st.none() | st.sampled_from(["buy", "sell"]),
    reason=maybe_text,
    layer=st.none() | st.integers(0, 9),
)
def test_any_payload_round_trips(
    volume: float | None,
    price: float | None,
    side: Side | None,
    reason: str | None,
    layer: int | None,
) -> None:
    data = OrderData(
        order_id="o", volume=volume, price=price, side=side, reason=reason, layer=layer
    )
    event = ev(OrderFilled, "s:o", data)
    line = msgspec.json.encode(event)
    assert None not in msgspec.json.decode(line)["data"].values()
    assert decoder.decode(line) == event


def events() -> list[Event]:
    return [
        ev(PositionUpdated, "s:1", PositionData(position_id="p", volume=0.1)),
        ev(DepthUpdated, "s:2", DepthData(bids=(), asks=()), "X"),
        ev(StatusConnected, "s:3", StatusData()),
    ]


async def test_lines_read_back_from_the_journal_decode_to_the_same_events(tmp_path: Path) -> None:
    """A sink gets events decoded from journaled lines: they must be equal."""
    gate = asyncio.Event()
    slow = RecordingSink("slow", gate, needs_events=True)
    rig = await Rig(tmp_path, [slow]).start()
    sent = events()
    for n in range(20):
        await rig.publish([msgspec.structs.replace(e, id=f"{e.id}-{n}") for e in sent])
    gate.set()
    await slow.wait_events(60)
    got = slow.events()
    assert len(got) == 60
    assert [msgspec.structs.replace(e, seq=0) for e in got[-3:]] == [
        msgspec.structs.replace(e, id=f"{e.id}-19") for e in sent
    ]
    assert await rig.close() == {}


def test_a_plugin_provider_decodes_filters_and_names_a_subject() -> None:
    """A provider no built-in has (a source plugin's type) round-trips through a line, a sink's
    filter and a NATS subject like a built-in's; the schema bounds it, and decoding refuses a
    provider past the bound."""
    event = StatusConnected(
        id="tick:status.connected:1",
        source="tick",
        provider="metronome",
        time=T,
        received=T,
        data=StatusData(),
    )
    line = msgspec.json.encode(event)
    assert decoder.decode(line) == event
    assert EventFilter(providers=["metronome"]).line(line)
    assert not EventFilter(providers=["ttmt"]).line(line)
    subject = SubjectTemplate("tradebus", "{provider}.{type}.{symbol}")
    head = msgspec.json.decode(line, type=Head)
    assert subject.render(head) == "tradebus.metronome.status.connected._"
    envelope = json_schema()["$defs"]["StatusConnected"]["properties"]  # type: ignore[index]
    assert envelope["provider"]["type"] == "string"
    assert envelope["provider"]["maxLength"] == PROVIDER_MAX
    with pytest.raises(msgspec.ValidationError, match=r"\$\.provider"):
        decoder.decode(line.replace(b'"metronome"', b'"' + b"m" * (PROVIDER_MAX + 1) + b'"'))
