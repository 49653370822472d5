"""The live ``Transport``: aiohttp, the wall clock, and (``record = true``) a recorder.

Each transport event is handed to the recorder as it happens, raw; redaction, encoding and
compression run on the recorder's thread, so what the event loop pays for a recording is one
append per event. Without a recorder the calls go straight through.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from tradebus import log
from tradebus.adapters.transport import (
    Client,
    HandshakeError,
    NetworkError,
    Reply,
    Stream,
    StreamEndError,
    WaitTimeoutError,
    WebSocket,
    WSKind,
    WSMessage,
    now,
    seeded,
    set_now,
)
from tradebus.recording import format as fmt

if TYPE_CHECKING:
    from tradebus.recording.recorder import Recorder
    from tradebus.schemas.events import Event


def describe(exc: BaseException) -> str:
    """An aiohttp error as text fit for a log line or an event: no URL query, no secret."""
    return log.scrub_text(f"{type(exc).__name__}: {exc}")[:300]


def content_type(headers: Mapping[str, str]) -> str:
    """The media type of a Content-Type header, lower case, without parameters (aiohttp's
    default when there is none); the replay derives it from the recorded headers the same way."""
    value = headers.get("Content-Type")
    if not value:
        return "application/octet-stream"
    return value.split(";", 1)[0].strip().lower()


def full_url(url: str | URL, params: Mapping[str, str] | None) -> str:
    return str(URL(url).update_query(params) if params else URL(url))


class LiveTransport:
    """aiohttp connections, the wall clock, a random seed of this run; recorded if asked."""

    def __init__(
        self,
        recorder: Recorder | None = None,
        *,
        boot: float | None = None,
        seed: int | None = None,
    ) -> None:
        self._rec = recorder
        self._boot = time.time() if boot is None else boot
        self._seed = random.SystemRandom().getrandbits(63) if seed is None else seed
        self._conns = itertools.count(1)
        if recorder is not None:
            recorder.open(self._boot, self._seed)

    @property
    def boot(self) -> float:
        return self._boot

    @property
    def path(self) -> str | None:
        return None if self._rec is None else self._rec.path

    @property
    def recorded_bytes(self) -> int:
        return 0 if self._rec is None else self._rec.bytes_written

    def now(self) -> float:
        return now()

    def rng(self, label: str) -> random.Random:
        return seeded(self._seed, label)

    async def sleep(self, seconds: float, label: str) -> float:
        await asyncio.sleep(seconds)
        t = set_now(time.time())
        if self._rec is not None:
            self._rec.add(fmt.Wake(t=t, label=label))
        return t

    def begin(self, history: Sequence[Event], stopped_at: float | None) -> None:
        t = set_now(time.time())
        if self._rec is not None:
            self._rec.start(t, history, stopped_at)

    @contextlib.asynccontextmanager
    async def client(
        self, *, read_bufsize: int = 2**16, limit: int = 100, connect_timeout: float | None = None
    ) -> AsyncIterator[Client]:
        timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout, sock_read=None)
        async with aiohttp.ClientSession(
            read_bufsize=read_bufsize,
            connector=aiohttp.TCPConnector(limit=limit),
            timeout=timeout,
        ) as session:
            yield LiveClient(session, self._rec, self._conns)

    def close(self) -> None:
        if self._rec is not None:
            self._rec.close()


class LiveClient:
    """One aiohttp session; every exchange numbered (``conn``) and, if recording, recorded."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        recorder: Recorder | None,
        conns: itertools.count[int],
    ) -> None:
        self._session = session
        self._rec = recorder
        self._conns = conns

    def _open(
        self, method: str, url: str, headers: Mapping[str, str] | None, body: bytes | None = None
    ) -> int:
        """A new connection number, and the request on record (raw: the recorder redacts)."""
        conn = next(self._conns)
        if self._rec is not None:
            text, b64 = fmt.text_or_b64(body) if body is not None else (None, None)
            self._rec.add(
                fmt.Open(
                    t=time.time(),
                    conn=conn,
                    method=method,
                    url=url,
                    headers=dict(headers or {}),
                    text=text,
                    b64=b64,
                )
            )
        return conn

    def _answered(
        self, conn: int, status: int, headers: dict[str, str], body: bytes | None = None
    ) -> None:
        t = set_now(time.time())
        if self._rec is not None:
            text, b64 = fmt.text_or_b64(body) if body is not None else (None, None)
            self._rec.add(
                fmt.Response(t=t, conn=conn, status=status, headers=headers, text=text, b64=b64)
            )

    @contextlib.contextmanager
    def _failures(self, conn: int, waited: str) -> Iterator[None]:
        """aiohttp's ways to fail, as the transport's errors (and on record)."""
        try:
            yield
        except TimeoutError as exc:
            self._failed(conn, exc)
            raise WaitTimeoutError(message=waited) from None
        except (aiohttp.ClientError, OSError) as exc:
            self._failed(conn, exc)
            raise NetworkError(type(exc).__name__, describe(exc)) from None

    def _failed(self, conn: int, exc: BaseException) -> None:
        t = set_now(time.time())
        if self._rec is not None:
            what = type(exc).__name__
            self._rec.add(fmt.Error(t=t, conn=conn, error=what, message=describe(exc)))

    async def stream(
        self,
        url: str,
        *,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None,
        timeout: float,
    ) -> Stream:
        conn = self._open("GET", full_url(url, params), headers)
        # A server that accepts and never answers is a timeout too.
        with self._failures(conn, f"no response in {timeout}s"):
            async with asyncio.timeout(timeout):
                response = await self._session.get(
                    url,
                    headers=headers,
                    params=params,
                    # An event stream has no end: no total timeout; liveness is the adapter's.
                    timeout=aiohttp.ClientTimeout(total=None),
                )
        got = dict(response.headers)
        self._answered(conn, response.status, got)
        return LiveStream(conn, response, got, self._rec)

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None = None,
        timeout: float,
    ) -> Reply:
        conn = self._open(method, url, headers, body)
        with self._failures(conn, f"no answer in {timeout}s"):
            async with self._session.request(
                method,
                url,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as resp:
                status, payload, got = resp.status, await resp.read(), dict(resp.headers)
        self._answered(conn, status, got, payload)
        return Reply(status, CIMultiDict(got), payload)

    async def websocket(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        timeout: float,
        max_msg_size: int,
        heartbeat: float | None = None,
        close_timeout: float = 2.0,
    ) -> WebSocket:
        target = URL(url).update_query(params) if params else URL(url)
        conn = self._open("WS", str(target), headers)
        with self._failures(conn, f"no handshake in {timeout}s"):
            try:
                async with asyncio.timeout(timeout):
                    ws = await self._session.ws_connect(
                        target,
                        headers=headers,
                        # Without a heartbeat the adapter answers pings itself (its own timeouts).
                        autoping=heartbeat is not None,
                        heartbeat=heartbeat,
                        compress=0,
                        max_msg_size=max_msg_size,
                        timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=close_timeout),
                    )
            except aiohttp.WSServerHandshakeError as exc:
                raise self._refused(conn, exc) from None
        self._answered(conn, 101, {})
        return LiveWebSocket(conn, ws, self._rec)

    def _refused(self, conn: int, exc: aiohttp.WSServerHandshakeError) -> HandshakeError:
        got = dict(exc.headers or {})
        t = set_now(time.time())
        if self._rec is not None:
            self._rec.add(
                fmt.Error(
                    t=t,
                    conn=conn,
                    error=type(exc).__name__,
                    message=f"handshake answered HTTP {exc.status}",
                    status=exc.status,
                    headers=got,
                )
            )
        # Its text names the URL, token and all: keep only the status.
        return HandshakeError(exc.status, CIMultiDict(got))


