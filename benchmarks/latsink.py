"""Row 7's sink: tradebus's own ``FileSink``, timed as each ``write()`` returns, registered as a
sink plugin (type ``bench_latency``) so the delivery process loads it by its entry point as it
would any installed sink.

After each write it reads the clocks once, then (off the clock) reads the stamps from the
lines it wrote, and records two samples per event (int64 ns, native
order, written at ``close``):

- ``stamps``: from the sender's ``monotonic_ns`` stamp in ``data.position_id`` (one clock for
  every process of the machine) to the return: wire, ingest, journal and delivery;
- ``appends``: from the batch's ``t0`` (the wall-clock time the daemon reported those seqs
  appended to the delivery process, at the latest) to the return: the journal-to-sink leg the
  ``tradebus_sink_latency_seconds`` histogram measures. ``max_batch`` makes every write carry
  its own ``t0``, that of its earliest record: an upper bound for the events after it.

``env(dir)`` is an environment whose ``PYTHONPATH`` holds the distribution that registers it (a
dist-info folder made in ``dir``, as pip would install one) and this repository, for the daemon
and its delivery process; ``pyproject.toml`` is left alone.
"""

from __future__ import annotations

import os
import time
from array import array
from pathlib import Path

import msgspec

from benchmarks.frames import stamp_of
from tradebus.config import FileSinkConfig
from tradebus.plugin import SinkPlugin
from tradebus.sinks.base import Batch
from tradebus.sinks.file import FileSink

TYPE = "bench_latency"
NAME = "tradebus-bench-latency"
DIST = "tradebus_bench_latency-1.0.dist-info"
REPO = Path(__file__).resolve().parents[1]  # where ``benchmarks`` is imported from


class TimedFileConfig(FileSinkConfig, tag=TYPE, frozen=True, kw_only=True):
    stamps: str  # where the stamp → write samples go
    appends: str  # where the append → write samples go


class _Data(msgspec.Struct):
    position_id: str | None = None


class _Line(msgspec.Struct):
    data: _Data


_stamps = msgspec.json.Decoder(_Line)


class TimedFileSink(FileSink):
    # Any size, but not merged across records without a t0 (a merged write has none).
    max_batch = 1 << 20
    # No ``needs_events``: the follower hands it what it hands the file sink (lines, never
    # decoded); the stamps are read from the lines once the clocks were read.

    def __init__(self, config: TimedFileConfig) -> None:
        super().__init__(config)
        self.paths = Path(config.stamps), Path(config.appends)
        self.stamps = array("q")
        self.appends = array("q")

    async def write(self, batch: Batch) -> None:
        await super().write(batch)
        done, wall = time.monotonic_ns(), time.time()
        lines = batch.data.split(b"\n")[:-1]
        if batch.t0:
            since = int((wall - batch.t0) * 1e9)
            self.appends.extend([since] * len(lines))
        for line in lines:
            stamp = stamp_of(_stamps.decode(line).data.position_id or "")
            if stamp is not None:
                self.stamps.append(done - stamp)

    async def close(self) -> None:
        await super().close()
        for path, samples in zip(self.paths, (self.stamps, self.appends), strict=True):
            # Whole or absent: the bench reads it as soon as it exists.
            part = path.with_name(path.name + ".part")
            part.write_bytes(samples.tobytes())
            os.replace(part, path)


PLUGIN = SinkPlugin(TYPE, TimedFileConfig, TimedFileSink)


def site(folder: Path) -> Path:
    """``folder`` made a site dir holding the distribution that registers ``PLUGIN``."""
    info = folder / DIST
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {NAME}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[tradebus.sinks]\n{TYPE} = {__name__}:PLUGIN\n")
    return folder


def env(folder: Path) -> dict[str, str]:
    paths = [str(site(folder)), str(REPO), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, paths))}
