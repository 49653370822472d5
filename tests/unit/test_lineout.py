"""Whole lines per write call: the runs lineout cuts, and when an output counts as shared."""

from __future__ import annotations

import os
import subprocess
import sys

from hypothesis import given
from hypothesis import strategies as st

from tradebus import lineout

# Lines of 1..300 bytes (newline included), cut into chunks at line ends, as batches are.
_line = st.binary(min_size=0, max_size=299).map(lambda b: b.replace(b"\n", b"x") + b"\n")
_chunk = st.lists(_line, min_size=1, max_size=20).map(b"".join)


@given(chunks=st.lists(_chunk, max_size=30), limit=st.integers(min_value=1, max_value=2000))
def test_runs_hold_whole_lines_within_the_limit_in_order(chunks: list[bytes], limit: int) -> None:
    """Joined, the runs are the input; each run is whole lines, at most ``limit`` bytes unless
    it is one longer line alone."""
    runs = [b"".join(run) for run in lineout.groups(chunks, limit)]
    assert b"".join(runs) == b"".join(chunks)
    for run in runs:
        assert run.endswith(b"\n")
        assert len(run) <= limit or run.count(b"\n") == 1


def test_a_long_line_goes_alone_and_whole() -> None:
    """A line past the limit is its own run; the lines around it keep theirs."""
    chunks = [b"a\n" + b"x" * 10 + b"\nb\n", b"c\n"]
    runs = [b"".join(r) for r in lineout.groups(chunks, 4)]
    assert runs == [b"a\n", b"x" * 10 + b"\n", b"b\nc\n"]


def test_write_lines_writes_every_byte_in_order_through_a_pipe() -> None:
    """Shared or not, what goes into the pipe is the chunks, in order."""
    chunks = [b"%d\n" % n * 50 for n in range(300)]
    for shared in (True, False):
        r, w = os.pipe()
        proc = subprocess.Popen(
            [sys.executable, "-c", "import sys; sys.stdout.buffer.write(sys.stdin.buffer.read())"],
            stdin=r,
            stdout=subprocess.PIPE,
        )
        os.close(r)
        lineout.write_lines(w, chunks, shared_output=shared)
        os.close(w)
        out, _ = proc.communicate(timeout=30)
        assert out == b"".join(chunks)


def test_one_pipe_is_shared_two_pipes_and_dev_null_are_not() -> None:
    """Two descriptors of one pipe share it (2>&1); two pipes do not; /dev/null has no reader."""
    r, w = os.pipe()
    w2 = os.dup(w)
    r3, w3 = os.pipe()
    null_a, null_b = os.open(os.devnull, os.O_WRONLY), os.open(os.devnull, os.O_WRONLY)
    try:
        assert lineout.shared(w, w2)
        assert not lineout.shared(w, w3)
        assert not lineout.shared(null_a, null_b)
    finally:
        for fd in (r, w, w2, r3, w3, null_a, null_b):
            os.close(fd)


def test_a_terminal_is_shared_by_its_descriptors() -> None:
    """stdout and stderr both left on one terminal count as shared."""
    master, slave = os.openpty()
    other = os.open(os.ttyname(slave), os.O_WRONLY | os.O_NOCTTY)
    try:
        assert lineout.shared(slave, other)
    finally:
        for fd in (master, slave, other):
            os.close(fd)
