"""Rows 9-11: what the daemon sustains with the four production sinks, what a burst costs, and
what each sink costs the process that delivers it.

The feeds are two streams of one sender (``benchmarks/sender.py ttmt --frames MIX --rate R
--feeds 2``) on the sender core, each sending the TTMT simulator's own mix (rows 1b-3b's frames,
renumbered and sent over and over) at half the total rate. The sinks are those a production
install runs: the file sink (tmpfs), stdout (to ``/dev/null``), the webhook sink (``jsonl``) to
``benchmarks.delivery``'s receiver and the NATS sink to a local ``nats-server -js``. The
receiver and nats-server run on the sender core and outlive the daemons of a row; every daemon
gets sources of new names, so JetStream never sees an id twice.

Everything is read through the daemon's own interfaces: ``/metrics`` (``tradebus_bus_events``,
``tradebus_source_events`` by type, ``tradebus_sink_events`` per sink), ``/readyz`` (its
``delivery`` object where the daemon has one: the delivery process's pid, mode and restarts)
and ``/proc`` (CPU time and ``VmHWM`` of the daemon and of its delivery process, a child of the
daemon found from ``/readyz`` or else from ``/proc/<pid>/task/*/children``). A daemon without
the ``delivery`` key and without children runs every sink in its own process.

A sink's **backlog** is what the feeds sent that the sink does not hold yet: the events sent
(the senders' own count of frames, in canonical events) that the daemon has not ingested, plus
the events published that the sink has not acknowledged.

- Row 9, **sustainable throughput**: a probe sends at a fixed total rate for a few seconds;
  it *held* when every sink's backlog is 0 within 1.5 s of the last feed's end (the highest
  load without a growing backlog, as stream-processing benchmarks define it). A short search
  (up by 1.5x from a guess while probes hold, down while they fail, then halving the bracket)
  gives the highest rate that held; each probe is printed with each sink's backlog 1.5 s after
  the feeds stopped. Once with the four sinks, once with the file sink alone. A probe whose
  feeds fell behind their schedule (3% or more) because their writes waited for the daemon
  (it read too slowly: a backlog upstream) did not hold; one whose sender fell behind for want
  of CPU on its own core counts at the rate it sent.
- Row 10, **burst**: 10 s at 120,000 events/s into the four sinks; how long the feeds took to
  send it, how long after it each sink held every event, and each sink's delivered rate from
  the first event to then.
- Row 11, **CPU per event of each sink**: each sink alone at a fixed paced rate; the delivery
  process's CPU (with one process, the daemon's: ingest and journal included) per event the
  sink acknowledged.
- **reach**: the two feeds alone, as fast as they can, into bare socket readers on the daemon
  core: what the feeds can send from one core, so a rate they cannot reach is named.

``python -m benchmarks.sustain drain PORT...`` is that bare reader.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec

from benchmarks import delivery, procs
from benchmarks.delivery import Scrape
from benchmarks.harness import SenderSpec, Work, start_senders, tables
from benchmarks.procs import PYTHON
from benchmarks.result import Row, RunResult
from benchmarks.rows import MixFrames, Sizes
from benchmarks.sender import ttmt_table

SETTLE = 1.5  # the definition: every sink holds every event this long after the feeds stop
POLL = 0.1  # between reads of /metrics (each costs the daemon a little)
FEEDS = 2
LATE = 0.97  # feeds that sent less than this share of their schedule were slowed
FOUR = "file+stdout+webhook+nats"


class Feeds:
    """The mix on disk, and how many canonical events any number of its frames gives (a
    sender renumbers and repeats them). The short file of row 6b: it is the same mix, and a
    sender parses it in a fifth of the time the long one takes (0.06 against 0.28 s)."""

    def __init__(self, mix: MixFrames) -> None:
        self.path = mix.naive_path
        self._cumulative = list(itertools.accumulate(mix.naive_counts, initial=0))
        self._names = itertools.count(1)

    @property
    def frames(self) -> int:
        return len(self._cumulative) - 1

    @property
    def per_frame(self) -> float:
        return self._cumulative[-1] / self.frames

    def events_in(self, frames: int) -> int:
        whole, part = divmod(frames, self.frames)
        return whole * self._cumulative[-1] + self._cumulative[part]

    def spec(
        self, work: Work, rate: float, seconds: float, *, hold: bool = True
    ) -> tuple[SenderSpec, list[Path], list[dict[str, Any]]]:
        """A sender of ``FEEDS`` streams that send ``rate`` events/s between them for
        ``seconds`` (from its SIGUSR1, with ``hold``), the files their ends are reported in,
        and their ``[[sources]]`` tables (the ports are chosen here, so the daemon can start
        beside the sender). New source names every time (see the module)."""
        frame_rate = rate / self.per_frame / FEEDS
        frames = max(int(frame_rate * seconds), 1)
        done = [work.path(f"feed{i}.done") for i in range(FEEDS)]
        ports = [procs.free_port() for _ in range(FEEDS)]
        name = f"ttmt-{next(self._names)}"
        args = ["ttmt", "--frames", str(self.path), "--rate", f"{frame_rate:.1f}"]
        args += ["--events", str(frames), "--feeds", str(FEEDS), *(["--hold"] if hold else [])]
        for path, port in zip(done, ports, strict=True):
            args += ["--done", str(path), "--port", str(port)]
        # A daemon that connects before the sender listens retries at once, not 0-0.5 s later.
        tables = [
            ttmt_table(f"{name}-{n}", port) | {"reconnect_min": 0.02}
            for n, port in enumerate(ports, 1)
        ]
        return SenderSpec(name, tuple(args)), done, tables


class Pids(msgspec.Struct, frozen=True):
    """The daemon and the process(es) delivering its sinks (none: one process does all)."""

    daemon: int
    delivery: tuple[int, ...]
    mode: str
    restarts: int = 0


def pids_of(state: dict[str, Any], daemon: int, kids: Callable[[int], list[int]]) -> Pids:
    """The delivery process from ``/readyz``'s ``delivery`` object; without one (a daemon that
    predates it), the daemon's children, if any."""
    info = state.get("delivery")
    if isinstance(info, dict):
        mode = str(info.get("mode", "process"))
        restarts = int(info.get("restarts", 0))
        pid = info.get("pid")
        if mode == "process" and isinstance(pid, int) and pid != daemon:
            return Pids(daemon, (pid,), mode, restarts)
        if mode == "process":
            return Pids(daemon, tuple(kids(daemon)), mode, restarts)
        return Pids(daemon, (), mode, restarts)
    found = tuple(kids(daemon))
    return Pids(daemon, found, "process" if found else "one process")


