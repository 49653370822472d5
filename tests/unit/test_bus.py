"""The bus: sequencing, encode-once, filters, per-sink queues, retries and drain on close."""

from __future__ import annotations

import asyncio
import itertools

import msgspec
import pytest

from tradebus.bus import Bus, SinkWorker
from tradebus.config import StdoutSinkConfig
from tradebus.errors import FatalSinkError, RetryableSinkError
from tradebus.schemas.events import (
    Event,
    OrderData,
    OrderFilled,
    Provider,
    QuoteData,
    QuoteUpdated,
    event_type,
)
from tradebus.sinks.base import Batch, SinkContext

T = "2026-06-09T14:32:01.123Z"


def quote(
    n: int, *, source: str = "s1", provider: Provider = "ttmt", symbol: str = "EURUSD"
) -> Event:
    return QuoteUpdated(
        id=f"{source}:{n}",
        source=source,
        provider=provider,
        time=T,
        received=T,
        symbol=symbol,
        data=QuoteData(bid=1.0 + n / 1000, ask=1.1),
    )


def fill(n: int, *, source: str = "s1") -> Event:
    return OrderFilled(
        id=f"{source}:f{n}",
        source=source,
        provider="traderws",
        time=T,
        received=T,
        symbol="GBPUSD",
        data=OrderData(order_id=f"o{n}", volume=0.5, price=1.25),
    )


class RecordingSink:
    """A sink that keeps what it was given; ``gate`` (when set) holds writes back."""

    def __init__(
        self, name: str, gate: asyncio.Event | None = None, *, needs_events: bool = True
    ) -> None:
        self.name = name
        self.needs_events = needs_events
        self.batches: list[Batch] = []
        self.gate = gate
        self.fail_next: list[Exception] = []
        self.closed = False
        self.attempts = 0
        self.entered = asyncio.Event()  # a write began
        self.written = asyncio.Condition()

    async def open(self, ctx: SinkContext) -> None:
        pass

    async def write(self, batch: Batch) -> None:
        self.attempts += 1
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_next:
            raise self.fail_next.pop(0)
        async with self.written:
            self.batches.append(batch)
            self.written.notify_all()

    async def wait_events(self, n: int) -> None:
        async with self.written:
            await asyncio.wait_for(self.written.wait_for(lambda: len(self.events()) >= n), 5)

    async def close(self) -> None:
        self.closed = True

    def reopen(self) -> None:
        pass

    def lines(self) -> list[bytes]:
        return [line for b in self.batches for line in b.data.splitlines()]

    def events(self) -> list[Event]:
        return [e for b in self.batches for e in b.events]


def worker(sink: RecordingSink, **config: object) -> SinkWorker:
    return SinkWorker(sink, StdoutSinkConfig(name=sink.name, **config))  # type: ignore[arg-type]


async def test_seq_is_strictly_increasing_across_batches_and_sources() -> None:
    """seq counts up by one per event, across publishers, starting at first_seq."""
    sink = RecordingSink("a")
    bus = Bus([worker(sink)], first_seq=7)
    await bus.start()
    await bus.publish([quote(1), quote(2)])
    await bus.publish([quote(1, source="s2")])
    await bus.publish([])
    assert await bus.close(5)
    assert [e.seq for e in sink.events()] == [7, 8, 9]
    assert bus.last_seq == 9
    assert bus.published == 3


async def test_every_line_decodes_back_to_the_same_event() -> None:
    """Each JSONL line is one Event a consumer decodes with msgspec.json.decode(type=Event)."""
    sink = RecordingSink("a")
    bus = Bus([worker(sink)])
    await bus.start()
    events = [quote(1), fill(2)]
    await bus.publish(events)
    await bus.close(5)
    decoded = [msgspec.json.decode(line, type=Event) for line in sink.lines()]
    assert decoded == events
    assert [event_type(e) for e in decoded] == ["quote.updated", "order.filled"]


async def test_unfiltered_sinks_share_the_same_encoded_bytes() -> None:
    """Events are encoded once: two sinks without filters get the very same bytes object."""
    a, b = RecordingSink("a"), RecordingSink("b")
    bus = Bus([worker(a), worker(b)])
    await bus.start()
    await bus.publish([quote(1), quote(2)])
    await bus.close(5)
    assert a.batches[0].data is b.batches[0].data


