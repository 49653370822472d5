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

from collections.abc import Sequence
from typing import Final

from tradebus import times
from tradebus.adapters.base import SourceContext
from tradebus.adapters.intake import Intake
from tradebus.adapters.ssehttp import ReadTimeoutError, SSERead, SSESource
from tradebus.adapters.ttmt import wire
from tradebus.adapters.ttmt.normalize import BUILDERS, SymbolCache
from tradebus.backoff import Failure, Kind
from tradebus.config import TtmtSource
from tradebus.plugin import SourcePlugin
from tradebus.schemas.events import Event

_RECYCLE: Final = Failure(Kind.RECYCLE, "recycle")
_REVOKED: Final = Failure(Kind.AUTH, "auth_revoked")
# Below every eventId (a counter, never negative): no id seen yet.
_NONE_YET: Final = -1


def _int_id(value: str | None) -> int | None:
    if value is not None and value.isascii() and value.isdigit() and len(value) < 20:
        return int(value)
    return None


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
        self._intake: Intake[int] = Intake(ctx, config.dedupe_size)
        self._highest = _NONE_YET  # the highest eventId seen, across connections
        self._resumed = False  # the next event with an id is the first after a resume
        self._control: Failure | None = None  # set by recycle / auth_revoked: the stream ends
        self._symbols = SymbolCache(config.symbol_cache)
        self._resume_from(ctx.history)

    def _resume_from(self, history: Sequence[Event]) -> None:
        """After a restart: the highest eventId journaled is the first Last-Event-ID, the ids
        journaled are duplicates, and the symbols they carried are known again. With nothing
        journaled, "earliest" asks for everything the upstream still buffers."""
        ids: set[int] = set()
        skip = len(self.name) + 1
        for event in history:
            event_id = _int_id(event.id[skip:].partition("#")[0])
            if event_id is not None:
                ids.add(event_id)
        if ids:
            self._highest = max(ids)
            self._intake.seen.update(ids)
            self._cursor = str(self._highest)
            self._symbols.apply(list(history))  # learns the symbols the journal holds
            self.ctx.log.info("resuming", last_event_id=self._highest, journaled=len(ids))
        elif self.config.start == "earliest":
            self._cursor = "0"
        self.ctx.log.debug(
            "resume_decision",
            last_event_id=self._cursor or None,
            why="journal" if ids else f"nothing journaled, start={self.config.start}",
        )

    def _on_connected(self) -> None:
        self._control = None
        self._resumed = self._highest != _NONE_YET

    def _timed_out(self, exc: ReadTimeoutError, connected: bool) -> Failure:
        # A server that accepts and never sends, or a stream gone silent: counted either way.
        self.ctx.bad_input("read_timeout", b"", exc)
        return exc.failure()

    # --- one read -------------------------------------------------------------------------

    async def _on_read(self, read: SSERead) -> Failure | None:
        """Everything one read gave, published as one batch; then ids are marked seen
        (``Intake``).

        Returns the planned end a control frame announced (recycle, auth_revoked), if any.
        The loop is the hot path: one decode, one dedupe lookup and one normalize per message;
        everything rare (resume, control frames, bad input) leaves it through a method call.
        """
        self._count_oversized(read)
        received = times.from_epoch(self.ctx.transport.now())
        intake = self._intake
        batch, fresh = intake.events, intake.fresh
        young, old = intake.seen.generations()  # nothing is marked seen until the loop is done
        source, refused = self.name, self.ctx.refused
        highest = self._highest
        decode = wire.decode_known
        for message in read.messages:
            try:
                decoded = decode(message.data)
            except Exception as exc:  # noqa: BLE001 - whatever one message raises is its own fault
                self._undecodable(message.data, exc)
                highest = self._track(_int_id(message.id), highest, batch)
                continue
            builder = BUILDERS[type(decoded)]
            if builder is None:
                self._control_frame(decoded, batch)
                continue
            # Only control frames may lack an eventId, and they have no builder.
            event_id: int = decoded.event_id  # type: ignore[assignment]
            if self._resumed:
                self._first_after_resume(event_id, highest, batch)
            if event_id > highest:  # noqa: PLR1730 - cheaper than a max() call per event
                highest = event_id
            if event_id in young or event_id in old or event_id in fresh:
                self.ctx.counters["duplicates"] += 1
                continue
            try:
                batch += builder(decoded, source, received, refused)
            except Exception as exc:  # noqa: BLE001 - a normalizer's refusal is the message's fault
                self.ctx.bad_input("malformed", message.data, exc)
                continue
            fresh.add(event_id)
        self._highest = highest
        await intake.publish(self._symbols.apply)
        return self._control

    def _undecodable(self, data: str, exc: Exception) -> None:
        name = wire.unknown_type(data, exc)
        if name is not None:
            self.ctx.unknown_type(name)
        else:
            self.ctx.bad_input("malformed", data, exc)

    def _control_frame(self, decoded: wire.Message, batch: list[Event]) -> None:
        if isinstance(decoded, wire.Recycle):
            self._control = _RECYCLE
        elif isinstance(decoded, wire.AuthRevoked):
            self._control = _REVOKED
            status = self.ctx.status(
                "status.auth_revoked", reason=decoded.data.reason, account=self.config.account_id
            )
            batch.append(status)

    def _track(self, event_id: int | None, highest: int, batch: list[Event]) -> int:
        """The highest id once ``event_id`` (if any) is seen; a gap check if it is the first."""
        if event_id is None:
            return highest
        if self._resumed:
            self._first_after_resume(event_id, highest, batch)
        return max(event_id, highest)

    def _first_after_resume(self, event_id: int, highest: int, batch: list[Event]) -> None:
        """An id past the highest seen + 1: the replay buffer no longer held what we missed."""
        self._resumed = False
        if event_id > highest + 1 and not self.config.account_id:
            self.ctx.log.warning("replay_gap", first_missing=highest + 1, last_missing=event_id - 1)
            batch.append(
                self.ctx.gap(
                    first_missing=highest + 1,
                    last_missing=event_id - 1,
                    reason="replay_buffer_exceeded",
                )
            )


PLUGIN = SourcePlugin("ttmt", TtmtSource, TtmtAdapter)
