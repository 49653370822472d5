"""A fake TTMT (TelegramToMetaTrader) engine: ``GET /api/v1/stream`` as Server-Sent Events.

As the upstream doc describes it: ``Authorization: Bearer <key>`` (401 otherwise), one stream per
key (409 for a second), 503 while "your trading container is not running", an optional
``account_id`` filter, ``id: N`` + ``data: <envelope>`` frames with ``eventId`` counting from 1,
"a buffer of the last 100 events" replayed after ``Last-Event-ID``, a forced recycle after
``lifetime`` seconds (default 300: a ``recycle`` frame, then the close) and an auth re-check
every ``auth_check_interval`` seconds (default 30): a key revoked with ``revoke(key)`` gets an
``auth_revoked`` frame, then the close; later connects get 401.

Events are produced on the simulator's own clock at ``rate`` per second, whether or not a
client is connected, as the real engine does; a client that reconnects gets what the buffer
still holds. What the doc does not show, and this simulator chooses:

- Control frames (``recycle``, ``auth_revoked``) are enveloped like the doc's second recycle
  example, but sent **without an SSE ``id:`` line**, so they never move the client's
  Last-Event-ID, and are never buffered or replayed: they concern one connection. Their
  ``eventId`` is the last id that connection was sent (0 if none) — a position, not a new event:
  per-connection frames cannot take ids from the shared sequence without leaving holes that
  every other client would take for a gap.
- Last-Event-ID older than the buffer: the whole buffer is replayed, so the client sees the
  jump and knows what it missed. A Last-Event-ID that is not a number replays nothing.
- With ``account_id``, events of other accounts are skipped: ids seen by that client jump.
- Trades play whole lifecycles, two at a time at most: ``trade_executed``, an ``order_fill``
  per layer, ``position_update`` (single deltas and batches) while positions are open,
  ``tp_hit`` TP1.., ``breakeven_set`` (DB position UUID, ``signal`` null) or sometimes
  ``breakeven_failed``, a ``position_closed`` per position, then ``trade_finalized``.
  About one trade in six has ``signal: null`` (manual trade). Ids are UUIDs from the seeded
  generator; MetaAPI ids are 9-digit numbers. Timestamps come from a virtual clock that starts
  at 2026-06-09T14:30:00.000Z and advances 0.05-2 s per event, so a seed gives the same
  payloads byte for byte; the frames' pace follows ``rate`` in real time.
- A 401 body is ``{"error": "invalid or revoked key"}``; 409 ``{"error": "stream already
  open"}``; 503 ``{"error": "trading container not running"}`` with Retry-After if asked.
- ``retry_ms`` (off by default) sends ``retry: N`` at the start of each stream.
- ``--rate 0`` scripts and encodes all ``--events`` frames (default 100000) before serving;
  they are released into the sequence as fast as the first reader takes them (large writes), so
  a client connecting late still gets them from id 1.

Fault knobs (plain attributes and methods, called by tests): ``cut_after``, ``cut_mid_frame``,
``stall``/``unstall``, ``inject_malformed``, ``inject_unknown_type``, ``inject_oversized``,
``content_type``, ``never_send``, ``unavailable``/``retry_after``, ``revoke``/``restore``,
``disconnect_all``, ``rewind``, ``lifetime``, ``auth_check_interval``, ``retry_ms``, and
``pause``/``unpause``/``produce`` to place events at chosen moments. Records: ``attempts``
(monotonic time, HTTP status, Last-Event-ID of every request), ``produced`` (envelopes by
eventId), ``lost`` (ids of frames cut mid-way).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import msgspec
from aiohttp import web

from tradebus import demo_keys
from tradebus.simulators.base import AppServer, abort, curl

PATH: Final = "/api/v1/stream"
DEMO_KEY: Final = demo_keys.TTMT_KEY  # the fake server's own demo credential
BUFFER: Final = 100
HUGE_LINE: Final = 10 * 1024 * 1024
BASE_TIME: Final = datetime(2026, 6, 9, 14, 30, 0, tzinfo=UTC).timestamp()
EVENT_STREAM: Final = "text/event-stream"
# Frames kept for connected clients that lag; the replay buffer is the last BUFFER of them.
_KEPT: Final = 10_000
_WRITE_BATCH: Final = 256
_DEFAULT_MAX_EVENTS: Final = 100_000

# (symbol, price level, decimals, contract value per price unit and lot)
SYMBOLS: Final[tuple[tuple[str, float, int, float], ...]] = (
    ("XAUUSD", 3312.80, 2, 100.0),
    ("EURUSD", 1.08512, 5, 100_000.0),
    ("GBPJPY", 198.412, 3, 1000.0),
    ("US30", 42150.0, 1, 1.0),
    ("BTCUSD", 68250.0, 2, 1.0),
)
CHANNELS: Final = ("Gold Signals Pro", "FX Majors VIP", "Index Scalper", "Crypto Whales")
CLOSE_REASONS: Final = ("tp_hit", "sl_hit", "manual", "breakeven", "trailing_stop")


def iso_ms(epoch: float) -> str:
    """``2026-06-09T14:32:01.123Z``: the doc's timestamp format."""
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass(slots=True)
class _Position:
    position_id: str
    db_id: str
    volume: float
    open_price: float


