"""TTMT adapter: one ``GET /api/v1/stream`` (SSE), resumed with Last-Event-ID, forever.

Session logic, per the upstream doc:

- "Your client should reconnect immediately, sending the last received id as Last-Event-ID."
  The cursor is the decoder's ``last_event_id``, taken only after the read that moved it was
  published; an event cut mid-way is never dispatched, so its id is never sent back and the
  server replays it.
- ``recycle`` ("Reconnect immediately"): close at once, ``status.disconnected`` reason
  ``recycle``, reconnect with no delay and no backoff escalation.
- ``auth_revoked`` ("the stream emits an auth_revoked event and closes"): ``status.auth_revoked``
  with the upstream's reason, then a slow retry (``auth_retry``). 401 → ``status.auth_failed``
  and the same slow retry; 409 ("Another stream is already open") and 503 → ``status.error`` and
  backoff with full jitter, never below the stream's ``retry:`` nor a Retry-After.
- Replayed events already published are dropped by ``eventId`` (a bounded set, marked only after
  the batch was handed to the bus). On the first event after a resume, an id past the highest
  seen + 1 means the server's "buffer of the last 100 events" no longer held what we missed:
  one ``status.gap`` names the range. Within one connection ids are not checked (the stream is
  the server's to order). With ``account_id`` set the ids a client sees skip the other
  accounts' events, so no gap can be told from a filter: gap detection is off then.

``recycle`` and ``auth_revoked`` are connection control, not events of the replayable
sequence: they are never replayed and their ``eventId`` identifies nothing, so the status events
they cause get the adapter's own status ids (``ctx.status``) rather than ``<source>:<eventId>``.
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
from tradebus.adapters.ttmt import wire
from tradebus.adapters.ttmt.normalize import SymbolCache, normalize
from tradebus.backoff import Backoff, Failure, Kind
from tradebus.config import TtmtSource
from tradebus.schemas.events import Event
from tradebus.sse import SSEDecoder, SSEMessage

_RECYCLE: Final = Failure(Kind.RECYCLE, "recycle")
_REVOKED: Final = Failure(Kind.AUTH, "auth_revoked")


def _int_id(value: str | None) -> int | None:
    if value is not None and value.isascii() and value.isdigit() and len(value) < 20:
        return int(value)
    return None


@register("ttmt")
class TtmtAdapter:
    """The TTMT trade-lifecycle stream as canonical events."""

    def __init__(self, config: TtmtSource, ctx: SourceContext) -> None:
        self.name = config.name
        self.config = config
        self.ctx = ctx
        self.backoff = Backoff(
            base=config.reconnect_min,
            cap=config.reconnect_max,
            stable_after=config.stable_after,
            auth_delay=config.auth_retry,
        )
        self._cursor = ""  # Last-Event-ID: committed only after its read was published
        self._retry_floor = 0.0  # the stream's ``retry:``, in seconds
        self._seen: BoundedSet[int] = BoundedSet(config.dedupe_size)
        self._highest: int | None = None
        self._resumed = False  # the next event with an id is the first after a resume
        self._control: Failure | None = None  # set by recycle / auth_revoked: the stream ends
        self._symbols = SymbolCache(config.symbol_cache)

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
        account = self.config.account_id
        if connected:
            return self.ctx.status(
                "status.disconnected", reason=failure.reason, retry_in=delay, account=account
            )
        if failure.kind is Kind.AUTH:
            return self.ctx.status(
                "status.auth_failed",
                reason=failure.reason,
                code=failure.code,
                retry_in=delay,
                account=account,
            )
        return self.ctx.status(
            "status.error",
            reason=failure.reason,
            code=failure.code,
            retry_in=delay,
            account=account,
        )

    def _headers(self) -> dict[str, str]:
        headers = {
            "Authorization": f"Bearer {self.config.api_key.reveal()}",
            "Accept": "text/event-stream",
            "Cache-Control": "no-cache",
        }
        if self._cursor:
            headers["Last-Event-ID"] = self._cursor
        return headers

    async def _connect_once(self, session: aiohttp.ClientSession) -> tuple[Failure, bool]:
        """One connection from request to end: the failure that ended it, and whether it was up."""
        loop = asyncio.get_running_loop()
        self._control = None
        self.ctx.counters["connect_attempts"] += 1
        params = {"account_id": self.config.account_id} if self.config.account_id else None
        decoder = SSEDecoder(last_event_id=self._cursor)
        connected = False
        try:
            async with SSEConnection(
                session,
                self.config.url,
                decoder,
                headers=self._headers(),
                params=params,
                read_timeout=self.config.read_timeout,
            ) as conn:
                connected = True
                self.backoff.connected(loop.time())
                self.ctx.counters["connects"] += 1
                self._resumed = self._highest is not None
                await self.ctx.publish(
                    [self.ctx.status("status.connected", account=self.config.account_id)]
                )
                while True:  # an SSE stream ends only by raising, or by a control frame
                    control = await self._handle(await conn.read(), decoder)
                    if control is not None:
                        return control, True
        except SSEError as exc:
            return self._classify(exc), connected
        finally:
            if connected:
                self.backoff.disconnected(loop.time())

    def _classify(self, exc: SSEError) -> Failure:
        # SSEError messages hold a redacted URL and no header: safe to log as they are.
        self.ctx.log.info("stream_error", error=str(exc))
        if isinstance(exc, ContentTypeError):
            self.ctx.bad_input("content_type", exc.excerpt, exc)
        elif isinstance(exc, ReadTimeoutError):
            # A server that accepts and never sends, or a stream gone silent.
            self.ctx.bad_input("read_timeout", b"", exc)
        return exc.failure()

    # --- one read -------------------------------------------------------------------------

    async def _handle(self, read: SSERead, decoder: SSEDecoder) -> Failure | None:
        """Everything one read gave, published as one batch; then the cursor moves.

        Returns the planned end a control frame announced (recycle, auth_revoked), if any.
        """
        for _ in range(read.oversized):
            self.ctx.bad_input("oversized_line", read.oversized_excerpt)
        received = times.now()
        batch: list[Event] = []
        fresh: list[int] = []
        for message in read.messages:
            self._message(message, received, batch, fresh)
        if batch:
            await self.ctx.publish(batch)
        # Only now are they the bus's: a replay of them is a duplicate from here on.
        for event_id in fresh:
            self._seen.add(event_id)
        self._cursor = decoder.last_event_id
        if decoder.retry is not None:
            self._retry_floor = decoder.retry / 1000
        return self._control

    def _message(
        self, message: SSEMessage, received: str, batch: list[Event], fresh: list[int]
    ) -> None:
        try:
            decoded = wire.decode(message.data)
        except wire.UnknownTypeError as exc:
            self.ctx.unknown_type(exc.name)
            self._track(_int_id(message.id), batch)
            return
        except msgspec.DecodeError as exc:
            self.ctx.bad_input("malformed", message.data, exc)
            self._track(_int_id(message.id), batch)
            return
        if isinstance(decoded, wire.Recycle):
            self._control = _RECYCLE
            return
        if isinstance(decoded, wire.AuthRevoked):
            self._control = _REVOKED
            status = self.ctx.status(
                "status.auth_revoked", reason=decoded.data.reason, account=self.config.account_id
            )
            batch.append(status)
            return
        event_id = decoded.event_id
        self._track(event_id, batch)
        if event_id in self._seen or event_id in fresh:
            self.ctx.counters["duplicates"] += 1
            return
        try:
            events = normalize(decoded, self.name, received)
        except ValueError as exc:
            self.ctx.bad_input("malformed", message.data, exc)
            return
        batch.extend(self._symbols.apply(events))
        fresh.append(event_id)

    def _track(self, event_id: int | None, batch: list[Event]) -> None:
        """Gap detection on the first id after a resume; the highest id seen."""
        if event_id is None:
            return
        highest = self._highest
        if self._resumed:
            self._resumed = False
            if highest is not None and event_id > highest + 1 and not self.config.account_id:
                self.ctx.log.warning(
                    "replay_gap", first_missing=highest + 1, last_missing=event_id - 1
                )
                batch.append(
                    self.ctx.gap(
                        first_missing=highest + 1,
                        last_missing=event_id - 1,
                        reason="replay_buffer_exceeded",
                    )
                )
        if highest is None or event_id > highest:
            self._highest = event_id
