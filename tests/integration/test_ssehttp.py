"""The shared SSE-over-HTTP shell against a small real aiohttp server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from tradebus.adapters.live import LiveTransport
from tradebus.adapters.ssehttp import (
    ConnectError,
    ContentTypeError,
    ReadTimeoutError,
    SSEConnection,
    SSERead,
    StatusError,
    StreamClosedError,
)
from tradebus.adapters.transport import Client
from tradebus.backoff import Failure, Kind
from tradebus.errors import SourceError, UpstreamProtocolError
from tradebus.simulators.base import AppServer
from tradebus.sse import SSEDecoder, SSEMessage

SECRET = "Bearer sk_live_never_in_messages"


class Server:
    """One route per behaviour; records the headers and query of every request."""

    def __init__(self) -> None:
        self.seen: list[tuple[dict[str, str], dict[str, str]]] = []
        self.release = asyncio.Event()
        app = web.Application()
        for path, handler in {
            "/ok": self.ok,
            "/503": self.unavailable,
            "/html": self.html,
            "/silent": self.silent,
            "/stall": self.stall,
            "/huge": self.huge,
        }.items():
            app.router.add_get(path, handler)
        self.app = AppServer(app)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.app.port}{path}?account_id=a1"

    async def _open(self, request: web.Request) -> web.StreamResponse:
        self.seen.append((dict(request.headers), dict(request.query)))
        response = web.StreamResponse()
        response.content_type = "text/event-stream"
        await response.prepare(request)
        return response

    async def ok(self, request: web.Request) -> web.StreamResponse:
        response = await self._open(request)
        await response.write(b"retry: 1500\nid: 1\ndata: one\n\nid: 2\ndata: t")
        await asyncio.sleep(0.05)  # two reads: the second completes the event
        await response.write(b"wo\n\nid: 3\ndata: cut")
        return response

    async def unavailable(self, request: web.Request) -> web.Response:
        return web.json_response({"error": "x"}, status=503, headers={"Retry-After": "7"})

    async def html(self, request: web.Request) -> web.Response:
        return web.Response(body=b"<html>" + b"x" * 2000, content_type="text/html")

    async def silent(self, request: web.Request) -> web.Response:
        await self.release.wait()
        return web.Response(status=204)

    async def stall(self, request: web.Request) -> web.StreamResponse:
        response = await self._open(request)
        await response.write(b"data: first\n\n")
        await self.release.wait()
        return response

    async def huge(self, request: web.Request) -> web.StreamResponse:
        response = await self._open(request)
        await response.write(b"id: 9\ndata: " + b"y" * 5000 + b"\n\ndata: after\n\n")
        return response


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    srv = Server()
    await srv.app.start()
    yield srv
    srv.release.set()
    await srv.app.stop()


@pytest.fixture
async def session() -> AsyncIterator[Client]:
    async with LiveTransport().client() as client:
        yield client


def connection(
    session: Client, url: str, decoder: SSEDecoder, read_timeout: float = 5.0
) -> SSEConnection:
    headers = {"Authorization": SECRET, "Accept": "text/event-stream"}
    return SSEConnection(
        session, url, decoder, headers=headers, params={"x": "1"}, read_timeout=read_timeout
    )


async def read_all(conn: SSEConnection) -> tuple[list[SSERead], BaseException]:
    reads: list[SSERead] = []
    while True:
        try:
            reads.append(await conn.read())
        except (SourceError, UpstreamProtocolError) as exc:
            return reads, exc


async def test_messages_per_read_and_a_clean_end(server: Server, session: Client) -> None:
    """Each read yields what it completed; the end is StreamClosedError; the cut event is not."""
    decoder = SSEDecoder()
    async with connection(session, server.url("/ok"), decoder) as conn:
        reads, end = await read_all(conn)
    messages = [m for r in reads for m in r.messages]
    assert messages == [
        SSEMessage("message", "one", "1", 1500),
        SSEMessage("message", "two", "2", 1500),
    ]
    assert isinstance(end, StreamClosedError)
    assert end.failure() == Failure(Kind.RETRYABLE, "closed")
    # The cut event's id is not committed: a resume sends 2 and gets event 3 again.
    assert (decoder.last_event_id, decoder.retry) == ("2", 1500)
    headers, query = server.seen[0]
    assert headers["Authorization"] == SECRET
    assert query == {"account_id": "a1", "x": "1"}


async def test_status_other_than_200_carries_status_and_retry_after(
    server: Server, session: Client
) -> None:
    """A 503 raises StatusError(503, "7"), classified retryable with its Retry-After."""
    with pytest.raises(StatusError) as info:
        async with connection(session, server.url("/503"), SSEDecoder()):
            pass
    assert (info.value.status, info.value.retry_after) == (503, "7")
    assert info.value.failure() == Failure(Kind.RETRYABLE, "server_error", "503", 7.0)
    assert "account_id" not in str(info.value)
    assert "sk_live" not in str(info.value)


async def test_non_sse_content_type_is_a_protocol_error_with_a_bounded_excerpt(
    server: Server, session: Client
) -> None:
    """A 200 text/html raises ContentTypeError with at most 512 bytes of the body."""
    with pytest.raises(ContentTypeError) as info:
        async with connection(session, server.url("/html"), SSEDecoder()):
            pass
    assert isinstance(info.value, UpstreamProtocolError)
    assert info.value.content_type == "text/html"
    assert info.value.excerpt[:6] == b"<html>"
    assert len(info.value.excerpt) <= 512


async def test_a_server_that_never_answers_is_a_read_timeout(
    server: Server, session: Client
) -> None:
    """No response headers within read_timeout: ReadTimeoutError on connect."""
    with pytest.raises(ReadTimeoutError) as info:
        async with connection(session, server.url("/silent"), SSEDecoder(), 0.2):
            pass
    assert info.value.failure() == Failure(Kind.RETRYABLE, "read_timeout")


async def test_a_stream_gone_silent_is_a_read_timeout(server: Server, session: Client) -> None:
    """Bytes, then none for read_timeout: ReadTimeoutError on read."""
    async with connection(session, server.url("/stall"), SSEDecoder(), 0.2) as conn:
        reads, end = await read_all(conn)
    assert [m.data for r in reads for m in r.messages] == ["first"]
    assert isinstance(end, ReadTimeoutError)


async def test_oversized_lines_are_reported_per_read(server: Server, session: Client) -> None:
    """A line past max_line is dropped and reported with an excerpt; later events still come."""
    async with connection(session, server.url("/huge"), SSEDecoder(max_line=1000)) as conn:
        reads, _ = await read_all(conn)
    assert sum(r.oversized for r in reads) == 1
    (excerpt,) = [r.oversized_excerpt for r in reads if r.oversized]
    assert excerpt.startswith(b"data: yyy")
    assert len(excerpt) <= 200
    assert [m.data for r in reads for m in r.messages] == ["after"]


async def test_connection_refused_is_a_connect_error(session: Client) -> None:
    """Nothing listening: ConnectError, retryable, its message free of the credential."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ConnectError) as info:
        async with connection(session, f"http://127.0.0.1:{port}/x", SSEDecoder()):
            pass
    assert info.value.failure().kind is Kind.RETRYABLE
    assert "sk_live" not in str(info.value)
