"""Log lines and event lines from two processes on one pipe or terminal: no line is cut."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import tty
from collections import Counter
from pathlib import Path

import msgspec
import pytest

from tests.e2e import writers
from tradebus.schemas.events import Event

REPO = Path(__file__).resolve().parents[2]
BATCHES = 40
LOGS = 4000
LOG_LINE = re.compile(
    r"\d{4}-\d\d-\d\dT[\d:.]+Z \[info\s*\] connecting\s+n=(\d+) url=(\S+) writer=(events|logs)"
)


def _spawn(kind: str, count: int, out: int) -> subprocess.Popen[bytes]:
    # PYTHONUNBUFFERED=1 as the Dockerfile (and many a shell profile) sets it: print() then
    # writes a line and its newline as two calls.
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)}
    return subprocess.Popen(  # noqa: S603 - our own module
        [sys.executable, "-m", "tests.e2e.writers", kind, str(count)],
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=out,
        env=env,
    )


def _read_all(fd: int, into: bytearray) -> None:
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:  # EIO: a terminal's last writer closed it
            return
        if not data:
            return
        into.extend(data)


@pytest.mark.parametrize("medium", ["pipe", "pty"])
def test_two_writers_on_one_output_never_cut_a_line(medium: str) -> None:
    """A process writing events through the stdout sink (and logging) and another logging,
    both on one pipe or terminal: every line arrives whole, none missing."""
    if medium == "pipe":
        read_fd, write_fd = os.pipe()
    else:
        read_fd, write_fd = os.openpty()
        tty.setraw(write_fd)  # no echo, no \n -> \r\n: the bytes as written
    received = bytearray()
    reader = threading.Thread(target=_read_all, args=(read_fd, received))
    reader.start()
    procs = [_spawn("events", BATCHES, write_fd), _spawn("logs", LOGS, write_fd)]
    try:
        codes = [p.wait(timeout=120) for p in procs]
    finally:
        os.close(write_fd)
        reader.join(timeout=30)
        os.close(read_fd)
    assert codes == [0, 0]

    events: list[str] = []
    logs: Counter[str] = Counter()
    cut = []
    for line in received.decode().splitlines():
        if line.startswith("{"):
            try:
                events.append(msgspec.json.decode(line, type=Event).id)
            except msgspec.DecodeError:
                cut.append(line)
            continue
        m = LOG_LINE.fullmatch(line)
        if m is None or m.group(2) != writers.URL:
            cut.append(line)
        else:
            logs[m.group(3)] += 1
    assert cut == [], f"{len(cut)} lines cut, e.g. {cut[:2]}"
    per_batch = writers.LINES_PER_CHUNK * writers.CHUNKS_PER_BATCH
    assert len(events) == len(set(events)) == BATCHES * per_batch
    assert logs == {"logs": LOGS, "events": BATCHES}
