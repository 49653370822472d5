"""A fake MT4 bridge: sessions, account, positions, order tasks and ``WS /events``, with faults.

Everything lives under ``/mt4/client``. The doc shows the session bootstrap body and an order
body; the payloads below it leaves out are designed here, the way a broker API would give them.

Every call but ``POST /session/open`` needs ``Authorization: Bearer <api-key>`` and a live
``x-session-id``; a session lapses ``session_ttl`` seconds after it was opened or last heartbeat.

``POST /session/open`` (the doc's body: accountId, server, login, password) →
    200 ``{"sessionId": "sess_mt4_…", "accountId": "demo-mt4-01",
    "expiresAt": "2026-06-09T14:37:01.000Z", "heartbeatInterval": 30}``
``POST /session/{id}/heartbeat`` → 200 ``{"sessionId": …, "expiresAt": …}`` (TTL extended)
``GET /session/{id}`` → 200 ``{"sessionId", "accountId", "server", "login", "connected",
"expiresAt"}``
``DELETE /session/{id}`` → 204; the session is revoked and its WS connections closed.
``GET /account`` → ``{"accountId", "login", "server", "currency", "balance", "equity", "margin",
"freeMargin", "marginLevel", "profit", "leverage"}`` (marginLevel null with no margin used)
``GET /positions`` → ``{"positions": [{"ticket": 50011, "symbol": "EURUSD", "type": "BUY",
"volume": 0.2, "openPrice", "currentPrice", "sl", "tp", "profit", "openTime", "comment"}],
"orders": []}`` (pending orders under ``orders``, ``type`` BUY_LIMIT …)
``GET /symbols`` → ``{"symbols": ["EURUSD", …]}``
``POST /orders`` (the doc's body) → 202 ``{"taskId": "task_…", "status": "queued",
"requestId": …}``; the same ``x-request-id`` with the same body returns the same task, with
another body 409 TaskConflict. A market task then streams accepted → filled → opened.
``POST /positions/{ticket}/close`` → 202 ``{"taskId", "status": "queued"}``, then ``closed``.
Errors: ``{"code": "ValidationError" | "Unauthorized" | "TaskConflict" | "RateLimited" |
"BridgeUnavailable", "message": …}`` with the doc's status codes (429 adds Retry-After).

``WS /events`` (same headers). The client sends ``{"action": "subscribe", "channels":
["quotes", "profit", "orders"], "symbols": ["EURUSD"]}`` (no symbols: all); the server answers
``{"type": "subscribed", "channels": […], "symbols": […]}`` and then streams, one JSON object per
frame (``--rate 0``: pre-built arrays of 100 quotes per frame):

- ``{"type": "quote", "symbol": "EURUSD", "bid": 1.07741, "ask": 1.07749, "time": "…Z"}``
- ``{"type": "profit", "ticket": 50011, "symbol": "EURUSD", "profit": 24.2,
  "currentPrice": 1.07741, "time": "…Z"}`` after each quote of an open position's symbol
- ``{"type": "order", "event": "accepted" | "filled" | "partially_filled" | "cancelled" |
  "rejected" | "opened" | "closed", "taskId", "ticket", "symbol", "side": "BUY" | "SELL",
  "orderType": "MARKET" | "LIMIT" | "STOP", "volume", "filledVolume", "remainingVolume",
  "price", "openPrice", "closePrice", "sl", "tp", "profit", "reason", "time"}``
- ``{"type": "error", "code": "ValidationError", "message": …}`` for a bad client message.

Fault knobs (plain methods the tests call): ``fail_auth(n)``, ``rate_limit(n, retry_after)``,
``bridge_down(n=None)`` / ``bridge_up()``, ``revoke_sessions()``, ``expire_sessions()``,
``reject_credentials``, ``refuse_ws``, ``cut_ws()``, ``open_position(silent=…)`` /
``close_position(ticket, silent=…)`` (silent: no WS event, for reconciliation), ``set_account``.
Every request is recorded (method, path, x-request-id, x-session-id, status, arrival time).
Deterministic for a seed: prices, positions and ids come from seeded generators.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import random
import shlex
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec
from aiohttp import WSMsgType, web

from tradebus import demo_keys, times
from tradebus.simulators.base import AppServer, curl, padded

BASE = "/mt4/client"
_PIP = {"XAUUSD": 0.01, "USDJPY": 0.001}
_START = {"EURUSD": 1.0762, "GBPUSD": 1.2701, "USDJPY": 155.12, "XAUUSD": 2331.5}
_CONTRACT = 100_000.0
_LEVERAGE = 100
_FRAME_QUOTES = 100
_FRAMES = 64
_ERRORS = {
    400: "ValidationError",
    401: "Unauthorized",
    409: "TaskConflict",
    429: "RateLimited",
    502: "BridgeUnavailable",
    503: "ServiceUnavailable",
}
_MESSAGES = {
    400: "Payload, symbol, or trade parameters failed validation.",
    401: "API key or session token is missing, expired, or revoked.",
    409: "The same external request id was replayed with different payload data.",
    429: "Workspace or account throughput limits were exceeded.",
    502: "The bridge lost connectivity to the terminal or broker server.",
    503: "The event stream is not accepting connections.",
}


# --- what clients send: the simulator's own structs (a fake upstream never shares the client's) ---


class _Body(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """camelCase on the wire; unknown fields ignored, as a tolerant server does."""


class _SessionOpen(_Body, frozen=True, kw_only=True):
    """``POST /session/open`` ("Start a broker-connected MT4 bridge session")."""

    account_id: str
    server: str
    login: int
    password: str


class _OrderBody(_Body, frozen=True, kw_only=True):
    """``POST /orders``: the doc's order task body."""

    symbol: str
    type: str
    volume: float
    price: float | None = None
    sl: float | None = None
    tp: float | None = None
    comment: str | None = None


