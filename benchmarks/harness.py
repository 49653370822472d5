"""Running one measured pipeline: senders, a daemon, and a watch on the file it writes.

Throughput is file growth: the watcher counts the lines of the sink's file every 2 ms; the run
spans from the first poll that saw a line to the first that saw ``expected`` lines, and the
daemon's CPU time is read at those two polls. Peak RSS is the daemon's ``VmHWM`` at the end.

The daemon's file sink and the naive script start their file afresh every ``ROTATE_BYTES``,
and the watcher follows, as ``tail -F`` would. On a VM whose host backs memory lazily, a file
growing into pages the guest never touched pays a host page fault per page: appending 450-byte
lines to tmpfs measured 0.15-0.25 µs a line into recycled pages and 2.4-6.9 µs into fresh ones,
more than the daemon's own work, and which one a run got depended on what ran before it. A
bounded file keeps recycling its pages, so the rows measure the writers. (The floor writes its
own 270 MB file and deletes it after each run, after a warm-up pass: its runs reuse those
pages. Truncating it every 64 MiB measured slower and more variable, 1.6-2.7 against 1.8-2.1 µs
an event, so it is left as it was: the % of the floor is never flattered.)
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec

from benchmarks import procs
from benchmarks.procs import PYTHON
from benchmarks.result import RunResult

POLL = 0.002
ROTATE_BYTES = 64 << 20


class SenderSpec(msgspec.Struct, frozen=True):
    """``python -m benchmarks.sender`` arguments after ``--info``/``--name``.

    ``overrides`` change the sender's ``[[sources]]`` table (a ``None`` value removes the key).
    """

    name: str
    args: tuple[str, ...]
    overrides: dict[str, Any] = msgspec.field(default_factory=dict)


class Work:
    """A scratch directory (tmpfs when there is one, so the disk is not what is measured)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._n = 0

    def path(self, stem: str) -> Path:
        self._n += 1
        return self.root / f"{self._n:03d}-{stem}"


