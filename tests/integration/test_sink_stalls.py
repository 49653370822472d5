"""File and stdout sinks whose target blocks (a real FIFO): the event loop never waits on it.

A FIFO is the cheapest target that blocks for real: opening it for writing blocks until a reader
opens it, and once its reader stops reading, a write blocks as soon as the pipe is full. A
timer thread unblocks the target after a few seconds wherever a build would wait on it from
the loop, so such a build fails the test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from types import TracebackType

import pytest

from tests.sinkctx import context
from tradebus.config import FileSinkConfig, StdoutSinkConfig
from tradebus.errors import RetryableSinkError
from tradebus.sinks import file, stdout
from tradebus.sinks.base import Batch, Sink
from tradebus.sinks.file import FileSink
from tradebus.sinks.stdout import StdoutSink

# More than any pipe buffer holds (64 KiB by default, 1 MiB at most unprivileged).
BIG = 4 << 20
# When a timer frees a target a build waits on from the loop, and the bounds that tell such a
# build apart from one that never waits (kept wide: the machine may be busy with other work).
FREED_AFTER = 4.0
# The longest the loop may go without a turn while a sink's thread is blocked.
LAG_BOUND = 1.0
# How long a step given up on after 0.3 s may take in all.
STEP_BOUND = 2.0


class Fifo:
    """A FIFO in a temp dir, its reader ends, and timers that free a blocked writer."""

    def __init__(self, path: Path) -> None:
        os.mkfifo(path)
        self.path = path
        self._fds: list[int] = []
        self._lock = threading.Lock()
        self._timers: list[threading.Timer] = []

    def open_reader(self) -> int:
        """A reader end that never reads unless asked (a writer's open then returns)."""
        fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        with self._lock:
            self._fds.append(fd)
        return fd

    def close_readers(self) -> None:
        """Every reader gone: a blocked write fails with EPIPE instead of waiting."""
        with self._lock:
            fds, self._fds = self._fds, []
        for fd in fds:
            os.close(fd)

    def later(self, seconds: float, action: Callable[[], object]) -> None:
        timer = threading.Timer(seconds, action)
        timer.daemon = True
        timer.start()
        self._timers.append(timer)

    def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
            timer.join()
        self.close_readers()


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[Fifo]:
    f = Fifo(tmp_path / "events.jsonl")
    yield f
    f.stop()


class LoopLag:
    """The longest the event loop went without a turn while this was entered."""

    TICK = 0.005

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LoopLag:
        ticking = asyncio.Event()
        self._task = asyncio.create_task(self._tick(ticking))
        await ticking.wait()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _tick(self, ticking: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            ticking.set()
            await asyncio.sleep(self.TICK)
            self.worst = max(self.worst, loop.time() - before - self.TICK)


async def readable(fd: int) -> None:
    """Until ``fd`` has bytes to read (the writer has begun)."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def seen() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, seen)
    try:
        await asyncio.wait_for(ready, 10)
    finally:
        loop.remove_reader(fd)


def big_batch() -> Batch:
    line = b'{"id":"s:1","pad":"' + b"x" * 1000 + b'"}\n'
    data = line * (BIG // len(line) + 1)
    return Batch(data, data.count(b"\n"))


@pytest.fixture
async def stuck_writes() -> AsyncIterator[list[asyncio.Task[None]]]:
    """Writes a test left blocked; cancelled at the end, as a drain past its timeout does."""
    tasks: list[asyncio.Task[None]] = []
    yield tasks
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def file_sink(path: Path) -> FileSink:
    return FileSink(FileSinkConfig(name="archive", path=str(path)))


async def closed_while_stuck(
    s: Sink, fifo: Fifo, reader: int, stuck_writes: list[asyncio.Task[None]]
) -> tuple[float, float]:
    """Start a write the pipe cannot hold, see it begin, cancel the wait for it (as a drain
    past drain_timeout does), then close: (seconds close took, the loop's worst lag)."""
    async with LoopLag() as lag:
        writing = asyncio.create_task(s.write(big_batch()))
        stuck_writes.append(writing)
        await readable(reader)  # the write began; the rest cannot fit the pipe
        fifo.later(FREED_AFTER, fifo.close_readers)  # frees a build that closes on the loop
        writing.cancel()
        await asyncio.gather(writing, return_exceptions=True)
        began = time.monotonic()
        await s.close()
        took = time.monotonic() - began
    return took, lag.worst


async def test_a_fifo_without_a_reader_fails_the_open_in_time_and_the_loop_turns(
    fifo: Fifo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Opening a FIFO nobody reads blocks the sink's thread, not the loop: open gives up after
    OPEN_TIMEOUT with a retryable error that says why; once a reader comes, the retry opens
    and writes reach it."""
    monkeypatch.setattr(file, "OPEN_TIMEOUT", 0.3)
    fifo.later(FREED_AFTER, fifo.open_reader)  # frees a build that opens on the loop
    s = file_sink(fifo.path)
    async with LoopLag() as lag:
        began = time.monotonic()
        with pytest.raises(RetryableSinkError, match=r"cannot open .*: no answer in 0\.3s"):
            await s.open(context())
        took = time.monotonic() - began
    assert took < STEP_BOUND
    assert lag.worst < LAG_BOUND
    reader = fifo.open_reader()
    await s.open(context())  # the bus's retry
    await s.write(Batch(b'{"a":1}\n', 1))
    assert os.read(reader, 100) == b'{"a":1}\n'
    await s.close()


async def test_close_returns_in_time_while_a_write_is_stuck_on_a_full_fifo(
    fifo: Fifo, monkeypatch: pytest.MonkeyPatch, stuck_writes: list[asyncio.Task[None]]
) -> None:
    """A reader that stopped reading holds the sink's thread in a write: the loop keeps
    turning, and close returns after CLOSE_TIMEOUT although the write never finished."""
    monkeypatch.setattr(file, "CLOSE_TIMEOUT", 0.3)
    reader = fifo.open_reader()
    s = file_sink(fifo.path)
    await s.open(context())
    took, lag = await closed_while_stuck(s, fifo, reader, stuck_writes)
    assert 0.25 < took < STEP_BOUND
    assert lag < LAG_BOUND


async def test_a_reopen_that_blocks_fails_the_write_in_time_and_the_loop_turns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The re-open after SIGHUP (the step a rotation takes too) finds a FIFO nobody reads at
    the path: the write fails retryably after OPEN_TIMEOUT, and the loop kept turning."""
    monkeypatch.setattr(file, "OPEN_TIMEOUT", 0.3)
    path = tmp_path / "events.jsonl"
    s = file_sink(path)
    await s.open(context())
    await s.write(Batch(b'{"a":1}\n', 1))
    path.rename(tmp_path / "events.jsonl.rotated")  # logrotate moved it; a FIFO took its place
    fifo = Fifo(path)
    fifo.later(FREED_AFTER, fifo.open_reader)  # frees a build that re-opens on the loop
    try:
        s.reopen()
        async with LoopLag() as lag:
            began = time.monotonic()
            with pytest.raises(RetryableSinkError, match=r"cannot open .*: no answer in 0\.3s"):
                await s.write(Batch(b'{"a":2}\n', 1))
            took = time.monotonic() - began
        assert took < STEP_BOUND
        assert lag.worst < LAG_BOUND
    finally:
        fifo.open_reader()  # the re-open in progress completes, and close runs after it
        await s.close()
        fifo.stop()


async def test_stdout_close_returns_in_time_while_a_write_is_stuck(
    fifo: Fifo, monkeypatch: pytest.MonkeyPatch, stuck_writes: list[asyncio.Task[None]]
) -> None:
    """The stdout sink's reader stopped reading: close gives up after CLOSE_TIMEOUT."""
    monkeypatch.setattr(stdout, "CLOSE_TIMEOUT", 0.3)
    reader = fifo.open_reader()
    # A FIFO with a reader opens at once; closed below, once that reader is gone.
    stream = open(fifo.path, "wb")  # noqa: SIM115, ASYNC230
    s = StdoutSink(StdoutSinkConfig(name="console"), stream=stream)
    await s.open(context())
    took, lag = await closed_while_stuck(s, fifo, reader, stuck_writes)
    assert 0.25 < took < STEP_BOUND
    assert lag < LAG_BOUND
    fifo.close_readers()  # the thread's write fails (EPIPE) and lets go of the stream
    with contextlib.suppress(OSError):
        stream.close()
