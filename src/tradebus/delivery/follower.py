"""One sink following the journal: read from the cursor, filter, write, acknowledge, repeat.

There is one path whether the sink is at the tail or an hour behind: a follower reads what is
readable from its position in steps of about ``STEP_BYTES``, turns the step into writes of at
most the sink's ``max_batch`` events (unbounded for a sink that takes any size), and moves its
cursor past each write the sink acknowledged. A follower far behind therefore writes the
largest batches and costs the least per event: under overload each sink still delivers at its
full capacity, and it catches up as soon as the load drops.

What the journal cannot give back (retention deleted it, or it is damaged) comes as a
``status.gap`` (and ``status.error`` for damage) to this sink, whatever its filters: never
silence.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import Iterator, Sequence
from typing import Any

import msgspec

from tradebus import log, times
from tradebus.backoff import Backoff, Failure, Kind
from tradebus.config import SinkBase, kind
from tradebus.delivery.tail import JournalTail
from tradebus.delivery.wire import SinkSnapshot
from tradebus.errors import FatalSinkError, RetryableSinkError
from tradebus.journal.records import Record
from tradebus.journal.store import Gap, Reader
from tradebus.schemas.events import (
    TRADEBUS,
    Event,
    GapData,
    StatusData,
    StatusError,
    StatusGap,
)
from tradebus.schemas.filter import EventFilter
from tradebus.sinks.base import Batch, Sink, SinkContext

# A step reads about this much of the journal: one write for a sink that takes any size. Past
# half a megabyte a bigger write saves no CPU and only raises the peak RSS.
STEP_BYTES = 512 << 10
# A crashed sink's reason as status and readiness show it (a plugin's message may be long).
ERROR_CHARS = 240
_event_decoder = msgspec.json.Decoder(Event)
_encoder = msgspec.json.Encoder()

# Seconds; the last bucket catches everything (a sink that was down for an hour).
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    3600.0,
)


class Latency:
    """Append-to-acknowledgement time of a sink's events: one observation per write, weighted
    by its events (no per-event work), in fixed buckets."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.sum = 0.0

    def observe(self, seconds: float, events: int) -> None:
        self.counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += events
        self.sum += seconds * events


def sink_filter(config: SinkBase) -> EventFilter:
    return EventFilter(
        providers=config.providers,
        types=config.types,
        sources=config.sources,
        symbols=config.symbols,
    )