class _Subscribe(_Body, frozen=True, kw_only=True):
    """The first WS message of a client: the channels and the symbol universe."""

    action: str = "subscribe"
    channels: list[str] = msgspec.field(default_factory=list)
    symbols: list[str] = msgspec.field(default_factory=list)


_session_open: Final = msgspec.json.Decoder(_SessionOpen)
_order_body: Final = msgspec.json.Decoder(_OrderBody)
_subscribe: Final = msgspec.json.Decoder(_Subscribe)


@dataclass(slots=True)
class Recorded:
    """One request as the simulator saw it (``path`` relative to ``/mt4/client``)."""

    method: str
    path: str
    request_id: str | None
    session_id: str | None
    authorized: bool
    at: float
    status: int = 0


@dataclass(slots=True)
class _Session:
    id: str
    expires_at: float
    revoked: bool = False


@dataclass(slots=True)
class _Position:
    ticket: int
    symbol: str
    side: str
    volume: float
    open_price: float
    open_time: str
    sl: float | None = None
    tp: float | None = None
    comment: str | None = None
    task_id: str | None = None


@dataclass(slots=True)
class _Fault:
    status: int
    remaining: int | None  # None: until cleared
    retry_after: int | None = None
    match: str | None = None  # only requests whose path ends with this


@dataclass(slots=True)
class _Client:
    ws: web.WebSocketResponse
    session_id: str
    channels: set[str] = field(default_factory=set)
    symbols: set[str] = field(default_factory=set)


def _error(status: int, headers: dict[str, str] | None = None) -> web.Response:
    body = {"code": _ERRORS.get(status, "Error"), "message": _MESSAGES.get(status, "error")}
    return web.json_response(body, status=status, headers=headers)


