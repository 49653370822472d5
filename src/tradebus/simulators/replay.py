"""A recording served as the upstream it came from: ``tradebus simulate replay FILE --port P``.

Each recorded connection is served, in the order they were opened, to the next request of its
kind: an SSE GET, a REST call of the same method and path, a WebSocket upgrade. It gets the
recorded status line and headers, then its body or messages paced by the recorded times (scaled
by ``--speed``), then its end as it was: the server ended the stream, the connection broke
(the socket is dropped), or the WebSocket was closed with the recorded code. A connection that
failed to open is refused the same way (its recorded HTTP status; a dropped socket; a request
never answered). What the client sends is read and dropped, and any credential is accepted:
the recording's own were redacted. Past its last recorded connection a request gets 503.

So a daemon, a test or any client connects to recorded traffic as to the real upstream; the
lines a daemon makes of it are those ``tradebus replay`` makes, but for what the daemon's own
clock stamps (``received``, status events' times and ids).
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from aiohttp import web

from tradebus import log
from tradebus.recording import files
from tradebus.recording import format as fmt
from tradebus.simulators.base import AppServer, abort

# Headers of the recorded answer that describe its recorded transfer, not this one.
_HOP = frozenset(
    {"content-length", "transfer-encoding", "date", "server", "connection", "content-encoding"}
)


@dataclass(slots=True)
class Recorded:
    """One recorded connection: how it was opened, answered, and what came over it."""

    method: str
    path: str
    opened: float
    answer: fmt.Response | fmt.Error | None = None
    events: list[fmt.Record] = field(default_factory=list)
    served: bool = False


def connections(run: files.Run) -> list[Recorded]:
    """The run's connections in the order they were opened."""
    found: dict[int, Recorded] = {}
    for record in files.records(run, lambda _path, _damage: None):
        if isinstance(record, fmt.Open):
            path = unquote(urlsplit(record.url).path)
            found[record.conn] = Recorded(record.method, path, record.t)
            continue
        conn = found.get(getattr(record, "conn", -1))
        if conn is None:
            continue
        if conn.answer is None and isinstance(record, fmt.Response | fmt.Error):
            conn.answer = record
        elif isinstance(record, fmt.Recv | fmt.Control | fmt.Timeout | fmt.Close | fmt.Error):
            conn.events.append(record)
    return list(found.values())


def _headers(headers: dict[str, str] | None) -> dict[str, str]:
    return {k: v for k, v in (headers or {}).items() if k.lower() not in _HOP}


