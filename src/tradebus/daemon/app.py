"""The daemon: sources → bus (journal) → sinks, stopped by a signal with nothing lost.

The state dir is opened first, before any upstream is contacted: a missing, unwritable or
locked one is a ``StateDirError`` (exit status 2). What the journal holds tells each adapter
where to resume (``SourceContext.history``).

Stop order matters: first the adapters (no new events), then the bus lets every sink write what
it was given, then the sinks close and the cursors are saved. SIGHUP re-opens the file sinks.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import signal
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import msgspec

from tradebus import log
from tradebus.adapters.base import Adapter, AdapterFactory, SourceContext, factory_for
from tradebus.adapters.live import LiveTransport
from tradebus.backoff import Backoff, Failure, Kind
from tradebus.bus import Bus, SinkWorker
from tradebus.config import Config, SinkConfig, SourceConfig, kind
from tradebus.daemon import systemd
from tradebus.daemon.state import snapshot, summary
from tradebus.journal import cursors
from tradebus.journal.store import Journal, check_state_dir
from tradebus.recording.recorder import for_source
from tradebus.schemas.events import Event, Provider
from tradebus.sinks.base import Sink
from tradebus.sinks.base import factory_for as sink_factory_for

if TYPE_CHECKING:
    from tradebus.daemon.ops import OpsServer


class Daemon:
    """One configured daemon. ``run`` returns when ``stop`` is set and every sink is drained."""

    def __init__(
        self,
        config: Config,
        *,
        sinks: Sequence[Sink] | None = None,
        factories: Mapping[str, AdapterFactory] | None = None,
    ) -> None:
        """``sinks`` and ``factories`` (by source ``type``) replace the built-ins when embedding."""
        self.config = config
        self._log: Any = log.get()
        self.state_dir = Path(config.daemon.state_dir)
        journal, history, saved = open_state(config, self._log)
        try:
            built = list(sinks) if sinks is not None else build_sinks(config.sinks, self.state_dir)
        except BaseException:
            journal.close()
            raise
        d = config.daemon
        self.bus = Bus(
            [SinkWorker(s, c) for s, c in zip(built, config.sinks, strict=True)],
            journal=journal,
            state_dir=self.state_dir,
            saved=saved,
            retention_bytes=d.retention_bytes,
            retention_age=d.retention_age,
        )
        # What sinks report of themselves (a dead letter) goes out as events of "tradebus".
        self.sink_reports = SourceContext("tradebus", "tradebus", self.bus.publish)
        self._report_tasks: set[asyncio.Task[None]] = set()
        self._last_report: dict[str, float] = {}
        for sink in built:
            if hasattr(sink, "on_dead_letter"):
                sink.on_dead_letter = self._dead_letter_reporter(sink.name)
        self.contexts: dict[str, SourceContext] = {}
        self.adapters: list[Adapter] = []
        for source in config.sources:
            if not source.enabled:
                continue
            provider = cast(Provider, kind(source))
            ctx = SourceContext(
                source.name,
                provider,
                self.bus.publish,
                history=history.events.get(source.name, ()),
                stopped_at=history.stopped_at,
                transport=LiveTransport(for_source(source, self.state_dir)),
            )
            self.contexts[source.name] = ctx
            factory = (factories or {}).get(provider) or factory_for(provider)
            self.adapters.append(factory(source, ctx))
        self.required = {s.name: s.required for s in config.sources if s.enabled}
        self.ready = asyncio.Event()
        # Restarts of an adapter that died of a bug: exponential, capped, reset after a run
        # that lasted ``restart_stable_after`` seconds.
        self.restart_base = 1.0
        self.restart_cap = 60.0
        self.restart_stable_after = 60.0
        self.restart_backoffs: dict[str, Backoff] = {}

    def _dead_letter_reporter(self, sink: str) -> Callable[[str], None]:
        """A ``status.error`` for a dead letter, at most one a minute per sink: the event goes
        to every sink, this one too, and a receiver that refuses everything would otherwise
        turn each report into the next dead letter."""

        def report(message: str) -> None:
            now = time.monotonic()
            if now - self._last_report.get(sink, -1e9) < DEAD_LETTER_REPORT_EVERY:
                self.sink_reports.counters[f"dead_letter_reports_skipped.{sink}"] += 1
                return
            self._last_report[sink] = now
            event = self.sink_reports.status(
                "status.error", reason="dead_letter", code=sink, message=message
            )
            # Published from its own task: the sink's write, which calls this, must not wait
            # on the bus it is draining.
            task = asyncio.get_running_loop().create_task(self.bus.publish([event]))
            self._report_tasks.add(task)
            task.add_done_callback(self._report_tasks.discard)

        return report

    def state(self) -> dict[str, Any]:
        """Per-source and per-sink state, and whether the daemon is ready (``/readyz``)."""
        return snapshot(self.contexts, self.required, self.bus.workers, now=time.time())

    async def run(self, stop: asyncio.Event) -> bool:
        """Run until ``stop``; True if every sink wrote everything it was given in time."""
        await self.bus.start()
        tasks = [
            asyncio.create_task(self._supervise(a), name=f"source:{a.name}") for a in self.adapters
        ]
        self._log.info(
            "daemon_started",
            sources=[a.name for a in self.adapters],
            sinks=[w.name for w in self.bus.workers],
        )
        self.ready.set()
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            # Recordings get their last frame written and synced (on threads: files).
            await asyncio.gather(
                *(asyncio.to_thread(c.transport.close) for c in self.contexts.values())
            )
            drained = await self.bus.close(self.config.daemon.drain_timeout)
            self._log.info(
                "daemon_stopped",
                published=self.bus.published,
                last_seq=self.bus.last_seq,
                written={w.name: w.written for w in self.bus.workers},
                drained=drained,
                counters={n: dict(c.counters) for n, c in self.contexts.items()},
            )
        return drained

    async def _supervise(self, adapter: Adapter) -> None:
        """Restart an adapter whose ``run`` died of a bug, after a backoff: the others go on."""
        backoff = Backoff(
            base=self.restart_base, cap=self.restart_cap, stable_after=self.restart_stable_after
        )
        self.restart_backoffs[adapter.name] = backoff
        ctx = self.contexts[adapter.name]
        loop = asyncio.get_running_loop()
        while True:
            backoff.connected(loop.time())
            try:
                await adapter.run()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # it died while being stopped: a restart would outlive the stop
                # A run that lasted ``restart_stable_after`` starts the escalation afresh; the
                # floor keeps a crash loop to two restarts a second at most (no CPU spin, no
                # log flood) where full jitter alone could draw a delay of zero.
                backoff.disconnected(loop.time())
                delay = backoff.delay(
                    Failure(Kind.RETRYABLE, "adapter_crashed"), floor=self.restart_base / 2
                )
                ctx.log.exception("adapter_crashed", retry_in=round(delay, 3))
                ctx.counters["adapter_crashed"] += 1
                await ctx.emit_status(
                    "status.error",
                    reason="adapter_crashed",
                    message=type(exc).__name__,
                    retry_in=delay,
                )
                await asyncio.sleep(delay)
            else:
                return


DEAD_LETTER_REPORT_EVERY = 60.0


def build_sinks(configs: Sequence[SinkConfig], state_dir: Path) -> list[Sink]:
    """The configured sinks; those that keep files of their own (dead letters) get the state
    dir."""
    built: list[Sink] = []
    for c in configs:
        factory = sink_factory_for(kind(c))
        wants = "state_dir" in inspect.signature(factory).parameters
        built.append(factory(c, state_dir=state_dir) if wants else factory(c))  # type: ignore[call-arg]
    return built


# What an adapter may look back on at start: enough for TTMT's dedupe set and the symbol caches.
HISTORY_EVENTS = 10_000
HISTORY_BYTES = 16 * 2**20


class History(msgspec.Struct):
    events: dict[str, list[Event]]
    stopped_at: float | None  # unix time of the journal's last record: when we were last alive


def open_state(config: Config, logger: Any) -> tuple[Journal, History, dict[str, Any]]:
    """Open the state dir: lock, cursors, journal (torn tail cut), and the journal's tail."""
    d = config.daemon
    state_dir = Path(d.state_dir)
    check_state_dir(state_dir)
    saved, problem = cursors.load(state_dir)
    if problem is not None:
        logger.error("cursors_unreadable", problem=problem)
    floor = max((e.seq for e in saved.values()), default=0) + 1
    journal, report = Journal.open(
        state_dir, segment_bytes=d.segment_bytes, fsync=d.fsync, min_next_seq=floor
    )
    if report.torn_offset is not None:
        logger.warning(
            "journal_torn_tail_cut", path=str(report.torn_path), offset=report.torn_offset
        )
    for path, offset, length in report.corrupt:
        logger.error("journal_record_corrupt", path=str(path), offset=offset, length=length)
    return journal, read_history(journal, logger), saved


