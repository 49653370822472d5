"""The senders: fake upstreams that feed the daemon over 127.0.0.1, each in its own process.

``python -m benchmarks.sender ttmt --events N [--rate R] --info FILE`` serves a TTMT event
stream (``GET /api/v1/stream``) of ``N`` frames to the first client (``--frames FILE`` instead:
the whole frames in ``FILE``, pre-built by the harness, as ``--rate 0`` sends):

- ``--rate 0``: every frame is built before the port is published, then written as fast as the
  socket takes it, in 256 KiB chunks;
- ``--rate R``: open loop, paced in ticks of ``--tick`` seconds. Each tick writes the frames that
  are due, every one stamped (``positionId = lat-<monotonic_ns>``) just before the write; a
  daemon that falls behind never slows the schedule.

A reconnecting client gets an empty stream that stays open: the frames are sent once. ``sim
KIND ARGS...`` runs one of tradebus's own simulators instead, built by its ``from_cli``. Either
way ``FILE`` receives ``{"port": ..., "table": {...}}``: the ``[[sources]]`` table to use.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import signal
import sys
import time
from pathlib import Path
from typing import Any, cast

import msgspec
from aiohttp import web

from benchmarks.frames import aligned_chunks, ttmt_chunks, ttmt_frame
from benchmarks.procs import write_atomic
from tradebus.simulators.base import AppServer, SimulatorModule

API_KEY = "ttmt_bench_key"


class TtmtSender:
    """An SSE server that sends its frames once, pre-built or paced."""

    def __init__(self, events: int, rate: float, tick: float, frames: Path | None = None) -> None:
        self.events = events
        self.rate = rate
        self.tick = tick
        self.done = asyncio.Event()
        self._served = False
        if frames is not None:  # pre-built elsewhere (the real mix): sent as they are
            self._chunks = aligned_chunks(frames.read_bytes(), 256 * 1024)
        else:
            self._chunks = list(ttmt_chunks(1, events)) if rate == 0 else []
        app = web.Application()
        app.router.add_get("/api/v1/stream", self._stream)
        self.server = AppServer(app)

    @property
    def port(self) -> int:
        return self.server.port

    async def start(self, host: str, port: int) -> None:
        await self.server.start(host, port)

    async def stop(self) -> None:
        await self.server.stop()

    def table(self, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "type": "ttmt",
            "url": f"http://127.0.0.1:{self.server.port}/api/v1/stream",
            "api_key": API_KEY,
        }

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        if not self._served:
            self._served = True
            if self.rate == 0:
                for chunk in self._chunks:
                    await resp.write(chunk)
                self._chunks = []
            else:
                await self._paced(resp)
            self.done.set()
        await asyncio.Event().wait()  # cancelled when the client goes away
        return resp

    async def _paced(self, resp: web.StreamResponse) -> None:
        # Each frame is cut around its stamp ahead of time, so stamping a tick's frames is one
        # bytes.join right before the write.
        start = time.monotonic()
        sent = 0
        while not self.events or sent < self.events:
            due = int((time.monotonic() - start) * self.rate) - sent
            if self.events:
                due = min(due, self.events - sent)
            if due > 0:
                pieces = _stamp_pieces(sent + 1, due)
                await resp.write((b"%d" % time.monotonic_ns()).join(pieces))
                sent += due
            await asyncio.sleep(self.tick)


def _stamp_pieces(first: int, count: int) -> list[bytes]:
    """Frames ``first`` … cut at their stamp: joining them with a stamp gives the stream."""
    pieces: list[bytes] = []
    tail = b""
    for event_id in range(first, first + count):
        head, rest = ttmt_frame(event_id, b"lat-\x00").split(b"\x00")
        pieces.append(tail + head)
        tail = rest
    pieces.append(tail)
    return pieces


async def _serve(make: Any, info: Path, name: str) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sim = make()
    await sim.start("127.0.0.1", 0)
    table = sim.table(name) if isinstance(sim, TtmtSender) else sim.source_table(name)
    write_atomic(info, msgspec.json.encode({"port": sim.port, "table": table}))
    try:
        await stop.wait()
    finally:
        await sim.stop()
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sender")
    parser.add_argument("--info", type=Path, required=True, help="where to write port and table")
    parser.add_argument("--name", default="bench", help="the source name in the table")
    sub = parser.add_subparsers(dest="kind", required=True)
    ttmt = sub.add_parser("ttmt")
    ttmt.add_argument("--events", type=int, default=0)
    ttmt.add_argument("--frames", type=Path, help="pre-built frames to send instead (--rate 0)")
    ttmt.add_argument("--rate", type=float, default=0.0)
    ttmt.add_argument("--tick", type=float, default=0.001)
    sim = sub.add_parser("sim")
    sim.add_argument("sim_kind")
    sim.add_argument("sim_args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.kind == "ttmt":

        def make() -> Any:
            return TtmtSender(args.events, args.rate, args.tick, args.frames)

    else:
        module = cast(
            SimulatorModule, importlib.import_module(f"tradebus.simulators.{args.sim_kind}")
        )
        sim_parser = argparse.ArgumentParser(conflict_handler="resolve")
        sim_parser.add_argument("--host", default="127.0.0.1")
        sim_parser.add_argument("--port", type=int, default=0)
        module.add_cli_arguments(sim_parser)
        sim_args = sim_parser.parse_args(args.sim_args)

        def make() -> Any:
            return module.from_cli(sim_args)

    return run_uvloop(_serve(make, args.info, args.name))


def run_uvloop(coro: Any) -> int:
    import uvloop

    with (
        asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner,
        contextlib.suppress(KeyboardInterrupt),
    ):
        return int(runner.run(coro))
    return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
