"""MT4 bridge: wire structs → canonical events. Pure: no I/O, no clock, no callbacks.

Event ids (``<source>:`` + what follows; the dedupe key downstream):

- order events: ``order:<taskId or ticket>:<event>`` — one task goes through each state once.
  A task can fill partially several times, so ``partially_filled`` appends the filled volume:
  ``order:<taskId>:partially_filled:<filledVolume>``.
- a position's open and close: ``pos:<ticket>:opened`` / ``pos:<ticket>:closed``, whether the WS
  order stream or REST reconciliation saw it first, so the two report one fact under one id.
- quotes and profit have no upstream id; theirs is derived from their content:
  ``quote:<symbol>:<time>:<bid>:<ask>`` and ``profit:<ticket>:<time>:<profit>``.
- account snapshots: ``account:<received>`` (a poll result has no identity but its moment).
"""

from __future__ import annotations

import re
from typing import TypeAlias

from tradebus import times
from tradebus.adapters import prices
from tradebus.adapters.mt4bridge import wire
from tradebus.schemas.events import (
    AccountData,
    AccountUpdated,
    Event,
    OrderAccepted,
    OrderCancelled,
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
    Side,
)

OrderEvent: TypeAlias = (
    OrderAccepted | OrderFilled | OrderPartiallyFilled | OrderCancelled | OrderRejected
)
ORDER_EVENTS: dict[str, type[OrderEvent]] = {
    "accepted": OrderAccepted,
    "filled": OrderFilled,
    "partially_filled": OrderPartiallyFilled,
    "cancelled": OrderCancelled,
    "rejected": OrderRejected,
}
POSITION_EVENTS = frozenset({"opened", "closed"})
# MT4 terminals print times as "2026.06.09 14:32:01" (server time, taken as UTC like the rest).
_MT4_TIME = re.compile(r"([0-9]{4})\.([0-9]{2})\.([0-9]{2})[ T]([0-9:.]+)")
_EPOCH_MS = 1e11  # a number this large is milliseconds, not seconds
_EPOCH_MAX_MS = 253402300799999.0  # 9999-12-31T23:59:59.999Z


def upstream_time(value: wire.Time, received: str, refused: times.Refusals) -> str:
    """The upstream's own time in canonical form, or the receipt time if it gave none usable
    (one it gave but that is no time is counted in ``refused``)."""
    if value is None:
        return received
    if isinstance(value, float | int):
        # Past year 9999 (or NaN) no canonical time exists: from_epoch would raise.
        if not 0 < value < _EPOCH_MAX_MS:
            refused.add()
            return received
        return times.from_epoch(value / 1000 if value >= _EPOCH_MS else value)
    match = _MT4_TIME.fullmatch(value.strip())
    text = f"{match[1]}-{match[2]}-{match[3]}T{match[4]}" if match else value
    return times.canonical_or(text, received, refused)


def side_of(kind: str | None) -> Side | None:
    """``BUY`` / ``SELL`` (and their pending forms, ``BUY_LIMIT``, ``SELLSTOP``) → buy / sell."""
    if not kind:
        return None
    upper = kind.strip().upper()
    if upper.startswith("BUY"):
        return "buy"
    if upper.startswith("SELL"):
        return "sell"
    return None


def is_open_position(position: wire.Position) -> bool:
    """Market positions only: "/positions" also lists pending orders, which open nothing yet."""
    return position.type is None or position.type.strip().upper() in ("BUY", "SELL")


def _symbol(value: str | None) -> str | None:
    # MT4 symbols are case-sensitive with broker suffixes ("EURUSD.m"): keep them as sent.
    return value.strip() or None if value else None


def quote(
    msg: wire.Quote, source: str, account: str | None, received: str, refused: times.Refusals
) -> QuoteUpdated:
    when = upstream_time(msg.time, received, refused)
    symbol = _symbol(msg.symbol)
    texts = prices.TEXTS
    bid = "None" if msg.bid is None else texts.get(msg.bid) or prices.text(msg.bid)
    ask = "None" if msg.ask is None else texts.get(msg.ask) or prices.text(msg.ask)
    return QuoteUpdated(
        id=f"{source}:quote:{symbol}:{when}:{bid}:{ask}",
        source=source,
        provider="mt4bridge",
        time=when,
        received=received,
        account=account,
        symbol=symbol,
        data=QuoteData(bid=msg.bid, ask=msg.ask),
    )