@dataclass(slots=True)
class _Trade:
    trade_id: str
    account: str
    symbol: str
    decimals: int
    value: float
    long: bool
    signal: dict[str, Any] | None
    price: float
    steps: deque[str]
    positions: list[_Position] = field(default_factory=list)
    open: list[_Position] = field(default_factory=list)
    tp: int = 0
    profit: float = 0.0


class EventScript:
    """The deterministic stream of ``(type, data)`` for one seed: coherent trade lifecycles."""

    def __init__(self, seed: int, accounts: tuple[str, ...]) -> None:
        self.rng = random.Random(seed)
        self.accounts = accounts
        self.clock = BASE_TIME
        self.live: list[_Trade] = []

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def next(self) -> tuple[str, dict[str, Any]]:
        """The next event's type and ``data``; advances the virtual clock."""
        rng = self.rng
        self.clock += rng.uniform(0.05, 2.0)
        if not self.live or (len(self.live) < 2 and rng.random() < 0.1):
            return self._open()
        trade = rng.choice(self.live)
        if trade.open and rng.random() < 0.4:
            return self._update(trade)
        step = trade.steps.popleft()
        if not trade.steps:
            self.live.remove(trade)
        return getattr(self, f"_{step}")(trade)  # type: ignore[no-any-return]

    def _common(self, trade: _Trade) -> dict[str, Any]:
        return {"accountId": trade.account, "signal": trade.signal}

    def _open(self) -> tuple[str, dict[str, Any]]:
        rng = self.rng
        symbol, level, decimals, value = rng.choice(SYMBOLS)
        layers = rng.randint(1, 3)
        signal = (
            None
            if rng.random() < 1 / 6
            else {"signal_id": self._uuid(), "telegram_message_id": rng.randint(1000, 99999)}
        )
        steps = ["order_fill"] * layers + ["tp_hit"] * rng.randint(0, 3)
        steps += ["breakeven_failed" if rng.random() < 0.2 else "breakeven_set"]
        steps += ["position_closed"] * layers + ["trade_finalized"]
        trade = _Trade(
            trade_id=self._uuid(),
            account=rng.choice(self.accounts),
            symbol=symbol,
            decimals=decimals,
            value=value,
            long=rng.random() < 0.55,
            signal=signal,
            price=round(level * (1 + rng.uniform(-0.01, 0.01)), decimals),
            steps=deque(steps),
        )
        self.live.append(trade)
        data = {
            "tradeId": trade.trade_id,
            "symbol": symbol,
            "channelName": rng.choice(CHANNELS),
            "positionsCount": layers,
            "ordersCount": layers * rng.randint(1, 4),
        }
        return "trade_executed", {**data, **self._common(trade)}

    def _move(self, trade: _Trade) -> float:
        trade.price = round(trade.price * (1 + self.rng.gauss(0, 0.0008)), trade.decimals)
        return trade.price

    def _pnl(self, trade: _Trade, pos: _Position, price: float) -> float:
        sign = 1 if trade.long else -1
        return round(sign * (price - pos.open_price) * pos.volume * trade.value, 2)

    def _order_fill(self, trade: _Trade) -> tuple[str, dict[str, Any]]:
        price = self._move(trade)
        pos = _Position(
            position_id=str(self.rng.randint(10**8, 10**9 - 1)),
            db_id=self._uuid(),
            volume=round(self.rng.choice((0.01, 0.02, 0.03, 0.05, 0.1)), 2),
            open_price=price,
        )
        trade.positions.append(pos)
        trade.open.append(pos)
        return "order_fill", {
            "orderId": str(self.rng.randint(10**8, 10**9 - 1)),
            "positionId": pos.position_id,
            "symbol": trade.symbol,
            "volume": pos.volume,
            "fillPrice": price,
            "layer": len(trade.positions),
            **self._common(trade),
        }

    def _update(self, trade: _Trade) -> tuple[str, dict[str, Any]]:
        price = self._move(trade)
        if len(trade.open) > 1 and self.rng.random() < 0.5:
            positions = [
                {
                    "id": pos.position_id,
                    "symbol": trade.symbol,
                    "unrealizedProfit": self._pnl(trade, pos, price),
                    "currentPrice": price,
                }
                for pos in trade.open
            ]
            return "position_update", {"positions": positions, "accountId": trade.account}
        pos = self.rng.choice(trade.open)
        return "position_update", {
            "positionId": pos.position_id,
            "symbol": trade.symbol,
            "unrealizedProfit": self._pnl(trade, pos, price),
            "currentPrice": price,
            **self._common(trade),
        }

    def _tp_hit(self, trade: _Trade) -> tuple[str, dict[str, Any]]:
        trade.tp += 1
        return "tp_hit", {
            "tradeId": trade.trade_id,
            "tpLevel": f"TP{trade.tp}",
            **self._common(trade),
        }

    def _breakeven_set(self, trade: _Trade) -> tuple[str, dict[str, Any]]:
        pos = trade.positions[-1]
        # "breakeven_set always has signal: null" (it carries the DB position UUID).
        return "breakeven_set", {
            "positionId": pos.db_id,
            "newSL": pos.open_price,
            "accountId": trade.account,
            "signal": None,
        }

    def _breakeven_failed(self, trade: _Trade) -> tuple[str, dict[str, Any]]:
        pos = trade.positions[-1]
        return "breakeven_failed", {
            "tradeId": trade.trade_id,
            "positionId": pos.db_id,
            **self._common(trade),
        }

    def _position_closed(self, trade: _Trade) -> tuple[str, dict[str, Any]]:
        pos = trade.open.pop(0)
        trade.profit += self._pnl(trade, pos, self._move(trade))
        return "position_closed", {
            "positionId": pos.position_id,
            "reason": self.rng.choice(CLOSE_REASONS),
            "tradeId": trade.trade_id,
            **self._common(trade),
        }

    def _trade_finalized(self, trade: _Trade) -> tuple[str, dict[str, Any]]:
        profit = round(trade.profit, 2)
        status = (
            "closed_profit" if profit > 0 else "closed_loss" if profit < 0 else "closed_breakeven"
        )
        return "trade_finalized", {
            "tradeId": trade.trade_id,
            "status": status,
            "profitLoss": profit,
            **self._common(trade),
        }


