"""Trader WS wire structs → canonical events. Pure: no I/O, no awaits, no callbacks.

Every function takes the decoded struct, the source name, the receipt time (canonical string)
and the source's count of refused times, and returns the events it gives. ``time`` is the
upstream's ``ts`` when it parses, else receipt (and the ``ts`` is counted in ``refused``).

Event ids (``<source>:`` + upstream id; see DESIGN.md):

- executions: ``<source>:exec:<executionId>`` — the upstream's own id, so an execution replayed
  by ``dealHistory`` / ``orderHistory`` after a cut gets the id its live copy had.
- quotes, depth, portfolio and metrics carry no upstream id; their ids are derived from the
  upstream's own fields, so the same message always gets the same id:
  ``<source>:quote:<symbol>:<ts>:<bid>:<ask>`` (two quotes of one millisecond differ in price),
  ``<source>:depth:<symbol>:<ts>:<digest>``, ``<source>:portfolio:<accountId>:<ts>:<digest>``,
  ``<source>:metrics:<accountId>:<ts>:<digest>``, where ``<digest>`` is 8 hex digits of BLAKE2b
  over the payload's known fields (the book or the balances would make the id unreadably long).
  A message without ``ts`` falls back to the receipt time there.
- ``error``: ``<source>:error:<requestId or receipt time>:<code>``.

A value the canonical model cannot take (an unknown execution status) raises ``ValueError``;
the caller counts it as bad input and skips the message.
"""

from __future__ import annotations

import hashlib
from typing import Final, TypeAlias

import msgspec

from tradebus import log, times
from tradebus.adapters import prices
from tradebus.adapters.traderws import wire
from tradebus.schemas.events import (
    AccountData,
    AccountUpdated,
    DepthData,
    DepthLevel,
    DepthUpdated,
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
    StatusData,
    StatusError,
)

PROVIDER: Final = "traderws"
OrderEvent: TypeAlias = (
    type[OrderAccepted]
    | type[OrderPartiallyFilled]
    | type[OrderFilled]
    | type[OrderCancelled]
    | type[OrderRejected]
)
PositionEvent: TypeAlias = type[PositionOpened] | type[PositionUpdated] | type[PositionClosed]
_ORDER_TYPES: dict[str, OrderEvent] = {
    "NEW": OrderAccepted,
    "ACCEPTED": OrderAccepted,
    "PARTIALLY_FILLED": OrderPartiallyFilled,
    "FILLED": OrderFilled,
    "CANCELLED": OrderCancelled,
    "CANCELED": OrderCancelled,
    "EXPIRED": OrderCancelled,
    "REJECTED": OrderRejected,
}
_SIDES: dict[str, Side] = {"BUY": "buy", "SELL": "sell", "LONG": "buy", "SHORT": "sell"}
_POSITION_TYPES: dict[str, PositionEvent] = {
    "OPENED": PositionOpened,
    "UPDATED": PositionUpdated,
    "CLOSED": PositionClosed,
}
_encoder = msgspec.json.Encoder()


def _digest(payload: msgspec.Struct) -> str:
    return hashlib.blake2b(_encoder.encode(payload), digest_size=4).hexdigest()


def _side(value: str | None) -> Side | None:
    return None if value is None else _SIDES.get(value.upper())


def quote(msg: wire.QuoteEvent, source: str, received: str, refused: times.Refusals) -> list[Event]:
    p = msg.payload
    texts = prices.TEXTS
    bid = "" if p.bid is None else texts.get(p.bid) or prices.text(p.bid)
    ask = "" if p.ask is None else texts.get(p.ask) or prices.text(p.ask)
    return [
        QuoteUpdated(
            id=f"{source}:quote:{p.symbol}:{p.ts or received}:{bid}:{ask}",
            source=source,
            provider=PROVIDER,
            time=times.canonical_or(p.ts, received, refused),
            received=received,
            symbol=p.symbol,
            data=QuoteData(
                bid=p.bid, ask=p.ask, last=p.last, bid_size=p.bid_size, ask_size=p.ask_size
            ),
        )
    ]


def depth(msg: wire.DepthEvent, source: str, received: str, refused: times.Refusals) -> list[Event]:
    p = msg.payload
    return [
        DepthUpdated(
            id=f"{source}:depth:{p.symbol}:{p.ts or received}:{_digest(p)}",
            source=source,
            provider=PROVIDER,
            time=times.canonical_or(p.ts, received, refused),
            received=received,
            symbol=p.symbol,
            data=DepthData(
                bids=tuple(DepthLevel(level.price, level.volume) for level in p.bids),
                asks=tuple(DepthLevel(level.price, level.volume) for level in p.asks),
            ),
        )
    ]