def profit(
    msg: wire.Profit, source: str, account: str | None, received: str, refused: times.Refusals
) -> PositionUpdated:
    when = upstream_time(msg.time, received, refused)
    return PositionUpdated(
        id=f"{source}:profit:{msg.ticket}:{when}:{msg.profit}",
        source=source,
        provider="mt4bridge",
        time=when,
        received=received,
        account=account,
        symbol=_symbol(msg.symbol),
        data=PositionData(
            position_id=str(msg.ticket),
            current_price=msg.current_price,
            unrealized_profit=msg.profit,
        ),
    )


def order(
    msg: wire.Order, source: str, account: str | None, received: str, refused: times.Refusals
) -> Event | None:
    """One order message's event; ``None`` for an event name this version does not know.

    Raises ``ValueError`` for a message that names neither its task nor its ticket.
    """
    event = msg.event.strip().lower()
    if event in POSITION_EVENTS:
        if msg.ticket is None:
            raise ValueError(f"order event {event!r} without a ticket")
        position = position_from_order(msg)
        return position_event(
            event,
            position,
            source,
            account,
            received,
            refused=refused,
            when=msg.time,
            reason=msg.reason,
        )
    cls = ORDER_EVENTS.get(event)
    if cls is None:
        return None
    ref = msg.task_id or (None if msg.ticket is None else str(msg.ticket))
    if ref is None:
        raise ValueError(f"order event {event!r} without a taskId or ticket")
    suffix = f":{msg.filled_volume}" if cls is OrderPartiallyFilled and msg.filled_volume else ""
    return cls(
        id=f"{source}:order:{ref}:{event}{suffix}",
        source=source,
        provider="mt4bridge",
        time=upstream_time(msg.time, received, refused),
        received=received,
        account=account,
        symbol=_symbol(msg.symbol),
        data=OrderData(
            order_id=ref,
            position_id=None if msg.ticket is None else str(msg.ticket),
            side=side_of(msg.side),
            order_type=msg.order_type.strip().lower() if msg.order_type else None,
            volume=msg.volume,
            filled_volume=msg.filled_volume,
            remaining_volume=msg.remaining_volume,
            price=msg.price,
            reason=msg.reason,
        ),
    )


def position_from_order(msg: wire.Order) -> wire.Position:
    """The position an ``opened`` / ``closed`` order event describes, as ``/positions`` would."""
    assert msg.ticket is not None
    closing = msg.event.strip().lower() == "closed"
    return wire.Position(
        ticket=msg.ticket,
        symbol=msg.symbol,
        type=msg.side,
        volume=msg.volume,
        open_price=msg.open_price if msg.open_price is not None or closing else msg.price,
        current_price=(msg.close_price if msg.close_price is not None else msg.price)
        if closing
        else None,
        sl=msg.sl,
        tp=msg.tp,
        profit=msg.profit,
        open_time=msg.time if not closing else None,
    )


def position_event(
    event: str,
    position: wire.Position,
    source: str,
    account: str | None,
    received: str,
    *,
    refused: times.Refusals,
    when: wire.Time = None,
    reason: str | None = None,
) -> PositionOpened | PositionClosed:
    """``position.opened`` / ``position.closed`` for ``position``: the same id from either path.

    ``when`` is the moment of the fact if known (an opening defaults to ``openTime``).
    """
    closing = event == "closed"
    if when is None and not closing:
        when = position.open_time
    data = PositionData(
        position_id=str(position.ticket),
        side=side_of(position.type),
        volume=position.volume,
        open_price=position.open_price,
        current_price=None if closing else position.current_price,
        close_price=position.current_price if closing else None,
        stop_loss=position.sl,
        take_profit=position.tp,
        unrealized_profit=None if closing else position.profit,
        profit=position.profit if closing else None,
        reason=reason,
    )
    cls = PositionClosed if closing else PositionOpened
    return cls(
        id=f"{source}:pos:{position.ticket}:{event}",
        source=source,
        provider="mt4bridge",
        time=upstream_time(when, received, refused),
        received=received,
        account=account,
        symbol=_symbol(position.symbol),
        data=data,
    )


def account_data(msg: wire.Account) -> AccountData:
    """The comparable content of an account snapshot: ``account.updated`` fires when it changes."""
    return AccountData(
        balance=msg.balance,
        equity=msg.equity,
        margin=msg.margin,
        free_margin=msg.free_margin,
        margin_level=msg.margin_level,
        profit=msg.profit,
        currency=msg.currency,
    )


def account(
    data: AccountData, source: str, account_id: str | None, received: str
) -> AccountUpdated:
    return AccountUpdated(
        id=f"{source}:account:{received}",
        source=source,
        provider="mt4bridge",
        time=received,
        received=received,
        account=account_id,
        data=data,
    )
