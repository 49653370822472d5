"""TTMT adapter: one ``GET /api/v1/stream`` (SSE), resumed with Last-Event-ID, forever.

Connection logic, per the upstream doc (the sequence of eventIds, dedupe, resume and gaps, is
``session``'s, sans-I/O):

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

from tradebus import times
from tradebus.adapters.base import SourceContext
from tradebus.adapters.intake import Intake
from tradebus.adapters.ssehttp import ReadTimeoutError, SSERead, SSESource
from tradebus.adapters.ttmt import wire
from tradebus.adapters.ttmt.normalize import SymbolCache
from tradebus.adapters.ttmt.session import Session
from tradebus.backoff import Failure, Kind
from tradebus.config import TtmtSource
from tradebus.plugin import SourcePlugin
from tradebus.schemas.events import Event

# "Reconnect immediately": asked for, nothing failed; the source stays ready meanwhile.
_RECYCLE: Final = Failure(Kind.RECYCLE, "recycle", planned=True)
_REVOKED: Final = Failure(Kind.AUTH, "auth_revoked")


class TtmtAdapter(SSESource):
    """The TTMT trade-lifecycle stream as canonical events."""

    def __init__(self, config: TtmtSource, ctx: SourceContext) -> None:
        session = Session(
            config.name,
            dedupe_size=config.dedupe_size,
            gap_detection=not config.account_id,
            start=config.start,
        )
        journaled = session.resume_from(ctx.history)
        super().__init__(
            config,
            ctx,
            credential=config.api_key,
            read_timeout=config.read_timeout,
            params={"account_id": config.account_id} if config.account_id else None,
            account=config.account_id,
            cursor=session.cursor,
        )
        self.config = config
        self.session = session
        self._intake: Intake[int] = Intake(ctx, seen=session.seen)
        self._control: Failure | None = None  # set by recycle / auth_revoked: the stream ends
        self._symbols = SymbolCache(config.symbol_cache)
        if journaled:
            self._symbols.apply(list(ctx.history))  # learns the symbols the journal holds
            ctx.log.info("resuming", last_event_id=session.highest, journaled=journaled)
        ctx.log.debug(
            "resume_decision",
            last_event_id=session.cursor or None,
            why="journal" if journaled else f"nothing journaled, start={config.start}",
        )

    def _on_connected(self) -> None:
        self._control = None
        self.session.connected()

    def _timed_out(self, exc: ReadTimeoutError, connected: bool) -> Failure:
        # A server that accepts and never sends, or a stream gone silent: counted either way.
        self.ctx.bad_input("read_timeout", b"", exc)
        return exc.failure()

    # --- one read -------------------------------------------------------------------------

    async def _on_read(self, read: SSERead) -> Failure | None:
        """Everything one read gave, published as one batch; then ids are marked seen
        (``Intake``). Returns the planned end a control frame announced (recycle,
        auth_revoked), if any."""
        self._count_oversized(read)
        received = times.from_epoch(self.ctx.transport.now())
        intake, session = self._intake, self.session
        session.read(read.messages, received, self.ctx.refused, intake.events, intake.fresh)
        if session.duplicates or session.problems or session.unknown or session.gap:
            self._noted(intake.events)
        if session.control is not None:
            self._control_frame(session.control, intake.events)
            session.control = None
        await intake.publish(self._symbols.apply)
        return self._control

    def _noted(self, batch: list[Event]) -> None:
        """What the session noted in a read: counted, logged, a gap as the batch's first event
        (before the first event after the resume, which revealed it)."""
        session, ctx = self.session, self.ctx
        if session.duplicates:
            ctx.counters["duplicates"] += session.duplicates
            session.duplicates = 0
        for kind, data, exc in session.problems:
            ctx.bad_input(kind, data, exc)
        session.problems.clear()
        for name in session.unknown:
            ctx.unknown_type(name)
        session.unknown.clear()
        if session.gap is not None:
            first, last = session.gap
            session.gap = None
            ctx.log.warning("replay_gap", first_missing=first, last_missing=last)
            gap = ctx.gap(first_missing=first, last_missing=last, reason="replay_buffer_exceeded")
            batch.insert(0, gap)

    def _control_frame(self, decoded: wire.Recycle | wire.AuthRevoked, batch: list[Event]) -> None:
        if isinstance(decoded, wire.Recycle):
            self._control = _RECYCLE
        else:
            self._control = _REVOKED
            status = self.ctx.status(
                "status.auth_revoked", reason=decoded.data.reason, account=self.config.account_id
            )
            batch.append(status)


PLUGIN = SourcePlugin("ttmt", TtmtSource, TtmtAdapter)
