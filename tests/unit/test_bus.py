"""The bus and its followers: sequencing, encode-once, filters, writes as large as the sink
takes, acknowledged cursors, retries and drain."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import msgspec
import pytest

from tests.unit.deliverykit import RecordingSink, Rig, fill, ids, quote, seqs, wait_until
from tradebus.config import StdoutSinkConfig
from tradebus.errors import FatalSinkError, RetryableSinkError
from tradebus.journal.store import Journal
from tradebus.schemas.events import Event, event_type


async def test_seq_is_strictly_increasing_across_batches_sources_and_restarts(
    tmp_path: Path,
) -> None:
    """seq counts up by one per event, across publishers and across a restart."""
    sink = RecordingSink("a")
    rig = await Rig(tmp_path, [sink]).start()
    await rig.publish([quote(1), quote(2)])
    await rig.publish([quote(1, source="s2")])
    await rig.publish([])
    assert await rig.close() == {}
    assert rig.bus.published == 3
    again = RecordingSink("a")
    rig = await Rig(tmp_path, [again]).start()
    await rig.publish([quote(3)])
    assert await rig.close() == {}
    assert seqs(sink) + seqs(again) == [1, 2, 3, 4]
    assert rig.bus.last_seq == 4


async def test_every_line_decodes_back_to_the_same_event(tmp_path: Path) -> None:
    """Each JSONL line is one Event a consumer decodes with msgspec.json.decode(type=Event)."""
    sink = RecordingSink("a")
    rig = await Rig(tmp_path, [sink]).start()
    events = [quote(1), fill(2)]
    await rig.publish(events)
    await rig.close()
    decoded = [msgspec.json.decode(line, type=Event) for line in sink.lines()]
    assert decoded == events
    assert [event_type(e) for e in decoded] == ["quote.updated", "order.filled"]


async def test_a_sink_gets_the_journals_bytes_as_they_were_encoded(tmp_path: Path) -> None:
    """Encoded once: what an unfiltered sink writes is the journal record's payload itself."""
    sink = RecordingSink("a", needs_events=False)
    rig = await Rig(tmp_path, [sink]).start()
    await rig.publish([quote(1), quote(2)])
    await rig.close()
    journal, _ = Journal.open(tmp_path, segment_bytes=1 << 20)
    (record,) = journal.tail(1 << 20)
    journal.close()
    assert [b.data for b in sink.batches] == [record.payload]


@pytest.mark.parametrize("needs_events", [True, False])
async def test_structs_are_decoded_only_for_a_sink_that_reads_them(
    tmp_path: Path, needs_events: bool
) -> None:
    """A follower hands the lines; the Event structs too only when its sink needs_events."""
    sink = RecordingSink("a", needs_events=needs_events)
    rig = await Rig(tmp_path, [sink]).start()
    events = [quote(1), fill(2), quote(3)]
    await rig.publish(events)
    await rig.close()
    assert [msgspec.json.decode(x, type=Event) for x in sink.lines()] == events
    assert sink.events() == (events if needs_events else [])


@pytest.mark.parametrize("needs_events", [True, False])
@pytest.mark.parametrize(
    ("config", "expected_ids"),
    [
        ({"providers": ["traderws"]}, ["s1:f2"]),
        ({"types": ["quote."]}, ["s1:1", "s2:3"]),
        ({"types": ["order", "status"]}, ["s1:f2"]),
        ({"sources": ["s2"]}, ["s2:3"]),
        ({"symbols": ["GBPUSD"]}, ["s1:f2"]),
        ({"sources": ["s1"], "types": ["quote."]}, ["s1:1"]),
        ({"symbols": ["XAUUSD"]}, []),
    ],
)
async def test_filters_select_events_and_their_lines(
    tmp_path: Path, config: dict[str, list[str]], expected_ids: list[str], needs_events: bool
) -> None:
    """Per-sink filters by provider, type prefix, source and symbol keep matching lines only,
    and the cursor moves past the whole stretch."""
    sink = RecordingSink("f", needs_events=needs_events)
    rig = Rig(tmp_path, [sink], [StdoutSinkConfig(name="f", **config)])  # type: ignore[arg-type]
    await rig.start()
    await rig.publish([quote(1), fill(2), quote(3, source="s2")])
    assert await rig.close() == {}
    assert ids(sink) == expected_ids
    assert [e.id for e in sink.events()] == (expected_ids if needs_events else [])
    assert rig.followers[0].cursor == 3


async def test_publish_never_waits_for_a_held_sink_and_the_other_keeps_pace(
    tmp_path: Path,
) -> None:
    """While one sink's write is stuck, publish returns and the other sink gets every batch."""
    gate = asyncio.Event()
    slow, fast = RecordingSink("slow", gate), RecordingSink("fast")
    rig = await Rig(tmp_path, [slow, fast]).start()
    for n in range(500):
        await asyncio.wait_for(rig.publish([quote(n)]), 1)
    await fast.wait_events(500)
    assert slow.batches == []
    gate.set()
    assert await rig.close() == {}
    assert seqs(slow) == list(range(1, 501))


async def test_a_sink_behind_writes_what_accumulated_in_few_merged_writes(tmp_path: Path) -> None:
    """Falling behind makes writes larger, not more: one merged write per step, order kept."""
    gate = asyncio.Event()
    sink = RecordingSink("m", gate, needs_events=False)
    rig = await Rig(tmp_path, [sink]).start()
    await rig.publish([quote(0)])
    await asyncio.wait_for(sink.entered.wait(), 5)
    for n in range(1, 1001):
        await rig.publish([quote(n)])
    gate.set()
    await rig.close()
    assert seqs(sink) == list(range(1, 1002))
    assert [len(b) for b in sink.batches] == [1, 1000]