@contextmanager
def workdir() -> Iterator[Work]:
    base = "/dev/shm" if Path("/dev/shm").is_dir() else None  # noqa: S108 - tmpfs on purpose
    root = Path(tempfile.mkdtemp(prefix="tradebus-bench-", dir=base))
    try:
        yield Work(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def toml(data: dict[str, Any]) -> str:
    """The few TOML shapes a config needs: tables of scalars and lists, arrays of tables."""
    out: list[str] = []
    for key, value in data.items():
        if isinstance(value, dict):
            out.append(f"[{key}]")
            out.extend(_pairs(value))
        else:
            for table in value:
                out.append(f"[[{key}]]")
                out.extend(_pairs(table))
    return "\n".join(out) + "\n"


def _pairs(table: dict[str, Any]) -> list[str]:
    return [f"{k} = {msgspec.json.encode(v).decode()}" for k, v in table.items()]


def daemon_config(
    work: Work,
    tables: Sequence[dict[str, Any]],
    sinks: Sequence[dict[str, Any]],
    *,
    state: Path | None = None,
    daemon: dict[str, Any] | None = None,
) -> Path:
    """A config file; each run gets a state dir of its own (a journal left by the previous run
    would make the senders' ids duplicates)."""
    cfg = {
        "daemon": {
            "state_dir": str(state or work.path("state")),
            "log_level": "warning",
            # Short: a run is measured before the daemon is stopped, and a drain of what a
            # slow sink has left would only make the bench longer.
            "drain_timeout": 1.0,
            # No durability asked for unless a row asks: row 2 is the path without fsync.
            "fsync": "never",
            **(daemon or {}),
        },
        "sources": list(tables),
        "sinks": list(sinks),
    }
    path = work.path("config.toml")
    path.write_text(toml(cfg))
    return path


def file_sink(path: Path, name: str = "file") -> dict[str, Any]:
    # Rotated without backups: the old file is gone at once and its pages are reused.
    return {
        "name": name,
        "type": "file",
        "path": str(path),
        "max_bytes": ROTATE_BYTES,
        "backups": 0,
    }


def start_sender(work: Work, spec: SenderSpec) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """Start a sender on the sender core; its info (``port``, ``table``) once it listens."""
    started = start_senders(work, [spec])
    return started[0]


def start_senders(
    work: Work, specs: Sequence[SenderSpec]
) -> list[tuple[subprocess.Popen[bytes], dict[str, Any]]]:
    """Start senders side by side (some pre-build for seconds); each one's info once ready."""
    pending: list[tuple[SenderSpec, Path, subprocess.Popen[bytes]]] = []
    try:
        for spec in specs:
            info = work.path(f"{spec.name}.json")
            cmd = [PYTHON, "-m", "benchmarks.sender", "--info", str(info), "--name", spec.name]
            log = work.path("sender.log")
            proc = procs.spawn([*cmd, *spec.args], core=procs.SENDER_CORE, log=log)
            pending.append((spec, info, proc))
        return [(proc, _info(spec, info, proc)) for spec, info, proc in pending]
    except BaseException:
        for _, _, proc in pending:
            procs.stop(proc)
        raise


def _info(spec: SenderSpec, path: Path, proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    data: dict[str, Any] = msgspec.json.decode(procs.wait_file(path, proc, timeout=60))
    for table in (data["table"], *data.get("tables", [])):
        for key, value in spec.overrides.items():
            if value is None:
                table.pop(key, None)
            else:
                table[key] = value
    return data


def tables(ready: Sequence[tuple[subprocess.Popen[bytes], dict[str, Any]]]) -> list[dict[str, Any]]:
    """The ``[[sources]]`` tables of started senders: one per feed (a sender may serve several)."""
    return [t for _, info in ready for t in info.get("tables", [info["table"]])]


def watch_lines(
    path: Path,
    proc: subprocess.Popen[bytes],
    expected: int | None,
    timeout: float,
    *,
    duration: float | None = None,
    warmup: float = 0.0,
) -> RunResult:
    """Follow ``path`` until it holds ``expected`` lines, or for ``duration`` s from the first.

    ``proc`` is what writes it: its CPU time and peak RSS are the run's. With ``warmup``, the
    measure starts that long after the first line (sources connect one by one).
    """
    started = time.perf_counter()
    seen = 0.0
    deadline = started + timeout
    lines = 0
    first: tuple[float, int, float] | None = None
    f = None
    try:
        while True:
            if f is None and path.exists():
                f = open(path, "rb", buffering=0)  # noqa: SIM115 - closed in finally
            if f is not None:
                lines += (f.readall() or b"").count(b"\n")
                if _replaced(path, f.fileno()):
                    # Nothing is written to the old file once the new one exists: read its rest.
                    lines += (f.readall() or b"").count(b"\n")
                    f.close()
                    f = None
            now = time.perf_counter()
            if lines and not seen:
                seen = now
            if lines and first is None and now - seen >= warmup:
                first = (now, lines, procs.family_cpu_seconds(proc.pid))
            if expected is not None and lines >= expected:
                break
            if duration is not None and first is not None and now - first[0] >= duration:
                break
            if proc.poll() is not None:
                raise RuntimeError(f"exited with {proc.returncode} after {lines} lines")
            if now > deadline:
                raise TimeoutError(f"{lines} of {expected} lines in {timeout:.0f}s")
            time.sleep(POLL)
        cpu = procs.family_cpu_seconds(proc.pid)
    finally:
        if f is not None:
            f.close()
    assert first is not None
    t0, n0, cpu0 = first
    if lines == n0:
        # Everything arrived between two polls (a tiny run): count from the start instead.
        t0, n0, cpu0 = started, 0, 0.0
    n = lines - n0
    # The daemon and its delivery process together: the sinks' work is part of the row.
    rss = procs.family_hwm_mib(proc.pid)
    return RunResult(n / max(now - t0, 1e-9), (cpu - cpu0) / n * 1e6, rss, n)


def _replaced(path: Path, fd: int) -> bool:
    """Whether ``path`` no longer names the file open as ``fd`` (rotated away)."""
    try:
        return os.stat(path).st_ino != os.fstat(fd).st_ino
    except FileNotFoundError:
        return True


def run_daemon(
    work: Work,
    senders: Sequence[SenderSpec],
    sinks: Sequence[dict[str, Any]],
    watched: Path,
    expected: int | None,
    *,
    command: Sequence[str] | None = None,
    timeout: float = 60.0,
    duration: float | None = None,
    warmup: float = 0.0,
    daemon_settings: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    unpin_delivery: bool = False,
    hold: bool = False,
) -> RunResult:
    """Senders on one core, the daemon on the other; measure until ``watched`` is complete.

    With ``unpin_delivery``, the delivery process may run on either core (the second core is
    its lever), as soon as it is seen. With ``hold`` (senders started with ``--hold``), the
    senders start once ``watched`` exists: its sink is open, so a delivery process starting up
    is not what the first events measure."""
    started: list[subprocess.Popen[bytes]] = []
    state = work.path("state")
    try:
        ready = start_senders(work, senders)
        started.extend(proc for proc, _ in ready)
        config = daemon_config(work, tables(ready), sinks, state=state, daemon=daemon_settings)
        cmd = command or [PYTHON, "-m", "tradebus", "run", "-c"]
        daemon = procs.spawn(
            [*cmd, str(config)],
            core=procs.DAEMON_CORE,
            log=work.path("daemon.log"),
            stdout=Path("/dev/null"),
            env=env,
        )
        started.append(daemon)
        if unpin_delivery:
            for pid in procs.wait_children(daemon, timeout):
                procs.unpin(pid)
        if hold:
            procs.wait_file(watched, daemon, timeout)
            for sender, _ in ready:
                sender.send_signal(signal.SIGUSR1)
        return watch_lines(watched, daemon, expected, timeout, duration=duration, warmup=warmup)
    finally:
        for proc in reversed(started):
            procs.stop(proc)
        watched.unlink(missing_ok=True)
        shutil.rmtree(state, ignore_errors=True)  # the journal: a tmpfs holds it in memory