def execution_event(
    p: wire.ExecutionPayload, source: str, received: str, refused: times.Refusals
) -> Event:
    """One execution (live or from a history reply) as its ``order.*`` event."""
    cls = _ORDER_TYPES.get(p.status.upper())
    if cls is None:
        raise ValueError(f"unknown execution status {p.status[:40]!r}")
    remaining = None
    if p.quantity is not None and p.filled_quantity is not None:
        remaining = p.quantity - p.filled_quantity
    return cls(
        id=f"{source}:exec:{p.execution_id}",
        source=source,
        provider=PROVIDER,
        time=times.canonical_or(p.ts, received, refused),
        received=received,
        account=p.account_id,
        symbol=p.symbol,
        data=OrderData(
            order_id=p.order_id,
            position_id=p.position_id,
            execution_id=p.execution_id,
            side=_side(p.side),
            order_type=None if p.type is None else p.type.lower(),
            volume=p.quantity,
            filled_volume=p.filled_quantity,
            remaining_volume=remaining,
            price=p.price,
            reason=p.reason if p.reason is not None else _reason(p.status),
        ),
    )


def _reason(status: str) -> str | None:
    return "expired" if status.upper() == "EXPIRED" else None


def execution(
    msg: wire.ExecutionEvent, source: str, received: str, refused: times.Refusals
) -> list[Event]:
    return [execution_event(msg.payload, source, received, refused)]


def _position_type(pos: wire.PositionPayload) -> PositionEvent:
    if pos.change is not None:
        cls = _POSITION_TYPES.get(pos.change.upper())
        if cls is None:
            raise ValueError(f"unknown position change {pos.change[:40]!r}")
        return cls
    if (pos.status or "").upper() == "CLOSED" or pos.quantity == 0:
        return PositionClosed
    return PositionUpdated


def portfolio(
    msg: wire.PortfolioEvent, source: str, received: str, refused: times.Refusals
) -> list[Event]:
    """One ``position.*`` per position in the message, then ``account.updated`` for balances."""
    p = msg.payload
    at = times.canonical_or(p.ts, received, refused)
    base = f"{source}:portfolio:{p.account_id}:{p.ts or received}:{_digest(p)}"
    events: list[Event] = [
        _position_type(pos)(
            id=base,
            source=source,
            provider=PROVIDER,
            time=at,
            received=received,
            account=p.account_id,
            symbol=pos.symbol,
            data=PositionData(
                position_id=pos.position_id,
                side=_side(pos.side),
                volume=pos.quantity,
                open_price=pos.open_price,
                current_price=pos.current_price,
                close_price=pos.close_price,
                stop_loss=pos.stop_loss,
                take_profit=pos.take_profit,
                unrealized_profit=pos.unrealized_pnl,
                profit=pos.realized_pnl,
            ),
        )
        for pos in p.positions
    ]
    if p.balance is not None or p.equity is not None:
        events.append(
            AccountUpdated(
                id=base,
                source=source,
                provider=PROVIDER,
                time=at,
                received=received,
                account=p.account_id,
                data=AccountData(
                    balance=p.balance,
                    equity=p.equity,
                    margin=p.margin,
                    free_margin=p.free_margin,
                    margin_level=p.margin_level,
                    profit=p.unrealized_pnl,
                    currency=p.currency,
                ),
            )
        )
    if len(events) > 1:
        # One message, several events: "#<n>" (1-based) keeps each id unique and stable.
        events = [
            msgspec.structs.replace(e, id=f"{base}#{n}") for n, e in enumerate(events, start=1)
        ]
    return events


def metrics(
    msg: wire.MetricsEvent, source: str, received: str, refused: times.Refusals
) -> list[Event]:
    p = msg.payload
    return [
        AccountUpdated(
            id=f"{source}:metrics:{p.account_id}:{p.ts or received}:{_digest(p)}",
            source=source,
            provider=PROVIDER,
            time=times.canonical_or(p.ts, received, refused),
            received=received,
            account=p.account_id,
            data=AccountData(
                balance=p.balance,
                equity=p.equity,
                margin=p.margin,
                free_margin=p.free_margin,
                margin_level=p.margin_level,
                profit=p.unrealized_pnl,
                currency=p.currency,
            ),
        )
    ]


def error(msg: wire.Error, source: str, received: str, refused: times.Refusals) -> list[Event]:
    """``error`` → ``status.error`` with the upstream's code and message (secrets scrubbed)."""
    p = msg.payload
    code = None if p.code is None else str(p.code)
    return [
        StatusError(
            id=f"{source}:error:{p.request_id or received}:{code or ''}",
            source=source,
            provider=PROVIDER,
            time=received,
            received=received,
            data=StatusData(
                reason=p.request_type or "upstream_error",
                code=code,
                message=None if p.message is None else log.scrub_text(p.message)[:500],
            ),
        )
    ]