async def test_writes_hold_at_most_max_batch_events_and_the_cursor_moves_with_each(
    tmp_path: Path,
) -> None:
    """A sink that sends one request per write (max_batch) is never given more, and each
    acknowledged write moves its cursor: a stop in the middle resends none of them."""
    gate = asyncio.Event()
    sink = RecordingSink("hook", gate, needs_events=False, max_batch=3)
    rig = await Rig(tmp_path, [sink]).start()
    for n in range(0, 20, 5):
        await rig.publish([quote(n + k) for k in range(5)])
    follower = rig.followers[0]
    await asyncio.wait_for(sink.entered.wait(), 5)  # the first write is held
    cursors = [follower.cursor]
    for _ in range(6):
        sink.entered.clear()
        gate.set()
        gate.clear()
        await asyncio.wait_for(sink.entered.wait(), 5)  # the next write began: one acknowledged
        cursors.append(follower.cursor)
    assert cursors == [0, 3, 6, 9, 12, 15, 18]
    gate.set()
    assert await rig.close() == {}
    assert all(len(b) <= 3 for b in sink.batches)
    assert seqs(sink) == list(range(1, 21))


@pytest.mark.parametrize(("linger", "sizes"), [(0.0, [1, 2]), (0.5, [3])])
async def test_a_sink_that_lingers_gets_a_fuller_batch(
    tmp_path: Path, linger: float, sizes: list[int]
) -> None:
    """A sink's declared ``linger`` holds a short write at the tail until its batch fills (or
    the linger ends); without one the first event goes alone while the writer is held."""
    gate = asyncio.Event()
    sink = RecordingSink("hook", gate, needs_events=False, max_batch=3)
    sink.linger = linger
    rig = await Rig(tmp_path, [sink]).start()
    await rig.publish([quote(1)])
    if not linger:
        await asyncio.wait_for(sink.entered.wait(), 5)  # the lone event's write began
    await rig.publish([quote(2), quote(3)])
    gate.set()
    assert await rig.close() == {}
    assert [len(b) for b in sink.batches] == sizes


async def test_a_filtered_sink_with_max_batch_acknowledges_the_whole_stretch(
    tmp_path: Path,
) -> None:
    """Split writes of a filtered stretch cover every seq of it, filtered-out tail included."""
    sink = RecordingSink("q", needs_events=False, max_batch=2)
    config = StdoutSinkConfig(name="q", types=["quote."])
    rig = await Rig(tmp_path, [sink], [config]).start()
    await rig.publish([quote(1), fill(2), quote(3), quote(4), fill(5), fill(6)])
    assert await rig.close() == {}
    assert ids(sink) == ["s1:1", "s1:3", "s1:4"]
    assert all(len(b) <= 2 for b in sink.batches)
    assert rig.followers[0].cursor == 6
    spans = [(b.first_seq, b.last_seq) for b in sink.batches]
    assert spans[0][0] == 1
    assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(spans))


async def test_retryable_error_retries_the_same_batch(tmp_path: Path) -> None:
    """A RetryableSinkError makes the follower write the same batch again."""
    sink = RecordingSink("r")
    sink.fail_next = [RetryableSinkError("disk busy")]
    rig = await Rig(tmp_path, [sink]).start()
    await rig.publish([quote(1), quote(2)])
    assert await rig.close(10) == {}
    assert sink.attempts == 2
    assert ids(sink) == ["s1:1", "s1:2"]
    assert rig.followers[0].retries == 1
    assert rig.followers[0].error is None
    assert rig.followers[0].last_error == "disk busy"


async def test_fatal_sink_stops_without_blocking_the_others(tmp_path: Path) -> None:
    """A FatalSinkError retires that sink (its cursor stays); the other sinks carry on."""
    dead, alive = RecordingSink("dead"), RecordingSink("alive")
    dead.fail_next = [FatalSinkError("gone")]
    rig = await Rig(tmp_path, [dead, alive]).start()
    for n in range(10):
        await asyncio.wait_for(rig.publish([quote(n)]), 5)
    await alive.wait_events(10)
    await wait_until(lambda: rig.followers[0].failed)
    assert await rig.close() == {"dead": 10}
    snap = rig.followers[0].snapshot()
    assert (snap.state, snap.failed, snap.error, snap.cursor) == ("failed", True, "gone", 0)
    assert dead.batches == []


async def test_drain_writes_everything_then_closes_sinks(tmp_path: Path) -> None:
    """drain returns after every journaled event was written, and closes every sink."""
    sink = RecordingSink("d")
    rig = await Rig(tmp_path, [sink]).start()
    for n in range(100):
        await rig.publish([quote(n)])
    assert await rig.close() == {}
    assert len(sink.lines()) == 100
    assert sink.closed
    await rig.publish([quote(101)])  # after close: ignored, not an error
    assert len(sink.lines()) == 100


async def test_drain_gives_up_after_its_timeout_and_says_what_is_left(tmp_path: Path) -> None:
    """A sink that cannot write in time is left behind, counted, and closed all the same."""
    sink = RecordingSink("stuck", asyncio.Event())
    rig = await Rig(tmp_path, [sink]).start()
    await rig.publish([quote(1), quote(2)])
    assert await rig.close(0.05) == {"stuck": 2}
    assert sink.closed
