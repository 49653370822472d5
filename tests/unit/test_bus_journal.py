"""The journaled bus: sources never wait, a stalled sink catches up from disk, cursors endure."""

from __future__ import annotations

import asyncio
import errno
import os
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from tests.unit.test_bus import RecordingSink, fill, quote, worker
from tradebus import bus as bus_module
from tradebus.backoff import Backoff
from tradebus.bus import CATCH_UP_MERGE, MERGE_LIMIT, Bus, SinkWorker
from tradebus.errors import RetryableSinkError
from tradebus.journal import cursors, store
from tradebus.journal.records import Record
from tradebus.journal.store import Gap, Journal
from tradebus.schemas.events import Event, StatusGap, event_type
from tradebus.sinks.base import Batch, SinkContext


def open_bus(state: Path, *workers: SinkWorker, segment_bytes: int = 1 << 20, **kw: object) -> Bus:
    saved, _ = cursors.load(state)
    floor = max((e.seq for e in saved.values()), default=0) + 1
    journal, _ = Journal.open(state, segment_bytes=segment_bytes, min_next_seq=floor)
    return Bus(list(workers), journal=journal, state_dir=state, saved=saved, **kw)  # type: ignore[arg-type]


def is_live(w: SinkWorker) -> bool:
    return w.live


def seqs(sink: RecordingSink) -> list[int]:
    return [msgspec.json.decode(line)["seq"] for line in sink.lines()]


async def wait_until(cond: Callable[[], bool], timeout: float = 10) -> None:
    """Poll a condition that no event signals (a cursor moved by a batch the filter emptied)."""

    async def poll() -> None:
        while not cond():  # noqa: ASYNC110 - nothing to await: the worker sets plain attributes
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), timeout)


async def test_a_stalled_sink_never_holds_publish_and_catches_up_in_order(tmp_path: Path) -> None:
    gate = asyncio.Event()
    slow, fast = RecordingSink("slow", gate, needs_events=False), RecordingSink("fast")
    bus = open_bus(tmp_path, worker(slow, queue_size=4), worker(fast))
    await bus.start()
    for n in range(200):
        # Would block forever without the journal: the slow sink's window holds 4 events.
        await asyncio.wait_for(bus.publish([quote(n)]), 1)
    await fast.wait_events(200)
    workers = {w.name: w for w in bus.workers}
    assert not is_live(workers["slow"])  # it fell behind: the journal holds the rest
    assert workers["slow"].queued <= 5  # slow, not failing: it keeps its window (4 + 1)
    gate.set()
    await wait_until(lambda: len(slow.lines()) == 200)
    assert seqs(slow) == list(range(1, 201))
    await bus.publish([quote(999)])
    await wait_until(lambda: len(slow.lines()) == 201)
    assert is_live(workers["slow"])
    assert await bus.close(5)


async def test_cursors_survive_a_restart_and_nothing_is_given_twice(tmp_path: Path) -> None:
    sink = RecordingSink("a", needs_events=False)
    bus = open_bus(tmp_path, worker(sink))
    await bus.start()
    await bus.publish([quote(1), quote(2)])
    await wait_until(lambda: len(sink.lines()) == 2)
    assert await bus.close(5)
    assert cursors.load(tmp_path)[0]["a"].seq == 2
    # Published while "a" was not running: the journal keeps it for the next start.
    gate = asyncio.Event()
    b = RecordingSink("a", gate, needs_events=False)
    bus = open_bus(tmp_path, worker(b))
    await bus.start()
    await bus.publish([quote(3)])
    assert not await bus.close(0.05)  # could not write: stays in the journal
    c = RecordingSink("a", needs_events=False)
    bus = open_bus(tmp_path, worker(c))
    await bus.start()
    await bus.publish([quote(4)])
    await wait_until(lambda: len(c.lines()) == 2)
    assert seqs(c) == [3, 4]
    assert await bus.close(5)


async def test_filters_apply_when_reading_back_and_move_the_cursor(tmp_path: Path) -> None:
    gate = asyncio.Event()
    sink = RecordingSink("orders", gate)
    w = worker(sink, queue_size=1, types=["order."])
    bus = open_bus(tmp_path, w)
    await bus.start()
    for n in range(50):
        await bus.publish([quote(n), fill(n)])
    gate.set()
    await wait_until(lambda: w.cursor == 100)
    assert [event_type(e) for e in sink.events()] == ["order.filled"] * 50
    assert [e.seq for e in sink.events()] == list(range(2, 101, 2))
    for n in range(3):
        await bus.publish([quote(100 + n)])  # filtered out wholly: the cursor still moves
    await wait_until(lambda: w.cursor == 103)
    assert await bus.close(5)