class LiveStream:
    """A response body read as it comes (``iter_any``: one read, whatever the socket had)."""

    def __init__(
        self,
        conn: int,
        response: aiohttp.ClientResponse,
        headers: dict[str, str],
        recorder: Recorder | None,
    ) -> None:
        self.conn = conn
        self.status = response.status
        self.headers: Mapping[str, str] = CIMultiDict(headers)
        self.content_type = content_type(self.headers)
        self._response: aiohttp.ClientResponse | None = response
        self._chunks = response.content.iter_any()
        self._rec = recorder

    async def read(self, timeout: float) -> bytes:
        rec = self._rec
        try:
            async with asyncio.timeout(timeout):
                chunk = await anext(self._chunks)
        except StopAsyncIteration:
            t = set_now(time.time())
            if rec is not None:
                rec.add(fmt.Close(t=t, conn=self.conn, by="upstream"))
            raise StreamEndError from None
        except TimeoutError:
            t = set_now(time.time())
            if rec is not None:
                rec.add(fmt.Timeout(t=t, conn=self.conn))
            raise WaitTimeoutError(message=f"no byte in {timeout}s") from None
        except (aiohttp.ClientError, OSError) as exc:
            t = set_now(time.time())
            if rec is not None:
                rec.add(
                    fmt.Error(t=t, conn=self.conn, error=type(exc).__name__, message=describe(exc))
                )
            raise NetworkError(type(exc).__name__, describe(exc)) from None
        t = set_now(time.time())
        if rec is not None:
            rec.recv(t, self.conn, chunk, binary=False)
        return chunk

    async def excerpt(self, size: int, timeout: float) -> bytes:
        # Recorded as a read like any other (or its timeout or error): the replay pops it.
        response = self._response
        if response is None:
            return b""
        rec = self._rec
        try:
            async with asyncio.timeout(timeout):
                data = await response.content.read(size)
        except TimeoutError:
            if rec is not None:
                rec.add(fmt.Timeout(t=time.time(), conn=self.conn))
            return b""
        except (aiohttp.ClientError, OSError) as exc:
            if rec is not None:
                rec.add(fmt.Error(t=time.time(), conn=self.conn, error=type(exc).__name__))
            return b""
        if rec is not None:
            rec.recv(time.time(), self.conn, data, binary=False)
        return data

    def close(self) -> None:
        # Closing (not releasing) drops the socket: an SSE body never ends on its own, so a
        # connection left to the pool would hold a half-read stream.
        if self._response is None:
            return
        self._response.close()
        self._response = None
        if self._rec is not None:
            self._rec.add(fmt.Close(t=time.time(), conn=self.conn, by="us"))


