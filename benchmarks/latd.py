"""The daemon for row 7: ``tradebus run`` with its file sink timed as each ``write()`` returns.

The sink is tradebus's own ``FileSink``; after each batch's ``write`` returns, it reads the
clock once and records, for every event carrying a sender stamp in ``data.position_id``, the
time from stamp to that return. The samples (int64 ns, native order) go to ``SAMPLES`` when the
daemon stops. Run as ``python -m benchmarks.latd SAMPLES CONFIG``.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from array import array
from pathlib import Path

from benchmarks.frames import stamp_of
from benchmarks.sender import run_uvloop
from tradebus import config, log
from tradebus.config import FileSinkConfig
from tradebus.daemon.app import Daemon
from tradebus.sinks.base import Batch
from tradebus.sinks.file import FileSink


class TimedFileSink(FileSink):
    needs_events = True  # the stamps are read from the structs, after the clock

    def __init__(self, cfg: FileSinkConfig, samples: Path) -> None:
        super().__init__(cfg)
        self.samples_path = samples
        self.samples = array("q")

    async def write(self, batch: Batch) -> None:
        await super().write(batch)
        done = time.monotonic_ns()
        for event in batch.events:
            stamp = stamp_of(getattr(event.data, "position_id", "") or "")
            if stamp is not None:
                self.samples.append(done - stamp)

    async def close(self) -> None:
        await super().close()
        self.samples_path.write_bytes(self.samples.tobytes())


async def serve(cfg: config.Config, samples: Path) -> int:
    sink_cfg = cfg.sinks[0]
    assert isinstance(sink_cfg, FileSinkConfig)
    daemon = Daemon(cfg, sinks=[TimedFileSink(sink_cfg, samples)])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return 0 if await daemon.run(stop) else 1


def main(argv: list[str]) -> int:
    cfg = config.load(argv[1])
    log.configure(cfg.daemon.log_level, fmt=cfg.daemon.log_format)
    return run_uvloop(serve(cfg, Path(argv[0])))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