async def test_retention_past_a_cursor_gives_that_sink_one_gap_with_the_range(
    tmp_path: Path,
) -> None:
    gate = asyncio.Event()
    behind, keeping = RecordingSink("behind", gate), RecordingSink("keeping")
    w = worker(behind, queue_size=1)
    bus = open_bus(tmp_path, w, worker(keeping), segment_bytes=4096, retention_bytes=8192)
    await bus.start()
    await bus.publish([quote(0)])
    await asyncio.wait_for(behind.entered.wait(), 5)  # its first write hangs at the gate
    for n in range(1, 300):
        await bus.publish([quote(n)])
    await keeping.wait_events(300)
    assert bus.journal is not None
    bus._retain(bus.journal)  # the chore, now rather than in 5 s
    first_kept = bus.journal.first_seq
    assert first_kept > 2
    gate.set()
    await wait_until(lambda: w.cursor == 300)
    gaps = [e for e in behind.events() if isinstance(e, StatusGap)]
    assert len(gaps) == 1
    assert gaps[0].data.reason == "retention"
    # It had the first event in its window; it lost what the window did not hold, up to the
    # oldest seq still kept, and got everything after.
    assert gaps[0].data.last_missing == first_kept - 1
    got = [e.seq for e in behind.events() if not isinstance(e, StatusGap)]
    lost = range(gaps[0].data.first_missing or 0, first_kept)
    assert got == [s for s in range(1, 301) if s not in lost]
    assert bus.forced_drops >= 1
    assert await bus.close(5)


async def test_a_full_disk_makes_sources_wait_and_everything_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = RecordingSink("a", needs_events=False)
    bus = open_bus(tmp_path, worker(sink))
    await bus.start()
    full = True
    real = os.writev

    def writev(fd: int, buffers: list[bytes]) -> int:
        if full:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, buffers)

    monkeypatch.setattr(os, "writev", writev)
    waiting = asyncio.create_task(bus.publish([quote(1)]))
    second = asyncio.create_task(bus.publish([quote(2)]))
    await wait_until(lambda: bus.append_failures >= 2)
    assert not waiting.done()
    assert not second.done()
    full = False
    await asyncio.wait_for(asyncio.gather(waiting, second), 5)
    await wait_until(lambda: len(sink.lines()) == 2)
    assert seqs(sink) == [1, 2]
    assert await bus.close(5)


async def test_memory_stays_bounded_while_a_sink_is_down(tmp_path: Path) -> None:
    gate = asyncio.Event()
    down = RecordingSink("down", gate, needs_events=False)
    bus = open_bus(tmp_path, worker(down, queue_size=64), segment_bytes=1 << 16)
    await bus.start()
    batch: list[Event] = []
    tracemalloc.start()
    try:
        for n in range(20):
            batch = [quote(i) for i in range(n * 500, (n + 1) * 500)]
            await bus.publish(batch)
        _, peak_small = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for n in range(20, 200):
            batch = [quote(i) for i in range(n * 500, (n + 1) * 500)]
            await bus.publish(batch)
        current, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # 90,000 more events published while it is down: memory held does not grow with them.
    assert current < peak_small * 2
    gate.set()
    await wait_until(lambda: len(down.lines()) == 100_000, 30)
    assert seqs(down) == list(range(1, 100_001))
    assert await bus.close(5)


async def test_a_sink_that_cannot_open_yet_holds_nothing_and_gets_everything_later(
    tmp_path: Path,
) -> None:
    class LateSink(RecordingSink):
        fails = 2

        async def open(self, ctx: SinkContext) -> None:
            if self.fails:
                self.fails -= 1
                raise RetryableSinkError("not yet")

    late, other = LateSink("late", needs_events=False), RecordingSink("other")
    w = worker(late)
    w._backoff = Backoff(base=0.01, cap=0.02)
    bus = open_bus(tmp_path, w, worker(other))
    await bus.start()
    for n in range(10):
        await asyncio.wait_for(bus.publish([quote(n)]), 1)
    await other.wait_events(10)
    await wait_until(lambda: len(late.lines()) == 10)
    assert seqs(late) == list(range(1, 11))
    assert w.retries == 2
    assert await bus.close(5)


