"""TTMT wire structs → canonical events: pure functions, plus a small symbol enricher.

``normalize(message, source, received, refused)`` never awaits and never calls back (a junk
``timestamp`` is counted in ``refused``, the source's count, and the receipt time stands in).
Mapping:

=================== ============================ =============================================
TTMT type           canonical type               data
=================== ============================ =============================================
position_update     position.updated             position_id, current_price, unrealized_profit
order_fill          order.filled                 order_id, position_id, volume, price, layer
position_closed     position.closed              position_id, trade_id, reason
trade_executed      trade.opened                 trade_id, channel, positions_count, orders_count
trade_finalized     trade.closed                 trade_id, status, profit_loss
tp_hit              trade.tp_hit                 trade_id, tp_level
breakeven_set       position.breakeven_set       position_id, new_stop_loss
breakeven_failed    position.breakeven_failed    position_id, trade_id
auth_revoked        (none here: status.auth_revoked, reason key_revoked | access_disabled)
recycle             (none here: status.disconnected, reason recycle)
=================== ============================ =============================================

``auth_revoked`` and ``recycle`` are connection control: they end the stream, are never
replayed, and their ``eventId`` identifies no event of the replayable sequence, so it cannot be
a dedupe key. The adapter, which owns the connection, reports them with its own status events.

Ids are ``<source>:<eventId>``. A batch ``position_update`` (``data.positions``) gives one
``position.updated`` per position, ids ``<source>:<eventId>#<n>`` (1-based), even for a batch of
one, so an id never depends on the batch's size. The single-delta shape gives one event with no
suffix: it is the whole upstream message. ``time`` is the envelope ``timestamp``, else the
receipt time; ``account`` is ``data.accountId``; ``origin`` is ``data.signal`` — null where the
upstream sends null, and always null for ``breakeven_set`` ("signal is always null for this
event").

Later events lack the symbol an earlier one gave (``tp_hit`` has only a ``tradeId``);
``SymbolCache`` fills it in, in bounded memory, keeping ``normalize`` itself stateless.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, TypeAlias

import msgspec

from tradebus import times
from tradebus.adapters.ttmt import wire
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

PROVIDER: Final = "ttmt"


def origin_of(signal: Origin | None) -> Origin | None:
    """ "signal is null when" the trade has none: then so is ``origin`` (the wire's, shared)."""
    if signal is None or (signal.signal_id is None and signal.telegram_message_id is None):
        return None
    return signal


# Every builder passes the shared fields one by one: a dict of them unpacked per event cost
# about a third of normalize on the hot path.
def _position_update(
    m: wire.PositionUpdate, source: str, received: str, refused: times.Refusals
) -> list[Event]:
    d = m.data
    time = times.canonical_or(m.timestamp, received, refused)
    if d.positions is not None:
        origin = origin_of(d.signal)
        prefix = f"{source}:{m.event_id}#"
        return [
            PositionUpdated(
                id=f"{prefix}{n}",
                source=source,
                provider=PROVIDER,
                time=time,
                received=received,
                account=d.account_id,
                symbol=p.symbol,
                origin=origin_of(p.signal) or origin,
                data=PositionData(
                    position_id=p.id,
                    current_price=p.current_price,
                    unrealized_profit=p.unrealized_profit,
                ),
            )
            for n, p in enumerate(d.positions, 1)
        ]
    if d.position_id is None:
        raise ValueError("position_update has neither positionId nor positions")
    return [
        PositionUpdated(
            id=f"{source}:{m.event_id}",
            source=source,
            provider=PROVIDER,
            time=time,
            received=received,
            account=d.account_id,
            symbol=d.symbol,
            origin=origin_of(d.signal),
            data=PositionData(
                position_id=d.position_id,
                current_price=d.current_price,
                unrealized_profit=d.unrealized_profit,
            ),
        )
    ]


def _order_fill(
    m: wire.OrderFill, source: str, received: str, refused: times.Refusals
) -> list[Event]:
    d = m.data
    # "Fired when a limit order fills": the whole order, so filled_volume is its volume.
    data = OrderData(
        order_id=d.order_id,
        position_id=d.position_id,
        volume=d.volume,
        filled_volume=d.volume,
        price=d.fill_price,
        layer=d.layer,
    )
    return [
        OrderFilled(
            id=f"{source}:{m.event_id}",
            source=source,
            provider=PROVIDER,
            time=times.canonical_or(m.timestamp, received, refused),
            received=received,
            account=d.account_id,
            symbol=d.symbol,
            origin=origin_of(d.signal),
            data=data,
        )
    ]


def _position_closed(
    m: wire.PositionClosed, source: str, received: str, refused: times.Refusals
) -> list[Event]:
    d = m.data
    data = PositionData(position_id=d.position_id, trade_id=d.trade_id, reason=d.reason)
    return [
        PositionClosed(
            id=f"{source}:{m.event_id}",
            source=source,
            provider=PROVIDER,
            time=times.canonical_or(m.timestamp, received, refused),
            received=received,
            account=d.account_id,
            origin=origin_of(d.signal),
            data=data,
        )
    ]


def _trade_executed(
    m: wire.TradeExecuted, source: str, received: str, refused: times.Refusals
) -> list[Event]:
    d = m.data
    data = TradeData(
        trade_id=d.trade_id,
        channel=d.channel_name,
        positions_count=d.positions_count,
        orders_count=d.orders_count,
    )
    return [
        TradeOpened(
            id=f"{source}:{m.event_id}",
            source=source,
            provider=PROVIDER,
            time=times.canonical_or(m.timestamp, received, refused),
            received=received,
            account=d.account_id,
            symbol=d.symbol,
            origin=origin_of(d.signal),
            data=data,
        )
    ]


def _trade_finalized(
    m: wire.TradeFinalized, source: str, received: str, refused: times.Refusals
) -> list[Event]:
    d = m.data
    data = TradeData(trade_id=d.trade_id, status=d.status, profit_loss=d.profit_loss)
    return [
        TradeClosed(
            id=f"{source}:{m.event_id}",
            source=source,
            provider=PROVIDER,
            time=times.canonical_or(m.timestamp, received, refused),
            received=received,
            account=d.account_id,
            origin=origin_of(d.signal),
            data=data,
        )
    ]


def _tp_hit(m: wire.TpHit, source: str, received: str, refused: times.Refusals) -> list[Event]:
    d = m.data
    return [
        TradeTpHit(
            id=f"{source}:{m.event_id}",
            source=source,
            provider=PROVIDER,
            time=times.canonical_or(m.timestamp, received, refused),
            received=received,
            account=d.account_id,
            origin=origin_of(d.signal),
            data=TradeData(trade_id=d.trade_id, tp_level=d.tp_level),
        )
    ]


def _breakeven_set(
    m: wire.BreakevenSet, source: str, received: str, refused: times.Refusals
) -> list[Event]:
    d = m.data
    # "breakeven_set always has signal: null": origin stays null whatever the wire says.
    return [
        PositionBreakevenSet(
            id=f"{source}:{m.event_id}",
            source=source,
            provider=PROVIDER,
            time=times.canonical_or(m.timestamp, received, refused),
            received=received,
            account=d.account_id,
            origin=None,
            data=BreakevenData(position_id=d.position_id, new_stop_loss=d.new_sl),
        )
    ]


def _breakeven_failed(
    m: wire.BreakevenFailed, source: str, received: str, refused: times.Refusals
) -> list[Event]:
    d = m.data
    return [
        PositionBreakevenFailed(
            id=f"{source}:{m.event_id}",
            source=source,
            provider=PROVIDER,
            time=times.canonical_or(m.timestamp, received, refused),
            received=received,
            account=d.account_id,
            origin=origin_of(d.signal),
            data=BreakevenData(position_id=d.position_id, trade_id=d.trade_id),
        )
    ]


Builder: TypeAlias = Callable[[Any, str, str, times.Refusals], list[Event]]
# Each wire struct's builder; None for the control frames, which give no event.
BUILDERS: Final[dict[type, Builder | None]] = {
    wire.PositionUpdate: _position_update,
    wire.OrderFill: _order_fill,
    wire.PositionClosed: _position_closed,
    wire.TradeExecuted: _trade_executed,
    wire.TradeFinalized: _trade_finalized,
    wire.TpHit: _tp_hit,
    wire.BreakevenSet: _breakeven_set,
    wire.BreakevenFailed: _breakeven_failed,
    wire.AuthRevoked: None,
    wire.Recycle: None,
}


def normalize(
    message: wire.Message, source: str, received: str, refused: times.Refusals
) -> list[Event]:
    """The canonical events of one TTMT message (control frames give none); a ``timestamp``
    that is no time is counted in ``refused`` and the receipt time stands in.

    Raises ``ValueError`` for a message that decodes but cannot be an event (a
    ``position_update`` with neither ``positionId`` nor ``positions``): the caller counts it.
    """
    builder = BUILDERS[type(message)]
    return [] if builder is None else builder(message, source, received, refused)


class SymbolCache:
    """Fills ``symbol`` on events that lack it from what earlier events said, in bounded memory.

    ``trade_executed`` ties a trade to its symbol; ``order_fill`` and ``position_update`` tie a
    position to one; ``position_closed`` and ``breakeven_failed`` tie a position to a trade, so
    either side teaches the other (``breakeven_failed`` is how a DB position UUID, the only id
    ``breakeven_set`` carries, learns its symbol). Sans-I/O: events in, events out.

    Each map holds at most ``maxsize`` ids and forgets the one learnt longest ago. Learning what
    is already known changes nothing, so the common event (a price update of a known position)
    costs two dict lookups; an id forgotten while still live is learnt again from its next event
    that carries the symbol.
    """

    __slots__ = ("_positions", "_trades", "maxsize")

    def __init__(self, maxsize: int) -> None:
        self.maxsize = max(1, maxsize)
        self._trades: dict[str, str] = {}
        self._positions: dict[str, str] = {}

    def apply(self, events: list[Event]) -> list[Event]:
        """``events``, in place, with each missing symbol filled in when it is known."""
        trades = self._trades
        positions = self._positions
        for i, event in enumerate(events):
            data = event.data
            trade_id: str | None = getattr(data, "trade_id", None)
            position_id: str | None = getattr(data, "position_id", None)
            symbol = event.symbol
            if symbol is None:
                symbol = (trade_id and trades.get(trade_id)) or (
                    position_id and positions.get(position_id)
                )
                if not symbol:
                    continue
                events[i] = msgspec.structs.replace(event, symbol=symbol)
            if trade_id is not None and trades.get(trade_id) != symbol:
                self._learn(trades, trade_id, symbol)
            if position_id is not None and positions.get(position_id) != symbol:
                self._learn(positions, position_id, symbol)
        return events

    def _learn(self, known: dict[str, str], key: str, symbol: str) -> None:
        known.pop(key, None)  # re-learnt goes to the young end: evicted last
        known[key] = symbol
        if len(known) > self.maxsize:
            del known[next(iter(known))]