class Follower:
    """One sink, fed from the journal after ``cursor`` (the last seq it acknowledged)."""

    def __init__(
        self,
        sink: Sink,
        config: SinkBase,
        tail: JournalTail,
        cursor: int,
        context: SinkContext,
        *,
        opened: bool = False,
    ) -> None:
        self.sink = sink
        self.opened = opened  # opened already (a reload opens a sink before it replaces one)
        self.name = config.name
        self.type = kind(config)
        self.filter = sink_filter(config)
        self.limit = max(0, sink.max_batch)
        self.linger = sink.linger
        self.tail = tail
        self.context = context
        self.cursor = cursor
        self.written = 0
        self.retries = 0  # writes (and opens) that failed and were tried again
        self.failed = False
        self.error: str | None = None  # the failure in force: cleared by the next success
        self.last_error: str | None = None
        self.state = "opening"
        self.gaps = 0
        self.corrupt = 0
        self.latency = Latency()
        self.reader = Reader(cursor + 1, keep_open=True)
        self._ending = False
        self._stopping = False
        self._end_at: int | None = None
        self._wake = tail.waiter()
        self._log: Any = log.get(sink=config.name)
        self._backoff = Backoff(base=0.1, cap=10.0)

    def end(self, upto: int | None = None) -> None:
        """Finish once everything the journal holds is written (or the sink failed); with
        ``upto``, once the seqs below it are, though the journal grows on."""
        self._ending = True
        self._end_at = upto
        self._wake.set()

    def stop(self) -> None:
        """Finish after the write in flight, however much the journal holds (a reload that
        restarts this sink: the next one resumes from the cursor)."""
        self._stopping = True
        self._wake.set()

    @property
    def caught_up(self) -> bool:
        return self.cursor >= self.tail.end_seq - 1

    # --- running ------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            if self.opened or await self._open():
                await self._follow()
        except Exception as exc:  # noqa: BLE001 - reported as the sink's failure, below
            # A bug (in a plugin sink, or here): nothing retries it, but the sink is reported
            # failed with the reason, its cursor kept, rather than a task that ends unseen.
            self._fail(f"{type(exc).__name__}: {exc}"[:ERROR_CHARS], crashed=True)
        finally:
            self.reader.close()
            self.tail.forget(self._wake)
            if self.state != "failed":
                self.state = "stopped"

    async def _open(self) -> bool:
        """Open the sink, retrying what may pass (a directory not there yet, a peer down): a
        sink that cannot start holds neither the daemon nor the other sinks."""
        while True:
            try:
                await self.sink.open(self.context)
            except RetryableSinkError as exc:
                if self._ending or self._stopping:
                    return False
                await asyncio.sleep(self._retry_delay(exc, "sink_open_retry"))
            except FatalSinkError as exc:
                self._fail(str(exc))
                return False
            else:
                self._backoff.reset()
                self.error = None
                return True

    async def _follow(self) -> None:
        tail, reader = self.tail, self.reader
        while not self.failed and not self._stopping:
            if self._end_at is not None and reader.next_seq >= self._end_at:
                return
            if reader.next_seq >= tail.end_seq:
                if self._ending:
                    return
                self.state = "idle"
                self._wake.clear()
                await self._wake.wait()
                continue
            if self.linger and not self._ending and tail.end_seq - reader.next_seq < self.limit:
                await asyncio.sleep(self.linger)  # a webhook's batch fills before it goes
            try:
                items = reader.read(tail.view(), STEP_BYTES)
                if not items:
                    # A segment went (retention) since the view was taken: list them again,
                    # and wait for the next watermark rather than spin if that did not help.
                    tail.refresh()
                    items = reader.read(tail.view(), STEP_BYTES)
            except OSError as exc:
                # The journal could not be read (EIO, EMFILE, a directory gone): the sink
                # waits and reads again from its cursor, it does not end unseen.
                await asyncio.sleep(self._retry_delay(exc, "journal_read_retry"))
                continue
            if not items:
                await asyncio.sleep(0.05)
                continue
            self.corrupt = max(self.corrupt, reader.corrupt)
            for batch, parts in self._writes(items):
                if not await self._write(batch, parts):
                    return

    def _writes(self, items: Sequence[Record | Gap]) -> Iterator[tuple[Batch, list[Batch]]]:
        """The step as writes (each with the parts whose latency it observes): one merged
        write for a sink that takes any size, else writes of ``limit`` events (the last one
        fewer), packed across records."""
        if self.limit:
            for chunk in self._chunks(items):
                yield chunk, [chunk]
            return
        group = [self._gap_batch(i) if isinstance(i, Gap) else self._batch(i) for i in items]
        yield Batch.merge(group), group

    def _time(self, record: Record) -> float:
        return self.tail.marks.time_of(record.first_seq) or record.time_ms / 1000

    def _lines(self, record: Record) -> tuple[list[bytes], int]:
        """The record's lines from the cursor on, and the seq of the first of them."""
        skip = max(0, self.cursor + 1 - record.first_seq)  # a record begun before the cursor
        return record.payload.split(b"\n")[skip:-1], record.first_seq + skip

    def _batch(self, record: Record) -> Batch:
        """One record as one batch: its payload as it is where nothing is left out."""
        if not self.filter and not self.sink.needs_events and record.first_seq > self.cursor:
            # The common case: no split, no per-line work.
            batch = Batch(record.payload, record.count)
        else:
            lines, _ = self._lines(record)
            if self.filter:
                lines = list(filter(self.filter.line, lines))
            batch = self._made(lines)
        batch.first_seq = max(record.first_seq, self.cursor + 1)
        batch.last_seq = record.last_seq
        batch.t0 = self._time(record)
        return batch

    def _made(self, lines: list[bytes]) -> Batch:
        events: Sequence[Event] = ()
        if self.sink.needs_events:
            events = [_event_decoder.decode(line) for line in lines]
        return Batch(b"".join(line + b"\n" for line in lines), len(lines), events)

    def _chunks(self, items: Sequence[Record | Gap]) -> Iterator[Batch]:
        limit, passes = self.limit, self.filter.line if self.filter else None
        lines: list[bytes] = []
        first: int | None = None  # the first seq the chunk being filled stands for
        t0 = 0.0
        end = 0

        def chunk(last: int) -> Batch:
            batch = self._made(lines)
            batch.first_seq, batch.last_seq, batch.t0 = first or last, last, t0
            return batch

        for item in items:
            if isinstance(item, Gap):
                if first is not None and first < item.first:
                    yield chunk(item.first - 1)
                lines, first = [], None
                yield self._gap_batch(item)
                continue
            record_lines, base = self._lines(item)
            if first is None:
                first, t0 = base, self._time(item)
            for i, line in enumerate(record_lines):
                if passes is not None and not passes(line):
                    continue
                lines.append(line)
                if len(lines) == limit:
                    yield chunk(base + i)
                    lines, first, t0 = [], base + i + 1, self._time(item)
            end = item.last_seq
        if first is not None and first <= end:
            yield chunk(end)

    def _gap_batch(self, gap: Gap) -> Batch:
        self.gaps += 1
        self._log.warning("sink_gap", first=gap.first, last=gap.last, reason=gap.reason)
        events = gap_events(self.name, gap, times.now())
        return Batch(
            _encoder.encode_lines(events),
            len(events),
            events if self.sink.needs_events else (),
            first_seq=gap.first,
            last_seq=gap.last,
        )

    async def _write(self, batch: Batch, parts: Sequence[Batch]) -> bool:
        """Write until acknowledged (True), retrying; False if the sink failed for good."""
        while not self.failed and not self._stopping:
            self.state = "writing" if self.error is None else "retrying"
            try:
                if batch.count:
                    await self.sink.write(batch)
            except RetryableSinkError as exc:
                await asyncio.sleep(self._retry_delay(exc, "sink_retry"))
            except FatalSinkError as exc:
                # This sink can never write again: its cursor stays where it is, so after a
                # restart (and a fix) it resumes there. The others go on.
                self._fail(str(exc))
            else:
                self._backoff.reset()
                self.error = None
                self.written += batch.count
                self.cursor = max(self.cursor, batch.last_seq)
                now = time.time()
                for part in parts:
                    if part.count and part.t0:
                        self.latency.observe(now - part.t0, part.count)
                return True
        return False

    def _retry_delay(self, exc: RetryableSinkError | OSError, event: str) -> float:
        """Count and log a failed open or write; the backoff before the next try."""
        delay = self._backoff.delay(Failure(Kind.RETRYABLE, event))
        self.retries += 1
        self.error = self.last_error = str(exc)
        self.state = "retrying"
        self._log.warning(event, error=str(exc), retry_in=round(delay, 3))
        return delay

    def _fail(self, error: str, *, crashed: bool = False) -> None:
        """Stop feeding this sink and report why; ``crashed``: a bug, logged with its trace."""
        self.failed = True
        self.state = "failed"
        self.error = self.last_error = error
        if crashed:
            self._log.exception("sink_crashed", error=error)
        else:
            self._log.error("sink_failed", error=error)

    # --- reporting ----------------------------------------------------------------------

    def snapshot(self) -> SinkSnapshot:
        """This sink's state, with what the sink counts of itself (a webhook's own retries)."""
        counters = {key: float(value) for key, value in self.sink.metrics().items()}
        failing, latest = self.sink.errors()
        return SinkSnapshot(
            name=self.name,
            type=self.type,
            state=self.state,
            cursor=self.cursor,
            written=self.written,
            retries=self.retries + int(counters.get("retries", 0)),
            failed=self.failed,
            error=self.error or failing,
            last_error=self.last_error or latest,
            gaps=self.gaps,
            corrupt=self.corrupt,
            dead_letters=int(counters.get("dead_letters", 0)),
            latency_counts=list(self.latency.counts),
            latency_sum=self.latency.sum,
            counters=counters,
        )


def gap_events(sink: str, gap: Gap, now: str) -> list[Event]:
    """What a sink is told of seqs it will never get: one ``status.gap`` (and for damage a
    ``status.error``), whatever its filters; never silence."""
    lost = f"{gap.first}-{gap.last}"
    events: list[Event] = [
        StatusGap(
            id=f"journal:{sink}:gap:{lost}",
            seq=gap.last,
            source="journal",
            provider=TRADEBUS,
            time=now,
            received=now,
            data=GapData(first_missing=gap.first, last_missing=gap.last, reason=gap.reason),
        )
    ]
    if gap.reason == "corrupt":
        events.append(
            StatusError(
                id=f"journal:{sink}:corrupt:{lost}",
                seq=gap.last,
                source="journal",
                provider=TRADEBUS,
                time=now,
                received=now,
                data=StatusData(
                    reason="journal_corrupt",
                    message=f"journal records for seq {lost} are damaged on disk: skipped",
                ),
            )
        )
    return events