_KINDS = {
    aiohttp.WSMsgType.PING: WSKind.PING,
    aiohttp.WSMsgType.PONG: WSKind.PONG,
    aiohttp.WSMsgType.CLOSE: WSKind.CLOSE,
    aiohttp.WSMsgType.CLOSING: WSKind.CLOSING,
    aiohttp.WSMsgType.CLOSED: WSKind.CLOSED,
    aiohttp.WSMsgType.ERROR: WSKind.ERROR,
}


class LiveWebSocket:
    """aiohttp's client WebSocket, its messages as ``WSMessage``s."""

    def __init__(
        self, conn: int, ws: aiohttp.ClientWebSocketResponse, recorder: Recorder | None
    ) -> None:
        self.conn = conn
        self._ws = ws
        self._rec = recorder
        self._closed = False

    @property
    def close_code(self) -> int | None:
        return self._ws.close_code

    async def receive(self, timeout: float | None = None) -> WSMessage:
        try:
            msg = await self._ws.receive(timeout=timeout)
        except TimeoutError:
            t = set_now(time.time())
            if self._rec is not None:
                self._rec.add(fmt.Timeout(t=t, conn=self.conn))
            raise WaitTimeoutError(message=f"no message in {timeout}s") from None
        t = set_now(time.time())
        kind = msg.type
        if kind is aiohttp.WSMsgType.TEXT:
            if self._rec is not None:
                self._rec.recv(t, self.conn, msg.data, binary=False)
            return WSMessage(WSKind.TEXT, msg.data, t=t)
        if kind is aiohttp.WSMsgType.BINARY:
            if self._rec is not None:
                self._rec.recv(t, self.conn, msg.data, binary=True)
            return WSMessage(WSKind.BINARY, msg.data, t=t)
        out = self._control(msg, t)
        if self._rec is not None:
            data = out.data if isinstance(out.data, str) else None
            self._rec.add(
                fmt.Control(
                    t=t,
                    conn=self.conn,
                    op=out.kind.value,
                    code=out.code,
                    text=data or None,
                    b64=out.data if isinstance(out.data, bytes) and out.data else None,
                    error=out.error,
                )
            )
        return out

    def _control(self, msg: aiohttp.WSMessage, t: float) -> WSMessage:
        kind = _KINDS.get(msg.type, WSKind.ERROR)
        if kind is WSKind.CLOSE:
            return WSMessage(kind, str(msg.extra or ""), code=int(msg.data), t=t)
        if kind in (WSKind.PING, WSKind.PONG):
            return WSMessage(kind, bytes(msg.data or b""), t=t)
        error = msg.data
        if (
            kind is WSKind.ERROR
            and isinstance(error, aiohttp.WebSocketError)
            and error.code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
        ):
            # aiohttp refuses such a message unread and closes with 1009 ("Message Too Big",
            # RFC 6455 7.4.1): its bytes are gone, the connection is lost like any other cut.
            return WSMessage(
                WSKind.TOO_BIG, code=self._ws.close_code, error=type(error).__name__, t=t
            )
        what = None if error is None else type(error).__name__
        return WSMessage(kind, code=self._ws.close_code, error=what, t=t)

    async def _send(self, op: str | None, data: str | bytes, call: Any) -> None:
        try:
            await call
        except (aiohttp.ClientError, OSError) as exc:
            if self._rec is not None:
                self._rec.add(
                    fmt.Send(t=time.time(), conn=self.conn, op=op, error=type(exc).__name__)
                )
            raise NetworkError(type(exc).__name__, describe(exc)) from None
        if self._rec is not None:
            if isinstance(data, str):
                self._rec.add(fmt.Send(t=time.time(), conn=self.conn, op=op, text=data))
            else:
                self._rec.add(fmt.Send(t=time.time(), conn=self.conn, op=op, b64=data or None))

    async def send_str(self, data: str) -> None:
        await self._send(None, data, self._ws.send_str(data))

    async def ping(self) -> None:
        await self._send("ping", b"", self._ws.ping())

    async def pong(self, data: bytes) -> None:
        await self._send("pong", data, self._ws.pong(data))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(aiohttp.ClientError, OSError):
            await self._ws.close()
        if self._rec is not None:
            self._rec.add(fmt.Close(t=time.time(), conn=self.conn, by="us"))
