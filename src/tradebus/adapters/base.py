"""What every adapter shares: the protocol, the context it runs in, and the registry.

An adapter owns one upstream connection and its session logic; it hands normalized events to
``SourceContext.publish`` in batches (one per read) and never sees the bus or the sinks.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeAlias, TypeVar

from tradebus import log, times
from tradebus.schemas.events import (
    STATUS_TYPES,
    Event,
    GapData,
    Provider,
    StatusData,
    StatusGap,
)

if TYPE_CHECKING:
    from tradebus.adapters.transport import Transport

Publish = Callable[[Sequence[Event]], Awaitable[None]]
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# Log the first few of each kind of bad input, then only every power of ten: a feed gone bad
# must not flood the journal, and the counter keeps the true number.
_LOG_FIRST = 10
# Distinct unknown type names counted one by one per source; the rest share UNKNOWN_OTHER.
UNKNOWN_NAMES = 100
UNKNOWN_OTHER = "unknown.other"
# A source down for a planned reconnect (``disconnected(planned=True)``) stays ready this long
# by default: it is back in well under a second when the upstream is healthy, and a probe must
# not flap on every planned reconnect. An adapter may set its context's ``reconnect_grace``.
RECONNECT_GRACE = 3.0
# How a connection (or an attempt at one) ends: a drop, a failure, a refused credential.
EndKind: TypeAlias = Literal["status.disconnected", "status.error", "status.auth_failed"]


class Adapter(Protocol):
    """One upstream connection: ``run`` reconnects until cancelled, and cleans up on cancel."""

    name: str

    async def run(self) -> None: ...


class SourceContext:
    """The adapter's window on the daemon: publish, status events, bad-input accounting.

    It also keeps the source's connection state for the ops endpoint. The adapter says when it
    is up and when it is down with ``connected()`` and ``disconnected()``: each sets the state
    and returns the status event that announces it, for the adapter to publish. ``publish``
    only counts what passes (events by class, gaps), one C-level count per batch.
    """

    def __init__(
        self,
        name: str,
        provider: Provider,
        publish: Publish,
        *,
        clock: Callable[[], float] = time.time,
        history: Sequence[Event] = (),
        stopped_at: float | None = None,
        transport: Transport | None = None,
    ) -> None:
        self.name = name
        # What the journal holds of this source (newest last) and when the daemon last wrote
        # anything: an adapter resumes from them after a restart.
        self.history = history
        self.stopped_at = stopped_at
        self.provider: Provider = provider
        self._publish = publish
        self.clock = clock
        self.log: Any = log.get(source=name, provider=provider)
        self.counters: Counter[str] = Counter()
        # Upstream times refused, counted as ``time_fallback``: an event kept, stamped with its
        # receipt time, is not bad input, but a count that shows an upstream whose clock field
        # is junk. Handed to the source's normalizers, which count into it.
        self.refused = times.Refusals(self.counters, "time_fallback")
        # Events published, by class (``event_type`` of the class gives the wire name).
        self.published: Counter[type[Event]] = Counter()
        self.up = False  # connected: set by ``connected()`` and ``disconnected()``
        self.since = clock()  # when ``up`` last changed (or the context was made)
        self.last_event: float | None = None  # clock() of the last batch published
        self.connects = 0
        self.last_error: str | None = None
        self.last_reason: str | None = None  # why the source last connected or went down
        # Down for a reconnect the adapter planned (``disconnected(planned=True)``): ready
        # still, for ``reconnect_grace`` seconds.
        self.planned = False
        self.reconnect_grace = RECONNECT_GRACE
        self._unknown_names = 0
        self._status_ids = itertools.count(1)
        if transport is None:
            from tradebus.adapters.live import LiveTransport

            transport = LiveTransport(boot=clock())
        # The adapter's only way out and its only clock (``adapters.transport``): live, perhaps
        # recorded, or a replay of a recording.
        self.transport: Transport = transport
        self._boot = f"{int(transport.boot * 1000):x}"

    def begin(self) -> None:
        """Called first by the adapter's ``run``: the transport notes what it resumes from."""
        self.transport.begin(self.history, self.stopped_at)

    def publish(self, events: Sequence[Event]) -> Awaitable[None]:
        """Hand a batch to the bus, counting its events by class."""
        if log.DEBUG:
            self.log.debug("batch_published", events=len(events))
        if events:
            self.published.update(map(type, events))
            self.last_event = self.clock()
        return self._publish(events)

    def connected(self, *, reason: str | None = None, account: str | None = None) -> Event:
        """The source is up: its state says so, and the ``status.connected`` that announces it
        is returned for the adapter to publish (first in its batch)."""
        event = self.status("status.connected", reason=reason, account=account)
        self.connects += 1
        self.last_reason = reason
        self.planned = False
        self._set_connected(True)
        return event

    def disconnected(
        self,
        reason: str,
        *,
        planned: bool,
        retry_in: float | None,
        code: str | int | None = None,
        message: str | None = None,
        account: str | None = None,
        kind: EndKind = "status.disconnected",
    ) -> Event:
        """The connection ended, or an attempt at one failed: the source is down, and the
        status event of ``kind`` that says why is returned for the adapter to publish.

        ``planned``: the adapter reconnects at once and nothing failed (an upstream that asked
        for a reconnect, a credential renewed on schedule): the source stays ready for
        ``reconnect_grace`` seconds and ``last_error`` is left as it was. ``retry_in``: the
        seconds until the next attempt, if the adapter knows them. ``message`` holds no secret.
        """
        event = self.status(
            kind, reason=reason, code=code, message=message, retry_in=retry_in, account=account
        )
        self.last_reason = reason
        self.planned = planned
        if not planned:
            self._note_error(kind, reason, code)
        self._set_connected(False)
        return event

    def error(
        self,
        reason: str,
        *,
        code: str | int | None = None,
        message: str | None = None,
        account: str | None = None,
    ) -> Event:
        """An error the upstream reported in-band (a refused request): the connection stays
        up, ``last_error`` names it, and the ``status.error`` is returned to publish."""
        event = self.status(
            "status.error", reason=reason, code=code, message=message, account=account
        )
        self.reported(reason, code)
        return event

    def reported(self, reason: str | None, code: str | int | None = None) -> None:
        """An in-band error whose ``status.error`` the adapter built itself (a normalizer's,
        with an id of the upstream's): only ``last_error`` notes it."""
        self._note_error("status.error", reason, code)

    def _note_error(self, kind: str, reason: str | None, code: str | int | None) -> None:
        self.last_error = ":".join(str(p) for p in (kind, reason, code) if p is not None)

    def _set_connected(self, up: bool) -> None:
        if up != self.up:
            self.up = up
            self.since = self.clock()

    @property
    def reconnects(self) -> int:
        """Connections after the first."""
        return max(0, self.connects - 1)

    @property
    def gaps(self) -> int:
        return self.published[StatusGap]

    def in_grace(self, now: float) -> bool:
        """Down for a planned reconnect that began less than ``reconnect_grace`` ago."""
        return not self.up and self.planned and now - self.since < self.reconnect_grace

    def bad_input(self, kind: str, raw: bytes | str, error: object = None) -> None:
        """Count a bad upstream message and log it (bounded excerpt); the caller skips it."""
        self.counters[f"bad.{kind}"] += 1
        n = self.counters[f"bad.{kind}"]
        if n <= _LOG_FIRST or _is_power_of_ten(n):
            self.log.warning(
                "bad_input",
                kind=kind,
                count=n,
                error=None if error is None else log.excerpt(str(error)),
                excerpt=log.excerpt(raw),
            )

    def unknown_type(self, name: str) -> None:
        """An event type this version does not know: not an error, counted per name.

        The names are the upstream's: past ``UNKNOWN_NAMES`` distinct ones (a feed sending a
        new name per message), the rest share ``unknown.other``, so memory and the log stay
        bounded however many it invents.
        """
        key = f"unknown.{name[:64]}"
        if key not in self.counters:
            if self._unknown_names >= UNKNOWN_NAMES:
                key = UNKNOWN_OTHER
            else:
                self._unknown_names += 1
        self.counters[key] += 1
        if self.counters[key] == 1:
            if key == UNKNOWN_OTHER:
                self.log.info("unknown_event_types_bounded", name=name[:64], limit=UNKNOWN_NAMES)
            else:
                self.log.info("unknown_event_type", name=name[:64])

    def _status_id(self, kind: str) -> str:
        # Status events have no upstream id: boot stamp + counter keeps them unique per process
        # and across restarts (the boot stamp is the start time in ms).
        return f"{self.name}:{kind}:{self._boot}.{next(self._status_ids)}"

    def status(
        self,
        type_: str,
        *,
        reason: str | None = None,
        code: str | int | None = None,
        message: str | None = None,
        retry_in: float | None = None,
        account: str | None = None,
    ) -> Event:
        """A ``status.*`` event for this source, stamped now (the transport's clock: the time of
        the event that led here). ``message`` must hold no secret."""
        now = times.from_epoch(self.transport.now())
        cls = STATUS_TYPES[type_]
        return cls(
            id=self._status_id(type_),
            source=self.name,
            provider=self.provider,
            time=now,
            received=now,
            account=account,
            data=StatusData(
                reason=reason,
                code=None if code is None else str(code),
                message=None if message is None else log.scrub_text(message)[:500],
                retry_in=None if retry_in is None else round(retry_in, 3),
            ),
        )

    def gap(
        self,
        *,
        first_missing: int | None = None,
        last_missing: int | None = None,
        reason: str,
        since: str | None = None,
        until: str | None = None,
        account: str | None = None,
    ) -> Event:
        now = times.from_epoch(self.transport.now())
        return StatusGap(
            id=self._status_id("status.gap"),
            source=self.name,
            provider=self.provider,
            time=now,
            received=now,
            account=account,
            data=GapData(
                first_missing=first_missing,
                last_missing=last_missing,
                reason=reason,
                since=since,
                until=until,
            ),
        )


