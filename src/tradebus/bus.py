"""The bus: one ordered stream. It numbers events, encodes them once, journals and fans out.

With a journal (the daemon always has one), ``publish`` appends the batch to it before any sink
sees it, then offers it to every sink's in-memory window. A sink that keeps up is fed from that
window; one whose window is full is no longer "live": it reads the journal from its own
position on a thread until it has caught up, then takes the live feed again. Sources never wait
for a sink, and memory stays bounded however far one falls behind. After every acknowledged
write a sink's cursor moves; cursors are saved at most every 100 ms and at close.

Without a journal (embedding, tests) a full window makes ``publish`` wait for room instead.
Per source, order is kept in every sink: a batch is numbered, journaled and offered to every
sink before ``publish`` returns, each window is FIFO, and a sink reads the journal only from
where its window ended.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import time
from collections import deque
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import msgspec

from tradebus import log, times
from tradebus.backoff import Backoff, Failure, Kind
from tradebus.config import SinkBase
from tradebus.errors import FatalSinkError, RetryableSinkError
from tradebus.journal import cursors
from tradebus.journal.records import Record
from tradebus.journal.store import Gap, Journal
from tradebus.schemas.events import (
    Event,
    GapData,
    StatusData,
    StatusError,
    StatusGap,
    event_type,
)
from tradebus.sinks.base import Batch, Sink

_set_seq = msgspec.structs.force_setattr
# A worker merges what is queued into one write, up to this many events: fewer syscalls under
# load, no waiting at all when idle. Past about a thousand (half a megabyte) a bigger write
# saves no CPU and only raises the peak RSS: each merge copies its lines into one buffer.
MERGE_LIMIT = 1024
# A sink catching up reads the journal in steps of about CATCH_UP_BYTES, the next step while
# it writes this one, in merges of up to CATCH_UP_MERGE events. Under load a thread hop (the
# read, the sink's write) costs about two turns of a loop that busy sources keep long, 60-100
# ms each in row 5 whatever the hop carries: a sink once behind gains only as much as a hop
# carries. 256 KiB steps, read then written in 1,024-event merges, caught up at 7-9k events/s
# against 120k/s ingested; these sizes at 17-27k. What a step holds (its records, the merged
# batch, one step read ahead) is the working set a catch-up adds to the daemon: row 5's peak
# 66-73 -> 72 MB (1 MiB steps: no faster, 77-81 MB).
CATCH_UP_BYTES = 512 << 10
CATCH_UP_MERGE = 4096
# Chores of a journaled bus: fsync (policy "interval") and cursor saves at most this often.
SYNC_INTERVAL = 0.1
RETENTION_INTERVAL = 5.0
_event_decoder = msgspec.json.Decoder(Event)


class EventFilter:
    """A sink's filter: providers, ``type`` prefixes, sources, symbols; empty means all."""

    __slots__ = ("providers", "sources", "symbols", "types")

    def __init__(self, config: SinkBase) -> None:
        self.providers = frozenset(config.providers)
        self.types = tuple(config.types)
        self.sources = frozenset(config.sources)
        self.symbols = frozenset(config.symbols)

    def __bool__(self) -> bool:
        return bool(self.providers or self.types or self.sources or self.symbols)

    def __call__(self, event: Event) -> bool:
        if self.providers and event.provider not in self.providers:
            return False
        if self.sources and event.source not in self.sources:
            return False
        if self.symbols and event.symbol not in self.symbols:
            return False
        return not self.types or event_type(event).startswith(self.types)


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
    """Publish-to-acknowledgement time of a sink's events: one observation per published
    batch, weighted by its events (no per-event work), in fixed buckets."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.sum = 0.0

    def observe(self, seconds: float, events: int) -> None:
        self.counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += events
        self.sum += seconds * events


class SinkWorker:
    """One sink's in-memory window and the task that drains it into ``sink.write``.

    The window is bounded in events, not batches: batch sizes follow read sizes (one event at a
    quiet moment, a thousand under load), so a count of batches bounded nothing. A batch is
    admitted while fewer than ``queue_size`` events wait, so one batch larger than the bound
    still gets in, alone, and memory stays within about ``queue_size`` plus one read.

    With a journal, a full window turns the worker to the journal (``live`` is False) from the
    first seq it did not take; nothing waits. Without one, publishers that find it full wait in
    line and are let in one at a time, in the order they came: with a free-for-all, the source
    publishing most often took nearly all the room and the others starved (measured: one source
    1.2 M events, another 7 k in the same 8 s).
    """

    def __init__(self, sink: Sink, config: SinkBase) -> None:
        self.sink = sink
        self.name = config.name
        self.filter = EventFilter(config)
        self.limit = config.queue_size
        self.linger = float(getattr(config, "batch_linger_ms", 0) or 0) / 1000
        self.queued = 0  # events (a batch of none counts one) waiting in _pending
        self.written = 0
        self.failed = False
        self.retries = 0  # writes that failed and were retried
        self.last_error: str | None = None
        self.cursor = 0  # the last seq written and acknowledged
        self.live = True  # fed from memory; False while reading the journal
        self.gaps = 0  # stretches the journal could not give back to this sink
        self.corrupt = 0  # damaged journal stretches met while reading
        self.latency = Latency()
        self._next = 1  # the first seq not yet in the window or written
        # Where in the journal ``_next`` begins: a catch-up starts reading there, not at the
        # top of its segment (a scan of up to a whole segment each time it fell behind).
        self._at: tuple[Path, int] | None = None
        self._journal: Journal | None = None
        self._ending = False
        self._pending: deque[Batch] = deque()
        self._line: deque[asyncio.Future[None]] = deque()  # publishers waiting for room
        self._work = asyncio.Event()  # set while there is something to do
        self._log: Any = log.get(sink=config.name)
        self._backoff = Backoff(base=0.1, cap=10.0)

    def attach(self, journal: Journal, cursor: int) -> None:
        """Deliver from the journal after ``cursor`` (the last seq this sink acknowledged)."""
        self._journal = journal
        self.cursor = cursor
        self._next = cursor + 1
        self.live = self._next > journal.last_seq

    @property
    def backlog(self) -> int:
        """Seqs published but not yet acknowledged by this sink."""
        last = self._journal.last_seq if self._journal is not None else self.cursor + self.queued
        return max(0, last - self.cursor)

    def offer(self, batch: Batch, events: Sequence[Event]) -> None:
        """Take a journaled batch into the window, or leave it to the journal when full."""
        if self.failed or not self.live:
            return
        if self.queued >= self.limit:
            self._fall_behind()
            return
        self._take(batch, events)

    def _fall_behind(self) -> None:
        """The window is full: from here this sink reads the journal. A sink that is failing
        (its last write or open raised) lets the window go too, since the journal holds it
        all: one down for an hour holds no memory for it. One that is only slower than the
        sources keeps it and writes it first: read back, it would cost the work twice."""
        self.live = False
        first = self._pending[0] if self._pending else None
        if first is not None and first.start is not None and self.last_error is not None:
            self._next = first.first_seq
            self._at = first.start
            self._pending.clear()
            self.queued = 0
        self._work.set()

    def _take(self, batch: Batch, events: Sequence[Event]) -> None:
        start, end = batch.start, batch.end  # a filtered copy of the batch carries neither
        if self.filter:
            keep = [self.filter(e) for e in events]
            if not all(keep):
                batch = batch.subset(keep) if any(keep) else _marker(batch)
        batch.start, batch.end = start, end
        self._pending.append(batch)
        self.queued += len(batch) or 1
        self._next = batch.last_seq + 1
        self._at = end
        self._work.set()

    async def put(self, batch: Batch, events: Sequence[Event]) -> None:
        """Queue ``batch`` without a journal; waits its turn while the window is full."""
        if (self.queued >= self.limit or self._line) and not self.failed:
            await self._wait_turn()
        if self.failed:
            return
        if self.filter and not any(self.filter(e) for e in events):
            self._let_next_in()
            return
        self._take(batch, events)
        self._let_next_in()

    @property
    def blocked(self) -> int:
        """Publishers waiting for room right now."""
        return len(self._line)

    async def _wait_turn(self) -> None:
        turn = asyncio.get_running_loop().create_future()
        self._line.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if not turn.cancelled():
                self._let_next_in()  # it was let in as it was cancelled: the next one goes
            elif turn in self._line:  # (``_let_next_in`` drops cancelled places it meets)
                self._line.remove(turn)
            raise

    def _let_next_in(self) -> None:
        """Wake the first publisher in line if there is room (or nothing will ever be written)."""
        while self._line and (self.queued < self.limit or self.failed):
            turn = self._line.popleft()
            if not turn.done():
                turn.set_result(None)
                if not self.failed:
                    return

    def end(self) -> None:
        """Let the worker finish once it wrote what it was given (and caught up)."""
        self._ending = True
        self._work.set()

    def _retry_delay(self, exc: RetryableSinkError, event: str) -> float:
        """Count and log a failed open or write; the backoff before the next try."""
        delay = self._backoff.delay(Failure(Kind.RETRYABLE, event))
        self.retries += 1
        self.last_error = str(exc)
        self._log.warning(event, error=str(exc), retry_in=round(delay, 3))
        return delay

    def _fail(self, exc: FatalSinkError) -> None:
        self.failed = True
        self.last_error = str(exc)
        self._log.error("sink_failed", error=str(exc))

    async def open(self) -> None:
        """Open the sink, retrying what may pass (a directory not there yet, a peer down): one
        sink that cannot start holds neither the daemon nor the other sinks."""
        while True:
            try:
                await self.sink.open()
            except RetryableSinkError as exc:
                await asyncio.sleep(self._retry_delay(exc, "sink_open_retry"))
            except FatalSinkError as exc:
                self._fail(exc)
                return
            else:
                self._backoff.reset()
                self.last_error = None
                return

    async def run(self) -> None:
        """Open the sink, then write batches until ``end`` and nothing is left."""
        await self.open()
        pending = self._pending
        while not self.failed:
            if not pending:
                if not self.live and self._journal is not None:
                    await self._catch_up(self._journal)
                    continue
                if self._ending:
                    return
                self._work.clear()
                await self._work.wait()
                continue
            if self.linger and not self._ending and self.queued < MERGE_LIMIT:
                await asyncio.sleep(self.linger)  # a webhook's batch fills before it goes
            batches: list[Batch] = []
            count = weight = 0
            while pending and count < MERGE_LIMIT:
                more = pending.popleft()
                batches.append(more)
                count += len(more)
                weight += len(more) or 1
            self.queued -= weight
            self._let_next_in()
            if await self._write(Batch.merge(batches)):
                self._observe(batches)

    async def _catch_up(self, journal: Journal) -> None:
        """Read the journal from ``_next`` until it has nothing newer, then go live again.

        The next step is read while this one is written: the two thread hops overlap."""
        reader = journal.reader(self._next, self._at)
        loop = asyncio.get_running_loop()
        self._log.info("sink_catching_up", from_seq=self._next, last_seq=journal.last_seq)
        ahead: asyncio.Future[list[Record | Gap]] | None = None
        try:
            while not self.failed:
                if ahead is None:
                    # Checked on the loop, with no await before ``live`` is set and no read in
                    # flight: a publish cannot slip between the last read and the live feed.
                    if reader.next_seq >= journal.next_seq:
                        self._next = reader.next_seq
                        self._at = reader.position
                        self.live = True
                        self._log.info("sink_caught_up", cursor=self.cursor)
                        return
                    ahead = loop.run_in_executor(None, reader.read, journal.view(), CATCH_UP_BYTES)
                items = await ahead
                ahead = None
                self.corrupt = max(self.corrupt, reader.corrupt)
                if reader.next_seq < journal.next_seq:
                    ahead = loop.run_in_executor(None, reader.read, journal.view(), CATCH_UP_BYTES)
                await self._write_step([self._from_journal(item) for item in items])
        finally:
            if ahead is not None:
                # A read still in flight (the sink failed, or the task was cancelled): let it
                # end, so no reader outlives its worker on the pool.
                with contextlib.suppress(Exception):
                    await asyncio.shield(ahead)

    async def _write_step(self, batches: list[Batch]) -> None:
        """One catch-up step, in merged writes of up to CATCH_UP_MERGE events; ``_next`` moves
        past what was written (never past a read-ahead not yet written)."""
        group: list[Batch] = []
        count = 0
        for batch in batches:
            group.append(batch)
            count += len(batch)
            if count >= CATCH_UP_MERGE:
                if not await self._write(Batch.merge(group)):
                    return
                self._observe(group)
                self._next = batch.last_seq + 1
                group, count = [], 0
        if group and await self._write(Batch.merge(group)):
            self._observe(group)
            self._next = group[-1].last_seq + 1

    def _from_journal(self, item: Record | Gap) -> Batch:
        if isinstance(item, Gap):
            return self._gap_batch(item)
        batch = self._record_batch(item)
        batch.t0 = item.time_ms / 1000  # when it was journaled: its wait counts too
        return batch

    def _record_batch(self, item: Record) -> Batch:
        skip = max(0, self._next - item.first_seq)  # a record that began before our position
        if not skip and not self.filter and not self.sink.needs_events:
            # The common case, a sink that writes the lines: the record's payload as it is.
            return Batch(item.payload, item.count, first_seq=item.first_seq, last_seq=item.last_seq)
        lines = item.payload.split(b"\n")[:-1]
        if skip:
            lines = lines[skip:]
        first = item.first_seq + skip
        if not self.filter and not self.sink.needs_events:
            data = b"".join(line + b"\n" for line in lines) if skip else item.payload
            return Batch(data, len(lines), first_seq=first, last_seq=item.last_seq)
        events = [_event_decoder.decode(line) for line in lines]
        keep = [self.filter(e) for e in events] if self.filter else [True] * len(events)
        data = b"".join(line + b"\n" for line, k in zip(lines, keep, strict=True) if k)
        kept = [e for e, k in zip(events, keep, strict=True) if k]
        if not kept:
            return Batch(b"", 0, first_seq=first, last_seq=item.last_seq)
        return Batch(
            data,
            len(kept),
            kept if self.sink.needs_events else (),
            first_seq=first,
            last_seq=item.last_seq,
        )

    def _gap_batch(self, gap: Gap) -> Batch:
        """What this sink is told of seqs it will never get: one ``status.gap`` (and for damage
        a ``status.error``), whatever its filters; never silence."""
        self.gaps += 1
        now = times.now()
        lost = f"{gap.first}-{gap.last}"
        self._log.warning("sink_gap", first=gap.first, last=gap.last, reason=gap.reason)
        events: list[Event] = [
            StatusGap(
                id=f"journal:{self.name}:gap:{lost}",
                seq=gap.last,
                source="journal",
                provider="tradebus",
                time=now,
                received=now,
                data=GapData(first_missing=gap.first, last_missing=gap.last, reason=gap.reason),
            )
        ]
        if gap.reason == "corrupt":
            events.append(
                StatusError(
                    id=f"journal:{self.name}:corrupt:{lost}",
                    seq=gap.last,
                    source="journal",
                    provider="tradebus",
                    time=now,
                    received=now,
                    data=StatusData(
                        reason="journal_corrupt",
                        message=f"journal records for seq {lost} are damaged on disk: skipped",
                    ),
                )
            )
        return Batch(
            _encoder.encode_lines(events),
            len(events),
            events if self.sink.needs_events else (),
            first_seq=gap.first,
            last_seq=gap.last,
        )

    def _observe(self, batches: Sequence[Batch]) -> None:
        now = time.time()
        for b in batches:
            if b.count and b.t0:
                self.latency.observe(now - b.t0, b.count)

    async def _write(self, batch: Batch) -> bool:
        """Write until acknowledged (True), retrying; False if the sink failed for good."""
        while not self.failed:
            try:
                if batch.count:
                    await self.sink.write(batch)
            except RetryableSinkError as exc:
                await asyncio.sleep(self._retry_delay(exc, "sink_retry"))
            except FatalSinkError as exc:
                # This sink can never write again: stop feeding it rather than block the others.
                # Its cursor stays where it is: after a restart (and a fix) it resumes there.
                self._fail(exc)
                self._pending.clear()
                self.queued = 0
                self._let_next_in()  # every publisher in line sees ``failed`` and moves on
            else:
                self._backoff.reset()
                self.last_error = None
                self.written += batch.count
                self.cursor = max(self.cursor, batch.last_seq)
                return True
        return False


_encoder = msgspec.json.Encoder()


def _marker(batch: Batch) -> Batch:
    """A batch of no events for a stretch the filter took wholly: it moves the cursor only."""
    return Batch(b"", 0, first_seq=batch.first_seq, last_seq=batch.last_seq)


class Bus:
    """Sequencing, encode-once, the journal append, and fan-out to every sink's worker."""

    def __init__(
        self,
        workers: Sequence[SinkWorker],
        *,
        first_seq: int = 1,
        journal: Journal | None = None,
        state_dir: Path | None = None,
        saved: dict[str, cursors.CursorEntry] | None = None,
        retention_bytes: int = 1 << 30,
        retention_age: float = 7 * 86400.0,
    ) -> None:
        self.workers = list(workers)
        self.published = 0
        self.journal = journal
        self.state_dir = state_dir
        self.retention_bytes = retention_bytes
        self.retention_age = retention_age
        self.append_failures = 0
        self.forced_drops = 0
        self._next_seq = journal.next_seq if journal is not None else first_seq
        self._encoder = msgspec.json.Encoder()
        # Queued batches carry the structs only if a sink reads them (see ``Batch``).
        self._keep_events = any(w.sink.needs_events for w in self.workers)
        self._tasks: list[asyncio.Task[None]] = []
        self._chores: asyncio.Task[None] | None = None
        self._closed = False
        self._stuck = asyncio.Lock()  # held while an append is being retried (disk full)
        self._saved_cursors: dict[str, tuple[int, str | None]] = {}
        self._log: Any = log.get()
        # Cursors of sinks not in this config: kept as they are, so a sink taken out of the
        # config for a while resumes where it was (retention does not wait for it).
        self._other_cursors: dict[str, cursors.CursorEntry] = {}
        if journal is not None:
            saved = saved or {}
            names = {w.name for w in self.workers}
            self._other_cursors = {k: v for k, v in saved.items() if k not in names}
            for w in self.workers:
                entry = saved.get(w.name)
                # A sink new to this state dir starts at the journal's end: what it is given
                # from now on, not the history of other sinks.
                w.attach(journal, min(entry.seq, journal.last_seq) if entry else journal.last_seq)
                self._saved_cursors[w.name] = (w.cursor, w.last_error)

    @property
    def last_seq(self) -> int:
        return self.journal.last_seq if self.journal is not None else self._next_seq - 1

    async def start(self) -> None:
        for worker in self.workers:
            self._tasks.append(asyncio.create_task(worker.run(), name=f"sink:{worker.name}"))
        if self.journal is not None:
            # A sink new to this state dir begins at the journal's end: put that on record
            # now, or a crash before its first write would have it begin later still.
            await self._save_cursors(force=True)
            self._chores = asyncio.create_task(self._keep(self.journal), name="journal")

    async def publish(self, events: Sequence[Event]) -> None:
        """Number ``events``, encode them once, journal them, and hand them to every sink."""
        if not events or self._closed:
            return
        journal = self.journal
        if journal is None:
            batch = self._number(events, self._next_seq)
            self._next_seq = batch.last_seq + 1
            for worker in self.workers:
                await worker.put(batch, events)
            return
        if self._stuck.locked() or journal.fsync == "always":
            async with self._stuck:
                batch = await self._append_retrying(journal, events)
        else:
            try:
                batch = self._append(journal, events)
            except OSError as exc:
                async with self._stuck:
                    self._note_append_failure(exc)
                    batch = await self._append_retrying(journal, events)
        behind = False
        for worker in self.workers:
            worker.offer(batch, events)
            behind = behind or not worker.live
        if behind:
            # A sink reading the journal back gets a turn of the loop after every batch: with
            # sources that send as fast as they can, it would otherwise get almost none.
            await asyncio.sleep(0)

    def _number(self, events: Sequence[Event], seq: int) -> Batch:
        first = seq
        for event in events:
            _set_seq(event, "seq", seq)
            seq += 1
        self.published += len(events)
        batch = Batch(
            self._encoder.encode_lines(events),
            len(events),
            events if self._keep_events else (),
            first_seq=first,
            last_seq=seq - 1,
        )
        batch.t0 = time.time()
        return batch

    def _append(self, journal: Journal, events: Sequence[Event]) -> Batch:
        batch = self._number(events, journal.next_seq)
        start = journal.position  # before a roll to a new segment, if this append makes one
        try:
            journal.append(batch.chunks, batch.count, int(time.time() * 1000))
        except OSError:
            self.published -= batch.count
            raise
        end = journal.position
        # A record that opened a new segment starts at its top.
        batch.start = start if start[0] == end[0] else (end[0], 0)
        batch.end = end
        return batch

    async def _append_retrying(self, journal: Journal, events: Sequence[Event]) -> Batch:
        """Append, waiting out a full disk: sources wait here (so they stop reading) and go on
        by themselves when space frees. Nothing is dropped."""
        backoff = Backoff(base=0.1, cap=5.0)
        while True:
            try:
                batch = self._append(journal, events)
            except OSError as exc:
                self._note_append_failure(exc)
                await asyncio.sleep(backoff.delay(Failure(Kind.RETRYABLE, "append"), floor=0.05))
                continue
            if journal.fsync == "always":
                await asyncio.get_running_loop().run_in_executor(None, journal.sync)
            return batch

    _last_failure_log = -1e9

    def _note_append_failure(self, exc: OSError) -> None:
        self.append_failures += 1
        now = time.monotonic()
        if now - self._last_failure_log >= 60:
            self._last_failure_log = now
            self._log.error(
                "journal_append_failed",
                error=exc.strerror or str(exc),
                failures=self.append_failures,
                note="sources wait until the journal can be written again",
            )

    async def _keep(self, journal: Journal) -> None:
        """fsync (policy "interval"), cursor saves and retention, off the publish path."""
        loop = asyncio.get_running_loop()
        next_retention = loop.time()
        while True:
            await asyncio.sleep(SYNC_INTERVAL)
            try:
                if journal.fsync == "interval" and journal.dirty:
                    await loop.run_in_executor(None, journal.sync)
                await self._save_cursors(loop)
                if loop.time() >= next_retention:
                    next_retention = loop.time() + RETENTION_INTERVAL
                    self._retain(journal)
            except OSError as exc:
                self._log.warning("journal_chore_failed", error=exc.strerror or str(exc))

    def _retain(self, journal: Journal) -> None:
        low = min((w.cursor for w in self.workers), default=journal.last_seq)
        loop = asyncio.get_running_loop()

        def delete(path: Path) -> None:
            # Freeing a 64 MiB file's pages takes the kernel milliseconds: off the loop.
            loop.run_in_executor(None, partial(path.unlink, missing_ok=True))

        for drop in journal.enforce_retention(
            low, self.retention_bytes, self.retention_age, time.time(), delete=delete
        ):
            if drop.forced:
                self.forced_drops += 1
                self._log.warning(
                    "journal_retention_forced",
                    first=drop.first,
                    last=drop.last,
                    behind=[w.name for w in self.workers if w.cursor < drop.last],
                )

    def cursor_entries(self) -> dict[str, cursors.CursorEntry]:
        now = int(time.time() * 1000)
        entries = dict(self._other_cursors)
        for w in self.workers:
            entries[w.name] = cursors.CursorEntry(seq=w.cursor, updated_ms=now, error=w.last_error)
        return entries

    async def _save_cursors(
        self, loop: asyncio.AbstractEventLoop | None = None, *, force: bool = False
    ) -> None:
        if self.state_dir is None or self.journal is None:
            return
        # A new error is saved too, so `tradebus journal` shows why a sink stands still.
        current = {w.name: (w.cursor, w.last_error) for w in self.workers}
        if current == self._saved_cursors and not force:
            return
        entries = self.cursor_entries()
        durable = self.journal.fsync != "never"
        if loop is None:
            cursors.save(self.state_dir, entries, durable=durable)
        else:
            state_dir = self.state_dir
            await loop.run_in_executor(
                None, lambda: cursors.save(state_dir, entries, durable=durable)
            )
        self._saved_cursors = current

    def reopen(self) -> None:
        for worker in self.workers:
            worker.sink.reopen()

    async def close(self, timeout: float) -> bool:
        """Let every sink write what it was given, then close them; False if ``timeout`` hit.
        What a sink could not write stays in the journal for the next start."""
        self._closed = True
        for worker in self.workers:
            if not worker.failed:
                worker.end()
        drained = True
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=timeout)
            for task in pending:
                drained = False
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._chores is not None:
            self._chores.cancel()
            await asyncio.gather(self._chores, return_exceptions=True)
        for worker in self.workers:
            await worker.sink.close()
        if self.journal is not None:
            try:
                # Forced: a sink new to this state dir is on record from now on, where it began.
                await self._save_cursors(force=True)
            except OSError as exc:
                self._log.error("cursor_save_failed", error=exc.strerror or str(exc))
            self.journal.close()
        return drained
