"""The stdout sink: JSONL on standard output (logs go to stderr), written on its own thread.

A consumer that stops reading (``tradebus run | consumer``) fills the pipe; the write then
blocks the sink's thread, not the event loop, and the journal holds what this sink has not
taken. Standard output is written with ``os.write`` on its descriptor, never through
``sys.stdout``'s buffer: a buffered object held by a blocked thread would stall the
interpreter's own flush at exit.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence
from typing import BinaryIO

from tradebus.config import StdoutSinkConfig
from tradebus.errors import FatalSinkError
from tradebus.sinks.base import Batch, SinkContext, register
from tradebus.sinks.writer import WriterThread

# How long close waits for a write still blocked on a reader that stopped reading.
CLOSE_TIMEOUT = 2.0
_IOV = 512  # below IOV_MAX (1024 on Linux)


def write_all(fd: int, chunks: Sequence[bytes]) -> None:
    """Every byte of ``chunks`` to ``fd``, in order (``writev`` may take only part)."""
    for i in range(0, len(chunks), _IOV):
        part = chunks[i : i + _IOV]
        want = sum(map(len, part))
        done = os.writev(fd, part)
        if done < want:
            rest = memoryview(b"".join(part))[done:]
            while rest:
                rest = rest[os.write(fd, rest) :]


@register("stdout")
class StdoutSink:
    needs_events = False
    max_batch = 0

    def __init__(self, config: StdoutSinkConfig, stream: BinaryIO | None = None) -> None:
        self.name = config.name
        self._stream = stream
        self._fd = -1
        self._writer = WriterThread(f"sink:{config.name}")

    async def open(self, ctx: SinkContext) -> None:
        if self._stream is None:
            self._fd = sys.stdout.fileno()

    def _write(self, chunks: Sequence[bytes]) -> None:
        if self._stream is not None:
            for chunk in chunks:
                self._stream.write(chunk)
            self._stream.flush()
        else:
            write_all(self._fd, chunks)

    async def write(self, batch: Batch) -> None:
        chunks = batch.chunks  # a merged batch's parts, never joined
        try:
            await self._writer.call(lambda: self._write(chunks))
        except (BrokenPipeError, ValueError) as exc:
            # The reader went away (`| head`): nothing will ever read this stream again.
            raise FatalSinkError(f"sink {self.name}: standard output closed") from exc

    async def close(self) -> None:
        """Let the writes in flight finish (and flush), for ``CLOSE_TIMEOUT`` seconds at most:
        a reader that stopped reading holds the thread, never the stop."""
        with contextlib.suppress(BrokenPipeError, ValueError):
            await self._writer.close(self._flush, CLOSE_TIMEOUT)

    def _flush(self) -> None:
        if self._stream is not None:
            self._stream.flush()

    def reopen(self) -> None:
        pass
