"""Row 1b, the floor of the real mix: row 1's parts for every event type of the TTMT mix.

The frames are the TTMT simulator's own mix (``benchmarks.frames.Mix``, read from ``FRAMES``).
Each ``data`` payload is decoded in one pass into a typed Struct of its type (a tagged union of
the eight), one output Struct per canonical event is built (a batch ``position_update`` gives
one per position), time strings are passed through as they came, and each event is
``encode_into`` one bytearray, written every 64 KiB. No symbol fill, no checks: the parts alone.
Run as ``python -m benchmarks.floormix FRAMES RUNS OUT_FILE`` (RUNS as ``benchmarks.floor``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from benchmarks.floor import FLUSH_AT, frames, serve
from benchmarks.frames import aligned_chunks

SOURCE = "ttmt-mix"
RECEIVED = "2026-06-09T14:32:01.500Z"


class Signal(msgspec.Struct):
    signal_id: str | None = None
    telegram_message_id: int | None = None


class _D(msgspec.Struct, rename="camel"):
    account_id: str | None = None
    signal: Signal | None = None


class Item(msgspec.Struct, rename="camel"):
    id: str
    symbol: str | None = None
    unrealized_profit: float | None = None
    current_price: float | None = None


class UpdateD(_D):
    position_id: str | None = None
    symbol: str | None = None
    unrealized_profit: float | None = None
    current_price: float | None = None
    positions: list[Item] | None = None


class FillD(_D):
    order_id: str = ""
    position_id: str | None = None
    symbol: str | None = None
    volume: float | None = None
    fill_price: float | None = None
    layer: int | None = None


class ClosedD(_D):
    position_id: str = ""
    reason: str | None = None
    trade_id: str | None = None


class ExecutedD(_D):
    trade_id: str = ""
    symbol: str | None = None
    channel_name: str | None = None
    positions_count: int | None = None
    orders_count: int | None = None


class FinalD(_D):
    trade_id: str = ""
    status: str | None = None
    profit_loss: float | None = None


class TpD(_D):
    trade_id: str = ""
    tp_level: str | None = None


class BeSetD(_D):
    position_id: str = ""
    new_sl: float | None = msgspec.field(default=None, name="newSL")


class BeFailD(_D):
    position_id: str = ""
    trade_id: str | None = None


class _In(msgspec.Struct, tag_field="type", rename="camel"):
    event_id: int
    timestamp: str


class Update(_In, tag="position_update"):
    data: UpdateD


class Fill(_In, tag="order_fill"):
    data: FillD


class Closed(_In, tag="position_closed"):
    data: ClosedD


class Executed(_In, tag="trade_executed"):
    data: ExecutedD


class Final(_In, tag="trade_finalized"):
    data: FinalD


class Tp(_In, tag="tp_hit"):
    data: TpD


class BeSet(_In, tag="breakeven_set"):
    data: BeSetD


class BeFail(_In, tag="breakeven_failed"):
    data: BeFailD


In = Update | Fill | Closed | Executed | Final | Tp | BeSet | BeFail


# --- out: one Struct per canonical event, tagged as tradebus's are ---------------------------


class PositionOut(msgspec.Struct, omit_defaults=True):
    position_id: str
    trade_id: str | None = None
    current_price: float | None = None
    unrealized_profit: float | None = None
    reason: str | None = None


class OrderOut(msgspec.Struct, omit_defaults=True):
    order_id: str
    position_id: str | None = None
    volume: float | None = None
    filled_volume: float | None = None
    price: float | None = None
    layer: int | None = None


class TradeOut(msgspec.Struct, omit_defaults=True):
    trade_id: str
    channel: str | None = None
    positions_count: int | None = None
    orders_count: int | None = None
    tp_level: str | None = None
    status: str | None = None
    profit_loss: float | None = None


class BreakevenOut(msgspec.Struct, omit_defaults=True):
    position_id: str
    trade_id: str | None = None
    new_stop_loss: float | None = None


class Envelope(msgspec.Struct, tag_field="type"):
    """The canonical envelope's fields, in its order (row 4's floor shares it)."""

    id: str
    seq: int
    source: str
    provider: str
    time: str
    received: str
    account: str | None
    symbol: str | None
    origin: Signal | None


class PositionUpdated(Envelope, tag="position.updated"):
    data: PositionOut


class PositionClosed(Envelope, tag="position.closed"):
    data: PositionOut


class OrderFilled(Envelope, tag="order.filled"):
    data: OrderOut


class TradeOpened(Envelope, tag="trade.opened"):
    data: TradeOut


class TradeClosed(Envelope, tag="trade.closed"):
    data: TradeOut


class TradeTpHit(Envelope, tag="trade.tp_hit"):
    data: TradeOut


class BreakevenSet(Envelope, tag="position.breakeven_set"):
    data: BreakevenOut


class BreakevenFailed(Envelope, tag="position.breakeven_failed"):
    data: BreakevenOut


def _update(m: Update, seq: int) -> list[Any]:
    d = m.data
    if d.positions is not None:
        return [
            PositionUpdated(
                f"{SOURCE}:{m.event_id}#{n}",
                seq + n,
                SOURCE,
                "ttmt",
                m.timestamp,
                RECEIVED,
                d.account_id,
                p.symbol,
                d.signal,
                PositionOut(
                    p.id, current_price=p.current_price, unrealized_profit=p.unrealized_profit
                ),
            )
            for n, p in enumerate(d.positions, 1)
        ]
    data = PositionOut(
        d.position_id or "", current_price=d.current_price, unrealized_profit=d.unrealized_profit
    )
    return [_env(PositionUpdated, m, seq, d, d.symbol, data=data)]


def _env(cls: type[Envelope], m: Any, seq: int, d: _D, symbol: str | None, *, data: Any) -> Any:
    return cls(
        f"{SOURCE}:{m.event_id}",
        seq + 1,
        SOURCE,
        "ttmt",
        m.timestamp,
        RECEIVED,
        d.account_id,
        symbol,
        d.signal,
        data,  # type: ignore[call-arg]
    )


def _fill(m: Fill, seq: int) -> list[Any]:
    d = m.data
    data = OrderOut(d.order_id, d.position_id, d.volume, d.volume, d.fill_price, d.layer)
    return [_env(OrderFilled, m, seq, d, d.symbol, data=data)]


def _closed(m: Closed, seq: int) -> list[Any]:
    d = m.data
    data = PositionOut(d.position_id, d.trade_id, reason=d.reason)
    return [_env(PositionClosed, m, seq, d, None, data=data)]


def _executed(m: Executed, seq: int) -> list[Any]:
    d = m.data
    data = TradeOut(d.trade_id, d.channel_name, d.positions_count, d.orders_count)
    return [_env(TradeOpened, m, seq, d, d.symbol, data=data)]


def _final(m: Final, seq: int) -> list[Any]:
    d = m.data
    data = TradeOut(d.trade_id, status=d.status, profit_loss=d.profit_loss)
    return [_env(TradeClosed, m, seq, d, None, data=data)]


def _tp(m: Tp, seq: int) -> list[Any]:
    d = m.data
    return [_env(TradeTpHit, m, seq, d, None, data=TradeOut(d.trade_id, tp_level=d.tp_level))]


def _be_set(m: BeSet, seq: int) -> list[Any]:
    d = m.data
    data = BreakevenOut(d.position_id, new_stop_loss=d.new_sl)
    return [_env(BreakevenSet, m, seq, d, None, data=data)]


def _be_fail(m: BeFail, seq: int) -> list[Any]:
    d = m.data
    return [_env(BreakevenFailed, m, seq, d, None, data=BreakevenOut(d.position_id, d.trade_id))]


BUILD: dict[type, Callable[[Any, int], list[Any]]] = {
    Update: _update,
    Fill: _fill,
    Closed: _closed,
    Executed: _executed,
    Final: _final,
    Tp: _tp,
    BeSet: _be_set,
    BeFail: _be_fail,
}


def one_pass(chunks: list[bytes], out: Path) -> int:
    """Decode, rebuild, encode and write every frame of ``chunks``; the number of events."""
    decoder = msgspec.json.Decoder(In)
    encoder = msgspec.json.Encoder()
    buf = bytearray()
    count = 0
    with open(out, "wb") as f:
        for frame in frames(chunks):
            msg = decoder.decode(frame[frame.index(b"data: ") + 6 :])
            for event in BUILD[type(msg)](msg, count):
                encoder.encode_into(event, buf, -1)
                buf.append(10)
                count += 1
            if len(buf) >= FLUSH_AT:
                f.write(buf)
                buf.clear()
        f.write(buf)
    return count


def main(argv: list[str]) -> int:
    data, runs, out = Path(argv[0]).read_bytes(), int(argv[1]), Path(argv[2])
    return serve(aligned_chunks(data, 64 * 1024), one_pass, runs, out)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
