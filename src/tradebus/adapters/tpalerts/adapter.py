"""TradingPartners alerts adapter: one ``GET /api/v1/alerts`` (SSE) per user, kept open forever.

Session logic, per the upstream doc:

- "A user with FULL API access can receive alerts in real time ... the user needs to be logged
  in": ``Authorization: Bearer <token>``. 401/403 → ``status.auth_failed`` and a slow retry
  (``auth_retry``), never a hot loop.
- "Ping event is used to keep the connection alive." Pings are not events; any byte is a sign of
  life. No byte for ``missed_pings * ping_interval`` seconds → ``status.disconnected`` with
  reason ``ping_timeout`` and a reconnect. A server that takes the request and never answers
  runs into the same clock (``status.error``, reason ``no_response``).
- 5xx / 429 / network errors → backoff with full jitter under ``reconnect_max``, never below a
  Retry-After nor the stream's SSE ``retry:``. Every connect is a ``status.connected``, every
  end of a connected stream a ``status.disconnected``, every failed attempt a ``status.error``.
- The doc shows no ``id:`` field. Should the feed ever send one, the last one published goes
  back as Last-Event-ID. Either way a reconnect may repeat events: they are dropped by their
  canonical id (``<source>:<alert id>:<event name>``, a bounded set, marked only after the batch
  was handed to the bus).
- ``onGoing`` / ``aborted`` / ``closed`` name no ticker: ``AlertCache`` (bounded by
  ``symbol_cache``) remembers each alert's ``working`` event and fills them in.

Bad input — malformed JSON, an unknown event name, a line past 1 MiB, a non-SSE content type,
a server that never answers — is counted in ``ctx.counters`` and logged (bounded); the adapter
keeps running.
"""

from __future__ import annotations

import asyncio
from typing import Final

import aiohttp
import msgspec

from tradebus import log, times
from tradebus.adapters.base import BoundedSet, SourceContext, register
from tradebus.adapters.ssehttp import (
    ContentTypeError,
    ReadTimeoutError,
    SSEConnection,
    SSEError,
    SSERead,
)
from tradebus.adapters.tpalerts import wire
from tradebus.adapters.tpalerts.normalize import AlertCache, event_id
from tradebus.backoff import Backoff, Failure, Kind
from tradebus.config import TpAlertsSource
from tradebus.schemas.events import Event
from tradebus.sse import SSEDecoder, SSEMessage

_PING_TIMEOUT: Final = Failure(Kind.RETRYABLE, "ping_timeout")
_NO_RESPONSE: Final = Failure(Kind.RETRYABLE, "no_response")


