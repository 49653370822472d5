"""Row 12: a client of ``GET /api/v1/events`` that stops reading costs the file sink nothing
and the daemon no memory.

One daemon, fed by rows 9-11's two paced feeds (the TTMT simulator's mix, ``stall_rate``
events/s between them) into the file sink, its delivery process on either core as in rows 9-11.
After ``stall_warm`` s: ``stall_quiet`` s with no stream client, ``stall_seconds`` with one
that asks for ``from=earliest``, reads the response's headers (a 200, not a 503) and then
nothing more (its receive buffer set to 64 KiB before it connects, so the stall outlasts what
the kernel's buffers hold), then ``stall_quiet`` s more once it has gone. The two quiet
stretches count as one, so the daemon's memory settling meanwhile is not credited to the client
(see ``around``). Each stretch gives the file sink's events/s (``tradebus_sink_events_total``),
the feeds' (``tradebus_bus_events_total``), the CPU of both processes per event, and each
process's ``VmRSS`` sampled every ``RSS_EVERY`` s (``VmHWM`` would carry one stretch's peak into
the next). The second row's note gives the ratios, stalled over none.
"""

from __future__ import annotations

import signal
import socket
import statistics
import time
from collections.abc import Sequence
from typing import Any

import msgspec

from benchmarks import delivery, procs
from benchmarks.delivery import Scrape
from benchmarks.harness import Work, file_sink
from benchmarks.result import Row, RunResult
from benchmarks.rows import MixFrames, Sizes
from benchmarks.sustain import Feeds, Pids, kill_daemon, pids_of, ready

RSS_EVERY = 0.25
SINK = "file"
QUERY = "/api/v1/events?from=earliest"
TCP_ESTABLISHED = 1  # tcpi_state, the first byte of Linux's struct tcp_info


class Phase(msgspec.Struct, frozen=True):
    """What one stretch of the run saw: its length, the events the file sink acknowledged and
    the feeds published, the CPU seconds of the daemon and its delivery process together, and
    each one's ``VmRSS`` (MB), the mean and the highest of its samples."""

    seconds: float
    written: float
    published: float
    cpu: float
    rss_daemon: float
    rss_delivery: float
    peak_daemon: float
    peak_delivery: float
    behind: int = 0  # events published that the file sink had not acknowledged at the end

    @property
    def file_rate(self) -> float:
        return self.written / max(self.seconds, 1e-9)

    @property
    def bus_rate(self) -> float:
        return self.published / max(self.seconds, 1e-9)

    @property
    def cpu_us(self) -> float:
        return self.cpu / max(self.written, 1.0) * 1e6

    def text(self) -> str:
        memory = f"RSS daemon {self.rss_daemon:.1f} MB"
        if self.rss_delivery:
            memory += f", delivery {self.rss_delivery:.1f} MB"
        return (
            f"file {self.file_rate:,.0f}/s (feeds {self.bus_rate:,.0f}/s, {self.behind:,} "
            f"behind at the end), mean {memory}"
        )


def around(before: Phase, after: Phase) -> Phase:
    """The two quiet stretches around the stalled one, as one: totals summed, the mean RSS
    the mean of theirs. Both of one length, a steady drift cancels (the daemon's memory still
    settling: 51 to 57 MB over its first 25 s at 5,000/s here), where a quiet stretch before
    the stall alone would credit the drift to the client."""
    return Phase(
        before.seconds + after.seconds,
        before.written + after.written,
        before.published + after.published,
        before.cpu + after.cpu,
        (before.rss_daemon + after.rss_daemon) / 2,
        (before.rss_delivery + after.rss_delivery) / 2,
        max(before.peak_daemon, after.peak_daemon),
        max(before.peak_delivery, after.peak_delivery),
        after.behind,
    )


def ratios(quiet: Phase, stalled: Phase) -> str:
    """Stalled over quiet: the file sink's pace and each process's mean RSS."""
    parts = [f"file {stalled.file_rate / max(quiet.file_rate, 1e-9):.1%}"]
    parts.append(f"RSS daemon {stalled.rss_daemon / max(quiet.rss_daemon, 1e-9):.1%}")
    if quiet.rss_delivery and stalled.rss_delivery:
        parts.append(f"delivery {stalled.rss_delivery / quiet.rss_delivery:.1%}")
    return ", ".join(parts)


def table_rows(rate: float, quiet: Phase, stalled: Phase, client: str) -> list[Row]:
    """The two rows of the table (peak RSS: the highest sample of the stretch, both processes);
    the second's note compares it with the first."""
    out = []
    for phase, who in ((quiet, "no stream client"), (stalled, "a stalled stream client")):
        row = Row(name=f"12 {rate:,.0f}/s → file, {who}", relative=False)
        events = int(phase.written)
        row.runs.append(
            RunResult(
                phase.file_rate, phase.cpu_us, phase.peak_daemon + phase.peak_delivery, events
            )
        )
        row.note = f"{phase.seconds:.0f} s; {phase.text()}"
        out.append(row)
    out[1].note += f"; against none: {ratios(quiet, stalled)}; {client}"
    return out


