"""The Trader WebSocket adapter: login, one WebSocket, keepalive, reconnect. I/O only.

"Pass the JWT obtained from POST /api/v1/login as the token query parameter. Connections without
a valid token are closed immediately. Respond to server pings with WebSocket pong frames to keep
the connection alive." The client is aiohttp (``ws_connect`` read 423k msgs/s from a fast sender,
the ``websockets`` client 214k). Pings are answered by hand (``autoping=False``): with autoping
aiohttp swallows our pongs too, and its own heartbeat fixes the pong timeout at half the ping
interval, where the config gives ``ping_interval`` and ``ping_timeout`` apart.

What to subscribe to, the token's lifetime and the back-fill after a cut live in ``session``
(sans-I/O); bytes become structs in ``wire`` and events in ``normalize``. The token is secret:
it is registered with the log scrubber on arrival, URLs are logged through ``log.redact_url``,
and no exception text that could carry the WebSocket URL reaches an event.

Failures, classified once (``_closed``, ``_attempt``):

- login 401/403, or the server closing the WebSocket with an auth close code (1008, 4001, 4003,
  4401, 4403) while our clock says the token is valid → ``status.auth_failed`` and a slow retry
  (``auth_retry``) with a fresh login;
- the same close once our clock says the token expired → ``status.disconnected`` reason
  ``token_expired``, log in again after the usual backoff;
- no pong within ``ping_timeout`` / no message for ``idle_timeout`` / acks or history overdue →
  ``status.disconnected`` (``ping_timeout``, ``idle_timeout``, ``subscribe_timeout``,
  ``history_timeout``); other closes and network errors → backoff with full jitter.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import msgspec
from yarl import URL

from tradebus import log, secret, times
from tradebus.adapters.base import EndKind, SourceContext
from tradebus.adapters.traderws import session as ses
from tradebus.adapters.traderws import wire
from tradebus.adapters.transport import (
    Client,
    HandshakeError,
    TransportError,
    WebSocket,
    WSKind,
)
from tradebus.backoff import Backoff, Failure, Kind, classify_http
from tradebus.config import TraderWsSource
from tradebus.plugin import SourcePlugin
from tradebus.schemas.events import Event

AUTH_CLOSE_CODES = frozenset({1008, 4001, 4003, 4401, 4403})
# The watchdog re-reads deadlines the reader may have moved at least this often (seconds).
_TICK = 0.25
# Events waiting for the bus before the reader pauses: bounds memory when the bus is behind.
_MAX_OUTBOX = 1024


def endpoints(base: str) -> tuple[URL, URL]:
    """The login URL and the WebSocket URL (http → ws, https → wss) under ``base``."""
    url = URL(base).with_query(None).with_fragment(None)
    root = url.path.rstrip("/")
    login = url.with_path(f"{root}/api/v1/login")
    ws = url.with_scheme("wss" if url.scheme == "https" else "ws").with_path(f"{root}/api/v1/ws")
    return login, ws


class TraderWsAdapter:
    """One Trader WS source: reconnects forever, publishes one batch per socket read."""

    def __init__(self, config: TraderWsSource, ctx: SourceContext) -> None:
        self.config = config
        self.ctx = ctx
        self.name = config.name
        history_account = config.account_id or next(iter(config.metrics_accounts), None)
        plan = ses.Plan(
            symbols=tuple(config.symbols),
            events=tuple(config.events),
            depth=tuple(config.depth),
            depth_levels=config.depth_levels,
            metrics_accounts=tuple(config.metrics_accounts),
            history_account=history_account,
        )
        self.session = ses.Session(
            config.name,
            plan,
            subscribe_timeout=config.subscribe_timeout,
            dedupe_size=config.dedupe_size,
            refused=ctx.refused,
        )
        self._resume_from(ctx.history)
        self.backoff = Backoff(
            base=config.reconnect_min,
            cap=config.reconnect_max,
            stable_after=config.stable_after,
            auth_delay=config.auth_retry,
            rng=ctx.transport.rng("backoff"),
        )
        self.clock = ctx.transport
        self._login_url, self._ws_url = endpoints(config.url)
        self._log: Any = ctx.log.bind(url=log.redact_url(str(self._ws_url)))
        self._message: str | None = None
        self._last_rx = 0.0
        self._pong_due: float | None = None
        self._stamp_ms = -1
        self._stamp = ""
        # Events read but not yet handed to the bus, in order (see _flush).
        self._outbox: list[Event] = []
        self._ready = asyncio.Event()
        self._room = asyncio.Event()
        self._closing = False

    # --- the loop ---------------------------------------------------------------------------

    async def run(self) -> None:
        self.ctx.begin()
        clock = self.clock
        async with clock.client(connect_timeout=self.config.connect_timeout) as http:
            while True:
                self._message = None
                failure = await self._attempt(http)
                self.backoff.disconnected(clock.now())
                delay = self.backoff.delay(failure)
                kind: EndKind = "status.disconnected"
                if failure.kind is Kind.AUTH:
                    kind = "status.auth_failed"
                elif failure.kind is Kind.FATAL:
                    kind = "status.error"
                self._log.warning(
                    "disconnected", reason=failure.reason, code=failure.code, retry_in=delay
                )
                ended = self.ctx.disconnected(
                    failure.reason,
                    planned=failure.planned,
                    retry_in=delay,
                    code=failure.code,
                    message=self._message,
                    kind=kind,
                )
                await self.ctx.publish([ended])
                await clock.sleep(delay, "backoff")

    async def _attempt(self, http: Client) -> Failure:
        if self.session.token_needed(self.clock.now()):
            failure = await self._login(http)
            if failure is not None:
                return failure
        token = self.session.token
        assert token is not None
        cfg = self.config
        self._log.debug("connecting", max_message_bytes=cfg.max_message_bytes)
        try:
            ws = await http.websocket(
                str(self._ws_url),
                params={"token": token},
                timeout=cfg.connect_timeout,
                # aiohttp refuses a message of max_msg_size bytes and more: this one is allowed.
                max_msg_size=cfg.max_message_bytes + 1,
                close_timeout=min(cfg.ping_timeout, 2.0),
            )
        except HandshakeError as exc:
            failure = classify_http(exc.status, exc.headers.get("Retry-After"))
            self._message = f"WebSocket handshake answered HTTP {exc.status}"
            if failure.kind is Kind.AUTH:
                self.session.drop_token()
                return Failure(Kind.AUTH, "token_rejected", str(exc.status))
            return failure
        except TransportError as exc:
            self._message = exc.what
            return Failure(Kind.RETRYABLE, "connect_failed")
        try:
            return await self._stream(ws)
        finally:
            self.session.closed()
            await ws.close()

    async def _login(self, http: Client) -> Failure | None:
        cfg = self.config
        body = {"username": cfg.username.reveal(), "password": cfg.password.reveal()}
        self._log.info("login", url=log.redact_url(str(self._login_url)))
        try:
            reply = await http.request(
                "POST",
                str(self._login_url),
                headers={"Content-Type": "application/json"},
                body=msgspec.json.encode(body),
                timeout=cfg.connect_timeout,
            )
        except TransportError as exc:
            self._message = exc.what
            return Failure(Kind.RETRYABLE, "login_failed")
        raw, status, retry_after = reply.body, reply.status, reply.headers.get("Retry-After")
        if status != 200:
            self._message = f"login answered HTTP {status}"
            failure = classify_http(status, retry_after)
            if failure.kind is Kind.AUTH:
                return Failure(Kind.AUTH, "login_rejected", str(status))
            return failure
        try:
            login = wire.decode_login(raw)
        except Exception as exc:  # noqa: BLE001 - a broken body, however broken, is bad input
            # Never log the body: it may hold a token we could not find to scrub.
            self.ctx.bad_input("login", b"", exc)
            return Failure(Kind.FATAL, "bad_login_response")
        secret.register(login.token)
        self.session.token_obtained(login.token, login.expires_in, self.clock.now())
        self._log.info("logged_in", expires_in=login.expires_in)
        return None

    # --- one connection ---------------------------------------------------------------------

    async def _stream(self, ws: WebSocket) -> Failure:
        now = self.clock.now()
        self.backoff.connected(now)
        self._last_rx = now
        self._pong_due = None
        self._log.info("ws_connected", connection=self.session.connections + 1)
        self._outbox = []
        self._closing = False
        for message in self.session.open(now):
            self._log.debug("sent", **_describe(message))
            await ws.send_str(wire.encode(message))
        self._outbox.extend(await self._act(ws, [], b""))
        flusher = asyncio.ensure_future(self._flush())
        self._ready.set()
        reader = asyncio.ensure_future(self._read(ws))
        watchdog = asyncio.ensure_future(self._watch(ws))
        try:
            done, _ = await asyncio.wait({reader, watchdog}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            await _reap(reader, watchdog, flusher)
            raise
        await _reap(reader, watchdog)
        # What was read goes to the bus before the status event that ends this connection.
        self._closing = True
        self._ready.set()
        await flusher
        finished = done.pop()
        error = finished.exception()
        if isinstance(error, TransportError):
            # A send (pong, subscribe) into a connection that just went away.
            self._message = error.what
            return Failure(Kind.RETRYABLE, "connection_lost")
        return finished.result()

    async def _flush(self) -> None:
        """Hand the outbox to the bus: everything read since the last hand-over is one batch.

        The reader does not yield while aiohttp has parsed frames queued, so one batch holds
        every message of one socket read (up to ``_MAX_OUTBOX`` events), not one per message.
        """
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self._outbox:
                batch, self._outbox = self._outbox, []
                self._room.set()
                await self.ctx.publish(batch)
            if self._closing:
                return

    def _resume_from(self, history: Sequence[Event]) -> None:
        """After a restart the first connect back-fills like a reconnect: from the newest event
        of this source in the journal, deduped against the ids journaled."""
        if not history:
            self.ctx.log.debug("resume_decision", why="nothing journaled: live from the start")
            return
        try:
            newest = max(times.to_epoch(e.received) for e in history)
        except ValueError:
            self.ctx.log.debug("resume_decision", why="journal unreadable: live from the start")
            return  # a journal of another version: the first connect starts afresh
        self.session.covered_until = newest
        self.session.seen.update(e.id for e in history)
        self.ctx.log.info("resuming", since=times.from_epoch(newest), journaled=len(history))

    def _received(self, now: float) -> str:
        # One canonical string per millisecond: formatting it is the costly part.
        ms = int(now * 1000)
        if ms != self._stamp_ms:
            self._stamp_ms = ms
            self._stamp = times.from_epoch(now)
        return self._stamp

    async def _read(self, ws: WebSocket) -> Failure:
        session, decode = self.session, wire.decoder.decode
        ready, room = self._ready, self._room
        text, binary = WSKind.TEXT, WSKind.BINARY
        while True:
            msg = await ws.receive()
            kind = msg.kind
            if kind is text or kind is binary:
                self._last_rx = now = msg.t
                try:
                    decoded = decode(msg.data)
                except Exception as exc:  # noqa: BLE001 - one message's fault, never the feed's
                    self._undecodable(msg.data, exc)
                    continue
                events = session.receive(decoded, self._received(now), now)
                if session.actions:
                    events = await self._act(ws, events, msg.data)
                if events:
                    self._outbox.extend(events)
                    if not ready.is_set():
                        ready.set()
                    if len(self._outbox) >= _MAX_OUTBOX:
                        # The bus is behind: stop reading until it took this batch.
                        room.clear()
                        await room.wait()
            elif kind is WSKind.PING:
                await ws.pong(msg.data if isinstance(msg.data, bytes) else msg.data.encode())
            elif kind is WSKind.PONG:
                self._pong_due = None
            elif kind is WSKind.CLOSE:
                return self._closed(msg.code or 0, str(msg.data))
            elif kind is WSKind.TOO_BIG:
                # Refused unread with 1009 (RFC 6455 7.4.1): bad input, and a lost connection.
                self.ctx.bad_input("oversized_message", b"", msg.error)
                self._message = None
                return Failure(Kind.RETRYABLE, "message_too_big", _code(msg.code))
            else:  # CLOSING, CLOSED, ERROR: the connection is gone
                self._message = msg.error
                return Failure(Kind.RETRYABLE, "connection_lost", _code(msg.code))

    def _undecodable(self, raw: str | bytes, exc: Exception) -> None:
        name = wire.message_type(raw) if isinstance(exc, msgspec.ValidationError) else None
        if name is not None and name not in wire.SERVER_TYPES:
            self.ctx.unknown_type(name)
        else:
            self.ctx.bad_input(name or "message", raw, exc)

    async def _act(self, ws: WebSocket, events: list[Event], raw: str | bytes) -> list[Event]:
        """Carry out the session's actions; status and gap events go before ``events``."""
        first: list[Event] = []
        for action in self.session.take_actions():
            if isinstance(action, ses.Send):
                self._log.debug("sent", **_describe(action.message))
                await ws.send_str(wire.encode(action.message))
            elif isinstance(action, ses.Connected):
                self._log.info("subscribed", connection=self.session.connections)
                first.append(self.ctx.connected(reason="subscribed"))
            elif isinstance(action, ses.Gap):
                self._log.info("gap", reason=action.reason, since=action.since, until=action.until)
                first.append(
                    self.ctx.gap(reason=action.reason, since=action.since, until=action.until)
                )
            elif isinstance(action, ses.Reported):
                self.ctx.reported(action.reason, action.code)
            else:
                self.ctx.bad_input(action.kind, raw, action.error)
        return first + events if first else events

    def _closed(self, code: int, reason: str) -> Failure:
        self._message = log.scrub_text(reason)[:200] or None
        if code in AUTH_CLOSE_CODES:
            expired = self.session.token_expired(self.clock.now())
            self.session.drop_token()
            if expired:
                # Renewed on schedule, nothing failed: the source stays ready meanwhile.
                return Failure(Kind.RETRYABLE, "token_expired", str(code), planned=True)
            return Failure(Kind.AUTH, "token_rejected", str(code))
        return Failure(Kind.RETRYABLE, "server_closed", str(code))

    async def _watch(self, ws: WebSocket) -> Failure:
        """Liveness: a ping every ``ping_interval``, its pong within ``ping_timeout``; data-idle.

        Every time here is the transport's clock: the time this task last woke, and the reader's
        last message; a replay wakes it at the recorded times and it decides the same."""
        cfg, clock = self.config, self.clock
        next_ping = clock.now() + cfg.ping_interval
        while True:
            now = clock.now()
            if self._pong_due is not None and now >= self._pong_due:
                return Failure(Kind.RETRYABLE, "ping_timeout")
            if now - self._last_rx >= cfg.idle_timeout:
                return Failure(Kind.RETRYABLE, "idle_timeout")
            deadline = self.session.deadline()
            if deadline is not None and now >= deadline:
                return Failure(Kind.RETRYABLE, self.session.overdue())
            if now >= next_ping:
                next_ping = now + cfg.ping_interval
                if self._pong_due is None:
                    self._pong_due = now + cfg.ping_timeout
                    try:
                        await ws.ping()
                    except TransportError as exc:
                        self._message = exc.what
                        return Failure(Kind.RETRYABLE, "connection_lost")
            wake = min(next_ping, self._last_rx + cfg.idle_timeout, now + _TICK)
            if self._pong_due is not None:
                wake = min(wake, self._pong_due)
            await clock.sleep(max(wake - now, 0.001), "watchdog")


async def _reap(*tasks: asyncio.Future[Any]) -> None:
    """Cancel ``tasks`` and wait until they are done."""
    for task in tasks:
        task.cancel()
    # wait(), not await: a task that ended with an error is the caller's to inspect.
    await asyncio.wait(tasks)


def _code(code: int | None) -> str | None:
    return None if code is None else str(code)


def _describe(message: wire.ClientMessage) -> dict[str, Any]:
    """A client message for a debug line: what was asked for (subscriptions, a back-fill's
    account and window); these carry no credential (the token travels in the URL)."""
    return {"message": message.type, "payload": msgspec.to_builtins(message.payload)}


PLUGIN = SourcePlugin("traderws", TraderWsSource, TraderWsAdapter)
