"""The senders: fake upstreams that feed the daemon over 127.0.0.1, each in its own process.

``python -m benchmarks.sender ttmt --events N [--rate R] --info FILE`` serves a TTMT event
stream (``GET /api/v1/stream``) of ``N`` frames to the first client (``--frames FILE`` instead:
the whole frames in ``FILE``, pre-built by the harness, as ``--rate 0`` sends):

- ``--rate 0``: every frame is built before the port is published, then written as fast as the
  socket takes it, in 256 KiB chunks;
- ``--rate R``: open loop, paced in ticks of ``--tick`` seconds. Each tick writes the frames that
  are due, every one stamped (``positionId = lat-<monotonic_ns>``) just before the write; a
  daemon that falls behind never slows the schedule, though a socket it stops reading does.
- ``--frames FILE --rate R``: the same schedule over ``FILE``'s frames, sent over and over with
  every frame's ids renumbered (``N`` frames in all): the real mix at a fixed rate, as long as
  asked, from a file of any size.

With ``--done FILE`` the sender writes ``{"frames", "start", "end", "blocked"}`` there after its
last write (``time.monotonic()``, one clock for every process of the machine): when the feed
stopped, whether it kept its schedule, and how long its writes waited for a reader that was
behind (``blocked``, seconds: a feed late but never blocked was late for want of CPU).
``--feeds N`` serves N such streams from one process, each on its own port (``--port``, one per
feed, or free ones) and with its own ``--done`` (one start-up: importing aiohttp costs 0.4 s of
the sender core each time). With ``--hold`` a client is answered (its headers) but sent nothing
until the sender gets SIGUSR1: the schedule starts once the harness saw the daemon ready.

A reconnecting client gets an empty stream that stays open: the frames are sent once. ``sim
KIND ARGS...`` runs one of tradebus's own simulators instead, built by its ``from_cli``. Either
way ``FILE`` receives ``{"port": ..., "table": {...}, "tables": [...]}``: the ``[[sources]]``
table to use (``tables``: one per feed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import msgspec
from aiohttp import web

from benchmarks.frames import aligned_chunks, ttmt_chunks, ttmt_frame
from benchmarks.procs import write_atomic
from tradebus.simulators.base import AppServer, SimulatorModule

API_KEY = "ttmt_bench_key"
MAX_WRITE = 2048  # frames


class TtmtSender:
    """An SSE server that sends its frames once, pre-built or paced."""

    def __init__(
        self,
        events: int,
        rate: float,
        tick: float,
        *,
        frames: Path | None = None,
        done: Path | None = None,
        go: asyncio.Event | None = None,
    ) -> None:
        self.events = events
        self.rate = rate
        self.tick = tick
        self.done = asyncio.Event()
        self._done_path = done
        self._go = go
        self.blocked = 0.0  # seconds spent in writes: the reader held the feed back
        self._served = False
        self._templates: Renumbered | None = None
        self._chunks: list[bytes] = []
        if frames is not None and rate > 0:
            self._templates = Renumbered(frames.read_bytes())
        elif frames is not None:  # pre-built elsewhere (the real mix): sent as they are
            data = frames.read_bytes()
            self._chunks = aligned_chunks(data, 256 * 1024)
            self.events = data.count(b"\n\n")
        elif rate == 0:
            self._chunks = list(ttmt_chunks(1, events))
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
        return ttmt_table(name, self.server.port)

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        if not self._served:
            self._served = True
            if self._go is not None:
                await self._go.wait()
            start = time.monotonic()
            if self.rate == 0:
                for chunk in self._chunks:
                    await resp.write(chunk)
                self._chunks = []
                sent = self.events
            else:
                sent = await self._paced(resp, start)
            if self._done_path is not None:
                end = time.monotonic()
                report = {"frames": sent, "start": start, "end": end, "blocked": self.blocked}
                write_atomic(self._done_path, msgspec.json.encode(report))
            self.done.set()
        await asyncio.Event().wait()  # cancelled when the client goes away
        return resp

    async def _paced(self, resp: web.StreamResponse, start: float) -> int:
        """Write the frames due at each tick until ``events`` are sent; how many were."""
        sent = 0
        while not self.events or sent < self.events:
            due = int((time.monotonic() - start) * self.rate) - sent
            if self.events:
                due = min(due, self.events - sent)
            # Bounded writes: a sender far behind its schedule (or asked for more than it can
            # send) catches up in writes of a few hundred KiB, never one of everything.
            due = min(due, MAX_WRITE)
            if due > 0:
                if self._templates is not None:
                    data = self._templates.frames(sent, due)
                else:
                    # Each frame is cut around its stamp ahead of time, so stamping a tick's
                    # frames is one bytes.join right before the write.
                    pieces = _stamp_pieces(sent + 1, due)
                    data = (b"%d" % time.monotonic_ns()).join(pieces)
                before = time.monotonic()
                await resp.write(data)
                # A write returns at once unless the socket is full: the reader is behind.
                self.blocked += time.monotonic() - before
                sent += due
            await asyncio.sleep(self.tick)
        return sent


def ttmt_table(name: str, port: int) -> dict[str, Any]:
    """The ``[[sources]]`` table of a TTMT sender on ``port``: known before it listens when the
    port is chosen for it (``--port``)."""
    return {
        "name": name,
        "type": "ttmt",
        "url": f"http://127.0.0.1:{port}/api/v1/stream",
        "api_key": API_KEY,
    }


class Renumbered:
    """Whole TTMT frames as formats with both ids left open (``id:`` and ``eventId``), so that
    a file of frames can be sent over and over, every frame with a new id (the adapter drops a
    repeated one)."""

    def __init__(self, data: bytes) -> None:
        self._formats: list[bytes] = []
        for frame in data.split(b"\n\n")[:-1]:
            head, _, body = frame.partition(b"\n")
            if not head.startswith(b"id: "):
                raise ValueError(f"a frame without an id first: {frame[:60]!r}")
            event_id = b'"eventId":' + head[4:] + b","
            if body.count(event_id) != 1:
                raise ValueError(f"a frame whose eventId is not its id: {frame[:60]!r}")
            body = body.replace(b"%", b"%%").replace(event_id, b'"eventId":%d,')
            self._formats.append(b"id: %d\n" + body + b"\n\n")
        if not self._formats:
            raise ValueError("no frames")

    def frames(self, first: int, count: int) -> bytes:
        """Frames ``first`` … of the endless stream (from 0), ids from ``first + 1``."""
        formats, n = self._formats, len(self._formats)
        return b"".join([formats[k % n] % (k + 1, k + 1) for k in range(first, first + count)])


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


async def _serve(
    make: Any, info: Path, name: str, *, hold: bool = False, ports: Sequence[int] = ()
) -> int:
    stop = asyncio.Event()
    go = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if hold:
        loop.add_signal_handler(signal.SIGUSR1, go.set)
    else:
        go.set()
    sims = make(go)
    tables = []
    for n, sim in enumerate(sims, 1):
        await sim.start("127.0.0.1", ports[n - 1] if n <= len(ports) else 0)
        own = name if len(sims) == 1 else f"{name}-{n}"
        tables.append(sim.table(own) if isinstance(sim, TtmtSender) else sim.source_table(own))
    report = {"port": sims[0].port, "table": tables[0], "tables": tables}
    write_atomic(info, msgspec.json.encode(report))
    try:
        await stop.wait()
    finally:
        for sim in sims:
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
    ttmt.add_argument(
        "--feeds",
        type=int,
        default=1,
        help="streams served side by side, each on its port, named NAME-1 … (one start-up)",
    )
    ttmt.add_argument(
        "--done", type=Path, action="append", default=[], help="where each feed reports its end"
    )
    ttmt.add_argument(
        "--hold", action="store_true", help="connected clients get nothing until SIGUSR1"
    )
    ttmt.add_argument(
        "--port", type=int, action="append", default=[], help="each feed's port (default: free)"
    )
    sim = sub.add_parser("sim")
    sim.add_argument("sim_kind")
    sim.add_argument("sim_args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.kind == "ttmt":
        done = [*args.done, *[None] * args.feeds][: args.feeds]

        def make(go: asyncio.Event) -> list[Any]:
            return [
                TtmtSender(args.events, args.rate, args.tick, frames=args.frames, done=d, go=go)
                for d in done
            ]

    else:
        module = cast(
            SimulatorModule, importlib.import_module(f"tradebus.simulators.{args.sim_kind}")
        )
        sim_parser = argparse.ArgumentParser(conflict_handler="resolve")
        sim_parser.add_argument("--host", default="127.0.0.1")
        sim_parser.add_argument("--port", type=int, default=0)
        module.add_cli_arguments(sim_parser)
        sim_args = sim_parser.parse_args(args.sim_args)

        def make(go: asyncio.Event) -> list[Any]:
            return [module.from_cli(sim_args)]

    ttmt_only = {"hold": args.hold, "ports": args.port} if args.kind == "ttmt" else {}
    return run_uvloop(_serve(make, args.info, args.name, **ttmt_only))


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
