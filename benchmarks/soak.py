"""Row 8, the soak: the daemon fed a paced TTMT stream for a long while, its RSS sampled.

The file sink rotates (64 MiB, one backup) as it would in production, so the soak's own output
does not grow without bound. RSS is ``VmRSS`` every ``sample_every`` seconds; "flat" means the
last sample within 5% of the first one taken after warm-up (the first minute).
"""

from __future__ import annotations

import time

from benchmarks import procs
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
    daemon = procs.spawn(
        [PYTHON, "-m", "tradebus", "run", "-c", str(config)],
        core=procs.DAEMON_CORE,
        log=work.path("daemon.log"),
    )
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


def summary(samples: list[tuple[float, float]], rate: float, cpu_share: float) -> str:
    warm = [rss for t, rss in samples if t >= WARM_UP] or [rss for _, rss in samples]
    first, last, peak = warm[0], warm[-1], max(rss for _, rss in samples)
    drift = (last - first) / first if first else 0.0
    return (
        f"8 soak @ {rate:,.0f}/s for {samples[-1][0]:.0f} s: RSS first {first:.1f} MB "
        f"(after warm-up), last {last:.1f} MB ({drift:+.1%}), max {peak:.1f} MB; "
        f"daemon CPU {cpu_share:.1%} of a core"
    )