@dataclass(slots=True)
class _Frame:
    event_id: int
    account: str | None
    raw: bytes


@dataclass(slots=True, eq=False)
class _Conn:
    key: str
    account: str | None
    request: web.Request
    last_sent: int = 0


class TtmtSimulator:
    """The fake ``GET /api/v1/stream`` server, with fault knobs."""

    def __init__(
        self,
        *,
        seed: int = 0,
        rate: float = 5.0,
        events: int | None = None,
        api_keys: tuple[str, ...] = (DEMO_KEY,),
        lifetime: float = 300.0,
        auth_check_interval: float = 30.0,
        buffer_size: int = BUFFER,
        retry_ms: int | None = None,
        paused: bool = False,
    ) -> None:
        self.seed = seed
        self.rate = rate
        self.events = events if events is not None or rate > 0 else _DEFAULT_MAX_EVENTS
        self.api_keys = api_keys
        self.lifetime = lifetime
        self.auth_check_interval = auth_check_interval
        self.buffer_size = buffer_size
        self.retry_ms = retry_ms
        rng = random.Random(seed)
        self.user_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        self.accounts = tuple(str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in "ab")
        # --- fault knobs
        self.content_type = EVENT_STREAM
        self.never_send = False
        self.unavailable = False
        self.retry_after: str | None = None
        self.stalled = False
        # Replay this many already-sent events more on every resume: a server repeating itself.
        self.rewind = 0
        # --- what happened (for tests): (monotonic time, status, Last-Event-ID) per request
        self.attempts: list[tuple[float, int, str | None]] = []
        self.produced: dict[int, dict[str, Any]] = {}
        self.lost: list[int] = []
        # --- internals
        self._script = EventScript(seed, self.accounts)
        self._scripted = 0
        self._next_id = 1
        self._frames: deque[_Frame] = deque(maxlen=_KEPT)
        # --rate 0: every event scripted and encoded up front, released as fast as read.
        self._prebuilt: deque[tuple[str, bytes, bytes, dict[str, Any]]] | None = None
        self._revoked: dict[str, str] = {}
        self._active: dict[str, _Conn] = {}
        self._cut_after: int | None = None
        self._cut_mid = False
        self._closing = asyncio.Event()
        self._wake = asyncio.Event()
        self._producer: asyncio.Task[None] | None = None
        self._unpaused = asyncio.Event()
        if not paused:
            self._unpaused.set()
        app = web.Application()
        app.router.add_get(PATH, self._stream)
        self._server = AppServer(app)
        if rate == 0:
            self._prebuild(self.events or 0)

    # --- lifecycle ------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}"

    @property
    def last_event_id(self) -> int:
        """The id of the newest event produced (0 before the first)."""
        return self._next_id - 1

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._closing.clear()
        await self._server.start(host, port)
        if self.rate > 0:
            self._producer = asyncio.get_running_loop().create_task(self._produce_forever())

    async def stop(self) -> None:
        self._closing.set()
        self._poke()
        if self._producer is not None:
            self._producer.cancel()
            # wait(), not await: our own cancellation must not be mistaken for the task's.
            await asyncio.wait({self._producer})
            self._producer = None
        await self._server.stop()

    def source_table(self, name: str) -> dict[str, Any]:
        return {"type": "ttmt", "name": name, "url": self.url, "api_key": self.api_keys[0]}

    def usage(self) -> list[str]:
        key = self.api_keys[0]
        return [
            f"TTMT simulator: SSE stream on {self.url}, API key {key}",
            f"  {curl(self.url, bearer=key, stream=True)}",
        ]

    # --- fault knobs ----------------------------------------------------------------------

    def revoke(self, key: str, reason: str = "key_revoked") -> None:
        """Revoke ``key``: its stream gets ``auth_revoked`` at the next re-check; then 401."""
        self._revoked[key] = reason

    def restore(self, key: str) -> None:
        self._revoked.pop(key, None)

    def pause(self) -> None:
        """Stop producing on the clock (``produce`` still works): tests pick each event's moment."""
        self._unpaused.clear()

    def unpause(self) -> None:
        self._unpaused.set()

    def produce(self, count: int) -> list[int]:
        """Produce ``count`` scripted events now; returns their ids."""
        first = self._next_id
        self._produce(count)
        return list(range(first, self._next_id))

    def disconnect_all(self) -> None:
        """Drop every open stream at once, as a crashed proxy would (no control frame)."""
        for conn in list(self._active.values()):
            self._unregister(conn)
            abort(conn.request)

    def cut_after(self, k: int) -> None:
        """Close the connection abruptly after the next ``k`` event frames sent."""
        self._cut_after = k
        self._poke()

    def cut_mid_frame(self) -> None:
        """Send half of the next event frame, then close: the client must get it on replay."""
        self._cut_mid = True
        self._poke()

    def stall(self) -> None:
        """Streams (open and new) send nothing more but stay open, until ``unstall``."""
        self.stalled = True

    def unstall(self) -> None:
        self.stalled = False
        # Replay this many already-sent events more on every resume: a server repeating itself.
        self.rewind = 0
        self._poke()

    def inject_malformed(self) -> int:
        """A frame with the next id whose JSON is broken; returns the id."""
        n = self._next_id
        return self._append(None, b'{"type":"tp_hit","eventId":%d,,"data":' % n)

    def inject_unknown_type(self, name: str = "margin_call") -> int:
        """A well-formed envelope of a type the doc does not list; returns the id."""
        account = self.accounts[0]
        envelope = self._envelope(name, self._next_id, {"accountId": account, "marginLevel": 48.5})
        return self._append(account, msgspec.json.encode(envelope))

    def inject_raw(self, data: bytes) -> int:
        """A frame with the next id whose ``data:`` line is ``data`` as given (one line, no
        newline inside: a hostile payload); returns the id."""
        return self._append(None, data)

    def inject_oversized(self, size: int = HUGE_LINE) -> int:
        """One ``data:`` line of ``size`` bytes; returns the id it was sent under."""
        return self._append(None, b"x" * size)

    # --- production -----------------------------------------------------------------------

    def _envelope(self, type_: str, event_id: int, data: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": type_,
            "eventId": event_id,
            "timestamp": iso_ms(self._script.clock),
            "userId": self.user_id,
            "data": data,
        }

    def _append(self, account: str | None, data: bytes) -> int:
        n = self._next_id
        self._next_id += 1
        self._frames.append(_Frame(n, account, b"id: %d\ndata: %s\n\n" % (n, data)))
        self._poke()
        return n

    def _prebuild(self, count: int) -> None:
        """Script and encode ``count`` events now; only the id is filled in on release."""
        self._prebuilt = deque()
        for _ in range(count):
            type_, data = self._script.next()
            envelope = self._envelope(type_, 0, data)
            # "eventId" is the envelope's second key: split the JSON around its value.
            head, tail = msgspec.json.encode(envelope).split(b'"eventId":0,', 1)
            self._prebuilt.append((data["accountId"], head + b'"eventId":', b"," + tail, envelope))

    def _produce(self, count: int) -> None:
        for _ in range(count):
            if self._prebuilt is not None:
                if not self._prebuilt:
                    return
                account, head, tail, envelope = self._prebuilt.popleft()
                envelope["eventId"] = self._next_id
                raw = b"%s%d%s" % (head, self._next_id, tail)
            else:
                if self.events is not None and self._scripted >= self.events:
                    return
                type_, data = self._script.next()
                self._scripted += 1
                account = data["accountId"]
                envelope = self._envelope(type_, self._next_id, data)
                raw = msgspec.json.encode(envelope)
            n = self._append(account, raw)
            self.produced[n] = envelope
            self.produced.pop(n - _KEPT, None)

    async def _produce_forever(self) -> None:
        loop = asyncio.get_running_loop()
        interval = 1.0 / self.rate
        due = loop.time()
        while self.events is None or self._scripted < self.events:
            if not self._unpaused.is_set():
                await self._unpaused.wait()
                due = loop.time()
            now = loop.time()
            # Catch up after a busy loop, but never with a burst bigger than a second's worth.
            count = min(int((now - due) / interval) + 1, max(1, int(self.rate)))
            self._produce(count)
            due = max(due + count * interval, now - 1.0)
            await asyncio.sleep(max(0.0, due - loop.time()))

    # --- the endpoint ---------------------------------------------------------------------

    def _record(self, request: web.Request, status: int) -> None:
        self.attempts.append((time.monotonic(), status, request.headers.get("Last-Event-ID")))

    def _error(self, request: web.Request, status: int, error: str) -> web.Response:
        self._record(request, status)
        headers = {"Retry-After": self.retry_after} if status == 503 and self.retry_after else None
        return web.json_response({"error": error}, status=status, headers=headers)

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        if self.never_send:
            self._record(request, 0)
            await self._closing.wait()  # accept the request, never answer it
            return web.Response(status=503)
        auth = request.headers.get("Authorization", "")
        key = auth[len("Bearer ") :] if auth.startswith("Bearer ") else ""
        if key not in self.api_keys or key in self._revoked:
            return self._error(request, 401, "invalid or revoked key")
        if self.unavailable:
            return self._error(request, 503, "trading container not running")
        if key in self._active:
            return self._error(request, 409, "stream already open")
        self._record(request, 200)
        if self.content_type != EVENT_STREAM:
            return web.Response(
                body=b"<html><body>Maintenance</body></html>", content_type=self.content_type
            )
        conn = _Conn(key, request.query.get("account_id"), request)
        self._active[key] = conn
        try:
            response = web.StreamResponse(headers={"Cache-Control": "no-cache"})
            response.content_type = EVENT_STREAM
            await response.prepare(request)
            if self.retry_ms is not None:
                await response.write(b"retry: %d\n\n" % self.retry_ms)
            await self._serve(request, response, conn, self._replay_from(request))
        finally:
            if self._active.get(key) is conn:
                del self._active[key]
        return response

    def _replay_from(self, request: web.Request) -> int:
        """The first event id this connection is sent."""
        last = request.headers.get("Last-Event-ID")
        if last is None:
            return self._next_id
        # Not an id this server could have sent (and int() of 5,000 digits raises).
        if not (last.isascii() and last.isdigit() and len(last) < 20):
            return self._next_id
        oldest = max(1, self._next_id - self.buffer_size)
        # "The server keeps a buffer of the last 100 events": older than that is not replayed.
        return max(int(last) + 1 - self.rewind, oldest)

    async def _serve(
        self, request: web.Request, response: web.StreamResponse, conn: _Conn, cursor: int
    ) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        deadline = start + self.lifetime
        next_check = start + self.auth_check_interval
        while not self._closing.is_set():
            now = loop.time()
            if now >= next_check:
                next_check += self.auth_check_interval
                if conn.key in self._revoked:
                    await self._control(response, conn, "auth_revoked", self._revoked[conn.key])
                    return
            if now >= deadline:
                await self._control(response, conn, "recycle", "max_lifetime")
                return
            batch, cursor = ([], cursor) if self.stalled else self._batch(cursor, conn)
            if not batch:
                await self._sleep(min(deadline, next_check) - now)
                continue
            if not await self._send(request, response, conn, batch):
                return

    def _batch(self, cursor: int, conn: _Conn) -> tuple[list[_Frame], int]:
        """The frames to send from ``cursor`` on (this client's account only), and the next
        cursor: past every frame looked at, so other accounts' frames are skipped once."""
        if cursor >= self._next_id and self._prebuilt:
            self._produce(_WRITE_BATCH)  # --rate 0: production keeps pace with the reader
        if cursor >= self._next_id or not self._frames:
            return [], cursor
        frames = self._frames
        start = max(0, cursor - frames[0].event_id)
        limit = 1 if self._cut_mid else _WRITE_BATCH
        if self._cut_after is not None:
            limit = min(limit, max(1, self._cut_after))
        out: list[_Frame] = []
        i = start
        while i < len(frames) and len(out) < limit:
            frame = frames[i]
            if conn.account is None or frame.account in (None, conn.account):
                out.append(frame)
            i += 1
        return out, frames[i - 1].event_id + 1 if i > start else cursor

    async def _send(
        self, request: web.Request, response: web.StreamResponse, conn: _Conn, batch: list[_Frame]
    ) -> bool:
        """Write ``batch``; False when a fault knob closed the connection."""
        if self._cut_mid:
            self._cut_mid = False
            self.lost.append(batch[0].event_id)
            self._unregister(conn)
            await response.write(batch[0].raw[: len(batch[0].raw) // 2])
            abort(request)
            return False
        await response.write(b"".join(f.raw for f in batch))
        conn.last_sent = batch[-1].event_id
        if self._cut_after is not None:
            self._cut_after -= len(batch)
            if self._cut_after <= 0:
                self._cut_after = None
                self._unregister(conn)
                abort(request)
                return False
        return True

    async def _control(
        self, response: web.StreamResponse, conn: _Conn, type_: str, reason: str
    ) -> None:
        # Free the key first: a client that reconnects at once must not meet a 409.
        self._unregister(conn)
        body = msgspec.json.encode(self._envelope(type_, conn.last_sent, {"reason": reason}))
        await response.write(b"data: " + body + b"\n\n")

    def _unregister(self, conn: _Conn) -> None:
        if self._active.get(conn.key) is conn:
            del self._active[conn.key]

    async def _sleep(self, seconds: float) -> None:
        self._wake.clear()
        waiter = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({waiter}, timeout=max(0.0, seconds))
        finally:
            waiter.cancel()

    def _poke(self) -> None:
        self._wake.set()


# --- CLI and demo hooks -----------------------------------------------------------------------


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--rate", type=float, default=5.0, help="events/s (0 = max)")
    parser.add_argument("--events", type=int, default=None, help="stop producing after K")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--api-key", default=DEMO_KEY, help="the Bearer key accepted")
    parser.add_argument("--lifetime", type=float, default=300.0, help="recycle after (s)")
    parser.add_argument(
        "--auth-check-interval", type=float, default=30.0, help="key re-check period (s)"
    )


def from_cli(args: argparse.Namespace) -> TtmtSimulator:
    return TtmtSimulator(
        seed=args.seed,
        rate=args.rate,
        events=args.events,
        api_keys=(args.api_key,),
        lifetime=args.lifetime,
        auth_check_interval=args.auth_check_interval,
    )


def for_demo(seed: int) -> TtmtSimulator:
    return TtmtSimulator(seed=seed, rate=3.0, api_keys=(DEMO_KEY,), lifetime=60.0)
