"""Followers of the journal: sources never wait, a sink far behind catches up from disk in
order, cursors endure, and what the journal cannot give back arrives as a gap."""

from __future__ import annotations

import asyncio
import errno
import os
import tracemalloc
from pathlib import Path

import pytest

from tests.unit.deliverykit import RecordingSink, Rig, fill, quote, seqs, wait_until
from tradebus.backoff import Backoff
from tradebus.config import StdoutSinkConfig
from tradebus.errors import RetryableSinkError
from tradebus.journal import cursors
from tradebus.schemas.events import Event, StatusGap, event_type
from tradebus.sinks.base import Batch, SinkContext


async def test_a_stalled_sink_never_holds_publish_and_catches_up_in_order(tmp_path: Path) -> None:
    """Publish returns at once whatever a sink does; the sink then gets everything, in order."""
    gate = asyncio.Event()
    slow, fast = RecordingSink("slow", gate, needs_events=False), RecordingSink("fast")
    rig = await Rig(tmp_path, [slow, fast]).start()
    for n in range(200):
        await asyncio.wait_for(rig.publish([quote(n)]), 1)
    await fast.wait_events(200)
    gate.set()
    await slow.wait_events(200)
    assert seqs(slow) == list(range(1, 201))
    await rig.publish([quote(999)])
    await slow.wait_events(201)
    assert await rig.close() == {}


async def test_cursors_survive_a_restart_and_nothing_is_given_twice(tmp_path: Path) -> None:
    """A sink resumes after its saved cursor; what it could not write is given again."""
    sink = RecordingSink("a", needs_events=False)
    rig = await Rig(tmp_path, [sink]).start()
    await rig.publish([quote(1), quote(2)])
    assert await rig.close() == {}
    assert cursors.load(tmp_path)[0]["a"].seq == 2
    b = RecordingSink("a", asyncio.Event(), needs_events=False)
    rig = await Rig(tmp_path, [b]).start()
    await rig.publish([quote(3)])
    assert await rig.close(0.05) == {"a": 1}  # could not write: stays in the journal
    c = RecordingSink("a", needs_events=False)
    rig = await Rig(tmp_path, [c]).start()
    await rig.publish([quote(4)])
    await c.wait_events(2)
    assert seqs(c) == [3, 4]
    assert await rig.close() == {}


async def test_a_sink_new_to_the_state_dir_starts_at_the_journals_end(tmp_path: Path) -> None:
    """A sink added later gets what comes from then on, not the history of other sinks."""
    rig = await Rig(tmp_path, [RecordingSink("old")]).start()
    await rig.publish([quote(1), quote(2)])
    await rig.close()
    new = RecordingSink("new", needs_events=False)
    rig = await Rig(tmp_path, [new]).start()
    await rig.publish([quote(3)])
    assert await rig.close() == {}
    assert seqs(new) == [3]
    saved, _ = cursors.load(tmp_path)
    assert (saved["old"].seq, saved["new"].seq) == (2, 3)  # the absent one stays on record


async def test_filters_apply_to_a_sink_behind_and_move_the_cursor(tmp_path: Path) -> None:
    """Read back from the journal, a filtered sink gets its events only; a stretch the filter
    takes wholly still moves its cursor."""
    gate = asyncio.Event()
    sink = RecordingSink("orders", gate)
    rig = await Rig(tmp_path, [sink], [StdoutSinkConfig(name="orders", types=["order."])]).start()
    follower = rig.followers[0]
    for n in range(50):
        await rig.publish([quote(n), fill(n)])
    gate.set()
    await wait_until(lambda: follower.cursor == 100)
    assert [event_type(e) for e in sink.events()] == ["order.filled"] * 50
    assert [e.seq for e in sink.events()] == list(range(2, 101, 2))
    for n in range(3):
        await rig.publish([quote(100 + n)])
    await wait_until(lambda: follower.cursor == 103)
    assert await rig.close() == {}