def read_history(journal: Journal, logger: Any) -> History:
    events: dict[str, list[Event]] = defaultdict(list)
    decoder = msgspec.json.Decoder(Event)
    stopped_at = None
    bad = 0
    for record in journal.tail(HISTORY_BYTES):
        stopped_at = record.time_ms / 1000
        for line in record.payload.splitlines():
            try:
                event = decoder.decode(line)
            except (msgspec.DecodeError, ValueError):
                bad += 1  # written by another version, or damaged: resume without it
                continue
            events[event.source].append(event)
    if bad:
        logger.warning("journal_history_undecodable", lines=bad)
    return History({k: v[-HISTORY_EVENTS:] for k, v in events.items()}, stopped_at)


def source_names(sources: Sequence[SourceConfig]) -> list[str]:
    return [s.name for s in sources]


def status_line(daemon: Daemon) -> Callable[[], str]:
    """systemd's STATUS: the state summary, with the event rate since the previous call."""
    last = [time.monotonic(), daemon.bus.published]

    def status() -> str:
        now, published = time.monotonic(), daemon.bus.published
        rate = (published - last[1]) / max(now - last[0], 1e-3)
        last[:] = [now, published]
        return summary(daemon.state(), rate)

    return status


async def start_ops(daemon: Daemon) -> OpsServer | None:
    """The ops endpoint when ``[daemon] http`` is set; aiohttp's server is imported only then."""
    if daemon.config.daemon.http is None:
        return None
    from tradebus.daemon.ops import OpsServer

    server = OpsServer(daemon, daemon.config.daemon.http)
    await server.start()
    return server


async def serve(config: Config, *, duration: float | None = None) -> int:
    """Run the daemon until SIGTERM/SIGINT (or ``duration`` seconds); the process exit code."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    daemon = Daemon(config)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, daemon.bus.reopen)
    timer = loop.call_later(duration, stop.set) if duration is not None else None

    status = status_line(daemon)

    async def lifecycle() -> None:
        await daemon.ready.wait()
        systemd.notify(f"READY=1\nSTATUS={status()}\nMAINPID={os.getpid()}")
        pings = (
            asyncio.create_task(systemd.keepalive(status))
            if os.environ.get("NOTIFY_SOCKET")
            else None
        )
        try:
            await stop.wait()
        finally:
            if pings is not None:
                pings.cancel()
        systemd.notify("STOPPING=1\nSTATUS=draining sinks")

    ops = await start_ops(daemon)
    notifier = asyncio.create_task(lifecycle())
    try:
        drained = await daemon.run(stop)
    finally:
        notifier.cancel()
        if ops is not None:
            await ops.stop()
        if timer is not None:
            timer.cancel()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            with contextlib.suppress(ValueError, RuntimeError):
                loop.remove_signal_handler(sig)
    return 0 if drained else 1
