"""A follower's view of the journal: the segments on disk, bounded by the daemon's watermark.

The daemon owns the journal and appends to it; delivery (in another process, or inline) only
reads. What it may read is what the latest ``Watermark`` says: segments before the one being
written are complete and read to their end; the one being written is read up to the
watermark's size, so a reader never meets the half of a record the daemon is writing.
"""

from __future__ import annotations

import asyncio
import bisect
from pathlib import Path

from tradebus.delivery.wire import Watermark
from tradebus.journal.store import SegmentView, View, list_segments, segment_path


class Marks:
    """When seqs were appended, from the watermarks: ``time_of(seq)`` is the time of the first
    watermark that covered it. Bounded: past ``cap`` marks, neighbours merge (keeping the
    earlier time), so a follower an hour behind costs a coarser estimate, not memory."""

    def __init__(self, cap: int = 8192, *, before: float | None = None) -> None:
        self.cap = cap
        self._ends: list[int] = []
        self._times: list[float] = []
        self.start = 0  # seqs below this were appended before the first mark
        self.before = before  # when they were, at the latest (None: not known)

    def add(self, end_seq: int, at: float) -> None:
        ends = self._ends
        if ends and end_seq <= ends[-1]:
            return
        if not ends and not self.start:
            self.start = end_seq
            return  # the first mark only says where knowledge begins
        ends.append(end_seq)
        self._times.append(at)
        if len(ends) > self.cap:
            n = len(ends) - len(ends) % 2
            self._ends = ends[1:n:2] + ends[n:]
            self._times = self._times[0:n:2] + self._times[n:]

    def time_of(self, seq: int) -> float | None:
        """When ``seq`` was appended (at the latest), or None if it is not known."""
        if seq < self.start:
            return self.before
        i = bisect.bisect_right(self._ends, seq)
        return self._times[i] if i < len(self._times) else None

    def prune(self, below: int) -> None:
        """Forget marks that only cover seqs below ``below`` (every follower is past them)."""
        i = bisect.bisect_right(self._ends, below - 1)
        if i:
            del self._ends[:i]
            del self._times[:i]
            self.start = max(self.start, below)


class Wakeups:
    """Followers waiting at the end of the journal: ``wake`` sets each one's event."""

    def __init__(self) -> None:
        self._waiters: set[asyncio.Event] = set()

    def waiter(self) -> asyncio.Event:
        event = asyncio.Event()
        self._waiters.add(event)
        return event

    def forget(self, waiter: asyncio.Event) -> None:
        self._waiters.discard(waiter)

    def wake(self) -> None:
        for waiter in self._waiters:
            waiter.set()


class JournalTail(Wakeups):
    """The readable journal: closed segments as listed on disk, the active one as far as the
    watermark says. ``changed`` wakes the followers waiting at the end."""

    def __init__(self, journal_dir: Path) -> None:
        self.dir = journal_dir
        self.mark = Watermark(0, 0, 0, 0.0)
        self.marks = Marks()
        self._closed: tuple[SegmentView, ...] = ()
        super().__init__()
        self._view: View | None = None

    @property
    def end_seq(self) -> int:
        return self.mark.end_seq

    def advance(self, mark: Watermark) -> None:
        """Take a newer watermark and wake every follower waiting for more."""
        if mark.end_seq < self.mark.end_seq:
            return
        if mark.segment != self.mark.segment:
            self._list(mark.segment)
        self.mark = mark
        self._view = None
        self.marks.add(mark.end_seq, mark.time)
        self.wake()

    def refresh(self) -> None:
        """List the closed segments again (retention deleted some since)."""
        self._list(self.mark.segment)
        self._view = None

    def _list(self, active: int) -> None:
        self._closed = tuple(
            SegmentView(s.path, s.first_seq, s.size)
            for s in list_segments(self.dir)
            if s.first_seq < active
        )

    def view(self) -> View:
        """What a reader may read now (one tuple per watermark, shared by every follower)."""
        view = self._view
        if view is None:
            mark = self.mark
            active = SegmentView(segment_path(self.dir, mark.segment), mark.segment, mark.size)
            segments = (*self._closed, active) if mark.segment else self._closed
            view = self._view = View(segments, mark.end_seq)
        return view