async def test_retention_past_a_cursor_gives_that_sink_one_gap_with_the_range(
    tmp_path: Path,
) -> None:
    """Segments deleted before a sink read them reach it as one status.gap naming the seqs."""
    gate = asyncio.Event()
    behind, keeping = RecordingSink("behind", gate), RecordingSink("keeping")
    rig = Rig(tmp_path, [behind, keeping], segment_bytes=4096, retention_bytes=8192)
    await rig.start()
    await rig.publish([quote(0)])
    await asyncio.wait_for(behind.entered.wait(), 5)  # its first write hangs at the gate
    for n in range(1, 300):
        await rig.publish([quote(n)])
    await keeping.wait_events(300)
    rig.bus._retain(rig.journal)  # the chore, now rather than in 5 s
    first_kept = rig.journal.first_seq
    assert first_kept > 2
    gate.set()
    await wait_until(lambda: rig.followers[0].cursor == 300)
    gaps = [e for e in behind.events() if isinstance(e, StatusGap)]
    assert gaps
    assert {g.data.reason for g in gaps} == {"retention"}
    # What it got and what the gaps name are the whole stream, once: never silence. (A
    # segment retention dropped may still be read before its file goes, so what a gap names
    # can end short of the oldest kept seq; it never overlaps what was delivered.)
    lost = [
        s for g in gaps for s in range(g.data.first_missing or 0, (g.data.last_missing or 0) + 1)
    ]
    got = [e.seq for e in behind.events() if not isinstance(e, StatusGap)]
    assert sorted(got + lost) == list(range(1, 301))
    assert all(s in got for s in range(first_kept, 301))
    assert rig.bus.forced_drops >= 1
    assert rig.followers[0].gaps == len(gaps)
    assert await rig.close() == {}


