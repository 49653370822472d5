"""A fake Trader WebSocket API: login, JWT expiry, subscriptions, quotes, fills, history, faults.

One aiohttp application serves both ``POST /api/v1/login`` and ``GET /api/v1/ws?token=<JWT>``
on one port, because a source's config has one base URL for both. (The ``websockets`` server
refuses any request with a body, so it cannot answer the login POST on the same port.)

Payloads the API doc shows are used verbatim (the envelope, ``subscribe``/``subscribed``,
``quoteEvent``, ``createOrder``). Those it does not show are designed as a broker's API would
and documented here; the adapter decodes them tolerantly (unknown fields ignored).

Login::

    POST /api/v1/login  {"username": "...", "password": "..."}
    200 {"token": "<JWT>", "expiresIn": 3600}            (seconds until the token expires)
    401 {"code": "UNAUTHORIZED", "message": "invalid credentials"}

The JWT is HS256-signed with claims ``sub``, ``iat``, ``exp``, ``jti``. A WebSocket opened with
a token that is unknown, expired or revoked is accepted and at once closed with code 4001
("Connections without a valid token are closed immediately"); an open connection is closed
with 4001 when its token expires or is revoked.

Acks echo the request's payload: ``subscribed`` answers ``subscribe`` (``{symbols, events}``),
``depthSubscribe`` (``{symbol, depth}``) and ``metricsSubscribe`` (``{accountId}``).

Server → client (camelCase, times RFC 3339 UTC with milliseconds)::

    depthEvent     {symbol, bids: [[price, volume], ...], asks: [[price, volume], ...], ts}
    executionEvent {executionId, orderId, accountId, symbol, side: BUY|SELL,
                    type: MARKET|LIMIT, status: NEW|PARTIALLY_FILLED|FILLED|CANCELLED|REJECTED,
                    quantity, filledQuantity, price, positionId?, reason?, ts}
    portfolioEvent {accountId, ts, balance, equity, margin, freeMargin, marginLevel,
                    unrealizedPnl, currency, positions: [{positionId, symbol, side, quantity,
                    openPrice, currentPrice, closePrice?, unrealizedPnl, realizedPnl?,
                    change: OPENED|UPDATED|CLOSED, status: OPEN|CLOSED}]}   (changed positions)
    metricsEvent   {accountId, ts, balance, equity, margin, freeMargin, marginLevel,
                    unrealizedPnl, currency}
    error          {code, message, requestType?, requestId?}

History ("Same body as the equivalent REST endpoint", plus a correlation id)::

    → {"type": "dealHistory",  "payload": {"requestId", "accountId", "from", "to"}}
    ← {"type": "dealHistory",  "payload": {"requestId", "accountId", "from", "to",
                                          "deals": [execution, ...]}}
    → {"type": "orderHistory", "payload": {"requestId", "accountId", "from", "to"}}
    ← {"type": "orderHistory", "payload": {... "orders": [execution, ...]}}

``from``/``to`` are inclusive RFC 3339 times; ``deals`` are the executions that filled
(PARTIALLY_FILLED, FILLED), ``orders`` the other order transitions (NEW, CANCELLED, REJECTED),
each exactly as it was sent live, so together they replay every execution of the window.

Streams: quotes are a random walk per symbol; with ``auto_fills`` every 25th tick fills an order
(NEW then FILLED, a portfolioEvent and a metricsEvent after it), alternately opening and closing
positions. ``rate`` is ticks per second; ``rate=0`` streams quote frames built ahead in bursts
as fast as the socket takes them, their ``ts`` a synthetic clock advancing 1 ms per quote.
Prices, sizes, sides and ids depend only on the seed; timestamps are the wall clock.

Fault knobs (plain attributes and methods): ``reject_logins``, ``reject_tokens``,
``refuse_connections``, ``hold_history`` / ``release_history()``, ``cut()``, ``stall()``,
``quiet()``, ``expire_tokens()``, ``inject()``, ``make_fill()``, ``fills_while_away()``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import hmac
import itertools
import json
import random
import shlex
import struct
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec
from aiohttp import WSMsgType, web

from tradebus import demo_keys, times
from tradebus.simulators.base import AppServer, curl, padded

AUTH_CLOSE = 4001
# Public demo credentials (config/demo.toml's defaults); source_table hands them out anyway.
DEMO_USERNAME = demo_keys.TRADERWS_USERNAME
DEMO_PASSWORD = demo_keys.TRADERWS_PASSWORD
EVENT_KINDS = ("quoteEvent", "executionEvent", "portfolioEvent")
_FILLS = ("FILLED", "PARTIALLY_FILLED")
_START_PRICES = {"EURUSD": 1.0843, "GBPUSD": 1.2710, "USDJPY": 156.20, "XAUUSD": 2331.5}
_QUEUE_LIMIT = 10_000
_BURST = 256
_HIGH_WATER = 256 * 1024
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


def _frame(type_: str, payload: dict[str, Any]) -> str:
    return _encode({"type": type_, "payload": payload}).decode()


def _text_frame(payload: bytes) -> bytes:
    # FIN + opcode 1 (text), no mask: the header of a server's frame, RFC 6455 §5.2.
    size = len(payload)
    if size < 126:
        return struct.pack("!BB", 0x81, size) + payload
    if size < 65536:
        return struct.pack("!BBH", 0x81, 126, size) + payload
    return struct.pack("!BBQ", 0x81, 127, size) + payload


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


@dataclass(eq=False)
class Connection:
    """One accepted WebSocket: what it subscribed to, and its per-connection fault state."""

    number: int
    ws: web.WebSocketResponse
    request: web.Request
    token: str
    subscriptions: set[tuple[str, ...]] = field(default_factory=set)
    out: asyncio.Queue[str] = field(default_factory=lambda: asyncio.Queue(_QUEUE_LIMIT))
    pongs: int = 0
    stalled: bool = False
    quiet: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def wants(self, key: tuple[str, ...]) -> bool:
        return key in self.subscriptions

    def depth_of(self, symbol: str) -> int | None:
        for sub in self.subscriptions:
            if sub[0] == "depthEvent" and sub[1] == symbol:
                return int(sub[2])
        return None


class _QuoteTape:
    """Quote frames for ``rate=0``: a seeded random walk stamped by a synthetic clock that
    advances 1 ms per quote, so every frame (and every event id) is distinct, however fast."""

    _START = 1_780_272_000  # 2026-06-01T00:00:00Z

    def __init__(self, symbol: str, price: float, digits: int, seed: int) -> None:
        self.symbol = symbol
        self.price = price
        self.digits = digits
        self.pip = 10.0 ** -(digits - 1)
        self.rng = random.Random(f"{seed}-{symbol}")
        self.ms = 0
        self._second = -1
        self._prefix = ""

    def frames(self, n: int) -> bytes:
        """``n`` quotes as unmasked server→client text frames (RFC 6455 §5.2), concatenated."""
        frames = []
        steps = self.rng.choices((-1, 0, 1), k=n)
        for step in steps:
            second, ms = divmod(self.ms, 1000)
            if second != self._second:
                self._second = second
                self._prefix = times.from_epoch(self._START + second)[:-5]
            self.ms += 1
            bid = round(self.price + step * self.pip, self.digits)
            self.price = bid
            ask = round(bid + self.pip, self.digits)
            payload = (
                f'{{"type":"quoteEvent","payload":{{"symbol":"{self.symbol}","bid":{bid!r},'
                f'"ask":{ask!r},"ts":"{self._prefix}.{ms:03d}Z"}}}}'.encode()
            )
            frames.append(_text_frame(payload))
        return b"".join(frames)


@dataclass
class _Position:
    position_id: str
    account: str
    symbol: str
    side: str
    quantity: float
    open_price: float


class TraderWsSimulator:
    """The fake upstream; ``connections`` records every accepted WebSocket, in order."""

    def __init__(
        self,
        *,
        username: str,
        password: str,
        rate: float = 5.0,
        seed: int = 0,
        symbols: tuple[str, ...] = ("EURUSD", "GBPUSD", "USDJPY"),
        accounts: tuple[str, ...] = ("acc_123",),
        token_lifetime: float = 3600.0,
        server_ping_interval: float = 20.0,
        auto_fills: bool = True,
    ) -> None:
        self.username = username
        self.password = password
        self.rate = rate
        self.seed = seed
        self.symbols = symbols
        self.accounts = accounts
        self.token_lifetime = token_lifetime
        self.server_ping_interval = server_ping_interval
        self.auto_fills = auto_fills
        self.host = "127.0.0.1"
        # Fault knobs.
        self.reject_logins = False
        self.reject_tokens = False
        self.refuse_connections = False
        self.hold_history = False
        # Records the tests read.
        self.login_attempts: list[float] = []
        self.tokens: dict[str, float] = {}
        self.connections: list[Connection] = []
        self.live: set[Connection] = set()
        self.executions: list[tuple[float, dict[str, Any]]] = []
        self.history_requests: list[dict[str, Any]] = []
        self.history_held = asyncio.Event()
        self._release = asyncio.Event()
        self._rng = random.Random(seed)
        self._key = hashlib.sha256(f"traderws-sim-{seed}".encode()).digest()
        self._prices = {s: _START_PRICES.get(s, 1.0 + 0.1 * i) for i, s in enumerate(symbols)}
        self._ids = itertools.count(1)
        self._jti = itertools.count(1)
        self._last_ts = 0.0
        self._positions: dict[str, _Position] = {}
        self._open_orders: dict[str, dict[str, Any]] = {}
        self._balance = dict.fromkeys(accounts, 100_000.0)
        self._changed = asyncio.Condition()
        self._tasks: set[asyncio.Task[None]] = set()
        self._tapes: dict[str, _QuoteTape] = {}
        app = web.Application()
        app.router.add_post("/api/v1/login", self._login)
        app.router.add_get("/api/v1/ws", self._ws)
        self._server = AppServer(app)

    # --- lifecycle --------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._server.port

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        seed = self.seed
        if self.rate == 0:
            self._tapes = {
                s: _QuoteTape(s, self._prices[s], self._digits(s), seed) for s in self.symbols
            }
        await self._server.start(host, port)
        if self.rate > 0:
            self._spawn(self._market())

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for conn in list(self.live):
            await conn.ws.close(code=1001, message=b"server shutting down")
        await self._server.stop()

    def usage(self) -> list[str]:
        base = f"http://{self.host}:{self.port}"
        login = {"username": self.username, "password": self.password}
        ws = f"ws://{self.host}:{self.port}/api/v1/ws?token=TOKEN"
        quotes = {"symbols": list(self.symbols[:1]), "events": ["quoteEvent"]}
        return [
            f"Trader WS simulator on {base}: username {self.username}, password {self.password}",
            "  log in (the reply's token is valid for the WebSocket):",
            f"  {curl(base + '/api/v1/login', body=login)}",
            "  then, with TOKEN from that reply, a WebSocket client:",
            f"  {shlex.join([sys.executable, '-m', 'websockets', ws])}",
            "  and in it, to get quotes:",
            f"  {json.dumps({'type': 'subscribe', 'payload': quotes})}",
        ]

    def source_table(self, name: str) -> dict[str, Any]:
        return {
            "type": "traderws",
            "name": name,
            "url": f"http://{self.host}:{self.port}",
            "username": self.username,
            "password": self.password,
            "symbols": list(self.symbols[:2]),
            "events": list(EVENT_KINDS),
            "depth": [self.symbols[0]],
            "depth_levels": 5,
            "metrics_accounts": [self.accounts[0]],
            "account_id": self.accounts[0],
        }

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait until ``predicate()`` holds (checked whenever a connection or login changes)."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(predicate)

    # --- fault knobs ------------------------------------------------------------------------

    def cut(self) -> None:
        """Drop every open WebSocket as a network cut would: no close frame."""
        for conn in list(self.live):
            transport = conn.request.transport
            if transport is not None:
                transport.abort()

    def stall(self) -> None:
        """Open connections stop reading (so stop answering pings) and stop sending."""
        for conn in self.live:
            conn.stalled = True

    def quiet(self) -> None:
        """Open connections stop sending messages but still answer pings."""
        for conn in self.live:
            conn.quiet = True

    def inject(self, text: str) -> None:
        """Send ``text`` as is to every open connection: malformed or unknown messages."""
        for conn in list(self.live):
            self._send(conn, text)

    def inject_huge(self, size: int) -> None:
        """Send every open connection one well-formed quote of ``size`` bytes."""
        self.inject(padded(_frame("quoteEvent", {"symbol": "EURUSD", "bid": 1.5}), size))

    async def expire_tokens(self) -> None:
        """Every issued token expires now; open connections are closed with 4001."""
        for token in self.tokens:
            self.tokens[token] = 0.0
        for conn in list(self.live):
            await conn.ws.close(code=AUTH_CLOSE, message=b"token expired")

    def release_history(self) -> None:
        """Answer the history requests ``hold_history`` kept waiting."""
        self.hold_history = False
        self._release.set()

    async def fills_while_away(self, count: int, **fill: Any) -> list[dict[str, Any]]:
        """Cut every client, make ``count`` fills while none can connect, then let them back."""
        self.refuse_connections = True
        self.cut()
        await self.wait_until(lambda: not self.live)
        made: list[dict[str, Any]] = []
        for _ in range(count):
            made.extend(await self.make_fill(**fill))
        self.refuse_connections = False
        return made

    # --- login and tokens -------------------------------------------------------------------

    def _issue(self) -> tuple[str, float]:
        now = time.time()
        header = _b64(b'{"alg":"HS256","typ":"JWT"}')
        claims = {
            "sub": self.username,
            "iat": int(now),
            "exp": int(now + self.token_lifetime),
            "jti": str(next(self._jti)),
        }
        body = _b64(_encode(claims))
        signature = hmac.new(self._key, f"{header}.{body}".encode(), hashlib.sha256).digest()
        token = f"{header}.{body}.{_b64(signature)}"
        self.tokens[token] = now + self.token_lifetime
        return token, now + self.token_lifetime

    def _token_ok(self, token: str | None) -> bool:
        if not token or self.reject_tokens:
            return False
        return self.tokens.get(token, 0.0) > time.time()

    async def _login(self, request: web.Request) -> web.Response:
        self.login_attempts.append(time.time())
        await self._notify()
        try:
            body = _decode(await request.read())
        except (msgspec.DecodeError, RecursionError):  # nesting past msgspec's stack
            return web.json_response({"code": "BAD_REQUEST", "message": "invalid JSON"}, status=400)
        ok = (
            isinstance(body, dict)
            and body.get("username") == self.username
            and body.get("password") == self.password
        )
        if self.reject_logins or not ok:
            return web.json_response(
                {"code": "UNAUTHORIZED", "message": "invalid credentials"}, status=401
            )
        token, _ = self._issue()
        lifetime = self.token_lifetime
        expires_in = int(lifetime) if lifetime == int(lifetime) else lifetime
        return web.json_response({"token": token, "expiresIn": expires_in})

    # --- connections ------------------------------------------------------------------------

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        if self.refuse_connections:
            return web.json_response(
                {"code": "UNAVAILABLE", "message": "try again later"}, status=503
            )
        ws = web.WebSocketResponse(autoping=False, compress=False, timeout=1.0)
        await ws.prepare(request)
        token = request.query.get("token", "")
        if not self._token_ok(token):
            await ws.close(code=AUTH_CLOSE, message=b"invalid or expired token")
            return ws
        conn = Connection(len(self.connections) + 1, ws, request, token)
        self.connections.append(conn)
        self.live.add(conn)
        await self._notify()
        helpers = [
            self._spawn(self._writer(conn)),
            self._spawn(self._pinger(conn)),
            self._spawn(self._expiry(conn)),
        ]
        try:
            await self._reader(conn)
        finally:
            for task in helpers:
                task.cancel()
            self.live.discard(conn)
            await self._notify()
        return ws

    async def _reader(self, conn: Connection) -> None:
        ws = conn.ws
        while True:
            if conn.stalled:
                await asyncio.Event().wait()  # until the client goes away and cancels us
            msg = await ws.receive()
            if msg.type is WSMsgType.TEXT:
                await self._handle(conn, msg.data)
            elif msg.type is WSMsgType.PING:
                await ws.pong(msg.data)
            elif msg.type is WSMsgType.PONG:
                conn.pongs += 1
                await self._notify()
            elif msg.type in (
                WSMsgType.CLOSE,
                WSMsgType.CLOSING,
                WSMsgType.CLOSED,
                WSMsgType.ERROR,
            ):
                return

    async def _writer(self, conn: Connection) -> None:
        while True:
            if conn.stalled or conn.quiet:
                await asyncio.Event().wait()  # until the connection ends and cancels us
            tapes = [t for s, t in self._tapes.items() if conn.wants(("quoteEvent", s))]
            if not tapes:
                await conn.ws.send_str(await conn.out.get())
                continue
            while not conn.out.empty():
                await conn.ws.send_str(conn.out.get_nowait())
            transport = conn.request.transport
            if transport is None or transport.is_closing():
                return
            # rate 0: whole WebSocket frames, built ahead, written as one blob per symbol. Text
            # frames of aiohttp's own writer (acks, history) are written whole as well, so the
            # two never interleave inside a frame.
            for tape in tapes:
                transport.write(tape.frames(_BURST))
            # aiohttp has no public drain for raw transport writes: poll the buffer instead.
            while transport.get_write_buffer_size() > _HIGH_WATER and not transport.is_closing():  # noqa: ASYNC110
                await asyncio.sleep(0.0005)

    async def _pinger(self, conn: Connection) -> None:
        while True:
            await asyncio.sleep(self.server_ping_interval)
            if not conn.stalled:
                await conn.ws.ping()

    async def _expiry(self, conn: Connection) -> None:
        await asyncio.sleep(max(0.0, self.tokens.get(conn.token, 0.0) - time.time()))
        await conn.ws.close(code=AUTH_CLOSE, message=b"token expired")

    def _send(self, conn: Connection, text: str) -> None:
        if conn.stalled or conn.quiet:
            return
        try:
            conn.out.put_nowait(text)
        except asyncio.QueueFull:
            # A client this far behind is dropped, as a broker drops a slow consumer.
            transport = conn.request.transport
            if transport is not None:
                transport.abort()

    def _broadcast(self, key: tuple[str, ...], text: str) -> None:
        for conn in list(self.live):
            if conn.wants(key):
                self._send(conn, text)

    # --- client messages --------------------------------------------------------------------

    def _error(
        self, conn: Connection, code: str, message: str, request: dict[str, Any] | None = None
    ) -> None:
        payload: dict[str, Any] = {"code": code, "message": message}
        if request is not None:
            payload["requestType"] = request.get("type")
            inner = request.get("payload")
            if isinstance(inner, dict) and isinstance(inner.get("requestId"), str):
                payload["requestId"] = inner["requestId"]
        self._send(conn, _frame("error", payload))

    async def _handle(self, conn: Connection, text: str) -> None:
        try:
            msg = _decode(text)
        except (msgspec.DecodeError, RecursionError):  # nesting past msgspec's stack
            self._error(conn, "BAD_REQUEST", "message is not valid JSON")
            return
        if not isinstance(msg, dict) or not isinstance(msg.get("payload"), dict):
            self._error(conn, "BAD_REQUEST", "expected {type, payload}")
            return
        handler = {
            "subscribe": self._subscribe,
            "unsubscribe": self._subscribe,
            "depthSubscribe": self._depth_subscribe,
            "depthUnsubscribe": self._depth_subscribe,
            "metricsSubscribe": self._metrics_subscribe,
            "createOrder": self._create_order,
            "cancelOrder": self._cancel_order,
            "dealHistory": self._history,
            "orderHistory": self._history,
        }.get(str(msg.get("type")))
        if handler is None:
            self._error(conn, "UNKNOWN_TYPE", f"unknown message type {msg.get('type')!r}", msg)
            return
        if handler == self._history:
            # A held history reply must not hold up the reader (and the pongs it answers).
            self._spawn(self._guarded(handler, conn, msg))
            return
        await self._guarded(handler, conn, msg)

    async def _guarded(
        self,
        handler: Callable[[Connection, dict[str, Any]], Awaitable[None]],
        conn: Connection,
        msg: dict[str, Any],
    ) -> None:
        try:
            await handler(conn, msg)
        except Exception as exc:  # noqa: BLE001 - a client's bad message never kills the server
            self._error(conn, "BAD_REQUEST", f"invalid payload: {str(exc)[:200]}", msg)

    async def _subscribe(self, conn: Connection, msg: dict[str, Any]) -> None:
        p = msg["payload"]
        symbols, events = p["symbols"], p["events"]
        if not isinstance(symbols, list) or not isinstance(events, list):
            raise TypeError("symbols and events must be lists")
        bad = [e for e in events if e not in EVENT_KINDS] + [
            s for s in symbols if s not in self.symbols
        ]
        if bad:
            self._error(conn, "INVALID_SUBSCRIPTION", f"unknown symbols or events {bad}", msg)
            return
        keys = {(e, s) for e in events for s in symbols}
        if msg["type"] == "subscribe":
            conn.subscriptions |= keys
            self._send(conn, _frame("subscribed", p))
        else:
            conn.subscriptions -= keys
            self._send(conn, _frame("unsubscribed", p))
        await self._notify()

    async def _depth_subscribe(self, conn: Connection, msg: dict[str, Any]) -> None:
        p = msg["payload"]
        symbol = p["symbol"]
        if symbol not in self.symbols:
            self._error(conn, "UNKNOWN_SYMBOL", f"symbol {symbol} is not tradable", msg)
            return
        conn.subscriptions = {s for s in conn.subscriptions if s[:2] != ("depthEvent", symbol)}
        if msg["type"] == "depthSubscribe":
            conn.subscriptions.add(("depthEvent", symbol, str(int(p.get("depth", 10)))))
            self._send(conn, _frame("subscribed", p))
        else:
            self._send(conn, _frame("unsubscribed", p))
        await self._notify()

    async def _metrics_subscribe(self, conn: Connection, msg: dict[str, Any]) -> None:
        account = msg["payload"]["accountId"]
        if account not in self.accounts:
            self._error(conn, "UNKNOWN_ACCOUNT", f"account {account} is not yours", msg)
            return
        conn.subscriptions.add(("metricsEvent", account))
        self._send(conn, _frame("subscribed", msg["payload"]))
        await self._notify()

    async def _create_order(self, conn: Connection, msg: dict[str, Any]) -> None:
        p = msg["payload"]
        account, symbol, side = p["accountId"], p["symbol"], p["side"]
        quantity, kind = float(p["quantity"]), p["type"]
        if account not in self.accounts or symbol not in self.symbols:
            self._error(conn, "UNKNOWN_ACCOUNT_OR_SYMBOL", "unknown account or symbol", msg)
            return
        if side not in ("BUY", "SELL") or kind not in ("MARKET", "LIMIT") or quantity <= 0:
            self._error(conn, "BAD_REQUEST", "side, type or quantity is invalid", msg)
            return
        if kind == "LIMIT":
            order = self._order(
                account,
                symbol=symbol,
                side=side,
                quantity=quantity,
                kind="LIMIT",
                price=float(p["price"]),
            )
            self._open_orders[order["orderId"]] = order
            self._execute(order, "NEW", 0.0)
            return
        await self.make_fill(symbol=symbol, account=account, side=side, quantity=quantity)

    async def _cancel_order(self, conn: Connection, msg: dict[str, Any]) -> None:
        order = self._open_orders.pop(msg["payload"]["orderId"], None)
        if order is None:
            self._error(conn, "UNKNOWN_ORDER", "no such open order", msg)
            return
        self._execute(order, "CANCELLED", 0.0, reason="cancelled by client")

    async def _history(self, conn: Connection, msg: dict[str, Any]) -> None:
        p = msg["payload"]
        request_id, account = p["requestId"], p["accountId"]
        start, end = _epoch(p["from"]), _epoch(p["to"])
        if account not in self.accounts:
            self._error(conn, "UNKNOWN_ACCOUNT", f"account {account} is not yours", msg)
            return
        self.history_requests.append({"type": msg["type"], **p})
        if self.hold_history:
            self.history_held.set()
            await self._release.wait()
        fills = msg["type"] == "dealHistory"
        items = [
            ex
            for at, ex in self.executions
            if start <= at <= end
            and ex["accountId"] == account
            and (ex["status"] in _FILLS) == fills
        ]
        reply = {"requestId": request_id, "accountId": account, "from": p["from"], "to": p["to"]}
        reply["deals" if fills else "orders"] = items
        self._send(conn, _frame(msg["type"], reply))

    # --- market -----------------------------------------------------------------------------

    def _ts(self) -> tuple[float, str]:
        # Strictly increasing milliseconds: every upstream timestamp is distinct.
        now = max(time.time(), self._last_ts + 0.001)
        self._last_ts = now
        return now, times.from_epoch(now)

    def _digits(self, symbol: str) -> int:
        return 3 if symbol.endswith("JPY") else 2 if symbol.startswith("XAU") else 5

    def _step(self, symbol: str) -> tuple[float, float]:
        digits = self._digits(symbol)
        pip = 10.0 ** -(digits - 1)
        price = round(self._prices[symbol] + self._rng.choice((-1, 0, 1)) * pip, digits)
        self._prices[symbol] = price
        return price, round(price + pip, digits)

    def _quote(self, symbol: str) -> None:
        bid, ask = self._step(symbol)
        _, ts = self._ts()
        frame = _frame("quoteEvent", {"symbol": symbol, "bid": bid, "ask": ask, "ts": ts})
        self._broadcast(("quoteEvent", symbol), frame)

    def _depth(self, symbol: str) -> None:
        bid, ask = self._step(symbol)
        _, ts = self._ts()
        pip = 10.0 ** -(self._digits(symbol) - 1)
        digits = self._digits(symbol)
        for conn in list(self.live):
            levels = conn.depth_of(symbol)
            if levels is None:
                continue
            book = {
                "symbol": symbol,
                "bids": [[round(bid - i * pip, digits), 1e6 * (i + 1)] for i in range(levels)],
                "asks": [[round(ask + i * pip, digits), 1e6 * (i + 1)] for i in range(levels)],
                "ts": ts,
            }
            self._send(conn, _frame("depthEvent", book))

    async def _market(self) -> None:
        interval = 1.0 / self.rate
        loop = asyncio.get_running_loop()
        due = loop.time()
        for tick in itertools.count():
            if tick % 25 == 24 and self.auto_fills:
                await self._auto_trade()
            elif tick % 10 == 9:
                self._depth(self._rng.choice(self.symbols))
            elif tick % 20 == 19:
                for account in self.accounts:
                    self._metrics(account)
            else:
                self._quote(self._rng.choice(self.symbols))
            due += interval
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif tick % 256 == 0:
                await asyncio.sleep(0)

    async def _auto_trade(self) -> None:
        if len(self._positions) >= 2:
            await self.close_position(next(iter(self._positions)))
        else:
            await self.make_fill()

    # --- orders, fills, portfolio -----------------------------------------------------------

    def _order(
        self,
        account: str,
        *,
        symbol: str,
        side: str,
        quantity: float,
        kind: str,
        price: float | None = None,
    ) -> dict[str, Any]:
        n = next(self._ids)
        return {
            "orderId": f"ord-{n:06d}",
            "accountId": account,
            "symbol": symbol,
            "side": side,
            "type": kind,
            "quantity": quantity,
            "price": price,
        }

    def _execute(
        self,
        order: dict[str, Any],
        status: str,
        filled: float,
        *,
        price: float | None = None,
        position_id: str | None = None,
        reason: str | None = None,
    ) -> dict[str, Any]:
        at, ts = self._ts()
        ex: dict[str, Any] = {
            "executionId": f"ex-{next(self._ids):06d}",
            "orderId": order["orderId"],
            "accountId": order["accountId"],
            "symbol": order["symbol"],
            "side": order["side"],
            "type": order["type"],
            "status": status,
            "quantity": order["quantity"],
            "filledQuantity": filled,
            "price": price if price is not None else order["price"],
            "ts": ts,
        }
        if position_id is not None:
            ex["positionId"] = position_id
        if reason is not None:
            ex["reason"] = reason
        self.executions.append((at, ex))
        self._broadcast(("executionEvent", order["symbol"]), _frame("executionEvent", ex))
        return ex

    async def make_fill(
        self,
        *,
        symbol: str | None = None,
        account: str | None = None,
        side: str | None = None,
        quantity: float | None = None,
        partial: bool = False,
    ) -> list[dict[str, Any]]:
        """A market order that fills: its executions (NEW, [PARTIALLY_FILLED], FILLED)."""
        symbol = symbol or self._rng.choice(self.symbols)
        account = account or self.accounts[0]
        side = side or self._rng.choice(("BUY", "SELL"))
        quantity = quantity or float(self._rng.choice((1000, 5000, 10000, 20000)))
        bid, ask = self._step(symbol)
        price = ask if side == "BUY" else bid
        order = self._order(account, symbol=symbol, side=side, quantity=quantity, kind="MARKET")
        position_id = f"pos-{order['orderId'][4:]}"
        made = [self._execute(order, "NEW", 0.0)]
        if partial:
            made.append(
                self._execute(
                    order, "PARTIALLY_FILLED", quantity / 2, price=price, position_id=position_id
                )
            )
        made.append(self._execute(order, "FILLED", quantity, price=price, position_id=position_id))
        pos = _Position(position_id, account, symbol, side, quantity, price)
        self._positions[position_id] = pos
        self._portfolio(pos, "OPENED", price)
        self._metrics(account)
        await self._notify()
        return made

    async def close_position(self, position_id: str) -> list[dict[str, Any]]:
        """Close a position with an opposite market order: its executions."""
        pos = self._positions.pop(position_id)
        side = "SELL" if pos.side == "BUY" else "BUY"
        bid, ask = self._step(pos.symbol)
        price = bid if side == "SELL" else ask
        order = self._order(
            pos.account, symbol=pos.symbol, side=side, quantity=pos.quantity, kind="MARKET"
        )
        made = [
            self._execute(order, "NEW", 0.0),
            self._execute(order, "FILLED", pos.quantity, price=price, position_id=position_id),
        ]
        direction = 1 if pos.side == "BUY" else -1
        pnl = round(direction * (price - pos.open_price) * pos.quantity, 2)
        self._balance[pos.account] = round(self._balance[pos.account] + pnl, 2)
        self._portfolio(pos, "CLOSED", price, realized=pnl)
        self._metrics(pos.account)
        await self._notify()
        return made

    def _unrealized(self, account: str) -> float:
        total = 0.0
        for pos in self._positions.values():
            if pos.account == account:
                direction = 1 if pos.side == "BUY" else -1
                total += direction * (self._prices[pos.symbol] - pos.open_price) * pos.quantity
        return round(total, 2)

    def _account(self, account: str) -> dict[str, Any]:
        unrealized = self._unrealized(account)
        balance = self._balance[account]
        equity = round(balance + unrealized, 2)
        margin = round(
            sum(p.quantity * 0.0333 for p in self._positions.values() if p.account == account), 2
        )
        return {
            "accountId": account,
            "balance": balance,
            "equity": equity,
            "margin": margin,
            "freeMargin": round(equity - margin, 2),
            "marginLevel": round(equity / margin * 100, 2) if margin else None,
            "unrealizedPnl": unrealized,
            "currency": "USD",
        }

    def _portfolio(
        self, pos: _Position, change: str, price: float, *, realized: float | None = None
    ) -> None:
        _, ts = self._ts()
        position: dict[str, Any] = {
            "positionId": pos.position_id,
            "symbol": pos.symbol,
            "side": pos.side,
            "quantity": pos.quantity,
            "openPrice": pos.open_price,
            "currentPrice": price,
            "unrealizedPnl": 0.0,
            "change": change,
            "status": "CLOSED" if change == "CLOSED" else "OPEN",
        }
        if change == "CLOSED":
            position["closePrice"] = price
            position["realizedPnl"] = realized
        payload = {**self._account(pos.account), "ts": ts, "positions": [position]}
        self._broadcast(("portfolioEvent", pos.symbol), _frame("portfolioEvent", payload))

    def _metrics(self, account: str) -> None:
        _, ts = self._ts()
        payload = {**self._account(account), "ts": ts}
        self._broadcast(("metricsEvent", account), _frame("metricsEvent", payload))


# --- CLI and demo ---------------------------------------------------------------------------


def _add(parser: argparse.ArgumentParser, *flags: str, **kwargs: Any) -> None:
    # The shared CLI may already define the common flags (--host, --port, --rate, --seed).
    with contextlib.suppress(argparse.ArgumentError):
        parser.add_argument(*flags, **kwargs)


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    _add(parser, "--host", default="127.0.0.1")
    _add(parser, "--port", type=int, default=0)
    _add(parser, "--rate", type=float, default=10.0, help="ticks/s; 0 = as fast as possible")
    _add(parser, "--seed", type=int, default=0)
    # The defaults are the ones config/demo.toml uses.
    _add(parser, "--username", default=DEMO_USERNAME, help="the login it accepts")
    _add(parser, "--password", default=DEMO_PASSWORD, help="the password it accepts")
    _add(parser, "--token-lifetime", type=float, default=3600.0, help="JWT lifetime, seconds")
    _add(parser, "--symbols", default="EURUSD,GBPUSD,USDJPY", help="comma-separated")
    _add(parser, "--accounts", default="acc_123", help="comma-separated")
    _add(parser, "--ping-interval", type=float, default=20.0, help="server pings, seconds")
    _add(parser, "--no-fills", action="store_true", help="no automatic orders and fills")


def from_cli(args: argparse.Namespace) -> TraderWsSimulator:
    return TraderWsSimulator(
        username=args.username,
        password=args.password,
        rate=args.rate,
        seed=args.seed,
        symbols=tuple(s for s in args.symbols.split(",") if s),
        accounts=tuple(a for a in args.accounts.split(",") if a),
        token_lifetime=args.token_lifetime,
        server_ping_interval=args.ping_interval,
        auto_fills=not args.no_fills,
    )


def for_demo(seed: int) -> TraderWsSimulator:
    return TraderWsSimulator(username=DEMO_USERNAME, password=DEMO_PASSWORD, rate=3.0, seed=seed)
