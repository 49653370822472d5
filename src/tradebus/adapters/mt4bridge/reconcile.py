"""MT4 bridge, sans-I/O: the known-positions book and the circuit breaker. No clock, no I/O.

"Write-side requests should be treated as task submissions. A queued response does not guarantee
broker execution, so always reconcile by task id or execution event." The WS order stream reports
opens and closes as they happen; ``GET /positions`` tells what is open now. ``PositionBook`` joins
the two so that each open and each close is reported exactly once, by whichever saw it first:

- a ticket is reported opened once: when first seen by either path, never again;
- a ticket is reported closed once; a closed ticket is never reopened by a stale snapshot
  (MT4 never reuses a ticket);
- a snapshot taken before the WS reported an open cannot close that position: only entries
  known before the snapshot was requested are judged by it.

"Production workloads should combine request ids, adaptive retry backoff, and circuit breaking
around broker connectivity incidents." ``Breaker`` is that circuit breaker.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import msgspec

from tradebus.adapters.base import BoundedSet
from tradebus.adapters.mt4bridge import wire


@dataclass(slots=True)
class _Known:
    position: wire.Position
    since: float  # monotonic time it became known


@dataclass(frozen=True, slots=True)
class Diff:
    """What a snapshot changed: positions that appeared, and those that vanished (last known)."""

    opened: list[wire.Position] = field(default_factory=list)
    closed: list[wire.Position] = field(default_factory=list)


def merge(old: wire.Position, new: wire.Position) -> wire.Position:
    """``new`` with the fields it lacks filled from ``old`` (a close event rarely repeats all)."""
    changes = {
        name: getattr(old, name)
        for name in new.__struct_fields__
        if getattr(new, name) is None and getattr(old, name) is not None
    }
    return msgspec.structs.replace(new, **changes) if changes else new


class PositionBook:
    """Open positions keyed by ticket, and the tickets already reported closed."""

    def __init__(self, closed_memory: int = 10_000) -> None:
        self._open: dict[int, _Known] = {}
        self._closed: BoundedSet[int] = BoundedSet(closed_memory)

    def __contains__(self, ticket: object) -> bool:
        return ticket in self._open

    def __len__(self) -> int:
        return len(self._open)

    def get(self, ticket: int) -> wire.Position | None:
        known = self._open.get(ticket)
        return None if known is None else known.position

    def restore(self, open_positions: list[wire.Position], closed: list[int]) -> None:
        """What was reported before a restart (from the journal): those opens are not news
        again, and the first snapshot judges them (a position closed while we were away is
        reported closed once); those closes are never reported again."""
        for ticket in closed:
            self._closed.add(ticket)
            self._open.pop(ticket, None)
        for position in open_positions:
            if position.ticket not in self._closed:
                # Known since before any snapshot this process takes.
                self._open[position.ticket] = _Known(position, float("-inf"))

    def opened(self, position: wire.Position, now: float) -> bool:
        """The WS reported an open. True if it is news (report it), False if already known."""
        known = self._open.get(position.ticket)
        if known is not None:
            known.position = merge(known.position, position)
            return False
        if position.ticket in self._closed:
            return False
        self._open[position.ticket] = _Known(position, now)
        return True

    def closed(self, position: wire.Position) -> wire.Position | None:
        """The WS reported a close: the position to report (merged with what was known), or
        ``None`` if this close was already reported."""
        if position.ticket in self._closed:
            return None
        self._closed.add(position.ticket)
        known = self._open.pop(position.ticket, None)
        return position if known is None else merge(known.position, position)

    def update(self, ticket: int, **fields: object) -> None:
        """Refresh a known position's fields (price, profit) from a profit message."""
        known = self._open.get(ticket)
        if known is not None:
            changes = {k: v for k, v in fields.items() if v is not None}
            known.position = msgspec.structs.replace(known.position, **changes)

    def reconcile(self, snapshot: list[wire.Position], requested_at: float) -> Diff:
        """Apply a ``GET /positions`` snapshot requested at ``requested_at``; return the news."""
        diff = Diff()
        present: set[int] = set()
        for position in snapshot:
            present.add(position.ticket)
            known = self._open.get(position.ticket)
            if known is not None:
                known.position = position
            elif position.ticket not in self._closed:
                self._open[position.ticket] = _Known(position, requested_at)
                diff.opened.append(position)
        for ticket in [t for t, k in self._open.items() if t not in present]:
            known = self._open[ticket]
            if known.since < requested_at:
                del self._open[ticket]
                self._closed.add(ticket)
                diff.closed.append(known.position)
        return diff


class State(enum.Enum):
    CLOSED = "closed"  # calls flow
    OPEN = "open"  # the bridge is down: no call until ``reset`` seconds passed
    HALF_OPEN = "half_open"  # one probe is out; its outcome closes or reopens the breaker


class Breaker:
    """Opens after ``threshold`` consecutive failures, for ``reset`` seconds; then one probe."""

    def __init__(self, threshold: int, reset: float) -> None:
        self.threshold = threshold
        self.reset = reset
        self.state = State.CLOSED
        self.failures = 0
        self._opened_at = 0.0

    def allow(self, now: float) -> bool:
        """May a call go out now? In the open state the first call after ``reset`` is the probe."""
        if self.state is State.CLOSED:
            return True
        # A probe whose outcome never came back (cancelled mid-call) must not wedge the breaker
        # half-open: after another ``reset`` the next call probes again.
        if now - self._opened_at >= self.reset:
            self.state = State.HALF_OPEN
            self._opened_at = now
            return True
        return False

    def retry_in(self, now: float) -> float:
        """Seconds until a call may go out (0 when closed)."""
        if self.state is State.CLOSED:
            return 0.0
        return max(0.0, self._opened_at + self.reset - now)

    def success(self) -> bool:
        """The bridge answered. True if this closes a breaker that was not closed (recovered)."""
        recovered = self.state is not State.CLOSED
        self.state = State.CLOSED
        self.failures = 0
        return recovered

    def failure(self, now: float) -> bool:
        """A call failed with BridgeUnavailable. True if the breaker (re)opened just now."""
        self.failures += 1
        if self.state is State.HALF_OPEN or (
            self.state is State.CLOSED and self.failures >= self.threshold
        ):
            self.state = State.OPEN
            self._opened_at = now
            return True
        return False

    def abort(self, now: float) -> None:
        """A probe ended without an answer (network error): back to open, wait ``reset`` again."""
        if self.state is State.HALF_OPEN:
            self.state = State.OPEN
            self._opened_at = now
