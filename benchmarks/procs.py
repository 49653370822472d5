"""Processes under measurement: spawn pinned to a core, read their CPU time and peak RSS.

The machine the issue targets has two cores: the daemon (or whatever stands in its place) gets
``DAEMON_CORE``, senders and this harness share ``SENDER_CORE``; a process the daemon starts
to deliver its sinks inherits the daemon's core, and rows 9-11 let it run on either. CPU time
is utime + stime of ``/proc/<pid>/stat`` (every thread of the process); peak RSS is ``VmHWM``
of ``/proc/<pid>/status``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

DAEMON_CORE = 0
SENDER_CORE = 1
PYTHON = sys.executable
_TICK = os.sysconf("SC_CLK_TCK")


def cores() -> set[int]:
    return set(os.sched_getaffinity(0))


def pin(pid: int, core: int) -> None:
    """Pin ``pid`` to ``core`` when the machine has it; a 1-core box runs unpinned."""
    available = cores()
    if core in available and len(available) > 1:
        os.sched_setaffinity(pid, {core})


def spawn(
    args: Sequence[str],
    *,
    core: int,
    log: Path,
    stdout: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``args`` with stderr (and stdout unless given) to files, pinned to ``core``."""
    out = open(stdout or log, "ab")  # noqa: SIM115 - handed to the child, closed below
    err = open(log, "ab")  # noqa: SIM115 - handed to the child, closed below
    try:
        proc = subprocess.Popen(
            list(args), stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env
        )
    finally:
        out.close()
        err.close()
    pin(proc.pid, core)
    return proc


def unpin(pid: int) -> None:
    """Let every thread of ``pid`` run on any core of the machine."""
    try:
        tasks = [int(t.name) for t in Path(f"/proc/{pid}/task").iterdir()]
    except OSError:
        return  # gone already
    for tid in tasks:
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            os.sched_setaffinity(tid, cores())


def children(pid: int) -> list[int]:
    """``pid``'s child processes, from every thread's ``children`` file."""
    found: list[int] = []
    for path in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found.extend(int(p) for p in path.read_text().split())
        except OSError:
            continue  # the thread ended meanwhile
    return sorted(set(found))


def wait_children(proc: subprocess.Popen[bytes], timeout: float) -> list[int]:
    """``proc``'s child processes once it has one; ``RuntimeError`` if it exits first."""
    deadline = time.monotonic() + timeout
    while not (found := children(proc.pid)):
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode} before its delivery process")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no delivery process in {timeout:.0f}s")
        time.sleep(0.005)
    return found


def family_cpu_seconds(pid: int) -> float:
    """CPU time of ``pid`` and its children (the daemon and its delivery process)."""
    return cpu_seconds(pid) + sum(_cpu_or_zero(c) for c in children(pid))


def family_hwm_mib(pid: int) -> float:
    """Peak RSS of ``pid`` and its children together, MiB."""
    return sum(status_kib(p, "VmHWM") for p in (pid, *children(pid))) / 1024


def _cpu_or_zero(pid: int) -> float:
    try:
        return cpu_seconds(pid)
    except (OSError, ValueError):
        return 0.0  # it ended meanwhile


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far."""
    raw = Path(f"/proc/{pid}/stat").read_bytes()
    # The command name (field 2) may hold spaces: count fields after its closing paren.
    fields = raw[raw.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def status_kib(pid: int, key: str) -> int:
    """A ``kB`` line of ``/proc/<pid>/status`` (``VmHWM``, ``VmRSS``), or 0 once it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def pss_kib(pid: int) -> int:
    """Proportional set size of ``pid`` now, KiB: its private pages plus its share of pages
    mapped by several processes (libpython, OpenSSL, the extension modules), so the PSS of
    two processes adds up to the memory they take together. 0 once it is gone."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def self_cpu_seconds() -> float:
    """This process's user + system CPU time (for in-process rows such as the floor)."""
    t = os.times()
    return t.user + t.system


def self_peak_rss_mb() -> float:
    return status_kib(os.getpid(), "VmHWM") / 1024


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
    """SIGTERM, then SIGKILL after ``timeout``; the exit code."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def wait_file(path: Path, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> bytes:
    """The content of ``path`` once a child wrote it whole (it renames a temp file into place)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return path.read_bytes()
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} before {path.name}")
        time.sleep(0.01)
    raise TimeoutError(f"{path.name} not written in {timeout}s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
