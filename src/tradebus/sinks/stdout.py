"""The stdout sink: JSONL on standard output, flushed per batch (logs go to stderr)."""

from __future__ import annotations

import contextlib
import sys
from typing import BinaryIO

from tradebus.config import StdoutSinkConfig
from tradebus.errors import FatalSinkError
from tradebus.sinks.base import Batch, register


@register("stdout")
class StdoutSink:
    needs_events = False

    def __init__(self, config: StdoutSinkConfig, stream: BinaryIO | None = None) -> None:
        self.name = config.name
        self._stream = stream

    async def open(self) -> None:
        if self._stream is None:
            self._stream = sys.stdout.buffer

    async def write(self, batch: Batch) -> None:
        assert self._stream is not None, "write before open"
        try:
            for chunk in batch.chunks:  # a merged batch's parts, never joined
                self._stream.write(chunk)
            self._stream.flush()
        except BrokenPipeError as exc:
            # The reader went away (`| head`): nothing will ever read this stream again.
            raise FatalSinkError(f"sink {self.name}: standard output closed") from exc

    async def close(self) -> None:
        if self._stream is not None:
            with contextlib.suppress(BrokenPipeError, ValueError):
                self._stream.flush()

    def reopen(self) -> None:
        pass