@pytest.mark.parametrize("readers", [0, 1])
async def test_batches_carry_the_structs_only_if_a_sink_reads_them(readers: int) -> None:
    """Queued batches hold the lines; the Event structs too only when a sink needs_events."""
    a = RecordingSink("a", needs_events=readers > 0)
    b = RecordingSink("b", needs_events=False)
    bus = Bus([worker(a), worker(b)])
    await bus.start()
    events = [quote(1), fill(2), quote(3)]
    await bus.publish(events)
    await bus.close(5)
    for sink in (a, b):
        assert [len(x) for x in sink.batches] == [3]
        assert [msgspec.json.decode(x, type=Event) for x in sink.lines()] == events
        assert sink.events() == (events if readers else [])


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
    config: dict[str, list[str]], expected_ids: list[str], needs_events: bool
) -> None:
    """Per-sink filters by provider, type prefix, source and symbol keep matching lines only
    (whether or not the batches carry the structs)."""
    sink = RecordingSink("f", needs_events=needs_events)
    bus = Bus([worker(sink, **config)])
    await bus.start()
    await bus.publish([quote(1), fill(2), quote(3, source="s2")])
    await bus.close(5)
    assert [msgspec.json.decode(x, type=Event).id for x in sink.lines()] == expected_ids
    assert sum(map(len, sink.batches)) == len(expected_ids)
    assert [e.id for e in sink.events()] == (expected_ids if needs_events else [])


async def test_a_held_sink_does_not_hold_back_another_sink() -> None:
    """While one sink's write is stuck, the other sink still receives every batch."""
    gate = asyncio.Event()
    slow, fast = RecordingSink("slow", gate), RecordingSink("fast")
    bus = Bus([worker(slow, queue_size=8), worker(fast)])
    await bus.start()
    for n in range(5):
        await bus.publish([quote(n)])
    await fast.wait_events(5)
    assert slow.batches == []
    gate.set()
    assert await bus.close(5)
    assert [e.id for e in slow.events()] == [f"s1:{n}" for n in range(5)]


async def test_full_queue_makes_publish_wait_instead_of_dropping() -> None:
    """A sink whose queue is full makes publish wait: no event is dropped."""
    gate = asyncio.Event()
    slow = RecordingSink("slow", gate)
    bus = Bus([worker(slow, queue_size=1)])
    await bus.start()
    await bus.publish([quote(0)])  # taken by the worker, stuck in write
    await asyncio.sleep(0)
    await bus.publish([quote(1)])  # fills the queue
    blocked = asyncio.create_task(bus.publish([quote(2)]))
    await asyncio.sleep(0.05)
    assert not blocked.done()
    gate.set()
    await asyncio.wait_for(blocked, 5)
    assert await bus.close(5)
    assert [e.id for e in slow.events()] == ["s1:0", "s1:1", "s1:2"]


async def held(queue_size: int) -> tuple[asyncio.Event, RecordingSink, SinkWorker, Bus]:
    """A started bus whose one sink is stuck writing ``quote(0)`` until the gate is set."""
    gate = asyncio.Event()
    sink = RecordingSink("held", gate)
    w = worker(sink, queue_size=queue_size)
    bus = Bus([w])
    await bus.start()
    await bus.publish([quote(0)])
    await asyncio.wait_for(sink.entered.wait(), 5)
    return gate, sink, w, bus


async def test_queue_is_bounded_in_events_not_batches() -> None:
    """Batches are admitted while fewer than queue_size events wait; then publish waits."""
    gate, slow, w, bus = await held(queue_size=10)
    for n in range(3):  # 4 + 4 events fit under 10; the third batch is admitted at 8
        await bus.publish([quote(10 * n + k) for k in range(1, 5)])
    assert w.queued == 12
    blocked = asyncio.create_task(bus.publish([quote(99)]))
    await asyncio.sleep(0)  # one turn: the task runs up to where it parks
    assert w.blocked == 1
    assert not blocked.done()
    gate.set()
    await asyncio.wait_for(blocked, 5)
    assert await bus.close(5)
    assert len(slow.events()) == 14
    assert [e.seq for e in slow.events()] == list(range(1, 15))


