"""Row 8, the soak: the daemon fed a paced TTMT stream for a long while, its RSS sampled.

The file sink rotates (64 MiB, one backup) as it would in production, so the soak's own output
does not grow without bound. RSS is ``VmRSS`` every ``sample_every`` seconds; "flat" means the
last sample within 5% of the first one taken after warm-up (the first minute).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from benchmarks import procs
from benchmarks.delivery import readyz
from benchmarks.harness import SenderSpec, Work, daemon_config, start_sender
from benchmarks.procs import PYTHON
from benchmarks.rows import adapter_missing

WARM_UP = 60.0


def run(work: Work, seconds: float, rate: float, sample_every: float) -> str:
    if why := adapter_missing("ttmt"):
        return f"8 soak: n/a ({why})"
    sender, info = start_sender(
        work, SenderSpec("ttmt-soak", ("ttmt", "--events", "0", "--rate", str(rate)))
    )
    out = work.path("soak.jsonl")
    sink = {"name": "file", "type": "file", "path": str(out), "max_bytes": 64 << 20}
    config = daemon_config(work, [info["table"]], [sink | {"backups": 1}])
    daemon = _spawn_daemon(work, config)
    samples: list[tuple[float, float]] = []
    try:
        start = time.monotonic()
        cpu0 = procs.cpu_seconds(daemon.pid)
        while (elapsed := time.monotonic() - start) < seconds:
            if daemon.poll() is not None:
                return f"8 soak: daemon exited with {daemon.returncode} after {elapsed:.0f} s"
            samples.append((elapsed, procs.status_kib(daemon.pid, "VmRSS") / 1024))
            print(f"  {elapsed:6.0f} s  RSS {samples[-1][1]:.1f} MB", flush=True)
            time.sleep(min(sample_every, max(seconds - elapsed, 0.01)))
        cpu = procs.cpu_seconds(daemon.pid) - cpu0
        wall = time.monotonic() - start
    finally:
        procs.stop(daemon)
        procs.stop(sender)
    return summary(samples, rate, cpu / wall)


def _spawn_daemon(work: Work, config: Path) -> subprocess.Popen[bytes]:
    return procs.spawn(
        [PYTHON, "-m", "tradebus", "run", "-c", str(config)],
        core=procs.DAEMON_CORE,
        log=work.path("daemon.log"),
    )


def _backlog(port: int, sink: str) -> int:
    return int(readyz(port)["sinks"][sink]["backlog"])


def run_sink_down(work: Work, seconds: float, rate: float, sample_every: float) -> str:
    """Row 8b: one of two file sinks cannot write for ``seconds`` (its directory is a file),
    then can again. RSS while it is down, and how fast it catches up from the journal."""
    if why := adapter_missing("ttmt"):
        return f"8b soak, a sink down: n/a ({why})"
    sender, info = start_sender(
        work, SenderSpec("ttmt-soak", ("ttmt", "--events", "0", "--rate", str(rate)))
    )
    blocker = work.path("blocker")
    blocker.write_text("a file where the down sink wants its directory")
    healthy = {"name": "healthy", "type": "file", "path": str(work.path("ok.jsonl"))}
    down = {"name": "down", "type": "file", "path": str(blocker / "down.jsonl")}
    port = procs.free_port()
    sinks = [s | {"max_bytes": 64 << 20, "backups": 1} for s in (healthy, down)]
    config = daemon_config(
        work,
        [info["table"]],
        sinks,
        daemon={"fsync": "interval", "http": f"127.0.0.1:{port}"},
    )
    daemon = _spawn_daemon(work, config)
    samples: list[tuple[float, float]] = []
    try:
        start = time.monotonic()
        while (elapsed := time.monotonic() - start) < seconds:
            if daemon.poll() is not None:
                tail = work.root.glob("*daemon.log")
                logs = " | ".join(p.read_text()[-400:] for p in tail)
                return (
                    f"8b soak: daemon exited with {daemon.returncode} after {elapsed:.0f} s: {logs}"
                )
            rss = procs.status_kib(daemon.pid, "VmRSS") / 1024
            if rss:  # 0 until the interpreter has mapped itself
                samples.append((elapsed, rss))
                print(f"  {elapsed:6.0f} s  RSS {rss:.1f} MB (sink down)", flush=True)
            time.sleep(min(sample_every, max(seconds - elapsed, 0.01)))
        behind = _backlog(port, "down")
        blocker.unlink()
        back = time.monotonic()
        while (left := _backlog(port, "down")) > rate:  # within a second of the live feed
            if time.monotonic() - back > 600:
                return f"8b soak: the sink had {left:,} events left after 600 s"
            time.sleep(0.5)
        catch_up = time.monotonic() - back
    finally:
        procs.stop(daemon)
        procs.stop(sender)
    memory = summary(samples, rate, 0.0).split(": ", 1)[1].split("; daemon CPU")[0]
    return (
        f"8b soak @ {rate:,.0f}/s, one sink down {seconds:.0f} s: {memory}; "
        f"{behind:,} events behind, caught up in {catch_up:.1f} s "
        f"({behind / max(catch_up, 1e-3):,.0f} events/s beside the live feed)"
    )


def summary(samples: list[tuple[float, float]], rate: float, cpu_share: float) -> str:
    warm = [rss for t, rss in samples if t >= WARM_UP] or [rss for _, rss in samples]
    first, last, peak = warm[0], warm[-1], max(rss for _, rss in samples)
    drift = (last - first) / first if first else 0.0
    return (
        f"8 soak @ {rate:,.0f}/s for {samples[-1][0]:.0f} s: RSS first {first:.1f} MB "
        f"(after warm-up), last {last:.1f} MB ({drift:+.1%}), max {peak:.1f} MB; "
        f"daemon CPU {cpu_share:.1%} of a core"
    )
