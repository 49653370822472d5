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

from typing import Final

from tradebus import times
from tradebus.adapters.base import SourceContext
from tradebus.adapters.intake import Intake
from tradebus.adapters.ssehttp import ReadTimeoutError, SSERead, SSESource
from tradebus.adapters.tpalerts import wire
from tradebus.adapters.tpalerts.normalize import AlertCache, event_id
from tradebus.backoff import Failure, Kind
from tradebus.config import TpAlertsSource
from tradebus.plugin import SourcePlugin
from tradebus.schemas.events import Event
from tradebus.sse import SSEMessage

_PING_TIMEOUT: Final = Failure(Kind.RETRYABLE, "ping_timeout")
_NO_RESPONSE: Final = Failure(Kind.RETRYABLE, "no_response")


class TpAlertsAdapter(SSESource):
    """The TradingPartners real-time alerts feed as canonical ``signal.*`` events."""

    def __init__(self, config: TpAlertsSource, ctx: SourceContext) -> None:
        self.liveness = config.missed_pings * config.ping_interval
        super().__init__(config, ctx, credential=config.token, read_timeout=self.liveness)
        self.config = config
        self._intake: Intake[str] = Intake(ctx, config.dedupe_size)
        self._alerts = AlertCache(config.symbol_cache)
        # After a restart the feed cannot replay what it sent while we were away (the doc has
        # no replay): the first connect says so with a status.gap over that window.
        self._away_since: float | None = None
        if ctx.history:
            self._alerts.learn(ctx.history)
            self._intake.seen.update(e.id for e in ctx.history)
            self._away_since = ctx.stopped_at
        ctx.log.debug(
            "resume_decision",
            journaled=len(ctx.history),
            why="no replay upstream: a status.gap over the time away"
            if self._away_since is not None
            else "nothing journaled: live from the first connect",
        )

    def _after_connect(self) -> list[Event]:
        since, self._away_since = self._away_since, None
        if since is None:
            return []
        until = times.from_epoch(self.ctx.transport.now())
        self.ctx.log.warning("restart_gap", since=times.from_epoch(since), until=until)
        return [self.ctx.gap(reason="daemon_restart", since=times.from_epoch(since), until=until)]

    def _timed_out(self, exc: ReadTimeoutError, connected: bool) -> Failure:
        if connected:
            # Pings stopped: the connection is presumed dead even if the socket is open.
            return _PING_TIMEOUT
        self.ctx.bad_input("no_response", b"", exc)  # accepted and never answered
        return _NO_RESPONSE

    # --- one read -------------------------------------------------------------------------

    async def _on_read(self, read: SSERead) -> None:
        """Everything one read gave, published as one batch; then ids are marked seen
        (``Intake``). Whatever decoding or normalizing one message raises (a DecodeError, a
        RecursionError from nesting past msgspec's stack, a ValueError) is that message's bad
        input: the rest of the read is still published."""
        self._count_oversized(read)
        received = times.from_epoch(self.ctx.transport.now())
        self._intake.each(read.messages, self._message, received, "malformed", _data)
        await self._intake.publish()

    def _message(self, message: SSEMessage, received: str, batch: list[Event]) -> None:
        name = wire.event_name(message.event)
        if name == "ping":
            # Liveness is any byte (the read timeout); the ping's own time is not needed.
            self.ctx.counters["pings"] += 1
            return
        decoder = wire.decoder_for(name)
        if decoder is None:
            self.ctx.unknown_type(name)
            return
        decoded: wire.Alert = decoder.decode(message.data)
        key = event_id(self.name, decoded)
        fresh = self._intake.fresh
        if key in self._intake.seen or key in fresh:
            self.ctx.counters["duplicates"] += 1
            return
        batch.extend(self._alerts.events(decoded, self.name, received, self.ctx.refused))
        fresh.add(key)


def _data(message: SSEMessage) -> str:
    return message.data


PLUGIN = SourcePlugin("tpalerts", TpAlertsSource, TpAlertsAdapter)
