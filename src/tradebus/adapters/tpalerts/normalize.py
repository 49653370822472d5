"""TradingPartners alerts → canonical ``signal.*`` events. Pure: no I/O, no clock, no callbacks.

====================  ==================  ==========================================
upstream event        canonical type      ``time``
====================  ==================  ==========================================
``working``           ``signal.detected``  ``startedAt`` (else receipt time)
``onGoing``           ``signal.active``    receipt time (the upstream gives none)
``aborted``           ``signal.aborted``   receipt time (the upstream gives none)
``closed``            ``signal.closed``    ``closedAt`` (else receipt time)
``ping``              none                 pings only feed the adapter's liveness timer
====================  ==================  ==========================================

The event id is ``<source>:<alert id>:<event name>`` ("alerts:35443:working"): an alert goes
through each state at most once, so the pair names one upstream event and a replay after a
reconnect gets the same id. ``account`` is null: the feed belongs to the logged-in user.

Only ``working`` names the ticker and the prices. The later events of the same alert carry the
alert id alone, so the adapter remembers an ``AlertContext`` per alert (bounded) and passes it in:
``symbol``, ``strategy``, ``market``, ``entry``, ``target``, ``stop`` and ``started_at`` are then
filled on ``signal.active`` / ``aborted`` / ``closed`` too, so a consumer of a close sees the
entry it is measured against without joining on earlier lines. Without a context (the alert was
detected before we connected, or fell out of the cache) those fields are null.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import msgspec

from tradebus import times
from tradebus.adapters.base import BoundedDict
from tradebus.adapters.tpalerts.wire import (
    NAMES,
    Aborted,
    Alert,
    Closed,
    OnGoing,
    Ping,
    WireMessage,
    Working,
)
from tradebus.schemas.events import (
    Event,
    Provider,
    SignalAborted,
    SignalActive,
    SignalClosed,
    SignalData,
    SignalDetected,
)

PROVIDER: Final[Provider] = "tpalerts"


class AlertContext(msgspec.Struct, frozen=True):
    """What a ``working`` event told us about an alert, for its later events."""

    symbol: str | None = None
    strategy: str | None = None
    market: str | None = None
    entry: float | None = None
    target: float | None = None
    stop: float | None = None
    started_at: str | None = None


_NO_CONTEXT = AlertContext()


def context_of(working: Working, refused: times.Refusals) -> AlertContext:
    """The context later events of this alert inherit (a junk ``startedAt`` counted in
    ``refused``)."""
    return AlertContext(
        symbol=working.ticker,
        strategy=working.duration_strategy,
        market=working.instrument,
        entry=working.start,
        target=working.target,
        stop=working.stop,
        started_at=_time(working.started_at, refused),
    )


def event_id(source: str, message: Alert) -> str:
    """The canonical id: ``<source>:<alert id>:<event name>``; also the dedupe key."""
    return f"{source}:{message.id}:{NAMES[type(message)]}"


def is_terminal(message: WireMessage) -> bool:
    """Whether no later event of this alert can follow (its context may be forgotten)."""
    return isinstance(message, Aborted | Closed)


def normalize(
    message: WireMessage,
    source: str,
    received: str,
    refused: times.Refusals,
    context: AlertContext | None = None,
) -> list[Event]:
    """The canonical events of one upstream message (none for a ping).

    ``received`` is the canonical receipt time; an upstream time that is no time is counted in
    ``refused`` (the source's count); ``context`` is what the alert's ``working`` event gave
    (ignored for ``working`` itself, which carries its own).
    """
    if isinstance(message, Ping):
        return []
    if isinstance(message, Working):
        own = context_of(message, refused)
        return [
            SignalDetected(
                id=event_id(source, message),
                source=source,
                provider=PROVIDER,
                time=own.started_at or received,
                received=received,
                symbol=own.symbol,
                data=_data(message.id, own, token=message.token),
            )
        ]
    ctx = context or _NO_CONTEXT
    if isinstance(message, OnGoing):
        return [
            SignalActive(
                id=event_id(source, message),
                source=source,
                provider=PROVIDER,
                time=received,
                received=received,
                symbol=ctx.symbol,
                data=_data(message.id, ctx, token=message.token),
            )
        ]
    if isinstance(message, Aborted):
        return [
            SignalAborted(
                id=event_id(source, message),
                source=source,
                provider=PROVIDER,
                time=received,
                received=received,
                symbol=ctx.symbol,
                data=_data(message.id, ctx, token=message.token, token_state=message.token_state),
            )
        ]
    closed_at = _time(message.closed_at, refused)
    return [
        SignalClosed(
            id=event_id(source, message),
            source=source,
            provider=PROVIDER,
            time=closed_at or received,
            received=received,
            symbol=ctx.symbol,
            data=_data(
                message.id,
                ctx,
                token=message.token,
                token_state=message.token_state,
                exit=message.exit,
                gain=message.gain,
                closed_at=closed_at,
            ),
        )
    ]


class AlertCache:
    """The adapter's memory of live alerts: the ``working`` context, bounded, sans-I/O.

    Kept here, beside the pure ``normalize`` it feeds, so the fill and the bound are tested
    without a socket. A terminal event (aborted, closed) forgets its alert, so the cache holds
    the alerts still running, and the least recently detected go first past ``maxsize``.
    """

    def __init__(self, maxsize: int) -> None:
        self._contexts: BoundedDict[int, AlertContext] = BoundedDict(maxsize)

    def __len__(self) -> int:
        return len(self._contexts)

    def learn(self, history: Sequence[Event]) -> None:
        """Rebuild from journaled events after a restart: a ``closed`` that arrives next still
        gets the ticker its ``working`` gave before the restart."""
        for event in history:
            if isinstance(event, SignalDetected):
                d = event.data
                self._contexts.set(
                    d.alert_id,
                    AlertContext(
                        symbol=event.symbol,
                        strategy=d.strategy,
                        market=d.market,
                        entry=d.entry,
                        target=d.target,
                        stop=d.stop,
                        started_at=d.started_at,
                    ),
                )
            elif isinstance(event, SignalAborted | SignalClosed):
                self._contexts.pop(event.data.alert_id)

    def events(
        self, message: WireMessage, source: str, received: str, refused: times.Refusals
    ) -> list[Event]:
        """``normalize(message, …)`` with the alert's cached context, keeping the cache current."""
        if isinstance(message, Ping):
            return []
        if isinstance(message, Working):
            self._contexts.set(message.id, context_of(message, refused))
            return normalize(message, source, received, refused)
        events = normalize(message, source, received, refused, self._contexts.get(message.id))
        if is_terminal(message):
            self._contexts.pop(message.id)
        return events


def _data(
    alert_id: int,
    ctx: AlertContext,
    *,
    token: str | None,
    token_state: str | None = None,
    exit: float | None = None,
    gain: float | None = None,
    closed_at: str | None = None,
) -> SignalData:
    return SignalData(
        alert_id=alert_id,
        strategy=ctx.strategy,
        market=ctx.market,
        entry=ctx.entry,
        target=ctx.target,
        stop=ctx.stop,
        exit=exit,
        gain=gain,
        token=token,
        token_state=token_state,
        started_at=ctx.started_at,
        closed_at=closed_at,
    )


def _time(text: str | None, refused: times.Refusals) -> str | None:
    # An unparseable upstream time is dropped (the event keeps its receipt time), not fatal.
    return None if text is None else times.canonical(text, refused)