async def test_publishers_waiting_for_room_take_turns() -> None:
    """Under saturation sources are let in in turn: none is starved by a busier one."""
    gate, sink, _, bus = await held(queue_size=1)

    async def publisher(source: str) -> None:
        for n in range(1, 9):
            await bus.publish([quote(n, source=source)])

    tasks = [asyncio.create_task(publisher(s)) for s in ("a", "b", "c")]
    await asyncio.sleep(0)  # one turn: each publisher runs until it waits in line
    gate.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert await bus.close(5)
    order = [e.source for e in sink.events()]
    assert sorted(order) == ["a"] * 8 + ["b"] * 8 + ["c"] * 8 + ["s1"]
    longest = max(len(list(run)) for _, run in itertools.groupby(order[2:]))
    assert longest == 1, order


async def test_a_publisher_cancelled_in_line_ends_cancelled_and_the_line_moves_on() -> None:
    """Cancelled while waiting (even as its place is being skipped): CancelledError, no hang."""
    gate, sink, w, bus = await held(queue_size=1)
    await bus.publish([quote(1)])  # fills the queue
    first = asyncio.create_task(bus.publish([quote(2)]))
    second = asyncio.create_task(bus.publish([quote(3)]))
    await asyncio.sleep(0)  # one turn: both wait in line
    assert w.blocked == 2
    gate.set()  # the worker runs first: it frees room and skips the cancelled place
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.wait_for(second, 5)
    assert w.blocked == 0
    assert await bus.close(5)
    assert [e.id for e in sink.events()] == ["s1:0", "s1:1", "s1:3"]


async def test_a_batch_larger_than_the_bound_still_gets_in() -> None:
    """One batch bigger than queue_size is admitted into an empty queue: no deadlock."""
    sink = RecordingSink("big")
    bus = Bus([worker(sink, queue_size=3)])
    await bus.start()
    await asyncio.wait_for(bus.publish([quote(n) for n in range(50)]), 5)
    await asyncio.wait_for(bus.publish([quote(n) for n in range(50, 60)]), 5)
    assert await bus.close(5)
    assert [e.seq for e in sink.events()] == list(range(1, 61))


async def test_queued_batches_are_merged_into_one_write_in_order() -> None:
    """Batches queued behind a busy write go out as one merged write, order kept."""
    gate = asyncio.Event()
    sink = RecordingSink("m", gate)
    bus = Bus([worker(sink)])
    await bus.start()
    await bus.publish([quote(0)])
    await asyncio.sleep(0)
    for n in range(1, 4):
        await bus.publish([quote(n)])
    gate.set()
    await bus.close(5)
    assert [len(b) for b in sink.batches] == [1, 3]
    assert [e.seq for e in sink.events()] == [1, 2, 3, 4]


async def test_retryable_error_retries_the_same_batch() -> None:
    """A RetryableSinkError makes the worker write the same batch again."""
    sink = RecordingSink("r")
    sink.fail_next = [RetryableSinkError("disk busy")]
    bus = Bus([worker(sink)])
    await bus.start()
    await bus.publish([quote(1), quote(2)])
    assert await bus.close(10)
    assert sink.attempts == 2
    assert [e.id for e in sink.events()] == ["s1:1", "s1:2"]


async def test_fatal_sink_stops_without_blocking_the_others() -> None:
    """A FatalSinkError retires that sink; publishing and the other sinks carry on."""
    dead, alive = RecordingSink("dead"), RecordingSink("alive")
    dead.fail_next = [FatalSinkError("gone")]
    workers = [worker(dead, queue_size=1), worker(alive)]
    bus = Bus(workers)
    await bus.start()
    for n in range(10):
        await asyncio.wait_for(bus.publish([quote(n)]), 5)
    assert await bus.close(5)
    assert workers[0].failed
    assert dead.batches == []
    assert len(alive.events()) == 10


async def test_close_drains_everything_then_closes_sinks() -> None:
    """close() returns after every queued batch was written, and closes every sink."""
    sink = RecordingSink("d")
    bus = Bus([worker(sink)])
    await bus.start()
    for n in range(100):
        await bus.publish([quote(n)])
    assert await bus.close(5)
    assert len(sink.events()) == 100
    assert sink.closed
    await bus.publish([quote(101)])  # after close: ignored, not an error
    assert len(sink.events()) == 100


async def test_close_reports_a_sink_that_cannot_drain_in_time() -> None:
    """close() gives up after its timeout and says so."""
    sink = RecordingSink("stuck", asyncio.Event())
    bus = Bus([worker(sink)])
    await bus.start()
    await bus.publish([quote(1)])
    assert not await bus.close(0.05)
    assert sink.closed
