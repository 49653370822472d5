"""The Trader WS session, sans-I/O: token, subscriptions, back-fill after a cut, dedupe.

Messages in, actions and events out; the adapter moves the bytes and the clock. Per connection:

1. ``open(now)`` returns the subscription requests — ``subscribe`` for the configured symbols
   and event kinds, ``depthSubscribe`` per depth symbol, ``metricsSubscribe`` per account —
   built from the config alone, so every connection asks for exactly the same set.
2. ``subscribed`` acks ("Acknowledges a subscribe request"; the ack echoes the request's payload)
   tick the requests off. When all are in (``Connected``), and this is a reconnect, the session
   sends ``dealHistory`` and ``orderHistory`` for the window it was away, from the last message
   before the cut (less a slack, dedupe absorbs the overlap) to now (plus the slack).
3. Until every ack (and after a cut both history replies) is in, data messages are normalized
   and held back, so ``Connected`` and the gap precede them; then the missed executions
   (deduped by execution id against everything already emitted) go out first, the held-back
   live events after them. ``error`` messages are never held. Quotes and depth are not
   back-filled: a ``Gap`` action says so, once per reconnect. Market data is held up to
   ``HELD_MARKET_LIMIT`` events; past that it is dropped, and a ``market_data_not_held`` gap
   (from the first drop until the session went live) says so.

``deadline()`` is when the pending acks or history replies are overdue; the adapter gives up on
the connection then (reason ``subscribe_timeout`` / ``history_timeout``).
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tradebus import times
from tradebus.adapters.base import BoundedSet
from tradebus.adapters.traderws import normalize, wire
from tradebus.schemas.events import Event, StatusData

# Seconds either side of the away-window asked from the history queries: covers clock skew
# between us and the server; executions seen twice are dropped by the dedupe.
HISTORY_SLACK = 5.0
# A token this close to its expiry (seconds, capped at 10 % of its lifetime) counts as expired.
TOKEN_MARGIN = 30.0
# Quotes, depth and metrics held back before going live, at most. An ack can arrive behind a
# flood of data on the subscriptions already made (tens of thousands of quotes against the
# simulator, benchmarks/README.md); what a fast feed sends during the subscribe
# timeout would otherwise all be held. Market data is never back-filled, so what is dropped
# past the bound is a gap like the one after a cut. Executions, orders and portfolio updates
# are always held: they are what back-fill and dedupe exist for.
HELD_MARKET_LIMIT = 10_000
_MARKET_DATA = frozenset((wire.QuoteEvent, wire.DepthEvent, wire.MetricsEvent))
_ORDER_PREFIX = "order."


class Phase(enum.Enum):
    CLOSED = "closed"
    SUBSCRIBING = "subscribing"
    BACKFILLING = "backfilling"
    LIVE = "live"


@dataclass(frozen=True, slots=True)
class Send:
    """Send this message on the current connection."""

    message: wire.ClientMessage


@dataclass(frozen=True, slots=True)
class Connected:
    """Every subscription is acknowledged: the feed is up."""


@dataclass(frozen=True, slots=True)
class Gap:
    """A window (canonical times) nothing was or could be back-filled for."""

    reason: str
    since: str
    until: str


@dataclass(frozen=True, slots=True)
class Problem:
    """The message just received could not be normalized: count it as bad input, skip it."""

    kind: str
    error: str


@dataclass(frozen=True, slots=True)
class Reported:
    """The upstream reported an error in-band (its ``status.error`` is among the events): the
    source's ``last_error`` names it; the connection stays up."""

    reason: str | None
    code: str | None


Action = Send | Connected | Gap | Problem | Reported


@dataclass(frozen=True, slots=True)
class Plan:
    """What to subscribe to and whose history to back-fill (from the source's config)."""

    symbols: Sequence[str] = ()
    events: Sequence[str] = ()
    depth: Sequence[str] = ()
    depth_levels: int | None = None
    metrics_accounts: Sequence[str] = ()
    history_account: str | None = None

    def requests(self) -> list[wire.ClientMessage]:
        out: list[wire.ClientMessage] = []
        if self.symbols and self.events:
            out.append(
                wire.ClientMessage(
                    "subscribe", wire.SubscribeRequest(list(self.symbols), list(self.events))
                )
            )
        out.extend(
            wire.ClientMessage("depthSubscribe", wire.DepthSubscribeRequest(s, self.depth_levels))
            for s in self.depth
        )
        out.extend(
            wire.ClientMessage("metricsSubscribe", wire.MetricsSubscribeRequest(a))
            for a in self.metrics_accounts
        )
        return out

    @property
    def backfills_executions(self) -> bool:
        return bool(self.symbols) and "executionEvent" in self.events

    @property
    def has_market_data(self) -> bool:
        return bool(self.depth) or (bool(self.symbols) and "quoteEvent" in self.events)


def _ack_key(message: wire.ClientMessage) -> tuple[str, str]:
    p = message.payload
    if isinstance(p, wire.DepthSubscribeRequest):
        return ("depth", p.symbol)
    if isinstance(p, wire.MetricsSubscribeRequest):
        return ("metrics", p.account_id)
    return ("subscribe", "")


