"""The one seam between an adapter and the world: connections, timers, the clock, randomness.

Every adapter's I/O goes through a ``Transport``: the live one (``adapters.live``) speaks HTTP
and WebSockets with aiohttp and, with ``record = true``, writes each transport event to a
recording; the replaying one (``recording.replay``) gives the adapter the recorded events back,
with the recorded times. An adapter reads the clock only through ``now()`` and sleeps only
through ``sleep()``, draws jitter only from ``rng()``: a replay then runs the same code into the
same decisions, and writes the same lines.

``now()`` is the time of the last transport event the current task met (a read, a response, a
timer that fired), not a fresh reading: a status event made after a read is stamped with that
read's time, in the live run and in its replay alike. Each asyncio task keeps its own (a
context variable), so a watchdog's wake-up does not move the reader's clock.

Every way a connection fails is one of the errors below; their ``what`` is the class name of
the underlying error (``ClientConnectorError``) and ``message`` a scrubbed one-line text, so
that an adapter can put them in a status event and a replay can give the same ones back.
"""

from __future__ import annotations

import contextvars
import enum
import random
import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from tradebus.errors import SourceError

if TYPE_CHECKING:
    from tradebus.schemas.events import Event

__all__ = [
    "Client",
    "HandshakeError",
    "NetworkError",
    "Reply",
    "Stream",
    "StreamEndError",
    "Transport",
    "TransportError",
    "WSKind",
    "WSMessage",
    "WaitTimeoutError",
    "WebSocket",
    "now",
    "seeded",
    "set_now",
    "task_now",
]

# The time of the last transport event of the running task (see the module docstring).
_NOW: contextvars.ContextVar[float | None] = contextvars.ContextVar("tradebus_now", default=None)


def now() -> float:
    """The current task's clock: its last transport event's time, else the wall clock."""
    value = _NOW.get()
    return time.time() if value is None else value


def set_now(value: float) -> float:
    _NOW.set(value)
    return value


def task_now() -> float | None:
    """The current task's last transport event's time, if it met one."""
    return _NOW.get()


def seeded(seed: int, label: str) -> random.Random:
    """The random generator of one use in a run: the same draws live and in a replay.

    A string seed is hashed with SHA-512: the same in every process, whatever the hash seed."""
    return random.Random(f"{seed}:{label}")


class TransportError(SourceError):
    """A connection failed; ``what`` names the underlying error's class, ``message`` says more
    (scrubbed: no credential, no URL query)."""

    def __init__(self, what: str, message: str = "") -> None:
        self.what = what
        self.message = message
        super().__init__(message or what)


class NetworkError(TransportError):
    """The connection could not be made, or broke (refused, reset, bad chunking)."""


class WaitTimeoutError(TransportError):
    """Nothing arrived within the timeout asked for."""

    def __init__(self, what: str = "TimeoutError", message: str = "") -> None:
        super().__init__(what, message)


class HandshakeError(TransportError):
    """The WebSocket handshake was answered with an HTTP status, not an upgrade."""

    def __init__(self, status: int, headers: Mapping[str, str]) -> None:
        self.status = status
        self.headers = headers
        super().__init__("WSServerHandshakeError", f"handshake answered HTTP {status}")


class StreamEndError(TransportError):
    """The server ended the response body."""

    def __init__(self) -> None:
        super().__init__("StreamEndError", "the server ended the stream")


@dataclass(frozen=True, slots=True)
class Reply:
    """A whole HTTP response: status, headers, body."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class WSKind(enum.Enum):
    TEXT = "text"
    BINARY = "binary"
    PING = "ping"
    PONG = "pong"
    CLOSE = "close"  # the server's close frame: ``code``, ``data`` the reason
    CLOSING = "closing"
    CLOSED = "closed"
    ERROR = "error"  # the connection broke: ``error`` the exception's class name
    TOO_BIG = "too_big"  # a message over max_msg_size: refused unread, closed with 1009


@dataclass(frozen=True, slots=True)
class WSMessage:
    kind: WSKind
    data: str | bytes = b""
    code: int | None = None
    error: str | None = None
    t: float = field(default=0.0, compare=False)  # when it was received


class Stream(Protocol):
    """An HTTP response whose body is read as it comes (an SSE stream)."""

    status: int
    headers: Mapping[str, str]
    content_type: str

    async def read(self, timeout: float) -> bytes:
        """Whatever the socket has (at least a byte); ``StreamEndError``, ``WaitTimeoutError`` or
        ``NetworkError`` when it ends."""
        ...

    async def excerpt(self, size: int, timeout: float) -> bytes:
        """Up to ``size`` bytes of the body, for a log line; never raises."""
        ...

    def close(self) -> None: ...


class WebSocket(Protocol):
    @property
    def close_code(self) -> int | None: ...

    async def receive(self, timeout: float | None = None) -> WSMessage:
        """The next message; ``WaitTimeoutError`` after ``timeout`` seconds without one."""
        ...

    async def send_str(self, data: str) -> None:
        """Send a text message; ``NetworkError`` if the connection is gone."""
        ...

    async def ping(self) -> None: ...

    async def pong(self, data: bytes) -> None: ...

    async def close(self) -> None: ...


class Client(Protocol):
    """What one adapter run opens connections with (an aiohttp session, live)."""

    async def stream(
        self,
        url: str,
        *,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None,
        timeout: float,
    ) -> Stream:
        """GET ``url`` and return once the status line and headers are in."""
        ...

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None = None,
        timeout: float,
    ) -> Reply:
        """One whole HTTP exchange within ``timeout`` seconds."""
        ...

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
        """Open a WebSocket (pings are the adapter's unless ``heartbeat`` is given)."""
        ...


class Transport(Protocol):
    """One source's seam (see the module docstring)."""

    @property
    def boot(self) -> float:
        """When this source's run began (its status ids carry it)."""
        ...

    @property
    def path(self) -> str | None:
        """The recording being written, if any."""
        ...

    @property
    def recorded_bytes(self) -> int: ...

    def now(self) -> float: ...

    def rng(self, label: str) -> random.Random:
        """A random generator for one use (``backoff``, ``pause``), seeded per run."""
        ...

    async def sleep(self, seconds: float, label: str) -> float:
        """Sleep; returns the time it woke (also ``now()`` from then on)."""
        ...

    def begin(self, history: Sequence[Event], stopped_at: float | None) -> None:
        """The adapter's ``run`` started, resuming from ``history``."""
        ...

    def client(
        self, *, read_bufsize: int = 2**16, limit: int = 100, connect_timeout: float | None = None
    ) -> AbstractAsyncContextManager[Client]: ...

    def close(self) -> None:
        """The source is done (the daemon stops): flush and close a recording."""
        ...
