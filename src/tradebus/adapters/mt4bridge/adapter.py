"""MT4 bridge adapter: one bridge session, its heartbeats, ``WS /events`` and REST reconciliation.

"Open a single MT4 bridge session, then reuse it for account reads, trade tasks, and market
subscriptions." The adapter opens the session (``POST /session/open``), sends ``x-session-id`` on
every call, keeps the session alive (``POST /session/{id}/heartbeat``), streams ``WS /events``,
and "for resilient infrastructure, pair[s] periodic REST polling with WebSocket subscriptions":
``GET /account`` and ``GET /positions`` on every (re)connect and every ``reconcile_interval``,
so an open or close that happened while the stream was down is still reported, exactly once.

"For retry-safe workflows, send your own request id": every write call carries ``x-request-id``,
and a retry of that call re-sends the same id. "Production workloads should combine request ids,
adaptive retry backoff, and circuit breaking around broker connectivity incidents": 502
BridgeUnavailable feeds a circuit breaker (``reconcile.Breaker``). On shutdown the session is
released (``DELETE /session/{id}``: "Release server resources and revoke the session").

Only bytes move here; decoding is ``wire``, events are ``normalize``, bookkeeping ``reconcile``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any

import msgspec

from tradebus import log, secret, times
from tradebus.adapters.base import EndKind, SourceContext
from tradebus.adapters.intake import Intake
from tradebus.adapters.mt4bridge import normalize, wire
from tradebus.adapters.mt4bridge.reconcile import Breaker, PositionBook
from tradebus.adapters.transport import (
    Client,
    HandshakeError,
    TransportError,
    WaitTimeoutError,
    WebSocket,
    WSKind,
)
from tradebus.backoff import Backoff, Failure, Kind, classify_http, parse_retry_after
from tradebus.config import Mt4BridgeSource
from tradebus.errors import SourceError
from tradebus.plugin import SourcePlugin
from tradebus.schemas.events import AccountData, Event, PositionClosed, PositionOpened

# DELETE on shutdown must not hold the daemon's drain for long.
RELEASE_TIMEOUT = 2.0
# In-place retries of one call (429 with Retry-After, a network error). 502s retry in place
# until the breaker opens, which bounds them by ``breaker_threshold``.
MAX_ATTEMPTS = 3
CHANNELS = ("quotes", "profit", "orders")


class BridgeCallError(SourceError):
    """A bridge call or the stream failed; ``failure`` says how to retry. No secret inside."""

    def __init__(self, failure: Failure, message: str | None = None) -> None:
        self.failure = failure
        self.message = message
        super().__init__(f"{failure.reason} ({failure.code})" if failure.code else failure.reason)


def _failed(kind: Kind, reason: str, code: str | int | None = None, **kw: Any) -> BridgeCallError:
    message = kw.pop("message", None)
    return BridgeCallError(
        Failure(kind, reason, None if code is None else str(code), **kw), message
    )


def ws_url(url: str) -> str:
    """``WS /events`` under the REST base: http → ws, https → wss."""
    base = url.rstrip("/")
    scheme, rest = base.split("://", 1)
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/events"


class Mt4BridgeAdapter:
    """One MT4 bridge session; ``run`` reconnects until cancelled, then releases the session."""

    def __init__(self, config: Mt4BridgeSource, ctx: SourceContext) -> None:
        self.name = config.name
        self.config = config
        self.ctx = ctx
        self._base = config.url.rstrip("/")
        self._ws_url = ws_url(config.url)
        self._backoff = Backoff(
            base=config.reconnect_min,
            cap=config.reconnect_max,
            stable_after=config.stable_after,
            auth_delay=config.auth_retry,
            rng=ctx.transport.rng("backoff"),
        )
        self.clock = ctx.transport
        self._breaker = Breaker(config.breaker_threshold, config.breaker_reset)
        self._book = PositionBook()
        # One per reader (the WebSocket, the reconciliation): each runs its reads on its own.
        self._frames: Intake[str] = Intake(ctx)
        self._listing: Intake[str] = Intake(ctx)
        self._resume_from(ctx.history)
        self._rng = ctx.transport.rng("pause")
        self._session_id: str | None = None
        self._account: AccountData | None = None
        # "401 → open a new session once": re-armed by every successful connect.
        self._may_reopen = True
        self._connected = False
        self._down_since: str | None = None

    # --- the reconnect loop -------------------------------------------------------------------

    async def run(self) -> None:
        self.ctx.begin()
        async with self.clock.client(limit=4) as http:
            try:
                while True:
                    try:
                        await self._connect_and_serve(http)
                    except BridgeCallError as exc:
                        delay = await self._on_failure(exc)
                    except TransportError as exc:
                        delay = await self._on_failure(
                            _failed(Kind.RETRYABLE, "network", message=exc.what)
                        )
                    await self.clock.sleep(delay, "backoff")
            finally:
                await self._release(http)

    async def _connect_and_serve(self, http: Client) -> None:
        self.ctx.log.debug(
            "connecting",
            url=log.redact_url(self._ws_url),
            session_held=self._session_id is not None,
        )
        await self._ensure_session(http)
        ws = await self._open_ws(http)
        try:
            # The stream is subscribed before the snapshot is taken: an open that lands between
            # the two is in the WS buffer, and the book keeps it from being reported twice.
            events = await self._reconcile(http)
            await self._on_connected(events)
            await _first_failure(
                self._read(ws), self._heartbeats(http), self._reconcile_every(http)
            )
        finally:
            await ws.close()

    async def _on_connected(self, events: list[Event]) -> None:
        now = times.from_epoch(self.clock.now())
        self._connected = True
        self._may_reopen = True
        self._backoff.connected(self.clock.now())
        batch = [self.ctx.connected(account=self.config.account_id)]
        if self._down_since is not None:
            # Quotes and profit ticks of the outage are not replayed; opens, closes and the
            # account were reconciled above.
            batch.append(
                self.ctx.gap(
                    reason="stream_interrupted",
                    since=self._down_since,
                    until=now,
                    account=self.config.account_id,
                )
            )
            self._down_since = None
        self.ctx.log.info("connected", url=log.redact_url(self._ws_url))
        await self.ctx.publish(batch + events)

    async def _on_failure(self, exc: BridgeCallError) -> float:
        """Publish what the failure means and return how long to wait before the next try."""
        failure = exc.failure
        now = self.clock.now()
        if self._connected:
            self._connected = False
            self._backoff.disconnected(now)
            self._down_since = times.from_epoch(now)
        account = self.config.account_id
        if failure.reason == "session_rejected":
            self._session_id = None
            if self._may_reopen:
                self._may_reopen = False
                self.ctx.log.info("session_rejected", action="reopen")
                ended = self.ctx.disconnected(
                    "session_rejected",
                    planned=False,
                    retry_in=0.0,
                    code=failure.code,
                    message=exc.message,
                    account=account,
                )
                await self.ctx.publish([ended])
                return 0.0
        self.ctx.log.debug(
            "reconnect_planned",
            reason=failure.reason,
            kind=failure.kind.name.lower(),
            retry_after=failure.retry_after,
            breaker=self._breaker.state.name.lower(),
        )
        kind: EndKind
        if failure.kind is Kind.AUTH:
            delay = self._backoff.delay(failure)
            kind, what = "status.auth_failed", "auth_failed"
        else:
            if failure.reason == "bridge_unavailable":
                delay = max(self._breaker.retry_in(now), self.config.reconnect_min)
            else:
                delay = self._backoff.delay(failure, failure.retry_after or 0.0)
            kind = "status.error" if failure.kind is Kind.FATAL else "status.disconnected"
            what = "disconnected"
        self.ctx.log.warning(
            what, reason=failure.reason, code=failure.code, retry_in=round(delay, 3)
        )
        ended = self.ctx.disconnected(
            failure.reason,
            planned=failure.planned,
            retry_in=delay,
            code=failure.code,
            message=exc.message,
            account=account,
            kind=kind,
        )
        await self.ctx.publish([ended])
        return delay

    # --- session ------------------------------------------------------------------------------

    async def _ensure_session(self, http: Client) -> None:
        """Keep the session we hold if it still answers a heartbeat, else open a new one."""
        if self._session_id is not None:
            try:
                await self._heartbeat(http)
            except BridgeCallError as exc:
                if exc.failure.reason != "session_rejected":
                    raise
                self._session_id = None
            else:
                return
        await self._open_session(http)

    async def _open_session(self, http: Client) -> None:
        body = wire.encoder.encode(
            wire.SessionOpenRequest(
                account_id=self.config.account_id,
                server=self.config.server,
                login=self.config.login,
                password=self.config.password.reveal(),
            )
        )
        try:
            raw = await self._call(http, "POST", "/session/open", "session_open", body=body)
        except BridgeCallError as exc:
            if exc.failure.reason == "session_rejected":
                # The key or the terminal credentials were refused: nothing a quick retry fixes.
                raise BridgeCallError(
                    Failure(Kind.AUTH, "auth_failed", exc.failure.code), exc.message
                ) from None
            raise
        try:
            info = wire.session_decoder.decode(raw)
        except Exception as err:  # noqa: BLE001 - a broken body, however broken, is bad input
            self.ctx.bad_input("session", raw, err)
            raise _failed(Kind.RETRYABLE, "bad_session_response") from None
        secret.register(info.session_id)  # a bearer of the account: never in a log line
        self._session_id = info.session_id
        self.ctx.log.info("session_opened", expires_at=info.expires_at)

    async def _heartbeat(self, http: Client) -> None:
        path = f"/session/{self._session_id}/heartbeat"
        await self._call(http, "POST", path, "heartbeat", write=True)

    async def _heartbeats(self, http: Client) -> None:
        while True:
            await self.clock.sleep(self.config.heartbeat_interval, "heartbeat")
            await self._heartbeat(http)

    async def _release(self, http: Client) -> None:
        """DELETE the session on shutdown, shielded so that the cancellation does not skip it."""
        sid, self._session_id = self._session_id, None
        if sid is None:
            return
        task = asyncio.ensure_future(self._delete_session(http, sid))
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            # Cancelled again while releasing: give the DELETE its short timeout, then go.
            await asyncio.wait({task}, timeout=RELEASE_TIMEOUT)
            raise

    async def _delete_session(self, http: Client, sid: str) -> None:
        headers = self._headers(sid, _request_id())
        try:
            reply = await http.request(
                "DELETE", f"{self._base}/session/{sid}", headers=headers, timeout=RELEASE_TIMEOUT
            )
        except TransportError as exc:
            self.ctx.log.warning("session_release_failed", error=exc.what)
        else:
            self.ctx.log.info("session_released", status=reply.status)

    # --- REST ---------------------------------------------------------------------------------

    def _headers(self, sid: str | None, request_id: str | None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.config.api_key.reveal()}"}
        if sid is not None:
            headers["x-session-id"] = sid
        if request_id is not None:
            headers["x-request-id"] = request_id
        return headers

    async def _call(
        self,
        http: Client,
        method: str,
        path: str,
        what: str,
        *,
        body: bytes | None = None,
        write: bool = False,
    ) -> bytes:
        """One bridge call with in-place retries (same ``x-request-id``) behind the breaker.

        ``what`` names the call in logs and errors (a path can hold the session id).
        """
        headers = self._headers(self._session_id, _request_id() if write or body else None)
        if body is not None:
            headers["Content-Type"] = "application/json"
        clock = self.clock
        label = f"retry:{what}"  # calls of one kind never overlap: a replay wakes the right one
        attempt = 0
        while True:
            attempt += 1
            if not self._breaker.allow(clock.now()):
                raise _failed(Kind.RETRYABLE, "bridge_unavailable", "BridgeUnavailable")
            try:
                reply = await http.request(
                    method,
                    self._base + path,
                    headers=headers,
                    body=body,
                    timeout=self.config.request_timeout,
                )
            except TransportError as exc:
                self._breaker.abort(clock.now())
                if attempt >= MAX_ATTEMPTS:
                    raise _failed(Kind.RETRYABLE, "network", message=exc.what) from None
                await clock.sleep(self._pause(attempt), label)
                continue
            status, payload = reply.status, reply.body
            retry_after = parse_retry_after(reply.headers.get("Retry-After"))
            if status != 502 and self._breaker.success():
                self.ctx.log.info("bridge_recovered", call=what)
            if 200 <= status < 300:
                return payload
            error = _error_body(payload)
            code = error.code or status
            if status == 401:
                raise _failed(Kind.AUTH, "session_rejected", 401, message=error.message)
            if status == 502:
                if self._breaker.failure(clock.now()):
                    self.ctx.log.warning("circuit_open", call=what, retry_in=self._breaker.reset)
                    raise _failed(Kind.RETRYABLE, "bridge_unavailable", code, message=error.message)
                await clock.sleep(self._pause(attempt), label)
                continue
            if status == 429 and attempt < MAX_ATTEMPTS:
                wait = retry_after if retry_after is not None else self._pause(attempt)
                self.ctx.log.info("rate_limited", call=what, retry_after=wait)
                await clock.sleep(wait, label)
                continue
            # 403 too is refused credentials (paced by auth_retry); 409, 429 and 5xx heal.
            raise _failed(
                classify_http(status).kind,
                f"{what}_failed",
                code,
                message=error.message,
                retry_after=retry_after,
            )

    def _pause(self, attempt: int) -> float:
        """Full-jitter pause between in-place retries of one call."""
        ceiling = min(self.config.reconnect_max, self.config.reconnect_min * 2 ** (attempt - 1))
        return self._rng.uniform(ceiling / 2, ceiling)

    def _resume_from(self, history: Sequence[Event]) -> None:
        """The positions reported open and closed before a restart, from the journal: the
        start-up reconciliation then reports only what changed while we were away."""
        opened: dict[int, wire.Position] = {}
        closed: list[int] = []
        for event in history:
            if not isinstance(event, PositionOpened | PositionClosed):
                continue
            d = event.data
            if not d.position_id.isdigit() or len(d.position_id) > 18:
                continue
            ticket = int(d.position_id)
            if isinstance(event, PositionClosed):
                closed.append(ticket)
                opened.pop(ticket, None)
                continue
            opened[ticket] = wire.Position(
                ticket=ticket,
                symbol=event.symbol,
                type=d.side.upper() if d.side else None,
                volume=d.volume,
                open_price=d.open_price,
                current_price=d.current_price,
                sl=d.stop_loss,
                tp=d.take_profit,
                profit=d.unrealized_profit,
            )
        if opened or closed:
            self._book.restore(list(opened.values()), closed)
            self.ctx.log.info("resuming", open_positions=len(opened), closed_positions=len(closed))
        else:
            self.ctx.log.debug(
                "resume_decision",
                why="no position journaled: the first reconciliation reports every open position",
            )

    async def _reconcile(self, http: Client) -> list[Event]:
        """``GET /account`` (reported when changed) and ``GET /positions`` (opens and closes)."""
        events: list[Event] = []
        source, account = self.name, self.config.account_id
        raw = await self._call(http, "GET", "/account", "account")
        try:
            data = normalize.account_data(wire.account_decoder.decode(raw))
        except Exception as exc:  # noqa: BLE001 - a broken body, however broken, is bad input
            self.ctx.bad_input("account", raw, exc)
        else:
            if data != self._account:
                self._account = data
                events.append(
                    normalize.account(data, source, account, times.from_epoch(self.clock.now()))
                )
        requested_at = self.clock.now()
        raw = await self._call(http, "GET", "/positions", "positions")
        try:
            decoded = wire.positions_decoder.decode(raw)
        except Exception as exc:  # noqa: BLE001 - a broken body, however broken, is bad input
            self.ctx.bad_input("positions", raw, exc)
            return events
        listed = decoded.positions if isinstance(decoded, wire.Positions) else decoded
        diff = self._book.reconcile(
            [p for p in listed if normalize.is_open_position(p)], requested_at
        )
        self.ctx.log.debug(
            "reconciled", listed=len(listed), opened=len(diff.opened), closed=len(diff.closed)
        )
        listed_changes = [("opened", p) for p in diff.opened]
        listed_changes += [("closed", p) for p in diff.closed]
        received = times.from_epoch(self.clock.now())
        # One bad position is its own bad input, not the listing's.
        self._listing.each(listed_changes, self._listed, received, "positions", _position_raw)
        events += self._listing.take()
        return events

    def _listed(
        self, change: tuple[str, wire.Position], received: str, events: list[Event]
    ) -> None:
        event, position = change
        events.append(
            normalize.position_event(
                event,
                position,
                self.name,
                self.config.account_id,
                received,
                refused=self.ctx.refused,
                reason="reconciled",
            )
        )

    async def _reconcile_every(self, http: Client) -> None:
        while True:
            await self.clock.sleep(self.config.reconcile_interval, "reconcile")
            events = await self._reconcile(http)
            if events:
                await self.ctx.publish(events)

    # --- WS /events ---------------------------------------------------------------------------

    async def _open_ws(self, http: Client) -> WebSocket:
        headers = self._headers(self._session_id, None)
        clock = self.clock
        if not self._breaker.allow(clock.now()):
            raise _failed(Kind.RETRYABLE, "bridge_unavailable", "BridgeUnavailable")
        try:
            ws = await http.websocket(
                self._ws_url,
                headers=headers,
                timeout=self.config.request_timeout,
                heartbeat=min(self.config.idle_timeout / 2, 30.0),
                # aiohttp refuses a message of max_msg_size bytes and more: this one is allowed.
                max_msg_size=self.config.max_message_bytes + 1,
                close_timeout=RELEASE_TIMEOUT,
            )
        except HandshakeError as exc:
            raise self._handshake_failure(exc.status, exc.headers) from None
        except TransportError as exc:
            self._breaker.abort(clock.now())
            raise _failed(Kind.RETRYABLE, "ws_connect", message=exc.what) from None
        self._breaker.success()
        subscribe = wire.Subscribe(channels=list(CHANNELS), symbols=list(self.config.symbols))
        await ws.send_str(wire.encoder.encode(subscribe).decode())
        self.ctx.log.info("subscribed", symbols=len(self.config.symbols))
        return ws

    def _handshake_failure(self, status: int, headers: Mapping[str, str]) -> BridgeCallError:
        if status == 502:
            if self._breaker.failure(self.clock.now()):
                return _failed(Kind.RETRYABLE, "bridge_unavailable", "BridgeUnavailable")
        else:
            self._breaker.success()  # the bridge answered: whatever it said, it is reachable
        if status == 401:
            return _failed(Kind.AUTH, "session_rejected", 401)
        after = parse_retry_after(headers.get("Retry-After"))
        return _failed(Kind.RETRYABLE, "ws_handshake", status, retry_after=after)

    async def _read(self, ws: WebSocket) -> None:
        while True:
            try:
                msg = await ws.receive(timeout=self.config.idle_timeout)
            except WaitTimeoutError:
                raise _failed(Kind.RETRYABLE, "idle_timeout") from None
            kind = msg.kind
            if kind is WSKind.TEXT or kind is WSKind.BINARY:
                await self._on_frame(msg.data)
            elif kind is WSKind.TOO_BIG:
                # Refused unread with 1009 (RFC 6455 7.4.1): bad input, and a lost connection.
                self.ctx.bad_input("oversized_message", b"", msg.error)
                raise _failed(Kind.RETRYABLE, "message_too_big", msg.code)
            elif kind is WSKind.ERROR:
                raise _failed(Kind.RETRYABLE, "ws_error", message=msg.error)
            elif kind in (WSKind.CLOSE, WSKind.CLOSING, WSKind.CLOSED):
                raise _failed(Kind.RETRYABLE, "ws_closed", msg.code)

    async def _on_frame(self, raw: str | bytes) -> None:
        received = times.from_epoch(self.clock.now())
        decoded = wire.decode_frame(raw)
        for name in decoded.unknown:
            self.ctx.unknown_type(name)
        for data, error in decoded.bad:
            self.ctx.bad_input("ws_message", data, error)
        # A normalizer's refusal is the message's bad input.
        self._frames.each(decoded.messages, self._on_message, received, "ws_message", _encoded)
        await self._frames.publish()

    def _on_message(self, msg: wire.Message, received: str, events: list[Event]) -> None:
        source, account = self.name, self.config.account_id
        if isinstance(msg, wire.Quote):
            events.append(normalize.quote(msg, source, account, received, self.ctx.refused))
        elif isinstance(msg, wire.Profit):
            known = self._book.get(msg.ticket)
            self._book.update(msg.ticket, current_price=msg.current_price, profit=msg.profit)
            if msg.symbol is None and known is not None:
                msg = msgspec.structs.replace(msg, symbol=known.symbol)
            events.append(normalize.profit(msg, source, account, received, self.ctx.refused))
        elif isinstance(msg, wire.Order):
            self._on_order(msg, received, events)
        elif isinstance(msg, wire.Subscribed):
            self.ctx.log.info("subscription_confirmed", channels=msg.channels)
        else:
            self.ctx.log.warning("upstream_error", code=msg.code, message=msg.message)
            events.append(
                self.ctx.error(
                    "upstream_error", code=msg.code, message=msg.message, account=account
                )
            )

    def _on_order(self, msg: wire.Order, received: str, events: list[Event]) -> None:
        source, account = self.name, self.config.account_id
        event_name = msg.event.strip().lower()
        if event_name in normalize.POSITION_EVENTS and msg.ticket is not None:
            # WS opens and closes go through the book: reconciliation must not repeat them.
            position = normalize.position_from_order(msg)
            if event_name == "opened":
                if not self._book.opened(position, self.clock.now()):
                    return
            else:
                merged = self._book.closed(position)
                if merged is None:
                    return
                position = merged
            events.append(
                normalize.position_event(
                    event_name,
                    position,
                    source,
                    account,
                    received,
                    refused=self.ctx.refused,
                    when=msg.time,
                    reason=msg.reason,
                )
            )
            return
        event = normalize.order(msg, source, account, received, self.ctx.refused)
        if event is None:
            self.ctx.unknown_type(f"order.{event_name}")
            return
        events.append(event)


def _encoded(msg: wire.Message) -> bytes:
    return wire.encoder.encode(msg)


def _position_raw(change: tuple[str, wire.Position]) -> bytes:
    return wire.encoder.encode(change[1])


def _request_id() -> str:
    return f"tb-{uuid.uuid4().hex}"


def _error_body(payload: bytes) -> wire.ErrorBody:
    try:
        return wire.error_decoder.decode(payload)
    except (msgspec.DecodeError, RecursionError):
        return wire.ErrorBody()


async def _first_failure(*coros: Coroutine[Any, Any, None]) -> None:
    """Run the connection's loops together; the first to fail (or end) ends them all."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        error = task.exception()
        if error is not None:
            raise error
    raise _failed(Kind.RETRYABLE, "stream_ended")


PLUGIN = SourcePlugin("mt4bridge", Mt4BridgeSource, Mt4BridgeAdapter)
