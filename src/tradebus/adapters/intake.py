"""One read's routine, the same for every adapter: normalize, dedupe, publish, mark seen."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import Generic, TypeVar

from tradebus.adapters.base import BoundedSet, SourceContext
from tradebus.schemas.events import Event

K = TypeVar("K", bound=Hashable)
M = TypeVar("M")
Handle = Callable[[M, str, list[Event]], object]


class Intake(Generic[K]):
    """What one read of an upstream goes through on its way to the bus.

    Its messages are normalized one by one (whatever one raises is that message's bad input,
    and the rest go on), deduped against the keys already published and those of this read
    (``fresh``), handed to the bus as one batch, and only then marked seen: a batch lost to a
    cancel while the bus had not taken it is published again when the upstream replays it,
    where keys marked earlier would drop it. Upstream times refused are counted by the
    normalizers, in the ``ctx.refused`` handed to them.

    A hot loop fills ``events`` and ``fresh`` itself and looks keys up in
    ``seen.generations()`` (nothing here is called per message); a cooler one hands its
    messages to ``each``. ``publish`` ends the read; ``take`` ends one whose events go out
    with others.
    """

    __slots__ = ("_ctx", "events", "fresh", "seen")

    def __init__(
        self, ctx: SourceContext, dedupe_size: int = 1, *, seen: BoundedSet[K] | None = None
    ) -> None:
        self._ctx = ctx
        # ``seen`` may be a session's, which dedupes in the loop (sans-I/O).
        self.seen: BoundedSet[K] = BoundedSet(dedupe_size) if seen is None else seen
        self.events: list[Event] = []
        self.fresh: set[K] = set()

    def each(
        self,
        items: Iterable[M],
        handle: Handle[M],
        received: str,
        kind: str,
        raw: Callable[[M], bytes | str],
    ) -> None:
        """``handle(item, received, events)`` for every item; what one raises is counted as bad
        input of ``kind`` (with an excerpt of ``raw(item)``) and skips that item alone."""
        events = self.events
        for item in items:
            try:
                handle(item, received, events)
            except Exception as exc:  # noqa: BLE001 - one message's fault, counted and skipped
                self._ctx.bad_input(kind, raw(item), exc)

    async def publish(self, finish: Callable[[list[Event]], list[Event]] | None = None) -> None:
        """The read's events to the bus as one batch (through ``finish`` first, if given), then
        its keys are marked seen: only now are they the bus's."""
        events, fresh = self.events, self.fresh
        # Swapped out before the await: the next read starts empty whatever happens to this one.
        self.events, self.fresh = [], set()
        if events:
            await self._ctx.publish(events if finish is None else finish(events))
        if fresh:
            self.seen.update(fresh)

    def take(self) -> list[Event]:
        """The read's events, for the caller to publish with others (a read that dedupes
        nothing: no key is marked seen)."""
        events, self.events = self.events, []
        return events
