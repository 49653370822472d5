"""The daemon: sources → bus (journal) → delivery, stopped by a signal with nothing lost.

The state dir is opened first, before any upstream is contacted: a missing, unwritable or
locked one is a ``StateDirError`` (exit status 2). What the journal holds tells each adapter
where to resume (``SourceContext.history``). Delivery (every sink a follower of the journal)
runs in a process of its own, supervised here, or inline (``[daemon] delivery``).

Stop order matters: first the adapters (no new events), then delivery writes what the journal
holds up to ``drain_timeout`` and saves the cursors, then the journal closes (and the state
dir's lock goes). What was not delivered in time is safe in the journal: it goes out after the
next start, so such a stop still exits 0. SIGHUP re-opens the file sinks.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from tradebus import log
from tradebus.adapters.base import Adapter, AdapterFactory, SourceContext
from tradebus.adapters.live import LiveTransport
from tradebus.backoff import Backoff, Failure, Kind
from tradebus.bus import Bus
from tradebus.config import Config, SourceConfig, kind
from tradebus.daemon import systemd
from tradebus.daemon.state import sink_state, snapshot, summary
from tradebus.delivery.core import Delivery, build_sinks
from tradebus.delivery.links import DeliveryLink, InlineDelivery, ProcessDelivery
from tradebus.delivery.tail import Marks
from tradebus.delivery.wire import Watermark
from tradebus.journal import cursors
from tradebus.journal.store import Journal, check_state_dir
from tradebus.plugin import source_factory
from tradebus.recording.recorder import for_source
from tradebus.reload import Outcome, Plan, Refused, Reloads, plan_file
from tradebus.schemas.events import Event
from tradebus.sinks.base import Sink

if TYPE_CHECKING:
    from tradebus.daemon.ops import OpsServer


class Daemon:
    """One configured daemon. ``run`` returns when ``stop`` is set and delivery has drained."""

    def __init__(
        self,
        config: Config,
        *,
        sinks: Sequence[Sink] | None = None,
        factories: Mapping[str, AdapterFactory] | None = None,
        config_path: str | Path | None = None,
    ) -> None:
        """``sinks`` and ``factories`` (by source ``type``) replace the built-ins when embedding
        (sinks given as objects are delivered inline: they cannot cross into a process)."""
        self.config = config
        self.config_path = config_path  # what a reload re-reads; None: no reloads
        self.factories = dict(factories or {})
        self.reloads = Reloads()
        self._log: Any = log.get()
        self.state_dir = Path(config.daemon.state_dir)
        journal, history, _saved = open_state(config, self._log)
        d = config.daemon
        # What the journal held at start was appended by the time it stopped, at the latest:
        # a sink behind since then lags at least that long.
        self.marks = Marks(before=history.stopped_at)
        self.marks.add(journal.next_seq, time.time())
        self._listeners: list[Callable[[], None]] = []
        self.link: DeliveryLink
        try:
            if sinks is not None or d.delivery == "inline":
                built = list(sinks) if sinks is not None else build_sinks(config.sinks)
                self.link = InlineDelivery(
                    Delivery(
                        self.state_dir,
                        built,
                        config.sinks,
                        durable=d.fsync != "never",
                        dead_letter=self._dead_letter,
                    )
                )
            else:
                self.link = ProcessDelivery(
                    self.state_dir,
                    config.sinks,
                    log_level=log.settings()[0],
                    log_format=log.settings()[1],
                    durable=d.fsync != "never",
                    dead_letter=self._dead_letter,
                )
        except BaseException:
            journal.close()
            raise
        self.max_lag = {c.name: c.max_lag for c in config.sinks}
        for i, c in enumerate(config.sinks):
            if c.queue_size is not None:
                self._log.warning(
                    "config_key_unused",
                    key=f"sinks[{i}].queue_size",
                    note="every sink reads the journal: nothing is held in memory for it",
                )
        self.bus = Bus(
            journal,
            on_append=self._appended,
            cursors=self.cursors,
            retention_bytes=d.retention_bytes,
            retention_age=d.retention_age,
        )
        # What sinks report of themselves (a dead letter) goes out as events of "tradebus".
        self.sink_reports = SourceContext("tradebus", "tradebus", self.bus.publish)
        self._report_tasks: set[asyncio.Task[None]] = set()
        self._last_report: dict[str, float] = {}
        self._lag_warned: dict[str, float] = {}
        self.contexts: dict[str, SourceContext] = {}
        self.adapters: list[Adapter] = []
        for source in config.sources:
            if source.enabled:
                self.adapters.append(self._adapter(source, history))
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.required = {s.name: s.required for s in config.sources if s.enabled}
        self.ready = asyncio.Event()
        # Restarts of an adapter that died of a bug: exponential, capped, reset after a run
        # that lasted ``restart_stable_after`` seconds.
        self.restart_base = 1.0
        self.restart_cap = 60.0
        self.restart_stable_after = 60.0
        self.restart_backoffs: dict[str, Backoff] = {}
        self.left: dict[str, int] = {}

    def _adapter(self, source: SourceConfig, history: History) -> Adapter:
        """The adapter of ``source``, with a context that carries what the journal holds of it
        (kept across a reload's restart: its counters go on)."""
        provider = kind(source)
        ctx = self.contexts.get(source.name)
        transport = LiveTransport(for_source(source, self.state_dir))
        if ctx is None or ctx.provider != provider:
            ctx = SourceContext(source.name, provider, self.bus.publish, transport=transport)
        else:
            ctx.transport = transport  # the old one was closed with its adapter
        ctx.history = history.events.get(source.name, ())
        ctx.stopped_at = history.stopped_at
        self.contexts[source.name] = ctx
        factory = self.factories.get(provider) or source_factory(provider)
        return factory(source, ctx)

    def _start_source(self, adapter: Adapter) -> None:
        self._tasks[adapter.name] = asyncio.create_task(
            self._supervise(adapter), name=f"source:{adapter.name}"
        )

    async def _stop_source(self, name: str, reason: str, *, planned: bool) -> None:
        """Stop a source's adapter and say so in the stream (``status.disconnected``);
        ``planned``: it starts again at once (a reload changed it), ready meanwhile."""
        task = self._tasks.pop(name)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        self.adapters = [a for a in self.adapters if a.name != name]
        ctx = self.contexts[name]
        # Its recording, if any, gets its last frame written and synced (a file: on a thread).
        await asyncio.to_thread(ctx.transport.close)
        ended = ctx.disconnected(reason, planned=planned, retry_in=None, message=REASONS[reason])
        await ctx.publish([ended])

    # --- reload -------------------------------------------------------------------------

    async def reload(self, *, dry_run: bool = False) -> Outcome:
        """Re-read the config file and apply it by difference (one reload at a time)."""
        async with self.reloads.lock:
            outcome = await self._reload(dry_run)
        if not dry_run:
            self.reloads.note(outcome)
        say = self._log.error if outcome.result == "refused" else self._log.info
        say(
            "config_reload",
            result=outcome.result,
            generation=self.reloads.generation,
            plan=outcome.plan.lines() if outcome.plan is not None else None,
            problems=outcome.problems or None,
        )
        return outcome

    async def _reload(self, dry_run: bool) -> Outcome:
        if self.config_path is None:
            return Outcome(
                result="refused", problems=["reload: the daemon was not started from a file"]
            )
        loop = asyncio.get_running_loop()
        # Secret files and the TOML are read on a thread: a stalled disk holds no source.
        new, result = await loop.run_in_executor(None, plan_file, self.config, self.config_path)
        if isinstance(result, Refused) or new is None:
            problems = result.problems if isinstance(result, Refused) else []
            return Outcome(result="refused", problems=problems)
        if dry_run:
            return Outcome(result="dry_run", plan=result)
        failed = await self._apply(new, result)
        return Outcome(
            result="partial" if failed else "applied",
            plan=result,
            problems=[f"sinks.{name}: {why}" for name, why in failed.items()],
            failed_sinks=failed,
        )

    async def _apply(self, new: Config, plan: Plan) -> dict[str, str]:
        """Make before break: the new adapters are built before the old ones stop; the
        sinks are delivery's (``Delivery.reconfigure``)."""
        sources = {s.name: s for s in new.sources if s.enabled}
        starting = [*plan.sources.restarted, *plan.sources.added]
        history = read_history(self.bus.journal, self._log) if starting else History({}, None)
        for name in plan.sources.removed:
            await self._stop_source(name, "removed_by_reload", planned=False)
            del self.contexts[name]
        for name in plan.sources.restarted:
            await self._stop_source(name, "config_reloaded", planned=True)
        if plan.sources.restarted:
            # What the stopped adapters published last is in the journal now: resume from it.
            history = read_history(self.bus.journal, self._log)
        for name in starting:
            adapter = self._adapter(sources[name], history)
            self.adapters.append(adapter)
            self._start_source(adapter)
        d = new.daemon
        failed = await self.link.reconfigure(new.sinks, d.drain_timeout, d.log_level)
        sinks = list(new.sinks)
        if failed:
            # The old config of a sink that could not be replaced runs on. One that could not
            # be added runs all the same, retrying its open as delivery does at a start (its
            # receiver may be down for a minute): it is in the config delivery runs.
            old = {c.name: c for c in self.config.sinks}
            sinks = [old[c.name] if c.name in failed and c.name in old else c for c in sinks]
        self.bus.retention_bytes, self.bus.retention_age = d.retention_bytes, d.retention_age
        self.bus.journal.segment_bytes = d.segment_bytes
        if d.log_level != self.config.daemon.log_level:
            log.configure(d.log_level, fmt=log.settings()[1])
        self.max_lag = {c.name: c.max_lag for c in sinks}
        self.required = {s.name: s.required for s in sources.values()}
        self.config = msgspec.structs.replace(new, sinks=sinks)
        return failed

    def _appended(self, mark: Watermark) -> None:
        self.marks.add(mark.end_seq, mark.time)
        self.link.advance(mark)
        for listener in self._listeners:
            listener()

    def on_append(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener`` after every journal append (a follower in this process, such as
        the ops endpoint's event stream, waits on it); the function returned unsubscribes."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def cursors(self) -> dict[str, int]:
        """Every sink's cursor as delivery last reported it."""
        return {s.name: s.cursor for s in self.link.sinks()}

    def lag(self, cursor: int, now: float) -> float:
        """Seconds since the oldest event not acknowledged at ``cursor`` was journaled."""
        if cursor >= self.bus.last_seq:
            return 0.0
        since = self.marks.time_of(cursor + 1)
        return 0.0 if since is None else max(0.0, now - since)

    def _dead_letter(self, sink: str, message: str) -> None:
        """A ``status.error`` for a dead letter, at most one a minute per sink: the event goes
        to every sink, this one too, and a receiver that refuses everything would otherwise
        turn each report into the next dead letter."""
        now = time.monotonic()
        if now - self._last_report.get(sink, -1e9) < DEAD_LETTER_REPORT_EVERY:
            self.sink_reports.counters[f"dead_letter_reports_skipped.{sink}"] += 1
            return
        self._last_report[sink] = now
        event = self.sink_reports.status(
            "status.error", reason="dead_letter", code=sink, message=message
        )
        # Published from its own task: this is called from delivery, which must not wait on
        # the bus.
        task = asyncio.get_running_loop().create_task(self.bus.publish([event]))
        self._report_tasks.add(task)
        task.add_done_callback(self._report_tasks.discard)

    def state(self) -> dict[str, Any]:
        """Per-source and per-sink state, and whether the daemon is ready (``/readyz``)."""
        now = time.time()
        last = self.bus.last_seq
        sinks = {
            s.name: sink_state(
                s, last_seq=last, lag=self.lag(s.cursor, now), max_lag=self.max_lag.get(s.name, 0)
            )
            for s in self.link.sinks()
        }
        state = snapshot(self.contexts, self.required, sinks, now=now)
        state["reload"] = self.reloads.state()
        state["delivery"] = {
            "mode": self.link.mode,
            "pid": self.link.pid,
            "running": self.link.running,
            "restarts": self.link.restarts,
        }
        return state

    async def run(self, stop: asyncio.Event) -> bool:
        """Run until ``stop``; True if every sink wrote everything it was given in time."""
        await self.bus.start()
        self.link.start(self.bus.watermark())
        for adapter in self.adapters:
            self._start_source(adapter)
        watch = asyncio.create_task(self._watch_lag(), name="lag")
        self._log.info(
            "daemon_started",
            sources=[a.name for a in self.adapters],
            sinks=[c.name for c in self.config.sinks],
            delivery=self.link.mode,
        )
        self.ready.set()
        try:
            await stop.wait()
        finally:
            async with self.reloads.lock:  # a reload in progress finishes first
                tasks = list(self._tasks.values())
            for task in (*tasks, watch):
                task.cancel()
            await asyncio.gather(*tasks, watch, return_exceptions=True)
            # Recordings get their last frame written and synced (on threads: files).
            await asyncio.gather(
                *(asyncio.to_thread(c.transport.close) for c in self.contexts.values())
            )
            if self._report_tasks:
                await asyncio.gather(*self._report_tasks, return_exceptions=True)
            self.left = await self.link.close(
                self.bus.watermark(), self.config.daemon.drain_timeout
            )
            await self.bus.close()
            snaps = self.link.sinks()
            self._log.info(
                "daemon_stopped",
                published=self.bus.published,
                last_seq=self.bus.last_seq,
                written={s.name: s.written for s in snaps},
                drained=not self.left,
                counters={n: dict(c.counters) for n, c in self.contexts.items()},
            )
            if self.left:
                self._log.warning(
                    "delivery_not_drained",
                    left=self.left,
                    timeout=self.config.daemon.drain_timeout,
                    note="safe in the journal: delivered after the next start",
                )
        return not self.left

    async def _watch_lag(self) -> None:
        """A warning, once a minute per sink, while a sink is past its ``max_lag``."""
        while True:
            await asyncio.sleep(1.0)
            now = time.time()
            for s in self.link.sinks():
                limit = self.max_lag.get(s.name, 0)
                lag = self.lag(s.cursor, now)
                if limit and lag > limit and now - self._lag_warned.get(s.name, -1e9) >= 60:
                    self._lag_warned[s.name] = now
                    self._log.warning(
                        "sink_lagging",
                        sink=s.name,
                        lag_seconds=round(lag, 1),
                        max_lag=limit,
                        backlog=max(0, self.bus.last_seq - s.cursor),
                    )
            self.marks.prune(min(self.cursors().values(), default=0) + 1)

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
                crashed = ctx.disconnected(
                    "adapter_crashed",
                    planned=False,
                    retry_in=delay,
                    message=type(exc).__name__,
                    kind="status.error",
                )
                await ctx.publish([crashed])
                await asyncio.sleep(delay)
            else:
                return


DEAD_LETTER_REPORT_EVERY = 60.0
REASONS = {
    "removed_by_reload": "the source was removed from the configuration by a reload",
    "config_reloaded": "the source's configuration changed: it reconnects",
}


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


async def serve(
    config: Config, *, duration: float | None = None, config_path: str | Path | None = None
) -> int:
    """Run the daemon until SIGTERM/SIGINT (or ``duration`` seconds); the process exit code.
    SIGHUP reopens the file sinks and, when started from ``config_path``, reloads it."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    daemon = Daemon(config, config_path=config_path)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    hups: set[asyncio.Task[Outcome]] = set()

    def hangup() -> None:
        daemon.link.reopen()
        if config_path is not None and not stop.is_set():
            task = loop.create_task(daemon.reload())
            hups.add(task)
            task.add_done_callback(hups.discard)

    loop.add_signal_handler(signal.SIGHUP, hangup)
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
        # A stop past drain_timeout is no failure: what was not delivered is in the journal.
        await daemon.run(stop)
    finally:
        notifier.cancel()
        if ops is not None:
            await ops.stop()
        if timer is not None:
            timer.cancel()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            with contextlib.suppress(ValueError, RuntimeError):
                loop.remove_signal_handler(sig)
    return 0
