"""What the bus and delivery tests share: events, a recording sink, a journal with followers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec

from tradebus.bus import Bus
from tradebus.config import SinkConfig, StdoutSinkConfig
from tradebus.delivery.core import Delivery
from tradebus.delivery.follower import Follower
from tradebus.journal import cursors
from tradebus.journal.store import Journal
from tradebus.schemas.events import (
    Event,
    OrderData,
    OrderFilled,
    Provider,
    QuoteData,
    QuoteUpdated,
)
from tradebus.sinks.base import Batch, Sink, SinkContext

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


class RecordingSink(Sink):
    """A sink that keeps what it was given; ``gate`` (when set) holds writes back."""

    def __init__(
        self,
        name: str,
        gate: asyncio.Event | None = None,
        *,
        needs_events: bool = True,
        max_batch: int = 0,
    ) -> None:
        self.name = name
        self.needs_events = needs_events
        self.max_batch = max_batch
        self.batches: list[Batch] = []
        self.gate = gate
        self.fail_next: list[Exception] = []
        self.closed = False
        self.attempts = 0
        self.context: SinkContext | None = None
        self.entered = asyncio.Event()  # a write began
        self.written = asyncio.Condition()

    async def open(self, ctx: SinkContext) -> None:
        self.context = ctx

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

    async def wait_events(self, n: int, timeout: float = 5) -> None:
        async with self.written:
            await asyncio.wait_for(self.written.wait_for(lambda: len(self.lines()) >= n), timeout)

    async def close(self) -> None:
        self.closed = True

    def reopen(self) -> None:
        pass

    def lines(self) -> list[bytes]:
        return [line for b in self.batches for line in b.data.splitlines()]

    def events(self) -> list[Event]:
        return [e for b in self.batches for e in b.events]


def seqs(sink: RecordingSink) -> list[int]:
    return [msgspec.json.decode(line)["seq"] for line in sink.lines()]


def ids(sink: RecordingSink) -> list[str]:
    return [msgspec.json.decode(line)["id"] for line in sink.lines()]


async def wait_until(cond: Callable[[], bool], timeout: float = 10) -> None:
    """Poll a condition that no event signals (a cursor moved by a batch the filter emptied)."""

    async def poll() -> None:
        while not cond():  # noqa: ASYNC110 - nothing to await: followers set plain attributes
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), timeout)


class Rig:
    """A journal in ``state``, a bus appending to it and inline delivery following it: the
    daemon without its sources."""

    def __init__(
        self,
        state: Path,
        sinks: Sequence[RecordingSink | Any],
        configs: Sequence[SinkConfig] | None = None,
        *,
        segment_bytes: int = 1 << 20,
        **bus: Any,
    ) -> None:
        saved, _ = cursors.load(state)
        floor = max((e.seq for e in saved.values()), default=0) + 1
        self.journal, _ = Journal.open(state, segment_bytes=segment_bytes, min_next_seq=floor)
        self.configs = list(configs or [StdoutSinkConfig(name=s.name) for s in sinks])
        self.delivery = Delivery(state, list(sinks), self.configs, durable=False)
        self.bus = Bus(
            self.journal,
            on_append=self.delivery.advance,
            cursors=lambda: {f.name: f.cursor for f in self.delivery.followers},
            **bus,
        )

    @property
    def followers(self) -> list[Follower]:
        return self.delivery.followers

    async def start(self) -> Rig:
        await self.bus.start()
        self.delivery.start(self.bus.watermark())
        return self

    async def publish(self, events: Sequence[Event]) -> None:
        await self.bus.publish(events)

    async def close(self, timeout: float = 5) -> dict[str, int]:
        """Drain delivery (what each sink had left), then close the journal."""
        self.delivery.advance(self.bus.watermark())
        left = await self.delivery.drain(timeout)
        await self.bus.close()
        return left