def _is_power_of_ten(n: int) -> bool:
    while n >= 10 and n % 10 == 0:
        n //= 10
    return n == 1


class BoundedSet(Generic[K]):
    """A set that forgets its oldest members: dedupe in bounded memory.

    Two generations of ``maxsize``: the newest ``maxsize`` members are always remembered, at most
    ``2 * maxsize`` are held, and a full young generation replaces the old one whole. Every
    operation is one or two C-level set calls, where an ordered dict evicting one member per add
    cost a Python call and three dict operations per event on the hot path.
    """

    __slots__ = ("_old", "_young", "maxsize")

    def __init__(self, maxsize: int) -> None:
        self.maxsize = max(1, maxsize)
        self._young: set[K] = set()
        self._old: set[K] = set()

    def __contains__(self, key: object) -> bool:
        return key in self._young or key in self._old

    def generations(self) -> tuple[set[K], set[K]]:
        """The two sets behind ``in``, for a loop that looks up many keys and adds none
        (``in`` on both is a method call less per key); stale after the next add."""
        return self._young, self._old

    def __len__(self) -> int:
        return len(self._young | self._old)

    def add(self, key: K) -> None:
        self._young.add(key)
        if len(self._young) >= self.maxsize:
            self._rotate()

    def update(self, keys: Iterable[K]) -> None:
        """Add many at once: a batch's ids, after the batch was handed over."""
        self._young.update(keys)
        if len(self._young) >= self.maxsize:
            self._rotate()

    def _rotate(self) -> None:
        self._old = self._young
        self._young = set()


class BoundedDict(Generic[K, V]):
    """A least-recently-set cache: context an earlier message gave (a ticker for a later close)."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._items: OrderedDict[K, V] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: K) -> V | None:
        return self._items.get(key)

    def set(self, key: K, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        if len(self._items) > self.maxsize:
            self._items.popitem(last=False)

    def pop(self, key: K) -> V | None:
        return self._items.pop(key, None)


AdapterFactory = Callable[[Any, SourceContext], Adapter]
