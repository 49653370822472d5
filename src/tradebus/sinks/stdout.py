"""The stdout sink: JSONL on standard output (logs go to stderr), written on its own thread.

A consumer that stops reading (``tradebus run | consumer``) fills the pipe; the write then
blocks the sink's thread, not the event loop, and the journal holds what this sink has not
taken. Standard output is written with ``os.write`` on its descriptor, never through
``sys.stdout``'s buffer: a buffered object held by a blocked thread would stall the
interpreter's own flush at exit. Where standard output leads where stderr does (one terminal,
or ``2>&1``), the lines go in whole runs of at most ``PIPE_BUF`` bytes a call, so no log line
lands inside an event line, whichever process logs (``lineout``).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Sequence
from typing import BinaryIO

from tradebus import lineout
from tradebus.config import StdoutSinkConfig
from tradebus.errors import FatalSinkError
from tradebus.plugin import SinkPlugin
from tradebus.sinks.base import Batch, Sink, SinkContext
from tradebus.sinks.writer import WriterThread

# How long close waits for a write still blocked on a reader that stopped reading.
CLOSE_TIMEOUT = 2.0


class StdoutSink(Sink):
    needs_events = False
    max_batch = 0

    def __init__(self, config: StdoutSinkConfig, stream: BinaryIO | None = None) -> None:
        self.name = config.name
        self._stream = stream
        self._fd = -1
        self._shared = False  # stdout goes where stderr goes: log lines share it (lineout)
        self._writer = WriterThread(f"sink:{config.name}")

    async def open(self, ctx: SinkContext) -> None:
        if self._stream is None:
            self._fd = sys.stdout.fileno()
            self._shared = lineout.shared(self._fd, 2)

    def _write(self, chunks: Sequence[bytes]) -> None:
        if self._stream is not None:
            for chunk in chunks:
                self._stream.write(chunk)
            self._stream.flush()
        else:
            lineout.write_lines(self._fd, chunks, shared_output=self._shared)

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


PLUGIN = SinkPlugin("stdout", StdoutSinkConfig, StdoutSink)
