"""The bus: one ordered stream. It numbers events, encodes them once, and fans batches out.

Each sink sits behind its own bounded queue and worker task, so sinks write at their own pace;
when a queue is full, ``publish`` waits for room rather than dropping (nothing is lost; the
journal of a later release lets a stalled sink fall behind without holding the others up).
Per source, order is kept in every sink: ``publish`` numbers a batch and enqueues it for every
sink before it returns, and every queue is FIFO.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

import msgspec

from tradebus import log
from tradebus.backoff import Backoff, Failure, Kind
from tradebus.config import SinkBase
from tradebus.errors import FatalSinkError, RetryableSinkError
from tradebus.schemas.events import Event, event_type
from tradebus.sinks.base import Batch, Sink

_set_seq = msgspec.structs.force_setattr
# A worker merges what is queued into one write, up to this many events: fewer syscalls under
# load, no waiting at all when idle. Past about a thousand (half a megabyte) a bigger write
# saves no CPU and only raises the peak RSS: each merge copies its lines into one buffer.
MERGE_LIMIT = 1024


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


class SinkWorker:
    """One sink's queue and the task that drains it into ``sink.write``."""

    def __init__(self, sink: Sink, config: SinkBase) -> None:
        self.sink = sink
        self.name = config.name
        self.filter = EventFilter(config)
        self.queue: asyncio.Queue[Batch | None] = asyncio.Queue(config.queue_size)
        self.written = 0
        self.failed = False
        self._log: Any = log.get(sink=config.name)
        self._backoff = Backoff(base=0.1, cap=10.0)

    async def put(self, batch: Batch) -> None:
        if self.failed:
            return
        if self.filter:
            keep = [self.filter(e) for e in batch.events]
            if not all(keep):
                if not any(keep):
                    return
                batch = batch.subset(keep)
        await self.queue.put(batch)

    async def run(self) -> None:
        """Write batches until the ``None`` sentinel that ``Bus.close`` enqueues."""
        done = False
        while not done:
            first = await self.queue.get()
            if first is None:
                return
            batches = [first]
            count = len(first)
            while count < MERGE_LIMIT and not self.queue.empty():
                more = self.queue.get_nowait()
                if more is None:
                    done = True
                    break
                batches.append(more)
                count += len(more)
            await self._write(Batch.merge(batches))
            if self.failed:
                return

    async def _write(self, batch: Batch) -> None:
        while not self.failed:
            try:
                await self.sink.write(batch)
            except RetryableSinkError as exc:
                delay = self._backoff.delay(Failure(Kind.RETRYABLE, "sink_error"))
                self._log.warning("sink_retry", error=str(exc), retry_in=round(delay, 3))
                await asyncio.sleep(delay)
            except FatalSinkError as exc:
                # This sink can never write again: stop feeding it rather than block the others.
                self.failed = True
                self._log.error("sink_failed", error=str(exc))
                with contextlib.suppress(asyncio.QueueEmpty):
                    while True:
                        self.queue.get_nowait()
            else:
                self._backoff.reset()
                self.written += len(batch)
                return


class Bus:
    """Sequencing, encode-once and fan-out to every sink's worker."""

    def __init__(self, workers: Sequence[SinkWorker], *, first_seq: int = 1) -> None:
        self.workers = list(workers)
        self.published = 0
        self._next_seq = first_seq
        self._encoder = msgspec.json.Encoder()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    @property
    def last_seq(self) -> int:
        return self._next_seq - 1

    async def start(self) -> None:
        for worker in self.workers:
            await worker.sink.open()
            self._tasks.append(asyncio.create_task(worker.run(), name=f"sink:{worker.name}"))

    async def publish(self, events: Sequence[Event]) -> None:
        """Number ``events``, encode them once, and hand the batch to every sink's queue."""
        if not events or self._closed:
            return
        seq = self._next_seq
        for event in events:
            _set_seq(event, "seq", seq)
            seq += 1
        self._next_seq = seq
        self.published += len(events)
        batch = Batch(events, self._encoder.encode_lines(events))
        for worker in self.workers:
            await worker.put(batch)

    def reopen(self) -> None:
        for worker in self.workers:
            worker.sink.reopen()

    async def close(self, timeout: float) -> bool:
        """Let every sink write what it was given, then close them; False if ``timeout`` hit."""
        self._closed = True
        for worker in self.workers:
            if not worker.failed:
                await worker.queue.put(None)
        drained = True
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=timeout)
            for task in pending:
                drained = False
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for worker in self.workers:
            await worker.sink.close()
        return drained