async def test_a_full_disk_makes_sources_wait_and_everything_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failing append makes publish wait (nothing dropped) until the disk has room again."""
    sink = RecordingSink("a", needs_events=False)
    rig = await Rig(tmp_path, [sink]).start()
    full = True
    real = os.writev

    def writev(fd: int, buffers: list[bytes]) -> int:
        if full:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, buffers)

    monkeypatch.setattr(os, "writev", writev)
    waiting = asyncio.create_task(rig.publish([quote(1)]))
    second = asyncio.create_task(rig.publish([quote(2)]))
    await wait_until(lambda: rig.bus.append_failures >= 2)
    assert not waiting.done()
    assert not second.done()
    full = False
    await asyncio.wait_for(asyncio.gather(waiting, second), 5)
    await sink.wait_events(2)
    assert seqs(sink) == [1, 2]
    assert await rig.close() == {}


async def test_memory_stays_bounded_while_a_sink_is_down(tmp_path: Path) -> None:
    """90,000 events published while a sink cannot write hold no memory for it."""
    gate = asyncio.Event()
    down = RecordingSink("down", gate, needs_events=False)
    rig = await Rig(tmp_path, [down], segment_bytes=1 << 16).start()
    batch: list[Event] = []
    tracemalloc.start()
    try:
        for n in range(20):
            batch = [quote(i) for i in range(n * 500, (n + 1) * 500)]
            await rig.publish(batch)
        await asyncio.sleep(0)
        _, peak_small = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for n in range(20, 200):
            batch = [quote(i) for i in range(n * 500, (n + 1) * 500)]
            await rig.publish(batch)
        current, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert current < peak_small * 2
    gate.set()
    await down.wait_events(100_000, timeout=30)
    assert seqs(down) == list(range(1, 100_001))
    assert await rig.close() == {}


async def test_a_sink_that_cannot_open_yet_holds_nothing_and_gets_everything_later(
    tmp_path: Path,
) -> None:
    """Open is retried with backoff; the sink then starts from its cursor."""

    class LateSink(RecordingSink):
        fails = 2

        async def open(self, ctx: SinkContext) -> None:
            if self.fails:
                self.fails -= 1
                raise RetryableSinkError("not yet")

    late, other = LateSink("late", needs_events=False), RecordingSink("other")
    rig = Rig(tmp_path, [late, other])
    await rig.start()
    rig.followers[0]._backoff = Backoff(base=0.01, cap=0.02)
    for n in range(10):
        await asyncio.wait_for(rig.publish([quote(n)]), 1)
    await other.wait_events(10)
    await late.wait_events(10)
    assert seqs(late) == list(range(1, 11))
    assert rig.followers[0].retries == 2
    assert await rig.close() == {}


async def test_a_journal_read_that_fails_is_retried_and_the_sink_still_gets_everything(
    tmp_path: Path,
) -> None:
    """An OSError reading the journal (EIO, EMFILE) is counted and retried from the cursor:
    the follower neither ends unseen nor skips what it could not read."""
    sink = RecordingSink("a", needs_events=False)
    rig = Rig(tmp_path, [sink])
    await rig.start()
    follower = rig.followers[0]
    follower._backoff = Backoff(base=0.01, cap=0.02)
    real, fails = follower.reader.read, [2]

    def read(*args: object, **kwargs: object) -> object:
        if fails[0]:
            fails[0] -= 1
            raise OSError(errno.EIO, "Input/output error")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    follower.reader.read = read  # type: ignore[method-assign,assignment]
    for n in range(10):
        await asyncio.wait_for(rig.publish([quote(n)]), 1)
    await sink.wait_events(10)
    assert seqs(sink) == list(range(1, 11))
    assert follower.retries == 2
    assert follower.last_error is not None
    assert "Input/output error" in follower.last_error
    assert follower.error is None  # cleared by the write that followed
    assert await rig.close() == {}


async def test_a_sink_that_raises_a_bug_is_reported_failed_and_the_others_go_on(
    tmp_path: Path,
) -> None:
    """An exception outside the contract (a plugin's bug) is not retried: the sink shows as
    failed with the reason, its cursor kept, and the other sinks are untouched."""

    class Buggy(RecordingSink):
        async def write(self, batch: Batch) -> None:
            raise KeyError("x" * 1000)

    buggy, other = Buggy("buggy", needs_events=False), RecordingSink("other")
    rig = await Rig(tmp_path, [buggy, other]).start()
    follower = rig.followers[0]
    await rig.publish([quote(1)])
    await wait_until(lambda: follower.state == "failed")
    assert follower.error is not None
    assert follower.error.startswith("KeyError: 'xxx")
    assert len(follower.error) <= 240
    await rig.publish([quote(2)])
    await other.wait_events(2)
    assert follower.cursor == 0
    assert await rig.close() == {"buggy": 2}


async def test_a_damaged_record_is_a_gap_and_an_error_for_the_sink_and_the_rest_arrives(
    tmp_path: Path,
) -> None:
    """A record whose checksum fails is skipped with a status.gap and a status.error."""
    rig = await Rig(tmp_path, [RecordingSink("a")]).start()
    await rig.close()  # "a" now has a cursor at 0 in the state dir
    rig = await Rig(tmp_path, []).start()  # a run without "a": its cursor stays on record
    for n in range(3):
        await rig.publish([quote(2 * n), quote(2 * n + 1)])
    seg = rig.journal.segments[-1].path
    await rig.close(1)
    data = bytearray(seg.read_bytes())
    data[len(data) // 2] ^= 0x20  # inside the second record's lines
    seg.write_bytes(bytes(data))
    sink = RecordingSink("a")
    rig = await Rig(tmp_path, [sink]).start()
    await wait_until(lambda: rig.followers[0].cursor == 6)
    kinds = [event_type(e) for e in sink.events()]
    assert kinds == ["quote.updated"] * 2 + ["status.gap", "status.error"] + ["quote.updated"] * 2
    gap = sink.events()[2]
    assert isinstance(gap, StatusGap)
    assert (gap.data.first_missing, gap.data.last_missing, gap.data.reason) == (3, 4, "corrupt")
    assert rig.followers[0].corrupt == 1
    assert await rig.close() == {}


async def test_a_sink_failing_retryably_catches_up_and_the_other_keeps_pace(
    tmp_path: Path,
) -> None:
    """While one sink retries, the other gets every event; the first then catches up."""
    flaky, steady = RecordingSink("flaky", needs_events=False), RecordingSink("steady")
    flaky.fail_next = [RetryableSinkError("receiver down")] * 5
    rig = Rig(tmp_path, [flaky, steady])
    await rig.start()
    rig.followers[0]._backoff = Backoff(base=0.01, cap=0.05)
    for n in range(500):
        await asyncio.wait_for(rig.publish([quote(n)]), 1)
    await steady.wait_events(500)
    await flaky.wait_events(500)
    assert seqs(flaky) == list(range(1, 501))
    assert rig.followers[0].retries == 5
    assert await rig.close() == {}