class ReplaySimulator:
    """Serves one source's recorded runs (``source_table`` points an adapter at it)."""

    def __init__(self, runs: list[files.Run], *, speed: float = 1.0) -> None:
        if not runs:
            raise files.RecordingError("no recording to serve")
        self.runs = runs
        self.speed = speed
        self.header = runs[0].header
        self.recorded = [c for run in runs for c in connections(run)]
        self.served = 0
        self._closing = asyncio.Event()
        self._host = "127.0.0.1"
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._server = AppServer(app)
        self._log: Any = log.get(simulator="replay", source=self.header.source)

    @property
    def port(self) -> int:
        return self._server.port

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._closing.clear()
        self._host = host
        await self._server.start(host, port)

    async def stop(self) -> None:
        self._closing.set()
        await self._server.stop()

    def source_table(self, name: str) -> dict[str, Any]:
        """The recorded source's table, its URL on this server (its secrets stay redacted)."""
        table = dict(self.header.config)
        parts = urlsplit(str(table["url"]))
        netloc = f"{self._host}:{self.port}"
        table["url"] = urlunsplit(("http", netloc, parts.path, parts.query, ""))
        table["name"] = name
        return table

    def usage(self) -> list[str]:
        """What ``tradebus simulate replay`` prints at start: where it serves which recording."""
        return [
            f"serving the recording of source {self.header.source} ({self.header.type}) "
            f"on http://{self._host}:{self.port}/ at {self.speed:g}x; point a "
            f"{self.header.type} source's url there (its credentials were redacted: any works)",
        ]

    def _next(self, method: str, path: str) -> Recorded | None:
        for conn in self.recorded:
            if not conn.served and conn.method == method and conn.path == path:
                conn.served = True
                self.served += 1
                return conn
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
        conn = self._next("WS" if upgrade else request.method, request.path)
        if conn is None:
            return web.json_response({"error": "the recording holds no more of these"}, status=503)
        answer = conn.answer
        if isinstance(answer, fmt.Error) or answer is None:
            return await self._refuse(request, answer)
        if upgrade:
            return await self._websocket(request, conn)
        if request.method == "GET" and (conn.events or not answer.text):
            return await self._stream(request, conn, answer)
        return web.Response(
            status=answer.status, headers=_headers(answer.headers), body=fmt.payload(answer)
        )

    async def _refuse(self, request: web.Request, answer: fmt.Error | None) -> web.StreamResponse:
        if answer is not None and answer.status is not None:
            return web.Response(status=answer.status, headers=_headers(answer.headers))
        if answer is not None and answer.error != "TimeoutError":
            abort(request)
            return web.Response(status=503)
        await self._closing.wait()  # it never answered: neither does this
        return web.Response(status=503)

    async def _pace(self, started: float, offset: float) -> None:
        if self.speed > 0:
            loop = asyncio.get_running_loop()
            await asyncio.sleep(max(0.0, started + offset / self.speed - loop.time()))

    async def _stream(
        self, request: web.Request, conn: Recorded, answer: fmt.Response
    ) -> web.StreamResponse:
        response = web.StreamResponse(status=answer.status, headers=_headers(answer.headers))
        await response.prepare(request)
        started = asyncio.get_running_loop().time()
        for record in conn.events:
            await self._pace(started, record.t - answer.t)
            if isinstance(record, fmt.Recv):
                await response.write(fmt.payload(record))
            elif isinstance(record, fmt.Close) and record.by == "upstream":
                await response.write_eof()
                return response
            elif isinstance(record, fmt.Error):
                abort(request)
                return response
            else:
                break  # the client gave up or closed it: stay open and silent, as a server may
        await self._closing.wait()
        return response

    async def _websocket(self, request: web.Request, conn: Recorded) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        drain = asyncio.ensure_future(_drain(ws))  # what the client sends: read and dropped
        started = asyncio.get_running_loop().time()
        opened = conn.answer.t if conn.answer is not None else conn.opened
        try:
            for record in conn.events:
                await self._pace(started, record.t - opened)
                if isinstance(record, fmt.Recv):
                    if record.b64 is not None:
                        await ws.send_bytes(fmt.payload(record))
                    else:
                        await ws.send_str(record.text or "")
                elif isinstance(record, fmt.Control):
                    if await self._control(request, ws, record):
                        return ws
                else:
                    break
            await self._closing.wait()
        finally:
            drain.cancel()
        return ws

    async def _control(
        self, request: web.Request, ws: web.WebSocketResponse, record: fmt.Control
    ) -> bool:
        """Play a control event; True once the connection is over."""
        if record.op == "ping":
            await ws.ping(bytes(record.b64 or b""))
            return False
        if record.op == "pong":
            return False
        if record.op == "close":
            await ws.close(code=record.code or 1000, message=(record.text or "").encode())
            return True
        abort(request)  # closing, closed, error, too_big: the connection broke
        return True


async def _drain(ws: web.WebSocketResponse) -> None:
    async for _ in ws:
        pass


# --- CLI ---------------------------------------------------------------------------------------


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="recording files, or a directory")
    parser.add_argument("--source", help="serve this source's recordings (default: the only one)")
    parser.add_argument(
        "--speed", type=float, default=1.0, help="1: recorded pace (default); N: N times faster"
    )


def from_cli(args: argparse.Namespace) -> ReplaySimulator:
    from tradebus.recording.command import paths

    runs = files.runs(paths(args.files))
    names = sorted({r.source for r in runs})
    source = args.source or (names[0] if len(names) == 1 else None)
    if source is None:
        raise files.RecordingError(
            f"the files hold recordings of {', '.join(names)}: name one with --source"
        )
    chosen = [r for r in runs if r.source == source]
    if not chosen:
        raise files.RecordingError(f"--source {source}: no recording of it in the files")
    return ReplaySimulator(chosen, speed=args.speed)
