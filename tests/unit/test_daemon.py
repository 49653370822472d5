"""The daemon's supervision: an adapter that dies of a bug is restarted; the others go on."""

from __future__ import annotations

import asyncio
import os
from functools import partial
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from tradebus import config
from tradebus.adapters.base import SourceContext
from tradebus.daemon.app import Daemon
from tradebus.schemas.events import Event, QuoteData, QuoteUpdated, event_type
from tradebus.sinks import base as sink_base
from tradebus.sinks.base import Batch, SinkContext

T = "2026-06-09T14:32:01.123Z"


class Sink(sink_base.Sink):
    needs_events = True
    max_batch = 0

    def __init__(self) -> None:
        self.name = "mem"
        self.events: list[Event] = []
        self.changed = asyncio.Condition()

    async def open(self, ctx: SinkContext) -> None:
        pass

    async def write(self, batch: Batch) -> None:
        async with self.changed:
            self.events.extend(batch.events)
            self.changed.notify_all()

    async def close(self) -> None:
        pass

    def reopen(self) -> None:
        pass

    async def wait_for(self, types: list[str]) -> None:
        async with self.changed:
            await asyncio.wait_for(
                self.changed.wait_for(lambda: [event_type(e) for e in self.events] == types), 10
            )


def one_source(state: Path) -> config.Config:
    """One TTMT source (its adapter replaced by a fake) and one sink."""
    return config.parse(
        {
            "daemon": {"state_dir": str(state)},
            "sources": [
                {"name": "t", "type": "ttmt", "url": "http://127.0.0.1:1/s", "api_key": "k"}
            ],
            "sinks": [{"name": "mem", "type": "stdout"}],
        },
        env={},
    )


class CrashOnce:
    """Raises a bug on its first run, then publishes one quote and idles."""

    runs = 0

    def __init__(self, cfg: Any, ctx: SourceContext) -> None:
        self.name = cfg.name
        self.ctx = ctx

    async def run(self) -> None:
        CrashOnce.runs += 1
        if CrashOnce.runs == 1:
            raise KeyError("a bug")
        await self.ctx.publish(
            [
                QuoteUpdated(
                    id=f"{self.name}:q",
                    source=self.name,
                    provider="ttmt",
                    time=T,
                    received=T,
                    data=QuoteData(bid=1.0),
                )
            ]
        )
        await asyncio.Event().wait()


async def test_crashed_adapter_is_reported_and_restarted(tmp_path: Path) -> None:
    """A bug in an adapter gives one status.error and a restart; the daemon keeps running."""
    cfg = one_source(tmp_path)
    sink = Sink()
    daemon = Daemon(cfg, sinks=[sink], factories={"ttmt": CrashOnce})
    stop = asyncio.Event()
    running = asyncio.create_task(daemon.run(stop))
    await sink.wait_for(["status.error", "quote.updated"])
    stop.set()
    assert await running
    error = sink.events[0]
    assert error.data.reason == "adapter_crashed"  # type: ignore[union-attr]
    assert error.data.message == "KeyError"  # type: ignore[union-attr]
    assert daemon.contexts["t"].counters["adapter_crashed"] == 1


class CrashOnStop:
    """Idles until cancelled; the first run then fails with a bug while stopping."""

    runs = 0

    def __init__(self, cfg: Any, ctx: SourceContext) -> None:
        self.name = cfg.name
        self.started = asyncio.Event()

    async def run(self) -> None:
        CrashOnStop.runs += 1
        self.started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            if CrashOnStop.runs == 1:  # a wrongly restarted run stops cleanly: no hung test
                raise ValueError("a bug in cleanup") from None
            raise


async def test_adapter_failing_while_stopped_is_not_restarted(tmp_path: Path) -> None:
    """A bug raised during cancellation ends the source: stop completes, no second run."""
    cfg = one_source(tmp_path)
    adapters: list[CrashOnStop] = []

    def factory(source: Any, ctx: SourceContext) -> CrashOnStop:
        adapters.append(CrashOnStop(source, ctx))
        return adapters[-1]

    daemon = Daemon(cfg, sinks=[Sink()], factories={"ttmt": factory})
    stop = asyncio.Event()
    running = asyncio.create_task(daemon.run(stop))
    await asyncio.wait_for(daemon.ready.wait(), 5)
    await asyncio.wait_for(adapters[0].started.wait(), 5)
    stop.set()
    assert await asyncio.wait_for(running, 5)
    assert CrashOnStop.runs == 1