async def test_a_damaged_record_is_a_gap_and_an_error_for_the_sink_and_the_rest_arrives(
    tmp_path: Path,
) -> None:
    first = RecordingSink("a", needs_events=False)
    bus = open_bus(tmp_path, worker(first))
    await bus.start()
    await bus.close(5)  # "a" now has a cursor at 0 in the state dir
    bus = open_bus(tmp_path)  # a run without sink "a": its cursor stays on record
    journal = bus.journal
    assert journal is not None
    for n in range(3):
        await bus.publish([quote(2 * n), quote(2 * n + 1)])
    seg = journal.segments[-1].path
    await bus.close(1)
    data = bytearray(seg.read_bytes())
    middle = len(data) // 2
    data[middle] ^= 0x20  # inside the second record's lines
    seg.write_bytes(bytes(data))
    sink = RecordingSink("a")
    bus = open_bus(tmp_path, worker(sink))
    await bus.start()
    await wait_until(lambda: bus.workers[0].cursor == 6)
    kinds = [event_type(e) for e in sink.events()]
    assert kinds == ["quote.updated"] * 2 + ["status.gap", "status.error"] + ["quote.updated"] * 2
    gap = sink.events()[2]
    assert isinstance(gap, StatusGap)
    assert (gap.data.first_missing, gap.data.last_missing, gap.data.reason) == (3, 4, "corrupt")
    assert bus.workers[0].corrupt == 1
    assert await bus.close(5)


async def test_a_sink_failing_retryably_for_a_while_catches_up_and_the_other_keeps_pace(
    tmp_path: Path,
) -> None:
    flaky, steady = RecordingSink("flaky", needs_events=False), RecordingSink("steady")
    flaky.fail_next = [RetryableSinkError("receiver down")] * 5
    w = worker(flaky, queue_size=8)
    w._backoff = Backoff(base=0.01, cap=0.05)
    bus = open_bus(tmp_path, w, worker(steady))
    await bus.start()
    for n in range(500):
        await asyncio.wait_for(bus.publish([quote(n)]), 1)
    await steady.wait_events(500)  # while the flaky one is still failing or catching up
    await wait_until(lambda: len(flaky.lines()) == 500)
    assert seqs(flaky) == list(range(1, 501))
    assert w.retries == 5
    assert await bus.close(5)


class HeldSink(RecordingSink):
    """Holds every write that reaches ``hold_from`` (a catch-up write) until ``hold`` is set."""

    def __init__(self, name: str, hold_from: int) -> None:
        super().__init__(name, needs_events=False)
        self.hold_from = hold_from
        self.hold = asyncio.Event()
        self.held: Batch | None = None
        self.held_entered = asyncio.Event()

    async def write(self, batch: Batch) -> None:
        if batch.last_seq >= self.hold_from and not self.hold.is_set():
            self.held = batch
            self.held_entered.set()
            await self.hold.wait()
        await super().write(batch)


def count_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The ``next_seq`` each journal read (on the pool's threads) ended at, in order."""
    ended: list[int] = []
    original = store.Reader.read

    def read(self: store.Reader, view: store.View, max_bytes: int) -> list[Record | Gap]:
        out = original(self, view, max_bytes)
        ended.append(self.next_seq)  # list.append is atomic: safe from a pool thread
        return out

    monkeypatch.setattr(store.Reader, "read", read)
    return ended


async def test_catching_up_reads_the_next_step_while_it_writes_this_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bus_module, "CATCH_UP_BYTES", 2048)  # a few records a step
    ended = count_reads(monkeypatch)
    sink = HeldSink("behind", hold_from=100)
    w = worker(sink, queue_size=4)
    bus = open_bus(tmp_path, w)
    sink.gate = asyncio.Event()  # the window's writes wait too: the sink falls behind
    await bus.start()
    for n in range(300):
        await asyncio.wait_for(bus.publish([quote(n)]), 1)
    assert not w.live
    sink.gate.set()
    await asyncio.wait_for(sink.held_entered.wait(), 10)
    assert sink.held is not None
    held_end = sink.held.last_seq + 1
    # While that step's write is held, the next step is read: the two hops overlap.
    await wait_until(lambda: any(seq > held_end for seq in ended))
    assert w.cursor < sink.held.first_seq  # nothing read ahead counts as written
    sink.hold.set()
    await wait_until(lambda: len(sink.lines()) == 300)
    assert seqs(sink) == list(range(1, 301))
    assert await bus.close(5)


async def test_catching_up_writes_in_merges_larger_than_the_live_feeds(tmp_path: Path) -> None:
    """Each thread hop costs turns of a busy loop whatever it carries: a sink far behind
    catches up in writes of up to CATCH_UP_MERGE events, not the live feed's 1,024."""
    gate = asyncio.Event()
    sink = RecordingSink("behind", gate, needs_events=False)
    w = worker(sink, queue_size=4)
    bus = open_bus(tmp_path, w, segment_bytes=8 << 20)
    await bus.start()
    for n in range(0, 6000, 2):
        await bus.publish([quote(n), quote(n + 1)])
    gate.set()
    await wait_until(lambda: len(sink.lines()) == 6000)
    assert seqs(sink) == list(range(1, 6001))
    assert max(b.count for b in sink.batches) > MERGE_LIMIT
    assert all(b.count <= CATCH_UP_MERGE for b in sink.batches)
    assert await bus.close(5)