def summary(rate: float, quiet: Phase, stalled: Phase, client: str) -> str:
    """The line printed as the row runs."""
    return (
        f"  12 at {rate:,.0f}/s: no stream client ({quiet.seconds:.0f} s, before the stall "
        f"and after it): {quiet.text()}; one /api/v1/events client "
        f"that stops reading ({stalled.seconds:.0f} s): {stalled.text()}; stalled over none: "
        f"{ratios(quiet, stalled)}; {client}"
    )


def _rss_mb(pid: int) -> float:
    return procs.status_kib(pid, "VmRSS") / 1024 if pid else 0.0


def phase(metrics: str, pids: Pids, seconds: float) -> Phase:
    """Watch the daemon for ``seconds``."""
    deliverer = pids.delivery[0] if pids.delivery else 0
    a = delivery.scrape(metrics, pids.daemon)
    cpu0 = a.cpu + sum(procs.cpu_seconds(p) for p in pids.delivery)
    daemon, delivering = [_rss_mb(pids.daemon)], [_rss_mb(deliverer)]
    end = a.at + seconds
    while (now := time.monotonic()) < end:
        time.sleep(min(RSS_EVERY, end - now))
        daemon.append(_rss_mb(pids.daemon))
        delivering.append(_rss_mb(deliverer))
    b: Scrape = delivery.scrape(metrics, pids.daemon)
    return Phase(
        b.at - a.at,
        b.sinks.get(SINK, 0.0) - a.sinks.get(SINK, 0.0),
        b.bus - a.bus,
        b.cpu + sum(procs.cpu_seconds(p) for p in pids.delivery) - cpu0,
        statistics.fmean(daemon),
        statistics.fmean(delivering),
        max(daemon),
        max(delivering),
        int(b.bus - b.sinks.get(SINK, 0.0)),
    )


def stalled_client(port: int, timeout: float) -> socket.socket:
    """A client that reads the headers of ``/api/v1/events`` (a 200) and then nothing."""
    sock = socket.socket()
    # Before the connect, so the window it advertises stays this small.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
    sock.settimeout(timeout)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET {QUERY} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)  # one byte at a time: nothing of the body is taken
        if not chunk:
            raise RuntimeError("the stream was closed before its headers")
        head += chunk
    status = head.split(b"\r\n", 1)[0]
    if b" 200 " not in status + b" ":
        sock.close()
        raise RuntimeError(f"the stream answered {status.decode(errors='replace')!r}")
    return sock


def held(sock: socket.socket) -> str:
    """Whether the daemon still holds the stalled client's stream (it lets one go after 60 s):
    the connection's TCP state, whatever is still unread in its buffer."""
    state = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]
    if state == TCP_ESTABLISHED:
        return "the client was held, not dropped"
    return f"the daemon closed the client (TCP state {state})"


def rows(work: Work, sizes: Sizes, mix: MixFrames) -> list[Row]:
    """Row 12's two rows, or one saying why it could not run."""
    try:
        return _run(work, sizes, Feeds(mix))
    except (OSError, RuntimeError, TimeoutError, ValueError) as exc:
        name = f"12 {sizes.stall_rate:,.0f}/s → file, a stalled stream client"
        return [Row(name=name, na=f"failed: {exc}"[:120])]


def _run(work: Work, sizes: Sizes, feeds: Feeds) -> list[Row]:
    rate, seconds, side = sizes.stall_rate, sizes.stall_seconds, sizes.stall_quiet
    # More than the stretches need: the feeds must outlast the watch on a busy host too (they
    # stop with the daemon).
    spec, _, known = feeds.spec(work, rate, sizes.stall_warm + seconds + 2 * side + 10.0)
    sinks: Sequence[dict[str, Any]] = [file_sink(work.path("stall.jsonl"), SINK)]
    with delivery.running(work, [spec], sinks, known=known) as run:
        ready(run, [SINK], sizes.timeout)
        pids = pids_of(delivery.readyz(run.port), run.daemon.pid, procs.children)
        for pid in pids.delivery:
            procs.unpin(pid)  # as in rows 9-11: the delivery process on either core
        try:
            for sender in run.senders:
                sender.send_signal(signal.SIGUSR1)  # the feeds' schedule starts now
            time.sleep(sizes.stall_warm)
            before = phase(run.metrics, pids, side)
            with stalled_client(run.port, sizes.timeout) as sock:
                stalled = phase(run.metrics, pids, seconds)
                client = held(sock)
            after = phase(run.metrics, pids, side)
        finally:
            kill_daemon(run.daemon, pids)
    quiet = around(before, after)
    print(summary(rate, quiet, stalled, client), flush=True)
    return table_rows(rate, quiet, stalled, client)
