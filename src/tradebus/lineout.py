"""Output in whole lines, so two writers sharing one terminal or pipe never cut each other's.

Log lines (stderr) and the stdout sink's event lines often end up on the same terminal, or the
same pipe (``tradebus run 2>&1 | …``), written by different threads or processes. The kernel
keeps one ``write()`` whole against another: on a terminal, each call as a whole; on a pipe, a
call of at most ``PIPE_BUF`` bytes (POSIX: "Write requests of {PIPE_BUF} bytes or less shall
not be interleaved with data from other processes doing writes on the same pipe"). So every
writer here hands the kernel whole lines per call, and where the output is shared, at most
``PIPE_BUF`` bytes per call (a single longer line goes alone, still whole in its call).

What cut lines before: ``print()`` writes a line and its ``\\n`` as two calls when stderr is
unbuffered (``PYTHONUNBUFFERED=1``, which the Dockerfile sets), and a writev of a whole batch
into a full pipe is split at whatever byte the reader freed room.
"""

from __future__ import annotations

import os
import select
import stat
from collections.abc import Iterator, Sequence

PIPE_BUF = select.PIPE_BUF  # 4096 on Linux
_IOV = 512  # below IOV_MAX (1024 on Linux)


def shared(fd: int, other: int) -> bool:
    """Whether ``fd`` and ``other`` lead to the same terminal, pipe or file (``2>&1``, or both
    left on the terminal), where their writes can land between each other's."""
    try:
        a, b = os.fstat(fd), os.fstat(other)
    except OSError:
        return False
    if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino):
        return False
    # Both on /dev/null: nobody reads, so no line can be cut (and benchmarks write there).
    return not (stat.S_ISCHR(a.st_mode) and a.st_rdev == os.stat(os.devnull).st_rdev)


def write_whole(fd: int, data: bytes | memoryview) -> None:
    """All of ``data`` to ``fd``; one call unless the kernel takes only part (a long line)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def groups(chunks: Sequence[bytes], limit: int = PIPE_BUF) -> Iterator[list[memoryview]]:
    """``chunks`` (each whole ``\\n``-terminated lines) regrouped into runs of whole lines of
    at most ``limit`` bytes each; a line longer than ``limit`` is a run of its own."""
    run: list[memoryview] = []
    size = 0
    for chunk in chunks:
        view = memoryview(chunk)
        start, end = 0, len(chunk)
        while start < end:
            room = limit - size
            if end - start <= room:
                run.append(view[start:])
                size += end - start
                break
            cut = chunk.rfind(b"\n", start, start + room)
            if cut >= 0:  # the lines that fit close this run
                run.append(view[start : cut + 1])
                start = cut + 1
            elif not run:  # one line longer than the limit: alone, whole
                stop = chunk.find(b"\n", start)
                stop = end if stop < 0 else stop + 1
                run.append(view[start:stop])
                start = stop
            yield run
            run, size = [], 0
    if run:
        yield run


def write_lines(fd: int, chunks: Sequence[bytes], *, shared_output: bool) -> None:
    """Every byte of ``chunks`` (whole lines) to ``fd``, in order and in whole lines per call:
    ``PIPE_BUF``-sized runs when the output is shared, else ``writev`` of up to 512 chunks."""
    if shared_output:
        for run in groups(chunks):
            _writev_all(fd, run)
        return
    for i in range(0, len(chunks), _IOV):
        _writev_all(fd, chunks[i : i + _IOV])


def _writev_all(fd: int, parts: Sequence[bytes | memoryview]) -> None:
    want = sum(map(len, parts))
    done = os.writev(fd, parts)
    if done < want:  # only a signal or a long line: the rest goes on, in order
        write_whole(fd, memoryview(b"".join(parts))[done:])
