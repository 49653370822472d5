"""Live runs with ``record = true`` and their replays, for the tests that compare the two.

``Lines`` stands where a sink stands: it keeps every line the daemon delivered, and lets a
test await a state of them. ``live`` runs a real ``Daemon`` (journal, bus, this sink) on one
source with recording on; ``replayed`` feeds its recording back through ``tradebus replay``'s
own functions and gives the lines that writes.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol

import msgspec
import pytest
import zstandard

from tradebus import config
from tradebus.daemon.app import Daemon
from tradebus.recording import files, replay
from tradebus.recording import format as fmt
from tradebus.schemas.events import Event
from tradebus.sinks.base import Batch, Sink, SinkContext

_decode = msgspec.json.Decoder(Event)


class Lines(Sink):
    """A sink that keeps the lines it is given (as the stdout sink would write them)."""

    name = "lines"
    needs_events = False
    max_batch = 0

    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self._changed = asyncio.Condition()

    async def open(self, ctx: SinkContext) -> None:
        return None

    async def write(self, batch: Batch) -> None:
        async with self._changed:
            for chunk in batch.chunks:
                self.lines.extend(chunk.splitlines())
            self._changed.notify_all()

    async def close(self) -> None:
        return None

    def reopen(self) -> None:
        return None

    def types(self) -> list[str]:
        return [str(msgspec.json.decode(line)["type"]) for line in self.lines]

    def count(self, type_: str) -> int:
        return self.types().count(type_)

    async def wait_for(self, predicate: Callable[[Lines], bool], timeout: float = 15.0) -> None:
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: predicate(self)), timeout)
            except TimeoutError:
                pytest.fail(f"condition not met in {timeout}s; saw {self.types()[-20:]}")

    async def wait_count(self, type_: str, n: int, timeout: float = 15.0) -> None:
        await self.wait_for(lambda s: s.count(type_) >= n, timeout)


class Upstream(Protocol):
    async def stop(self) -> None: ...


async def upstream_gone(sim: Upstream, lines: Lines) -> None:
    """Stop the upstream and wait for the source to say so: the daemon then stops with nothing
    read and not yet handed over (a replay would give that, as the recording holds it)."""
    seen = len(lines.lines)
    await sim.stop()
    await lines.wait_for(
        lambda s: any(t in ("status.disconnected", "status.error") for t in s.types()[seen:])
    )


@asynccontextmanager
async def live(
    tmp_path: Path, table: dict[str, Any], **daemon: Any
) -> AsyncIterator[tuple[Daemon, Lines]]:
    """A daemon with one source, recording, into ``Lines``; stopped (drained) at the end."""
    table = {**table, "record": True}
    cfg = config.parse(
        {
            "daemon": {"state_dir": str(tmp_path / "state"), **daemon},
            "sources": [table],
            "sinks": [{"type": "stdout", "name": "lines"}],
        },
        env={},
    )
    sink = Lines()
    running = Daemon(cfg, sinks=[sink])
    stop = asyncio.Event()
    task = asyncio.get_running_loop().create_task(running.run(stop))
    try:
        yield running, sink
    finally:
        stop.set()
        await task


def recordings(tmp_path: Path, source: str) -> list[Path]:
    return sorted((tmp_path / "state" / "recordings" / source).glob("*.jsonl.zst"))


def replayed(paths: Sequence[Path], **options: Any) -> tuple[list[bytes], replay.Stats]:
    """The lines `tradebus replay` writes for ``paths``, and its stats."""
    out: list[bytes] = []
    lines = replay.encoder()
    seq = 0

    def emit(events: Sequence[Event]) -> None:
        nonlocal seq
        data, seq = lines(events, seq)
        out.extend(data.splitlines())

    stats = replay.replay(files.runs(list(paths)), emit, **options)
    return out, stats


def renumbered(lines: Sequence[bytes]) -> list[bytes]:
    """``lines`` with ``seq`` from 1, as a replay numbers them (the live journal's seq spans
    every source and restarts; the replay knows only this source's)."""
    out = []
    for seq, line in enumerate(lines, 1):
        event = _decode.decode(line)
        msgspec.structs.force_setattr(event, "seq", seq)
        out.append(msgspec.json.encode(event))
    return out


def first_difference(a: Sequence[bytes], b: Sequence[bytes]) -> str:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return f"line {i}:\n live   {x[:400]!r}\n replay {y[:400]!r}"
    return f"lengths {len(a)} and {len(b)}"


def decompressed(path: Path) -> bytes:
    """Every frame of a recording file decompressed, as `zstd -dc` gives it."""
    data = path.read_bytes()
    out, pos = [], 0
    while pos < len(data):
        size = fmt.frame_size(data, pos)
        assert isinstance(size, int), f"{path}: {size} at {pos}"
        out.append(zstandard.ZstdDecompressor().decompress(data[pos : pos + size]))
        pos += size
    return b"".join(out)


def leaked(paths: Sequence[Path], secrets: Sequence[str]) -> list[str]:
    """The secrets found in any recording, raw or decompressed, as text or in base64."""
    found = []
    for path in paths:
        blobs = (path.read_bytes(), decompressed(path))
        for value in secrets:
            forms = (value.encode(), base64.b64encode(value.encode()))
            if any(form in blob for form in forms for blob in blobs):
                found.append(f"{path.name}: {value}")
    return found


def records_of(path: Path) -> list[fmt.Record]:
    return [i.record for i in files.items(path) if isinstance(i, fmt.Line)]


def framed(records: Sequence[fmt.Record]) -> tuple[bytes, list[int]]:
    """A recording file holding one record a frame, and each frame's offset."""
    compress = fmt.compressor()
    out, offsets = b"", []
    for record in records:
        offsets.append(len(out))
        out += fmt.frame(fmt.encode_lines([record]), compress)
    return out, offsets