class CrashLoop:
    """Dies of a bug on every run; runs ``stable_runs`` (by number) last long before dying."""

    def __init__(self, cfg: Any, ctx: SourceContext, stable_runs: set[int], hold: float) -> None:
        self.name = cfg.name
        self.runs = 0
        self.stable_runs = stable_runs
        self.hold = hold

    async def run(self) -> None:
        self.runs += 1
        if self.runs in self.stable_runs:
            await asyncio.sleep(self.hold)  # the behaviour under test: a run that lasts a while
        raise KeyError("a bug")


def _at_least(sink: Sink, n: int) -> bool:
    return len(sink.events) >= n


async def test_a_crash_loop_backs_off_and_a_stable_run_resets_the_escalation(
    tmp_path: Path,
) -> None:
    """Each crash escalates the restart delay (never below a floor); a long run resets it."""
    cfg = one_source(tmp_path)
    sink = Sink()
    adapters: list[CrashLoop] = []

    def factory(source: Any, ctx: SourceContext) -> CrashLoop:
        adapters.append(CrashLoop(source, ctx, stable_runs={4}, hold=0.8))
        return adapters[-1]

    daemon = Daemon(cfg, sinks=[sink], factories={"ttmt": factory})
    # Delays of at least 0.05 s: the test reads the count well before the next crash.
    daemon.restart_base = 0.1
    daemon.restart_cap = 0.4
    daemon.restart_stable_after = 0.5
    stop = asyncio.Event()
    running = asyncio.create_task(daemon.run(stop))
    attempts: list[int] = []
    async with sink.changed:
        for n in range(1, 6):
            await asyncio.wait_for(sink.changed.wait_for(partial(_at_least, sink, n)), 10)
            attempts.append(daemon.restart_backoffs["t"].attempts)
    stop.set()
    assert await running
    # Crashes 1-3 escalate; run 4 lasted past stable_after, so crash 4 starts again at 1.
    assert attempts == [1, 2, 3, 1, 2]
    delays = [e.data.retry_in for e in sink.events[:5]]  # type: ignore[union-attr]
    assert all(d is not None and 0.05 <= d <= 0.4 for d in delays), delays
    assert daemon.contexts["t"].counters["adapter_crashed"] >= 5


class Quiet:
    """Connects to nothing and counts nothing: its source must still be in the stop report."""

    def __init__(self, cfg: Any, ctx: SourceContext) -> None:
        self.name = cfg.name
        self.ctx = ctx
        self.counted = asyncio.Event()

    async def run(self) -> None:
        if self.name == "busy":
            self.ctx.bad_input("malformed", b"{")
        self.counted.set()
        await asyncio.Event().wait()


async def test_daemon_stopped_reports_the_counters_of_every_source(tmp_path: Path) -> None:
    """daemon_stopped lists each source's counters, an empty set included, whatever its type."""
    cfg = config.parse(
        {
            "daemon": {"state_dir": str(tmp_path)},
            "sources": [
                {"name": "busy", "type": "ttmt", "url": "http://127.0.0.1:1/s", "api_key": "k"},
                {"name": "idle", "type": "tpalerts", "url": "http://127.0.0.1:1/a", "token": "t"},
            ],
            "sinks": [{"name": "mem", "type": "stdout"}],
        },
        env={},
    )
    daemon = Daemon(cfg, sinks=[Sink()], factories={"ttmt": Quiet, "tpalerts": Quiet})
    stop = asyncio.Event()
    with capture_logs() as logs:
        task = asyncio.create_task(daemon.run(stop))
        await asyncio.wait_for(daemon.ready.wait(), 5)
        for adapter in daemon.adapters:
            await asyncio.wait_for(adapter.counted.wait(), 5)  # type: ignore[attr-defined]
        stop.set()
        await task
    (stopped,) = [e for e in logs if e["event"] == "daemon_stopped"]
    assert stopped["counters"] == {"busy": {"bad.malformed": 1}, "idle": {}}


async def test_a_torn_journal_tail_is_cut_and_logged_once_with_its_offset(
    tmp_path: Path,
) -> None:
    from structlog.testing import capture_logs

    from tradebus.journal.store import Journal

    journal, _ = Journal.open(tmp_path)
    journal.append([b'{"x":1}\n'], 1, 1)
    journal.append([b'{"x":2}\n'], 1, 1)
    whole = journal.segments[-1].size
    seg = journal.segments[-1].path
    journal.close()
    os.truncate(seg, whole - 5)  # SIGKILL in the middle of the second record
    with capture_logs() as logs:
        daemon = Daemon(one_source(tmp_path), sinks=[Sink()], factories={"ttmt": CrashOnce})
    cut = [e for e in logs if e["event"] == "journal_torn_tail_cut"]
    assert len(cut) == 1
    assert cut[0]["offset"] == whole // 2
    assert daemon.bus.last_seq == 1
    assert daemon.bus.journal is not None
    daemon.bus.journal.close()