class Mt4BridgeSimulator:
    """The fake bridge. ``rate``: quote frames per second (0: pre-built frames, flat out)."""

    def __init__(
        self,
        *,
        api_key: str = demo_keys.MT4_KEY,
        password: str = demo_keys.MT4_PASSWORD,
        account_id: str = "demo-mt4-01",
        server: str = "Broker-Demo",
        login: int = 120045,
        symbols: tuple[str, ...] = ("EURUSD", "GBPUSD", "XAUUSD"),
        rate: float = 5.0,
        seed: int = 1,
        session_ttl: float = 300.0,
        trade_interval: float | None = 5.0,
        balance: float = 10_000.0,
        currency: str = "USD",
    ) -> None:
        self.api_key = api_key
        self.password = password
        self.account_id = account_id
        self.server_name = server
        self.login = login
        self.symbols = symbols
        self.rate = rate
        self.seed = seed
        self.session_ttl = session_ttl
        self.trade_interval = trade_interval
        self.balance = balance
        self.currency = currency
        # Fault knobs.
        self.reject_credentials = False
        self.refuse_ws = False
        self.requests: list[Recorded] = []
        self.port = 0
        self._host = "127.0.0.1"
        self._faults: list[_Fault] = []
        self._sessions: dict[str, _Session] = {}
        self._positions: dict[int, _Position] = {}
        self._tasks_by_request: dict[str, tuple[bytes, str]] = {}
        self._clients: list[_Client] = []
        self._has_clients = asyncio.Event()
        self._changed = asyncio.Condition()
        self._prices = {s: _START.get(s, 1.0) for s in symbols}
        self._quote_rng = random.Random(seed)
        self._trade_rng = random.Random(seed + 1)
        self._id_rng = random.Random(seed + 2)
        self._tickets = itertools.count(50011)
        self._task_ids = itertools.count(1)
        self._background: list[asyncio.Task[None]] = []
        app = web.Application(middlewares=[self._middleware])
        app.router.add_post(f"{BASE}/session/open", self._session_open)
        app.router.add_post(f"{BASE}/session/{{sid}}/heartbeat", self._heartbeat)
        app.router.add_get(f"{BASE}/session/{{sid}}", self._session_info)
        app.router.add_delete(f"{BASE}/session/{{sid}}", self._session_delete)
        app.router.add_get(f"{BASE}/account", self._account)
        app.router.add_get(f"{BASE}/positions", self._positions_list)
        app.router.add_get(f"{BASE}/symbols", self._symbols)
        app.router.add_post(f"{BASE}/orders", self._order)
        app.router.add_post(f"{BASE}/positions/{{ticket}}/close", self._close)
        app.router.add_get(f"{BASE}/events", self._events)
        self._server = AppServer(app)

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host = host
        await self._server.start(host, port)
        self.port = self._server.port
        self._background.append(asyncio.create_task(self._quote_loop()))
        if self.trade_interval is not None:
            self._background.append(asyncio.create_task(self._trade_loop(self.trade_interval)))

    async def stop(self) -> None:
        for task in self._background:
            task.cancel()
        for task in self._background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._background.clear()
        await self.cut_ws()
        await self._server.stop()

    def usage(self) -> list[str]:
        base = f"http://{self._host}:{self.port}{BASE}"
        terminal = {
            "accountId": self.account_id,
            "server": self.server_name,
            "login": self.login,
            "password": self.password,
        }
        account = shlex.join(
            [
                *("curl", "-sS", "-H", f"Authorization: Bearer {self.api_key}"),
                *("-H", "x-session-id: SESSION", f"{base}/account"),
            ]
        )
        return [
            f"MT4 bridge simulator on {base}: API key {self.api_key}, account"
            f" {self.account_id} on {self.server_name}, login {self.login}, password"
            f" {self.password}",
            "  open a session:",
            f"  {curl(base + '/session/open', bearer=self.api_key, body=terminal)}",
            "  then, with SESSION the reply's sessionId:",
            f"  {account}",
        ]

    def source_table(self, name: str) -> dict[str, Any]:
        return {
            "type": "mt4bridge",
            "name": name,
            "url": f"http://{self._host}:{self.port}{BASE}",
            "api_key": self.api_key,
            "account_id": self.account_id,
            "server": self.server_name,
            "login": self.login,
            "password": self.password,
            "symbols": list(self.symbols),
        }

    # --- fault knobs --------------------------------------------------------------------------

    def fail_auth(self, n: int | None = 1, *, match: str | None = None) -> None:
        """The next ``n`` requests (None: all until ``clear_faults``; ``match``: only those whose
        path ends with it; by default any, session open too) get 401 Unauthorized."""
        self.fail(401, n, match=match)

    def fail(self, status: int, n: int | None = 1, *, match: str | None = None) -> None:
        """Like ``fail_auth``, with any HTTP ``status`` (one the bridge does not document, too)."""
        self._faults.append(_Fault(status, n, match=match))

    def clear_faults(self) -> None:
        self._faults.clear()

    def rate_limit(self, n: int = 1, retry_after: int = 1) -> None:
        """The next ``n`` requests get 429 RateLimited with ``Retry-After: retry_after``."""
        self._faults.append(_Fault(429, n, retry_after))

    def bridge_down(self, n: int | None = None) -> None:
        """The next ``n`` requests (None: all until ``bridge_up``) get 502 BridgeUnavailable."""
        self._faults.append(_Fault(502, n))

    def bridge_up(self) -> None:
        self._faults = [f for f in self._faults if f.status != 502]

    async def revoke_sessions(self) -> None:
        """Revoke every session: its calls get 401, its WS connections close."""
        for session in self._sessions.values():
            session.revoked = True
        await self.cut_ws(code=4401)

    async def expire_sessions(self) -> None:
        """Let every session lapse now, as if its heartbeats had stopped."""
        now = asyncio.get_running_loop().time()
        for session in self._sessions.values():
            session.expires_at = min(session.expires_at, now)
        await self.cut_ws(code=4401)

    async def cut_ws(self, code: int = 1011) -> None:
        """Close every WS connection from the server side."""
        clients, self._clients = self._clients, []
        self._has_clients.clear()
        for client in clients:
            await client.ws.close(code=code, message=b"cut")

    async def inject(self, text: str) -> None:
        """Send ``text`` as is to every WS client: malformed, unknown or hostile frames."""
        for client in list(self._clients):
            with contextlib.suppress(ConnectionError):
                await client.ws.send_str(text)

    async def inject_huge(self, size: int) -> None:
        """Send every WS client one well-formed quote frame of ``size`` bytes."""
        await self.inject(padded('{"type":"quote","symbol":"EURUSD","bid":1.5}', size))

    def set_account(self, *, balance: float) -> None:
        self.balance = balance

    async def open_position(
        self,
        symbol: str | None = None,
        side: str = "BUY",
        volume: float = 0.1,
        *,
        silent: bool = False,
    ) -> int:
        """Open a market position; ``silent``: no WS event (only ``/positions`` shows it)."""
        position = self._new_position(symbol or self.symbols[0], side, volume)
        if not silent:
            await self._announce_open(position, f"task_{next(self._task_ids):06d}")
        return position.ticket

    async def close_position(self, ticket: int, *, silent: bool = False) -> None:
        """Close a position; ``silent``: no WS event (only ``/positions`` misses it)."""
        position = self._positions.pop(ticket)
        profit = self._profit(position)
        self.balance = round(self.balance + profit, 2)
        if not silent:
            await self._broadcast_order(
                position.symbol,
                {
                    "event": "closed",
                    "ticket": ticket,
                    "symbol": position.symbol,
                    "side": position.side,
                    "volume": position.volume,
                    "openPrice": position.open_price,
                    "closePrice": self._close_price(position),
                    "profit": profit,
                    "reason": "client",
                    "time": times.now(),
                },
            )

    def tickets(self) -> list[int]:
        return sorted(self._positions)

    @property
    def ws_clients(self) -> int:
        return len(self._clients)

    def of(self, method: str, suffix: str) -> list[Recorded]:
        """Recorded requests with this method whose path ends with ``suffix``."""
        return [r for r in self.requests if r.method == method and r.path.endswith(suffix)]

    async def wait_for(
        self, predicate: Callable[[Mt4BridgeSimulator], bool], timeout: float = 10.0
    ) -> None:
        """Wait until ``predicate(self)`` holds (re-checked on every request)."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: predicate(self)), timeout)

    # --- request plumbing ---------------------------------------------------------------------

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        record = Recorded(
            method=request.method,
            path=request.path.removeprefix(BASE),
            request_id=request.headers.get("x-request-id"),
            session_id=request.headers.get("x-session-id"),
            authorized=request.headers.get("Authorization") == f"Bearer {self.api_key}",
            at=asyncio.get_running_loop().time(),
        )
        await self._record(record)
        response: web.StreamResponse | None = self._fault(record.path) or self._check_auth(
            request, record
        )
        if response is None:
            response = await handler(request)
        record.status = response.status
        await self._record(None)
        return response

    async def _record(self, record: Recorded | None) -> None:
        async with self._changed:
            if record is not None:
                self.requests.append(record)
            self._changed.notify_all()

    def _fault(self, path: str) -> web.Response | None:
        for fault in self._faults:
            if fault.remaining is not None and fault.remaining <= 0:
                continue
            if fault.match is not None and not path.endswith(fault.match):
                continue
            if fault.remaining is not None:
                fault.remaining -= 1
            headers = None if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
            return _error(fault.status, headers)
        return None

    def _check_auth(self, request: web.Request, record: Recorded) -> web.Response | None:
        if not record.authorized:
            return _error(401)
        if record.path == "/session/open":
            return None
        session = self._sessions.get(record.session_id or "")
        now = asyncio.get_running_loop().time()
        if session is None or session.revoked or session.expires_at <= now:
            return _error(401)
        sid = request.match_info.get("sid")
        if sid is not None and sid != session.id:
            return _error(401)
        return None

    def _expires(self, session: _Session) -> str:
        remaining = session.expires_at - asyncio.get_running_loop().time()
        return times.from_epoch(time.time() + remaining)

    # --- REST handlers ------------------------------------------------------------------------

    async def _session_open(self, request: web.Request) -> web.Response:
        try:
            body = _session_open.decode(await request.read())
        except (msgspec.DecodeError, RecursionError):  # nesting past msgspec's stack
            return _error(400)
        if self.reject_credentials or (
            body.account_id,
            body.server,
            body.login,
            body.password,
        ) != (self.account_id, self.server_name, self.login, self.password):
            return _error(401)
        sid = f"sess_mt4_{self._id_rng.getrandbits(48):012x}"
        session = _Session(sid, asyncio.get_running_loop().time() + self.session_ttl)
        self._sessions[sid] = session
        return web.json_response(
            {
                "sessionId": sid,
                "accountId": self.account_id,
                "expiresAt": self._expires(session),
                "heartbeatInterval": 30,
            }
        )

    def _session(self, request: web.Request) -> _Session:
        return self._sessions[request.match_info["sid"]]

    async def _heartbeat(self, request: web.Request) -> web.Response:
        session = self._session(request)
        session.expires_at = asyncio.get_running_loop().time() + self.session_ttl
        return web.json_response({"sessionId": session.id, "expiresAt": self._expires(session)})

    async def _session_info(self, request: web.Request) -> web.Response:
        session = self._session(request)
        return web.json_response(
            {
                "sessionId": session.id,
                "accountId": self.account_id,
                "server": self.server_name,
                "login": self.login,
                "connected": True,
                "expiresAt": self._expires(session),
            }
        )

    async def _session_delete(self, request: web.Request) -> web.Response:
        session = self._session(request)
        session.revoked = True
        for client in [c for c in self._clients if c.session_id == session.id]:
            self._clients.remove(client)
            await client.ws.close(code=1000, message=b"session closed")
        return web.Response(status=204)

    async def _account(self, _request: web.Request) -> web.Response:
        profit = round(sum(self._profit(p) for p in self._positions.values()), 2)
        margin = round(
            sum(p.volume * _CONTRACT * self._margin_rate(p) for p in self._positions.values())
            / _LEVERAGE,
            2,
        )
        equity = round(self.balance + profit, 2)
        return web.json_response(
            {
                "accountId": self.account_id,
                "login": self.login,
                "server": self.server_name,
                "currency": self.currency,
                "balance": self.balance,
                "equity": equity,
                "margin": margin,
                "freeMargin": round(equity - margin, 2),
                "marginLevel": round(equity / margin * 100, 2) if margin else None,
                "profit": profit,
                "leverage": _LEVERAGE,
            }
        )

    async def _positions_list(self, _request: web.Request) -> web.Response:
        return web.json_response(
            {"positions": [self._position_json(p) for p in self._positions.values()], "orders": []}
        )

    async def _symbols(self, _request: web.Request) -> web.Response:
        return web.json_response({"symbols": list(self.symbols)})

    async def _order(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            order = _order_body.decode(raw)
        except (msgspec.DecodeError, RecursionError):  # nesting past msgspec's stack
            return _error(400)
        side = order.type.upper()
        if order.symbol not in self._prices or order.volume <= 0 or side not in ("BUY", "SELL"):
            return _error(400)
        request_id = request.headers.get("x-request-id")
        if request_id is not None and request_id in self._tasks_by_request:
            seen, task_id = self._tasks_by_request[request_id]
            if seen != raw:
                return _error(409)
            return web.json_response(
                {"taskId": task_id, "status": "queued", "requestId": request_id}, status=202
            )
        task_id = f"task_{next(self._task_ids):06d}"
        if request_id is not None:
            self._tasks_by_request[request_id] = (raw, task_id)
        position = self._new_position(
            order.symbol, side, order.volume, sl=order.sl, tp=order.tp, comment=order.comment
        )
        position.task_id = task_id
        await self._announce_open(position, task_id)
        return web.json_response(
            {"taskId": task_id, "status": "queued", "requestId": request_id}, status=202
        )

    async def _close(self, request: web.Request) -> web.Response:
        try:
            ticket = int(request.match_info["ticket"])
        except ValueError:
            return _error(400)
        if ticket not in self._positions:
            return _error(400)
        task_id = f"task_{next(self._task_ids):06d}"
        await self.close_position(ticket)
        return web.json_response({"taskId": task_id, "status": "queued"}, status=202)

    # --- WS /events ---------------------------------------------------------------------------

    async def _events(self, request: web.Request) -> web.StreamResponse:
        if self.refuse_ws:
            return _error(503)
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        client = _Client(ws, request.headers.get("x-session-id", ""))
        self._clients.append(client)
        self._has_clients.set()
        try:
            async for msg in ws:
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    await self._on_client_message(client, msg.data)
        finally:
            if client in self._clients:
                self._clients.remove(client)
            if not self._clients:
                self._has_clients.clear()
        return ws

    async def _on_client_message(self, client: _Client, data: str | bytes) -> None:
        try:
            sub = _subscribe.decode(data)
        except (msgspec.DecodeError, RecursionError):  # nesting past msgspec's stack
            await client.ws.send_json(
                {
                    "type": "error",
                    "code": "ValidationError",
                    "message": "expected a subscribe message",
                }
            )
            return
        if sub.action != "subscribe":
            await client.ws.send_json(
                {"type": "error", "code": "ValidationError", "message": "unknown action"}
            )
            return
        client.channels = set(sub.channels)
        client.symbols = set(sub.symbols)
        await client.ws.send_json(
            {"type": "subscribed", "channels": sub.channels, "symbols": sub.symbols}
        )

    async def _broadcast(self, channel: str, symbol: str | None, frame: str) -> None:
        for client in list(self._clients):
            if channel not in client.channels:
                continue
            if client.symbols and symbol is not None and symbol not in client.symbols:
                continue
            try:
                await client.ws.send_str(frame)
            except ConnectionError:
                if client in self._clients:
                    self._clients.remove(client)

    async def _broadcast_order(self, symbol: str, fields: dict[str, Any]) -> None:
        await self._broadcast(
            "orders", symbol, msgspec.json.encode({"type": "order", **fields}).decode()
        )

    # --- market and positions -----------------------------------------------------------------

    def _step(self) -> tuple[str, float, float]:
        symbol = self._quote_rng.choice(self.symbols)
        pip = _PIP.get(symbol, 0.00001)
        price = max(pip * 10, self._prices[symbol] + self._quote_rng.gauss(0.0, 3 * pip))
        self._prices[symbol] = price
        digits = len(f"{pip:.10f}".rstrip("0").split(".")[1])
        return symbol, round(price, digits), round(price + 8 * pip, digits)

    def _prebuilt(self) -> list[str]:
        base = int(time.time() * 1000)
        frames = []
        for i in range(_FRAMES):
            quotes = []
            for j in range(_FRAME_QUOTES):
                symbol, bid, ask = self._step()
                t = base + i * _FRAME_QUOTES + j
                quotes.append(
                    {"type": "quote", "symbol": symbol, "bid": bid, "ask": ask, "time": t}
                )
            frames.append(msgspec.json.encode(quotes).decode())
        return frames

    async def _quote_loop(self) -> None:
        frames = self._prebuilt() if self.rate <= 0 else []
        for n in itertools.count():
            await self._has_clients.wait()
            if frames:
                await self._broadcast("quotes", None, frames[n % len(frames)])
                await asyncio.sleep(0)
                continue
            symbol, bid, ask = self._step()
            now = times.now()
            quote = {"type": "quote", "symbol": symbol, "bid": bid, "ask": ask, "time": now}
            await self._broadcast("quotes", symbol, msgspec.json.encode(quote).decode())
            for position in [p for p in self._positions.values() if p.symbol == symbol]:
                profit = {
                    "type": "profit",
                    "ticket": position.ticket,
                    "symbol": symbol,
                    "profit": self._profit(position),
                    "currentPrice": self._close_price(position),
                    "time": now,
                }
                await self._broadcast("profit", symbol, msgspec.json.encode(profit).decode())
            await asyncio.sleep(1.0 / self.rate)

    async def _trade_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            if self._positions and (len(self._positions) >= 3 or self._trade_rng.random() < 0.4):
                await self.close_position(self._trade_rng.choice(sorted(self._positions)))
            else:
                side = self._trade_rng.choice(("BUY", "SELL"))
                volume = self._trade_rng.choice((0.01, 0.1, 0.2, 0.5))
                await self.open_position(self._trade_rng.choice(self.symbols), side, volume)

    def _new_position(
        self,
        symbol: str,
        side: str,
        volume: float,
        *,
        sl: float | None = None,
        tp: float | None = None,
        comment: str | None = None,
    ) -> _Position:
        bid = self._prices[symbol]
        pip = _PIP.get(symbol, 0.00001)
        price = bid + 8 * pip if side == "BUY" else bid
        position = _Position(
            ticket=next(self._tickets),
            symbol=symbol,
            side=side,
            volume=volume,
            open_price=round(price, 5),
            open_time=times.now(),
            sl=sl,
            tp=tp,
            comment=comment,
        )
        self._positions[position.ticket] = position
        return position

    async def _announce_open(self, position: _Position, task_id: str) -> None:
        common = {
            "taskId": task_id,
            "symbol": position.symbol,
            "side": position.side,
            "orderType": "MARKET",
            "volume": position.volume,
            "sl": position.sl,
            "tp": position.tp,
            "time": position.open_time,
        }
        await self._broadcast_order(position.symbol, {"event": "accepted", **common})
        filled = {
            "event": "filled",
            "ticket": position.ticket,
            "filledVolume": position.volume,
            "remainingVolume": 0.0,
            "price": position.open_price,
        }
        await self._broadcast_order(position.symbol, {**common, **filled})
        opened = {"event": "opened", "ticket": position.ticket, "price": position.open_price}
        await self._broadcast_order(position.symbol, {**common, **opened})

    def _close_price(self, position: _Position) -> float:
        bid = self._prices[position.symbol]
        pip = _PIP.get(position.symbol, 0.00001)
        return round(bid if position.side == "BUY" else bid + 8 * pip, 5)

    def _profit(self, position: _Position) -> float:
        move = self._close_price(position) - position.open_price
        sign = 1.0 if position.side == "BUY" else -1.0
        return round(sign * move * position.volume * _CONTRACT / self._quote_rate(position), 2)

    def _quote_rate(self, position: _Position) -> float:
        # Profit in USD: a USD-quoted symbol needs no conversion; USDJPY divides by its price.
        return self._prices[position.symbol] if position.symbol.startswith("USD") else 1.0

    def _margin_rate(self, position: _Position) -> float:
        return 1.0 if position.symbol.startswith("USD") else self._prices[position.symbol]

    def _position_json(self, p: _Position) -> dict[str, Any]:
        return {
            "ticket": p.ticket,
            "symbol": p.symbol,
            "type": p.side,
            "volume": p.volume,
            "openPrice": p.open_price,
            "currentPrice": self._close_price(p),
            "sl": p.sl,
            "tp": p.tp,
            "profit": self._profit(p),
            "openTime": p.open_time,
            "comment": p.comment,
        }


# --- module hooks: ``tradebus simulate mt4bridge`` and ``tradebus demo`` -------------------------


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rate", type=float, default=5.0, help="quotes/s (0: as fast as possible)")
    parser.add_argument("--seed", type=int, default=1, help="random seed")
    parser.add_argument("--api-key", default=demo_keys.MT4_KEY, help="accepted Bearer API key")
    parser.add_argument(
        "--password", default=demo_keys.MT4_PASSWORD, help="accepted terminal password"
    )
    parser.add_argument("--account-id", default="demo-mt4-01")
    parser.add_argument("--server", default="Broker-Demo")
    parser.add_argument("--login", type=int, default=120045)
    parser.add_argument("--symbols", default="EURUSD,GBPUSD,XAUUSD", help="comma-separated")
    parser.add_argument(
        "--session-ttl", type=float, default=300.0, help="seconds without heartbeat"
    )
    parser.add_argument(
        "--trade-interval", type=float, default=5.0, help="seconds between opens/closes (0: none)"
    )


def from_cli(args: argparse.Namespace) -> Mt4BridgeSimulator:
    return Mt4BridgeSimulator(
        api_key=args.api_key,
        password=args.password,
        account_id=args.account_id,
        server=args.server,
        login=args.login,
        symbols=tuple(s.strip() for s in args.symbols.split(",") if s.strip()),
        rate=args.rate,
        seed=args.seed,
        session_ttl=args.session_ttl,
        trade_interval=args.trade_interval or None,
    )


def for_demo(seed: int) -> Mt4BridgeSimulator:
    return Mt4BridgeSimulator(
        api_key=demo_keys.MT4_DEMO_KEY,
        password=demo_keys.MT4_DEMO_PASSWORD,
        rate=3.0,
        seed=seed,
        trade_interval=4.0,
    )