def _ack_key_of(p: wire.SubscribedPayload) -> tuple[str, str] | None:
    if p.symbols is not None:
        return ("subscribe", "")
    if p.symbol is not None:
        return ("depth", p.symbol)
    if p.account_id is not None:
        return ("metrics", p.account_id)
    return None


Normalizer = Callable[[wire.ServerMessage, str, str, times.Refusals], list[Event]]
_LIVE: dict[type, Normalizer] = {
    wire.QuoteEvent: normalize.quote,  # type: ignore[dict-item]
    wire.DepthEvent: normalize.depth,  # type: ignore[dict-item]
    wire.ExecutionEvent: normalize.execution,  # type: ignore[dict-item]
    wire.PortfolioEvent: normalize.portfolio,  # type: ignore[dict-item]
    wire.MetricsEvent: normalize.metrics,  # type: ignore[dict-item]
    wire.Error: normalize.error,  # type: ignore[dict-item]
}


class Session:
    """Token, subscription and back-fill state of one source, across its connections."""

    def __init__(
        self,
        source: str,
        plan: Plan,
        *,
        subscribe_timeout: float = 10.0,
        dedupe_size: int = 100_000,
        refused: times.Refusals | None = None,
    ) -> None:
        self.source = source
        # The source's count of upstream times refused, handed to the normalizers.
        self.refused = times.Refusals() if refused is None else refused
        self.plan = plan
        self.subscribe_timeout = subscribe_timeout
        self.phase = Phase.CLOSED
        self.actions: list[Action] = []
        self.token: str | None = None
        self.token_expires_at: float | None = None
        self.seen: BoundedSet[str] = BoundedSet(dedupe_size)
        # When the stream last was known complete (a live message, or the moment it went live):
        # the start of the next away-window. None until the first connection is up.
        self.covered_until: float | None = None
        self.connections = 0
        self._pending_acks: set[tuple[str, str]] = set()
        self._pending_history: dict[str, str] = {}
        self._history: list[Event] = []
        self._held: list[Event] = []
        self._held_market = 0
        self._dropped_since: str | None = None  # received time of the first market event dropped
        self._deadline: float | None = None
        self._away_since: float | None = None
        self._request_ids = itertools.count(1)

    # --- token ------------------------------------------------------------------------------

    def token_needed(self, now: float) -> bool:
        """No token, or one expired (or about to) by our clock: log in before connecting."""
        if self.token is None:
            return True
        return self.token_expires_at is not None and now >= self.token_expires_at

    def token_obtained(self, token: str, expires_in: float | None, now: float) -> None:
        self.token = token
        self.token_expires_at = None
        if expires_in is not None and expires_in > 0:
            margin = min(TOKEN_MARGIN, 0.1 * expires_in)
            self.token_expires_at = now + expires_in - margin

    def token_expired(self, now: float) -> bool:
        """The server closed us for the token and our clock says it expired: renew, don't alarm."""
        return self.token_expires_at is not None and now >= self.token_expires_at

    def drop_token(self) -> None:
        self.token = None
        self.token_expires_at = None

    # --- connection -------------------------------------------------------------------------

    def open(self, now: float) -> list[wire.ClientMessage]:
        """A new connection is up: the subscription requests to send, the same every time."""
        self.connections += 1
        self.actions = []
        self._history = []
        self._release_held()
        self._pending_history = {}
        requests = self.plan.requests()
        self._pending_acks = {_ack_key(r) for r in requests}
        self._away_since = self.covered_until
        if self.covered_until is None:
            # Nothing before the first connection is ours to back-fill; from here on it is.
            self.covered_until = now
        if self._pending_acks:
            self.phase = Phase.SUBSCRIBING
            self._deadline = now + self.subscribe_timeout
        else:
            self._subscribed(now)
        return requests

    def closed(self) -> None:
        """The connection ended: whatever was held back is dropped (the next window covers it)."""
        self.phase = Phase.CLOSED
        self._pending_acks = set()
        self._pending_history = {}
        self._history = []
        self._release_held()
        self._deadline = None

    def deadline(self) -> float | None:
        return self._deadline

    def overdue(self) -> str:
        """Why ``deadline()`` passed: the name of the reason for the disconnect."""
        return "history_timeout" if self.phase is Phase.BACKFILLING else "subscribe_timeout"

    def take_actions(self) -> list[Action]:
        actions, self.actions = self.actions, []
        return actions

    # --- messages ---------------------------------------------------------------------------

    def receive(self, msg: wire.ServerMessage, received: str, now: float) -> list[Event]:
        """Events to publish now for ``msg`` (none while held back); actions in ``actions``."""
        normalizer = _LIVE.get(type(msg))
        if normalizer is None:
            return self._control(msg, now)
        try:
            events = normalizer(msg, self.source, received, self.refused)
        except Exception as exc:  # noqa: BLE001 - a normalizer's refusal is the message's fault
            self.actions.append(Problem(msg.__struct_config__.tag, str(exc)))  # type: ignore[arg-type]
            return []
        if self.phase is Phase.LIVE:
            self.covered_until = now
            if type(msg) is wire.ExecutionEvent:
                return self._dedupe(events)
            if type(msg) is wire.Error:
                self._reported(events)
            return events
        if type(msg) is wire.Error:
            self._reported(events)
            # About the session itself (a rejected subscription, a failed query): never held,
            # or a connection that then times out would swallow the reason.
            if msg.payload.request_id in self._pending_history:
                return events + self._history_failed(msg.payload.request_id, now)
            return events
        # Held back until every ack (and, after a cut, the history) is in, so status.connected
        # and the gap come first; deduped (and marked seen) only when released, so a cut
        # before then loses nothing: the next away-window still covers these.
        if type(msg) in _MARKET_DATA:
            if self._held_market >= HELD_MARKET_LIMIT:
                if self._dropped_since is None:
                    self._dropped_since = received
                return []
            self._held_market += len(events)
        self._held.extend(events)
        return []

    def _reported(self, events: list[Event]) -> None:
        for event in events:
            data = event.data
            if isinstance(data, StatusData):
                self.actions.append(Reported(data.reason, data.code))

    def _control(self, msg: wire.ServerMessage, now: float) -> list[Event]:
        if isinstance(msg, wire.Subscribed):
            key = _ack_key_of(msg.payload)
            if key is not None and key in self._pending_acks:
                self._pending_acks.discard(key)
                if not self._pending_acks and self.phase is Phase.SUBSCRIBING:
                    return self._subscribed(now)
            return []
        if isinstance(msg, wire.DealHistory | wire.OrderHistory):
            return self._history_reply(msg.payload, now)
        return []

    def _subscribed(self, now: float) -> list[Event]:
        self.actions.append(Connected())
        since = self._away_since
        if since is None:
            return self._go_live(now)
        if self.plan.has_market_data:
            self.actions.append(
                Gap("quotes_not_backfilled", times.from_epoch(since), times.from_epoch(now))
            )
        if not self.plan.backfills_executions:
            return self._go_live(now)
        account = self.plan.history_account
        if account is None:
            self.actions.append(
                Gap("executions_not_backfilled", times.from_epoch(since), times.from_epoch(now))
            )
            return self._go_live(now)
        start = times.from_epoch(since - HISTORY_SLACK)
        end = times.from_epoch(now + HISTORY_SLACK)
        for kind in ("dealHistory", "orderHistory"):
            request_id = f"{kind}-{self.connections}-{next(self._request_ids)}"
            self._pending_history[request_id] = kind
            req = wire.HistoryRequest(request_id, account, start, end)
            self.actions.append(Send(wire.ClientMessage(kind, req)))
        self.phase = Phase.BACKFILLING
        self._deadline = now + self.subscribe_timeout
        return []

    def _history_reply(self, p: wire.HistoryPayload, now: float) -> list[Event]:
        if p.request_id is None or p.request_id not in self._pending_history:
            return []
        del self._pending_history[p.request_id]
        received = times.from_epoch(now)
        symbols = self.plan.symbols
        for item in [*p.deals, *p.orders]:
            if item.symbol is not None and item.symbol not in symbols:
                continue  # the history covers the account; live we only get subscribed symbols
            try:
                self._history.append(
                    normalize.execution_event(item, self.source, received, self.refused)
                )
            except Exception as exc:  # noqa: BLE001 - one bad item of a reply, not the reply
                self.actions.append(Problem("history", str(exc)))
        if self._pending_history:
            return []
        return self._go_live(now)

    def _history_failed(self, request_id: str, now: float) -> list[Event]:
        """An ``error`` answered a history request: say the window is a gap, then go live."""
        del self._pending_history[request_id]
        since = self._away_since if self._away_since is not None else now
        self.actions.append(
            Gap("history_unavailable", times.from_epoch(since), times.from_epoch(now))
        )
        if self._pending_history:
            return []
        return self._go_live(now)

    def _release_held(self) -> list[Event]:
        held, self._held = self._held, []
        self._held_market = 0
        self._dropped_since = None
        return held

    def _go_live(self, now: float) -> list[Event]:
        self.phase = Phase.LIVE
        self._deadline = None
        self.covered_until = now
        if self._dropped_since is not None:
            self.actions.append(
                Gap("market_data_not_held", self._dropped_since, times.from_epoch(now))
            )
        history = sorted(self._history, key=lambda e: (e.time, e.id))
        out = self._dedupe(history)
        for e in self._release_held():
            if not _is_order(e):
                out.append(e)
            elif e.id not in self.seen:
                self.seen.add(e.id)
                out.append(e)
        self._history = []
        return out

    def _dedupe(self, events: list[Event]) -> list[Event]:
        out: list[Event] = []
        for e in events:
            if e.id in self.seen:
                continue
            self.seen.add(e.id)
            out.append(e)
        return out


def _is_order(event: Event) -> bool:
    return event.__struct_config__.tag.startswith(_ORDER_PREFIX)  # type: ignore[union-attr]
