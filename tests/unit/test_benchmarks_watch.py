"""The benchmark watcher counts every line of a file its writer keeps rotating, and no more."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from benchmarks.harness import watch_lines

# Five files of 300 lines each, the old one unlinked before the next exists (as the file sink
# rotates with no backups), then the writer idles until it is stopped.
WRITER = """
import os, sys, time
path = sys.argv[1]
for n in range(5):
    with open(path, "ab") as f:
        for i in range(300):
            f.write(b'{"n": %d}\\n' % i)
            f.flush()
            if i % 50 == 0:
                time.sleep(0.005)
    os.unlink(path)
open(path, "ab").close()
time.sleep(60)
"""
TOTAL = 5 * 300


@pytest.fixture
def rotating_writer(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[bytes]]]:
    path = tmp_path / "out.jsonl"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)])  # noqa: S603 - our script
    try:
        yield path, proc
    finally:
        proc.kill()
        proc.wait()


def test_watch_follows_rotation_to_the_last_line(
    rotating_writer: tuple[Path, subprocess.Popen[bytes]],
) -> None:
    path, proc = rotating_writer
    result = watch_lines(path, proc, TOTAL, timeout=20)
    assert 0 < result.events <= TOTAL


def test_watch_never_counts_a_line_twice(
    rotating_writer: tuple[Path, subprocess.Popen[bytes]],
) -> None:
    path, proc = rotating_writer
    with pytest.raises(TimeoutError, match=f"^{TOTAL} of {TOTAL + 1} lines"):
        watch_lines(path, proc, TOTAL + 1, timeout=3)
