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

from typing import Final

import msgspec

from tradebus import times
from tradebus.adapters.base import BoundedSet, SourceContext, register
from tradebus.adapters.ssehttp import ReadTimeoutError, SSERead, SSESource
from tradebus.adapters.ttmt import wire
from tradebus.adapters.ttmt.normalize import SymbolCache, normalize
from tradebus.backoff import Failure, Kind
from tradebus.config import TtmtSource
from tradebus.schemas.events import Event
from tradebus.sse import SSEMessage

_RECYCLE: Final = Failure(Kind.RECYCLE, "recycle")
_REVOKED: Final = Failure(Kind.AUTH, "auth_revoked")


def _int_id(value: str | None) -> int | None:
    if value is not None and value.isascii() and value.isdigit() and len(value) < 20:
        return int(value)
    return None


@register("ttmt")
class TtmtAdapter(SSESource):
    """The TTMT trade-lifecycle stream as canonical events."""

    def __init__(self, config: TtmtSource, ctx: SourceContext) -> None:
        super().__init__(
            config,
            ctx,
            credential=config.api_key,
            read_timeout=config.read_timeout,
            params={"account_id": config.account_id} if config.account_id else None,
            account=config.account_id,
        )
        self.config = config
        self._seen: BoundedSet[int] = BoundedSet(config.dedupe_size)
        self._highest: int | None = None
        self._resumed = False  # the next event with an id is the first after a resume
        self._control: Failure | None = None  # set by recycle / auth_revoked: the stream ends
        self._symbols = SymbolCache(config.symbol_cache)

    def _on_connected(self) -> None:
        self._control = None
        self._resumed = self._highest is not None

    def _timed_out(self, exc: ReadTimeoutError, connected: bool) -> Failure:
        # A server that accepts and never sends, or a stream gone silent: counted either way.
        self.ctx.bad_input("read_timeout", b"", exc)
        return exc.failure()

    # --- one read -------------------------------------------------------------------------

    async def _on_read(self, read: SSERead) -> Failure | None:
        """Everything one read gave, published as one batch; then ids are marked seen.

        Returns the planned end a control frame announced (recycle, auth_revoked), if any.
        """
        self._count_oversized(read)
        received = times.now()
        batch: list[Event] = []
        # A dict, not a list: every message asks `in fresh`, and one read holds hundreds.
        fresh: dict[int, None] = {}
        for message in read.messages:
            self._message(message, received, batch, fresh)
        if batch:
            await self.ctx.publish(batch)
        # Only now are they the bus's: a replay of them is a duplicate from here on.
        for event_id in fresh:
            self._seen.add(event_id)
        return self._control

    def _message(
        self, message: SSEMessage, received: str, batch: list[Event], fresh: dict[int, None]
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
        fresh[event_id] = None

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
