"""One Server-Sent Events GET over aiohttp: the asyncio shell around ``tradebus.sse``.

Used by every SSE upstream (TTMT, TradingPartners alerts). It moves bytes and nothing else: it
sends the request, checks the response is an event stream, feeds each read to the caller's
``SSEDecoder`` and hands back what that read completed. Session logic (resume cursor, dedupe,
what a message means) stays in the adapter. Usage::

    decoder = SSEDecoder(last_event_id=cursor)
    try:
        async with SSEConnection(client, url, decoder, headers=h, read_timeout=30) as conn:
            ...  # connected: the status line was 200 and the type text/event-stream
            async for read in conn:
                ...  # read.messages, read.oversized (lines dropped by the decoder)
    except SSEError as exc:
        failure = exc.failure()  # one classification for every adapter: backoff.Failure

Every way a stream ends is an ``SSEError`` (a ``TradebusError``) with a ``failure()``:

- ``StatusError``        the status was not 200 (``status``, ``retry_after`` header)
- ``ContentTypeError``   200 but not ``text/event-stream`` (``content_type``, body ``excerpt``);
                         also an ``UpstreamProtocolError``
- ``ReadTimeoutError``   no byte (or no response) for ``read_timeout`` seconds
- ``ConnectError``       the TCP/TLS/HTTP exchange failed (refused, reset, bad chunking)
- ``StreamClosedError``  the server ended the response

``StatusError.failure()`` is ``backoff.classify_http``: 401/403 auth, 409/429/5xx retryable with
the Retry-After, anything else fatal; the others are retryable.

Headers carry credentials (``Authorization``): they are never logged nor put in a message;
URLs in messages go through ``log.redact_url``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from tradebus import log
from tradebus.adapters.base import EndKind, SourceContext
from tradebus.adapters.transport import (
    Client,
    Stream,
    StreamEndError,
    TransportError,
    WaitTimeoutError,
)
from tradebus.backoff import Backoff, Failure, Kind, classify_http
from tradebus.config import SourceBase
from tradebus.errors import SourceError, UpstreamProtocolError
from tradebus.schemas.events import Event
from tradebus.secret import Secret
from tradebus.sse import SSEDecoder, SSEMessage

__all__ = [
    "ConnectError",
    "ContentTypeError",
    "ReadTimeoutError",
    "SSEConnection",
    "SSEError",
    "SSERead",
    "StatusError",
    "StreamClosedError",
]

# Enough of a non-SSE body to tell an HTML error page or a JSON error from a broken proxy.
BODY_EXCERPT = 512
# How much one read may bring (aiohttp stops reading the socket at twice this): a busy stream is
# handled in batches of this size. Past what is read stays in the kernel's socket buffer, not
# ours. Larger reads cost no less per event and raise the peak memory: each source's decoded
# read in hand is the part that grows with it (benchmarks/README.md).
READ_BUFFER = 128 * 1024
EVENT_STREAM = "text/event-stream"


class SSEError(Exception):
    """Mixin of every way an SSE stream fails; ``failure()`` says how to retry."""

    def failure(self) -> Failure:
        raise NotImplementedError


class StatusError(SSEError, SourceError):
    """ "HTTP status ≠ 200": 401 is auth, 409/429/5xx retryable, the rest fatal (slow retry)."""

    def __init__(self, status: int, retry_after: str | None, url: str) -> None:
        self.status = status
        self.retry_after = retry_after
        super().__init__(f"HTTP {status} from {log.redact_url(url)}")

    def failure(self) -> Failure:
        return classify_http(self.status, self.retry_after)


class ContentTypeError(SSEError, UpstreamProtocolError):
    """A 200 whose body is not an event stream (a captive portal, a misrouted proxy)."""

    def __init__(self, content_type: str, excerpt: bytes, url: str) -> None:
        self.content_type = content_type
        self.excerpt = excerpt
        super().__init__(f"content type {content_type[:64]!r} from {log.redact_url(url)}")

    def failure(self) -> Failure:
        return Failure(Kind.RETRYABLE, "content_type")


class ReadTimeoutError(SSEError, SourceError):
    """No byte arrived for ``read_timeout`` seconds: the connection is presumed dead."""

    def failure(self) -> Failure:
        return Failure(Kind.RETRYABLE, "read_timeout")


class ConnectError(SSEError, SourceError):
    """The connection could not be made or broke (the message holds no credential)."""

    def failure(self) -> Failure:
        return Failure(Kind.RETRYABLE, "connection_error")


class StreamClosedError(SSEError, SourceError):
    """The server ended the response (an SSE stream has no planned end of its own)."""

    def failure(self) -> Failure:
        return Failure(Kind.RETRYABLE, "closed")


@dataclass(slots=True)
class SSERead:
    """What one read from the socket gave: the completed messages, and lines the decoder dropped."""

    messages: list[SSEMessage]
    oversized: int = 0
    oversized_excerpt: bytes = b""


class SSEConnection:
    """One GET of an event stream; enter it to connect, iterate ``reads()`` until it raises.

    The decoder is the caller's: it outlives the connection, so its ``last_event_id`` and
    ``retry`` carry over to the next one, as the spec keeps them on the EventSource. On exit the
    decoder is closed, which discards an incomplete event: its ``id`` is never committed, so the
    server replays it after a resume.
    """

    def __init__(
        self,
        client: Client,
        url: str,
        decoder: SSEDecoder,
        *,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None = None,
        read_timeout: float,
    ) -> None:
        self.url = url
        self.decoder = decoder
        self._client = client
        self._headers = dict(headers)
        self._params = dict(params or {})
        self._read_timeout = read_timeout
        self._stream: Stream | None = None

    async def __aenter__(self) -> Self:
        try:
            # A server that accepts and never answers is a read timeout too.
            stream = await self._client.stream(
                self.url, headers=self._headers, params=self._params, timeout=self._read_timeout
            )
        except WaitTimeoutError:
            raise ReadTimeoutError(f"no response in {self._read_timeout}s") from None
        except TransportError as exc:
            raise ConnectError(exc.message or exc.what) from None
        self._stream = stream
        try:
            await self._check(stream)
        except BaseException:
            self._close()
            raise
        return self

    async def _check(self, stream: Stream) -> None:
        if stream.status != 200:
            raise StatusError(stream.status, stream.headers.get("Retry-After"), self.url)
        if stream.content_type != EVENT_STREAM:
            # The excerpt is only for the log line: none if it does not come within a second.
            excerpt = await stream.excerpt(BODY_EXCERPT, min(self._read_timeout, 1.0))
            raise ContentTypeError(stream.content_type, excerpt, self.url)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._close()

    def _close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        self.decoder.close()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> SSERead:
        return await self.read()

    async def read(self) -> SSERead:
        """The next read's messages; raises when the stream ends (``StreamClosedError``) or fails.

        One read is whatever the socket had (``iter_any``), so a busy stream gives large batches.
        """
        if self._stream is None:
            raise RuntimeError("enter the connection first")
        try:
            chunk = await self._stream.read(self._read_timeout)
        except StreamEndError:
            raise StreamClosedError("the server ended the stream") from None
        except WaitTimeoutError:
            raise ReadTimeoutError(f"no byte in {self._read_timeout}s") from None
        except TransportError as exc:
            raise ConnectError(exc.message or exc.what) from None
        decoder = self.decoder
        before = decoder.oversized_lines
        messages = decoder.feed(chunk)
        dropped = decoder.oversized_lines - before
        if dropped:
            return SSERead(messages, dropped, decoder.last_oversized_excerpt)
        return SSERead(messages)


class SSESource:
    """The connection loop every SSE adapter shares: connect, read, publish, back off, repeat.

    A subclass handles reads (``_on_read``: publish what one read gave; return a planned end
    announced in-band, if any) and may refine ``_on_connected`` and ``_timed_out``. The base owns
    the Last-Event-ID cursor (the first given as ``cursor``; moved only after ``_on_read``
    returned, i.e. after publishing),
    the stream's ``retry:`` floor, the backoff, and the one status event of each connection's end.
    """

    def __init__(
        self,
        config: SourceBase,
        ctx: SourceContext,
        *,
        credential: Secret,
        read_timeout: float,
        params: dict[str, str] | None = None,
        account: str | None = None,
        cursor: str = "",
    ) -> None:
        self.name = config.name
        self.ctx = ctx
        self.url = config.url
        self.backoff = Backoff(
            base=config.reconnect_min,
            cap=config.reconnect_max,
            stable_after=config.stable_after,
            auth_delay=config.auth_retry,
            rng=ctx.transport.rng("backoff"),
        )
        self._credential = credential
        self._read_timeout = read_timeout
        self._params = params
        self._account = account
        self._cursor = cursor  # Last-Event-ID: moved only after its read was published
        self._retry_floor = 0.0  # the stream's ``retry:``, in seconds

    async def run(self) -> None:
        self.ctx.begin()
        self.ctx.log.info("source_starting", url=log.redact_url(self.url))
        transport = self.ctx.transport
        async with transport.client(read_bufsize=READ_BUFFER) as client:
            while True:
                failure, connected = await self._connect_once(client)
                delay = self.backoff.delay(failure, self._retry_floor)
                self.ctx.log.debug(
                    "reconnect_planned",
                    reason=failure.reason,
                    kind=failure.kind.name.lower(),
                    retry_floor=self._retry_floor,
                    last_event_id=self._cursor or None,
                )
                self.ctx.log.info(
                    "stream_ended",
                    reason=failure.reason,
                    code=failure.code,
                    connected=connected,
                    retry_in=round(delay, 3),
                )
                await self.ctx.publish([self._ended(failure, connected, delay)])
                await transport.sleep(delay, "backoff")

    def _ended(self, failure: Failure, connected: bool, delay: float) -> Event:
        """The one status event of a connection's end (or of an attempt that failed)."""
        kind: EndKind
        if connected:
            kind = "status.disconnected"
        elif failure.kind is Kind.AUTH:
            kind = "status.auth_failed"
        else:
            kind = "status.error"
        return self.ctx.disconnected(
            failure.reason,
            planned=failure.planned,
            retry_in=delay,
            code=None if connected else failure.code,
            account=self._account,
            kind=kind,
        )

    def _headers(self) -> dict[str, str]:
        headers = {
            "Authorization": f"Bearer {self._credential.reveal()}",
            "Accept": "text/event-stream",
            "Cache-Control": "no-cache",
        }
        if self._cursor:
            headers["Last-Event-ID"] = self._cursor
        return headers

    async def _connect_once(self, client: Client) -> tuple[Failure, bool]:
        """One connection from request to end: the failure that ended it, and whether it was up."""
        clock = self.ctx.transport
        self.ctx.counters["connect_attempts"] += 1
        decoder = SSEDecoder(last_event_id=self._cursor)
        connected = False
        self.ctx.log.debug(
            "connecting",
            url=log.redact_url(self.url),
            last_event_id=self._cursor or None,
            read_timeout=self._read_timeout,
            attempt=self.ctx.counters["connect_attempts"],
        )
        try:
            async with SSEConnection(
                client,
                self.url,
                decoder,
                headers=self._headers(),
                params=self._params,
                read_timeout=self._read_timeout,
            ) as conn:
                connected = True
                self.ctx.log.debug("stream_open", last_event_id=self._cursor or None)
                self.backoff.connected(clock.now())
                self.ctx.counters["connects"] += 1
                self._on_connected()
                connected_event = self.ctx.connected(account=self._account)
                await self.ctx.publish([connected_event, *self._after_connect()])
                while True:  # a stream ends by raising, or by an end announced in-band
                    end = await self._on_read(await conn.read())
                    self._cursor = decoder.last_event_id
                    if decoder.retry is not None:
                        self._retry_floor = decoder.retry / 1000
                    if end is not None:
                        return end, True
        except SSEError as exc:
            return self._classify(exc, connected), connected
        finally:
            if connected:
                self.backoff.disconnected(clock.now())

    def _classify(self, exc: SSEError, connected: bool) -> Failure:
        # SSEError messages hold a redacted URL and no header: safe to log as they are.
        self.ctx.log.info("stream_error", error=str(exc))
        if isinstance(exc, ContentTypeError):
            self.ctx.bad_input("content_type", exc.excerpt, exc)
        elif isinstance(exc, ReadTimeoutError):
            return self._timed_out(exc, connected)
        return exc.failure()

    def _timed_out(self, exc: ReadTimeoutError, connected: bool) -> Failure:
        """No byte for the read timeout: a server that accepts and never sends, or went silent."""
        if not connected:
            self.ctx.bad_input("no_response", b"", exc)
        return exc.failure()

    def _on_connected(self) -> None:
        """Called once the response headers were accepted, before ``status.connected``."""

    def _after_connect(self) -> list[Event]:
        """Events published with ``status.connected`` (a gap the connect reveals)."""
        return []

    async def _on_read(self, read: SSERead) -> Failure | None:
        raise NotImplementedError

    def _count_oversized(self, read: SSERead) -> None:
        for _ in range(read.oversized):
            self.ctx.bad_input("oversized_line", read.oversized_excerpt)