def _cpu(pids: Sequence[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += procs.cpu_seconds(pid)
        except OSError:
            continue  # a delivery process that was restarted: its CPU is lost with it
    return total


def _rss_mb(pids: Sequence[int]) -> float:
    return sum(procs.status_kib(pid, "VmHWM") for pid in pids) / 1024


class Watch(msgspec.Struct):
    """One daemon run: what the feeds sent, and each sink's backlog until it held it all."""

    asked: float  # events/s
    sent: int  # events
    start: float  # the feeds' first and last write (time.monotonic())
    end: float
    blocked: float  # seconds the feeds' writes waited for the daemon to read (the most of any)
    first: Scrape  # once every sink held the feeds' status events, before the feeds started
    stopped: Scrape  # the first read once the feeds had stopped
    last: Scrape
    backlog: dict[str, int]  # at ``last``
    # sink -> (when the read of /metrics that found it holding everything was sent, its events)
    caught: dict[str, tuple[float, float]]
    cpu_daemon: float  # CPU seconds from ``first`` to ``last``
    cpu_delivery: float
    rss_daemon: float  # VmHWM, MB
    rss_delivery: float
    pids: Pids
    # The most PSS of the two together at any read after the feeds stopped, MB: RSS counts
    # the pages both processes map (libpython, OpenSSL, extension modules) once in each.
    pss: float = 0.0

    @property
    def seconds(self) -> float:
        return self.end - self.start

    @property
    def rate(self) -> float:
        """Events/s the feeds sent, over the time they took."""
        return self.sent / max(self.seconds, 1e-9)

    @property
    def late(self) -> bool:
        """The feeds sent less than their schedule asked (for whatever reason)."""
        return self.rate < LATE * self.asked

    @property
    def slowed(self) -> bool:
        """The daemon held the feeds back: they were late, and at least half of the delay was
        spent in writes waiting for it to read (the rest: the sender's own core)."""
        delay = self.seconds - self.sent / self.asked
        return self.late and self.blocked >= delay / 2

    @property
    def held(self) -> bool:
        """Every sink held every event within the run's limit (``SETTLE`` for a probe), and
        the daemon did not hold the feeds back."""
        return not self.slowed and len(self.caught) == len(self.backlog)

    def pace(self) -> str:
        """Why the feeds were late, if they were."""
        if self.slowed:
            return f"the daemon slowed the feeds: {self.rate:,.0f}/s sent"
        if self.late:
            return f"the sender's core fell behind: {self.rate:,.0f}/s sent, never held back"
        return ""

    def after(self, sink: str) -> float | None:
        """Seconds after the feeds stopped until ``sink`` held every event, or None."""
        caught = self.caught.get(sink)
        return None if caught is None else max(0.0, caught[0] - self.end)

    def left(self, sink: str) -> str:
        """What ``sink`` still lacked at the end of the watch, and how fast it was draining."""
        left = self.backlog[sink]
        gone = self.last.sinks.get(sink, 0.0) - self.stopped.sinks.get(sink, 0.0)
        rate = gone / max(self.last.at - self.stopped.at, 1e-9)
        more = f", about {left / rate:.0f} s more" if rate > 0 else ""
        return f"{left:,} left, draining at {rate:,.0f}/s{more}"

    def delivered_rate(self, sink: str) -> float:
        """``sink``'s events/s from the feeds' start until it held everything (or until the
        last read, if it never did)."""
        at, n = self.caught.get(sink, (self.last.at, self.last.sinks.get(sink, 0.0)))
        return (n - self.first.sinks.get(sink, 0.0)) / max(at - self.start, 1e-9)

    def cpu(self, *, delivery_only: bool = False) -> float:
        """CPU seconds of the daemon and its delivery process over the watch (or the latter's
        alone; with one process, the daemon's)."""
        if delivery_only and self.pids.delivery:
            return self.cpu_delivery
        return self.cpu_daemon + self.cpu_delivery

    def cpu_us(self, events: float, *, delivery_only: bool = False) -> float:
        return self.cpu(delivery_only=delivery_only) / max(events, 1.0) * 1e6

    def cpu_share(self, *, delivery_only: bool = False) -> float:
        """Cores kept busy, on average over the watch (up to 2 with a delivery process)."""
        return self.cpu(delivery_only=delivery_only) / max(self.last.at - self.first.at, 1e-9)

    @property
    def rss_mb(self) -> float:
        return self.rss_daemon + self.rss_delivery

    def memory(self) -> str:
        if not self.pids.delivery:
            return f"peak RSS {self.rss_daemon:.1f} MB ({self.pids.mode})"
        return (
            f"peak RSS daemon {self.rss_daemon:.1f} MB + delivery {self.rss_delivery:.1f} MB "
            f"= {self.rss_mb:.1f} MB (PSS together, shared pages once: {self.pss:.1f} MB)"
        )


def backlogs(s: Scrape, sent: int, sinks: Sequence[str]) -> dict[str, int]:
    """Each sink's backlog at ``s`` (see the module)."""
    unread = max(0, int(sent - s.feed))
    return {n: unread + max(0, int(s.bus - s.sinks.get(n, 0.0))) for n in sinks}


class Bench:
    """The rows' shared parts: the scratch dir, the feeds, the sizes, and what was printed."""

    def __init__(self, work: Work, sizes: Sizes, feeds: Feeds) -> None:
        self.work = work
        self.sizes = sizes
        self.feeds = feeds
        self.lines: list[str] = []

    def say(self, line: str) -> None:
        self.lines.append(line)
        print(line, flush=True)

    def run(
        self, sinks: Sequence[dict[str, Any]], rate: float, seconds: float, limit: float
    ) -> Watch:
        """Feed a fresh daemon at ``rate`` for ``seconds``; watch every sink until it held all
        or ``limit`` s after the feeds stopped."""
        names = [s["name"] for s in sinks]
        spec, dones, known = self.feeds.spec(self.work, rate, seconds)
        timeout = self.sizes.timeout
        with delivery.running(self.work, [spec], sinks, known=known) as run:
            first = ready(run, names, timeout)
            pids = pids_of(delivery.readyz(run.port), run.daemon.pid, procs.children)
            for pid in pids.delivery:
                # Spawned pinned to the daemon's core (inherited): the second core is its lever.
                procs.unpin(pid)
            cpu0 = procs.cpu_seconds(pids.daemon), _cpu(pids.delivery)
            for sender in run.senders:
                sender.send_signal(signal.SIGUSR1)  # the feeds' schedule starts now
            ends = [
                msgspec.json.decode(procs.wait_file(done, run.daemon, seconds + timeout))
                for done in dones
            ]
            sent = sum(self.feeds.events_in(e["frames"]) for e in ends)
            start, end = min(e["start"] for e in ends), max(e["end"] for e in ends)
            blocked = max(e["blocked"] for e in ends)
            caught: dict[str, tuple[float, float]] = {}
            stopped: Scrape | None = None
            pss = 0
            while True:
                pss = max(pss, sum(procs.pss_kib(p) for p in (pids.daemon, *pids.delivery)))
                # The time a read was sent, not answered: a busy daemon answers late, and what
                # it says is at least as new as the request.
                asked = time.monotonic()
                last = delivery.scrape(run.metrics, run.daemon.pid)
                stopped = stopped or last
                behind = backlogs(last, sent, names)
                for n, left in behind.items():
                    if not left and n not in caught:
                        caught[n] = (asked, last.sinks.get(n, 0.0))
                if len(caught) == len(names) or asked >= end + limit:
                    break
                time.sleep(max(0.0, min(POLL, end + limit - time.monotonic())))
            cpu1 = procs.cpu_seconds(pids.daemon), _cpu(pids.delivery)
            # A delivery process restarted meanwhile has a new pid: the restarts say so.
            pids = msgspec.structs.replace(
                pids,
                restarts=pids_of(delivery.readyz(run.port), pids.daemon, procs.children).restarts,
            )
            rss = procs.status_kib(pids.daemon, "VmHWM") / 1024, _rss_mb(pids.delivery)
            kill_daemon(run.daemon, pids)
        return Watch(
            rate,
            sent,
            start,
            end,
            blocked,
            first,
            stopped,
            last,
            behind,
            caught,
            cpu1[0] - cpu0[0],
            cpu1[1] - cpu0[1],
            rss[0],
            rss[1],
            pids,
            pss / 1024,
        )


def ready(run: delivery.Running, sinks: Sequence[str], timeout: float) -> Scrape:
    """Wait until every sink acknowledged the feeds' ``status.connected`` events (the
    senders hold their streams until told): a delivery process that is still starting, or a
    sink still connecting, is not what a probe measures."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            s = delivery.scrape(run.metrics, run.daemon.pid)
            if s.connected >= FEEDS and all(s.sinks.get(n, 0.0) >= s.bus for n in sinks):
                return s
        except OSError:
            pass  # not listening yet
        if run.daemon.poll() is not None:
            raise RuntimeError(f"the daemon exited with {run.daemon.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no event in {timeout:.0f} s")
        time.sleep(0.02)


def kill_daemon(daemon: subprocess.Popen[bytes], pids: Pids) -> None:
    """SIGKILL the daemon, then whatever delivered for it: what is left in the journal is of no
    interest once measured, and a drain of it would only make the bench longer."""
    doomed = {*pids.delivery, *procs.children(daemon.pid)}
    daemon.kill()
    daemon.wait()
    for pid in doomed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def next_rate(
    start: float,
    held: Sequence[float],
    failed: Sequence[float],
    *,
    step: float = 1.5,
    close: float = 1.1,
) -> float | None:
    """The next rate to probe, or None once the highest that held is known closely enough:
    up by ``step`` while every probe held, down while none did, then the middle of the bracket
    until its ends are within ``close`` of each other. Rates keep two significant digits."""
    lo = max(held, default=None)
    hi = min(failed, default=None)
    if lo is None and hi is None:
        rate = start
    elif hi is None:
        assert lo is not None
        rate = lo * step
    elif lo is None:
        rate = hi / step
    elif hi <= lo * close:
        return None
    else:
        rate = (lo + hi) / 2
    rate = float(f"{rate:.2g}")
    return None if rate in held or rate in failed else rate


def _probe_line(label: str, w: Watch) -> str:
    left = ", ".join(f"{n} {b:,}" for n, b in w.backlog.items())
    verdict = "held" if w.held else "did not hold"
    pace = f" ({w.pace()})" if w.late else ""
    return (
        f"  {label} probe {w.asked:,.0f}/s: {w.sent:,} events sent in {w.seconds:.2f} s{pace}; "
        f"{verdict}; backlog {SETTLE} s after the feeds stopped: {left}; "
        f"CPU {w.cpu_us(w.last.bus - w.first.bus):.2f} µs/ev"
    )


def sustainable(
    bench: Bench,
    name: str,
    sinks: Sequence[dict[str, Any]],
    start: float,
    reach: float,
    *,
    probes_at_most: int,
) -> Row:
    """Row 9: the highest rate that held, found by ``next_rate``'s search."""
    row = Row(name=f"9 sustainable → {name}", relative=False)
    sizes = bench.sizes
    probes: dict[float, Watch] = {}
    held: list[float] = []
    failed: list[float] = []
    while len(probes) < probes_at_most:
        rate = next_rate(start, held, failed)
        if rate is None:
            break
        w = bench.run(sinks, rate, sizes.probe_seconds, SETTLE)
        probes[rate] = w
        (held if w.held else failed).append(rate)
        bench.say(_probe_line(f"9 {name}", w))
    if not held:
        row.na = f"no probe held (lowest {min(failed):,.0f}/s)"
        return row
    best = probes[max(held)]
    events = best.last.bus - best.first.bus
    row.runs.append(RunResult(best.rate, best.cpu_us(events), best.rss_mb, best.sent))
    row.cpu_share = best.cpu_share()
    notes = [f"held at {best.asked:,.0f}/s" + (f" ({best.pace()})" if best.late else "")]
    above = [r for r in failed if r > best.asked]
    if above:
        miss = probes[min(above)]
        behind = ", ".join(f"{n} {b:,} behind" for n, b in miss.backlog.items() if b)
        why = "; ".join(x for x in (miss.pace() if miss.slowed else "", behind) if x)
        notes.append(f"not at {miss.asked:,.0f}/s ({why})")
    else:
        notes.append(f"no probe above it failed ({len(probes)} probes)")
    notes.append(best.memory())
    row.note = "; ".join(notes)
    return row


def burst(bench: Bench, sinks: Sequence[dict[str, Any]], reach: float) -> Row:
    """Row 10: a burst at ``burst_rate`` for ``burst_seconds`` into the four sinks."""
    sizes = bench.sizes
    row = Row(
        name=f"10 burst {sizes.burst_rate:,.0f}/s for {sizes.burst_seconds:g} s → 4 sinks",
        relative=False,
    )
    w = bench.run(sinks, sizes.burst_rate, sizes.burst_seconds, sizes.catch_up)
    names = [s["name"] for s in sinks]
    done = [w.after(n) for n in names]
    row.runs.append(RunResult(w.rate, w.cpu_us(w.last.bus - w.first.bus), w.rss_mb, w.sent))
    row.cpu_share = w.cpu_share()
    after = ", ".join(
        f"{n} {t:.1f} s" if t is not None else f"{n} not within {sizes.catch_up:g} s ({w.left(n)})"
        for n, t in zip(names, done, strict=True)
    )
    rates = ", ".join(f"{n} {w.delivered_rate(n):,.0f}/s" for n in names)
    notes = [f"sent in {w.seconds:.1f} s ({w.rate:,.0f}/s)"]
    if w.late:
        notes[0] = f"sent in {w.seconds:.1f} s ({w.pace()})"
    every = None if None in done else max(t for t in done if t is not None)
    notes.append(f"every sink held every event {every:.1f} s after it" if every is not None else "")
    notes += [f"after it: {after}", f"delivered through it and after: {rates}", w.memory()]
    row.note = "; ".join(n for n in notes if n)
    bench.say(f"  10 burst: {row.note}")
    return row


def per_sink(bench: Bench, sinks: Sequence[dict[str, Any]]) -> list[Row]:
    """Row 11: each sink alone at ``alone_rate``; CPU per event it acknowledged."""
    sizes = bench.sizes
    out = []
    for sink in sinks:
        n = sink["name"]
        if n not in sizes.alone_sinks:
            continue
        row = Row(name=f"11 CPU per event: {n} alone", relative=False)
        w = bench.run([sink], sizes.alone_rate, sizes.alone_seconds, sizes.catch_up)
        events = w.caught.get(n, (0.0, w.last.sinks.get(n, 0.0)))[1] - w.first.sinks.get(n, 0.0)
        cpu = w.cpu_us(events, delivery_only=True)
        row.runs.append(RunResult(w.delivered_rate(n), cpu, w.rss_mb, int(events)))
        row.cpu_share = w.cpu_share(delivery_only=True)
        if w.pids.delivery:
            daemon = w.cpu_daemon / max(events, 1) * 1e6
            whose = f"the delivery process (the daemon beside it: {daemon:.2f} µs/ev)"
        else:
            whose = "the daemon (one process: ingest and journal included)"
        late = "" if w.after(n) is not None else f"; behind: {w.left(n)}"
        row.note = f"{sizes.alone_rate:,.0f}/s paced; CPU of {whose}{late}"
        out.append(row)
    bench.say(
        "  11 CPU per event of each sink alone: "
        + ", ".join(f"{r.name.split(': ')[1].split()[0]} {r.cpu_us:.2f} µs" for r in out)
    )
    return out


def reach(bench: Bench) -> float:
    """Events/s the senders send from their one core into bare readers (nothing to slow them)."""
    feeds = bench.feeds
    # Asked for far more than they can send: they send as fast as they can.
    rate = 1e9
    frames = bench.sizes.reach_frames
    spec, dones, _ = feeds.spec(
        bench.work, rate, frames * FEEDS * feeds.per_frame / rate, hold=False
    )
    started = start_senders(bench.work, [spec])
    reader = None
    try:
        ports = [str(urlsplit(t["url"]).port) for t in tables(started)]
        reader = procs.spawn(
            [PYTHON, "-m", "benchmarks.sustain", "drain", *ports],
            core=procs.DAEMON_CORE,
            log=bench.work.path("drain.log"),
        )
        ends = [
            msgspec.json.decode(procs.wait_file(done, reader, bench.sizes.timeout))
            for done in dones
        ]
    finally:
        if reader is not None:
            procs.stop(reader)
        for proc, _ in started:
            procs.stop(proc)
    sent = sum(feeds.events_in(e["frames"]) for e in ends)
    seconds = float(max(e["end"] for e in ends) - min(e["start"] for e in ends))
    return sent / max(seconds, 1e-9)


def rows(work: Work, sizes: Sizes, mix: MixFrames, want: Callable[[str], bool]) -> list[Row]:
    """Rows 9, 10 and 11 (those asked for), the receiver and nats-server shared by all."""
    bench = Bench(work, sizes, Feeds(mix))
    out: list[Row] = []
    can = float("inf")
    if want("9") or want("10"):
        try:
            can = reach(bench)
        except (OSError, RuntimeError, TimeoutError) as exc:
            return [Row(name="9-10 the senders' reach", na=f"failed: {exc}"[:120])]
        short = (
            "" if can >= sizes.burst_rate else f": short of the burst's {sizes.burst_rate:,.0f}/s"
        )
        bench.say(
            f"  reach: the {FEEDS} feeds (one sender process) send {can:,.0f} events/s from "
            f"one core into bare readers{short}"
        )
    start_four, start_file = sizes.start_rates
    with delivery.receiver(work) as hook, delivery.nats_server(work) as nats:
        sinks = delivery.delivery_sinks(work.path("sustain.jsonl"), hook, nats)
        steps: list[tuple[str, Callable[[], list[Row]]]] = [
            (
                "9",
                lambda: [
                    sustainable(bench, FOUR, sinks, start_four, can, probes_at_most=sizes.probes)
                ],
            ),
            (
                "9",
                lambda: [
                    sustainable(
                        bench, "file", [sinks[0]], start_file, can, probes_at_most=sizes.file_probes
                    )
                ],
            ),
            ("10", lambda: [burst(bench, sinks, can)]),
            ("11", lambda: per_sink(bench, sinks)),
        ]
        for n, step in steps:
            if not want(n):
                continue
            try:
                out.extend(step())
            except (OSError, RuntimeError, TimeoutError, ValueError) as exc:
                out.append(Row(name=f"{n} (failed)", na=f"failed: {exc}"[:120]))
    return out


# --- the bare reader process ----------------------------------------------------------------


def drain(ports: Sequence[int]) -> None:
    """Read each sender's stream and throw it away, until stopped."""
    sel = selectors.DefaultSelector()
    for port in ports:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(b"GET /api/v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        sel.register(sock, selectors.EVENT_READ)
    buf = bytearray(1 << 20)
    while True:
        for key, _ in sel.select():
            conn = key.fileobj
            assert isinstance(conn, socket.socket)
            if not conn.recv_into(buf):
                sel.unregister(conn)
                conn.close()
        if not sel.get_map():
            return


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] != "drain":
        print("usage: python -m benchmarks.sustain drain PORT...", file=sys.stderr)
        return 2
    drain([int(p) for p in argv[1:]])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