@register("tpalerts")
class TpAlertsAdapter:
    """The TradingPartners real-time alerts feed as canonical ``signal.*`` events."""

    def __init__(self, config: TpAlertsSource, ctx: SourceContext) -> None:
        self.name = config.name
        self.config = config
        self.ctx = ctx
        self.backoff = Backoff(
            base=config.reconnect_min,
            cap=config.reconnect_max,
            stable_after=config.stable_after,
            auth_delay=config.auth_retry,
        )
        self.liveness = config.missed_pings * config.ping_interval
        self._cursor = ""  # Last-Event-ID, if the feed ever gives ids: moved after publishing
        self._retry_floor = 0.0  # the stream's ``retry:``, in seconds
        self._seen: BoundedSet[str] = BoundedSet(config.dedupe_size)
        self._alerts = AlertCache(config.symbol_cache)

    # --- the connection loop --------------------------------------------------------------

    async def run(self) -> None:
        self.ctx.log.info("source_starting", url=log.redact_url(self.config.url))
        async with aiohttp.ClientSession() as session:
            while True:
                failure, connected = await self._connect_once(session)
                delay = self.backoff.delay(failure, self._retry_floor)
                self.ctx.log.info(
                    "stream_ended",
                    reason=failure.reason,
                    code=failure.code,
                    connected=connected,
                    retry_in=round(delay, 3),
                )
                await self.ctx.publish([self._ended(failure, connected, delay)])
                await asyncio.sleep(delay)

    def _ended(self, failure: Failure, connected: bool, delay: float) -> Event:
        """The one status event of a connection's end (or of an attempt that failed)."""
        if connected:
            return self.ctx.status("status.disconnected", reason=failure.reason, retry_in=delay)
        kind = "status.auth_failed" if failure.kind is Kind.AUTH else "status.error"
        return self.ctx.status(kind, reason=failure.reason, code=failure.code, retry_in=delay)

    def _headers(self) -> dict[str, str]:
        headers = {
            "Authorization": f"Bearer {self.config.token.reveal()}",
            "Accept": "text/event-stream",
            "Cache-Control": "no-cache",
        }
        if self._cursor:
            headers["Last-Event-ID"] = self._cursor
        return headers

    async def _connect_once(self, session: aiohttp.ClientSession) -> tuple[Failure, bool]:
        """One connection from request to end: the failure that ended it, and whether it was up."""
        loop = asyncio.get_running_loop()
        self.ctx.counters["connect_attempts"] += 1
        decoder = SSEDecoder(last_event_id=self._cursor)
        connected = False
        try:
            async with SSEConnection(
                session,
                self.config.url,
                decoder,
                headers=self._headers(),
                read_timeout=self.liveness,
            ) as conn:
                connected = True
                self.backoff.connected(loop.time())
                self.ctx.counters["connects"] += 1
                await self.ctx.publish([self.ctx.status("status.connected")])
                while True:  # an SSE stream ends only by raising
                    await self._handle(await conn.read(), decoder)
        except SSEError as exc:
            return self._classify(exc, connected), connected
        finally:
            if connected:
                self.backoff.disconnected(loop.time())

    def _classify(self, exc: SSEError, connected: bool) -> Failure:
        if isinstance(exc, ContentTypeError):
            self.ctx.bad_input("content_type", exc.excerpt, exc)
        elif isinstance(exc, ReadTimeoutError):
            if connected:
                # Pings stopped: the connection is presumed dead even if the socket is open.
                return _PING_TIMEOUT
            # Accepted and never answered.
            self.ctx.bad_input("no_response", b"", exc)
            return _NO_RESPONSE
        return exc.failure()

    # --- one read -------------------------------------------------------------------------

    async def _handle(self, read: SSERead, decoder: SSEDecoder) -> None:
        """Everything one read gave, published as one batch; then ids are marked seen."""
        for _ in range(read.oversized):
            self.ctx.bad_input("oversized_line", read.oversized_excerpt)
        received = times.now()
        batch: list[Event] = []
        fresh: set[str] = set()
        for message in read.messages:
            self._message(message, received, batch, fresh)
        if batch:
            await self.ctx.publish(batch)
        # Only now are they the bus's: a repeat of them is a duplicate from here on.
        for seen in fresh:
            self._seen.add(seen)
        self._cursor = decoder.last_event_id
        if decoder.retry is not None:
            self._retry_floor = decoder.retry / 1000

    def _message(
        self, message: SSEMessage, received: str, batch: list[Event], fresh: set[str]
    ) -> None:
        name = wire.event_name(message.event)
        if name == "ping":
            # Liveness is any byte (the read timeout); the ping's own time is not needed.
            self.ctx.counters["pings"] += 1
            return
        decoder = wire.decoder_for(name)
        if decoder is None:
            self.ctx.unknown_type(name)
            return
        try:
            decoded: wire.Alert = decoder.decode(message.data)
        except msgspec.DecodeError as exc:
            self.ctx.bad_input("malformed", message.data, exc)
            return
        key = event_id(self.name, decoded)
        if key in self._seen or key in fresh:
            self.ctx.counters["duplicates"] += 1
            return
        batch.extend(self._alerts.events(decoded, self.name, received))
        fresh.add(key)
