"""A fake TradingPartners alerts feed: ``GET /api/v1/alerts`` as Server-Sent Events.

It checks ``Authorization: Bearer <token>`` (401 otherwise), sends a ``ping`` every
``ping_interval`` seconds and plays whole alert lifecycles — ``working`` then either ``aborted``
or ``onGoing`` then ``closed`` — several alerts interleaved, at ``rate`` events per second.

What the upstream doc does not show, and this simulator chooses:

- Alert ids count up from 35443 (the doc's example id); the token of each alert is a UUID drawn
  from the seeded generator, so a seed gives the same feed byte for byte (pings aside).
- ``startedAt`` / ``closedAt`` come from a virtual clock that starts at 2026-01-05T08:00:00Z and
  advances a random 0.2-5 s per event, written like the doc (``2024-03-27T19:50:11.946Z``).
  Pings carry the wall clock with nanoseconds, as the doc's ping does.
- ``durationStrategy`` is one of ``short``, ``medium``, ``long`` (the doc points at
  "Preferences", which it does not list). Prices sit near a realistic level per market, rounded
  to that market's precision; alerts go long or short (target above or below start).
- ``gain`` is ``exit - start`` for a long alert, ``start - exit`` for a short one (the doc's
  example: 69870.4 - 69002 = 868.4). ``tokenState`` is ``CONSUMED`` when the gain reached half
  the distance to the target, else ``REIMBURSED``; an aborted alert is always ``REIMBURSED``.
- The doc shows no ``id:`` field; with ``send_ids`` the simulator numbers its event frames and
  resumes after ``Last-Event-ID`` on reconnect.
- A 503 from ``fail_next`` has a JSON body ``{"error": "unavailable"}`` and, if asked, Retry-After.

Fault knobs (plain attributes and methods, called by tests): ``cut_after``, ``cut_mid_frame``,
``stall``, ``inject`` and its named cases, ``content_type``, ``never_send``, ``unauthorized``,
``fail_next``, ``replay_on_reconnect``, ``ping_comma``. Counters: ``attempts``,
``attempt_times``, ``last_event_ids``, ``sent``, ``lost``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import msgspec
from aiohttp import web

from tradebus import demo_keys
from tradebus.simulators.base import AppServer, abort, curl

PATH: Final = "/api/v1/alerts"
FIRST_ALERT_ID: Final = 35443
BASE_TIME: Final = datetime(2026, 1, 5, 8, 0, 0, tzinfo=UTC).timestamp()
DEMO_TOKEN: Final = demo_keys.TPALERTS_TOKEN  # the fake server's own demo credential
HUGE_LINE: Final = 10 * 1024 * 1024
# At --rate 0, frames go out in writes of this many: big enough that the socket, not Python,
# is the limit.
_BATCH: Final = 256
# Event frames kept for replay (Last-Event-ID, replay_on_reconnect) and in ``sent``: a demo
# running for days must not grow without bound.
_KEPT: Final = 10_000

# (instrument, ticker, price level, decimals): realistic levels and precision per market.
MARKETS: Final[tuple[tuple[str, str, float, int], ...]] = (
    ("CRYPTOCURRENCIES", "BTC/USD", 69000.0, 1),
    ("CRYPTOCURRENCIES", "ETH/USD", 3500.0, 2),
    ("CRYPTOCURRENCIES", "SOL/USD", 180.0, 3),
    ("FOREX", "EUR/USD", 1.0850, 5),
    ("FOREX", "GBP/USD", 1.2700, 5),
    ("FOREX", "USD/JPY", 151.30, 3),
    ("INDICES", "US500", 5200.0, 1),
    ("INDICES", "GER40", 18400.0, 1),
    ("INDICES", "NAS100", 18200.0, 1),
    ("COMMODITIES", "XAU/USD", 2330.0, 2),
    ("COMMODITIES", "WTI", 82.40, 2),
    ("FUTURES", "ES", 5230.25, 2),
    ("STOCKS", "AAPL", 171.48, 2),
    ("STOCKS", "TSLA", 175.20, 2),
    ("ETFS", "SPY", 520.10, 2),
    ("ETFS", "QQQ", 445.30, 2),
)
STRATEGIES: Final = ("short", "medium", "long")
_MAX_LIVE: Final = 4


def iso_ms(epoch: float) -> str:
    """``2024-03-27T19:50:11.946Z``: the doc's alert time format."""
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def iso_ns(epoch_ns: int) -> str:
    """``2024-03-27T20:12:11.614599318Z``: the doc's ping time format (nanoseconds)."""
    seconds, nanos = divmod(epoch_ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{nanos:09d}Z"


def frame(name: str, payload: object, event_id: int | None = None) -> bytes:
    """One SSE frame: ``event:``, optional ``id:``, ``data:`` (one JSON line), blank line."""
    head = f"event: {name}\n" if event_id is None else f"event: {name}\nid: {event_id}\n"
    return head.encode() + b"data: " + msgspec.json.encode(payload) + b"\n\n"


@dataclass(slots=True)
class _Live:
    alert_id: int
    token: str
    start: float
    target: float
    stop: float
    decimals: int
    long: bool
    state: str = "working"


class AlertScript:
    """The deterministic stream of alert events for one seed: interleaved whole lifecycles."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.next_id = FIRST_ALERT_ID
        self.clock = BASE_TIME
        self.live: list[_Live] = []

    def __iter__(self) -> Iterator[tuple[str, dict[str, Any]]]:
        return self

    def __next__(self) -> tuple[str, dict[str, Any]]:
        self.clock += self.rng.uniform(0.2, 5.0)
        if not self.live or (len(self.live) < _MAX_LIVE and self.rng.random() < 0.4):
            return "working", self._working()
        alert = self.rng.choice(self.live)
        if alert.state == "working":
            if self.rng.random() < 0.25:
                self.live.remove(alert)
                return "aborted", {
                    "id": alert.alert_id,
                    "token": alert.token,
                    "tokenState": "REIMBURSED",
                }
            alert.state = "onGoing"
            return "onGoing", {"id": alert.alert_id, "token": alert.token}
        self.live.remove(alert)
        return "closed", self._closed(alert)

    def _working(self) -> dict[str, Any]:
        rng = self.rng
        instrument, ticker, level, decimals = rng.choice(MARKETS)
        start = round(level * (1 + rng.uniform(-0.02, 0.02)), decimals)
        risk = level * rng.uniform(0.0005, 0.004)
        reward = risk * rng.uniform(1.5, 4.0)
        long = rng.random() < 0.6
        sign = 1 if long else -1
        alert = _Live(
            alert_id=self.next_id,
            token=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            start=start,
            target=round(start + sign * reward, decimals),
            stop=round(start - sign * risk, decimals),
            decimals=decimals,
            long=long,
        )
        self.next_id += 1
        self.live.append(alert)
        # Keys in the doc example's order (alphabetical).
        return {
            "durationStrategy": rng.choice(STRATEGIES),
            "id": alert.alert_id,
            "instrument": instrument,
            "start": alert.start,
            "startedAt": iso_ms(self.clock),
            "stop": alert.stop,
            "target": alert.target,
            "ticker": ticker,
            "token": alert.token,
        }

    def _closed(self, alert: _Live) -> dict[str, Any]:
        # Most alerts end near the target or at the stop; some are closed early by the model.
        outcome = self.rng.random()
        if outcome < 0.45:
            exit_ = alert.target - (alert.target - alert.start) * self.rng.uniform(0.0, 0.05)
        elif outcome < 0.8:
            exit_ = alert.stop
        else:
            exit_ = alert.start + (alert.target - alert.start) * self.rng.uniform(-0.3, 0.7)
        exit_ = round(exit_, alert.decimals)
        gain = round((exit_ - alert.start) if alert.long else (alert.start - exit_), alert.decimals)
        won = gain >= 0.5 * abs(alert.target - alert.start)
        return {
            "id": alert.alert_id,
            "exit": exit_,
            "gain": gain,
            "closedAt": iso_ms(self.clock),
            "token": alert.token,
            "tokenState": "CONSUMED" if won else "REIMBURSED",
        }


@dataclass(slots=True, eq=False)
class _Conn:
    """One open stream; ``stalled`` ones send nothing until the server stops."""

    stalled: bool = False


class TpAlertsSimulator:
    """The fake ``GET /api/v1/alerts`` server, with fault knobs."""

    def __init__(
        self,
        *,
        seed: int = 0,
        rate: float = 5.0,
        events: int | None = None,
        token: str = DEMO_TOKEN,
        ping_interval: float = 30.0,
    ) -> None:
        self.seed = seed
        self.rate = rate
        self.events = events
        self.token = token
        self.ping_interval = ping_interval
        # --- fault knobs
        self.content_type = "text/event-stream"
        self.never_send = False
        self.unauthorized = False
        self.send_ids = False
        self.ping_comma = False
        # Rewind this many event frames on every new connection: a server repeating itself.
        self.replay_on_reconnect = 0
        # --- what happened (for tests)
        self.attempts = 0
        self.attempt_times: list[float] = []
        self.last_event_ids: list[str | None] = []
        self.sent: deque[tuple[str, dict[str, Any]]] = deque(maxlen=_KEPT)
        self.lost: list[tuple[str, dict[str, Any]]] = []
        # --- internals
        self._script = AlertScript(seed)
        self._frames: list[tuple[str, dict[str, Any], bytes]] = []
        self._base = 0  # the number of the frame _frames[0] holds (0-based)
        self._cursor = 0  # the number of the next frame to send
        self._injected: deque[bytes] = deque()
        self._failures: deque[tuple[int, str | None]] = deque()
        self._cut_after: int | None = None
        self._cut_mid: int | None = None
        self._conns: set[_Conn] = set()
        self._closing = asyncio.Event()
        self._wake = asyncio.Event()
        self._host = "127.0.0.1"
        app = web.Application()
        app.router.add_get(PATH, self._alerts)
        self._server = AppServer(app)
        if rate == 0 and events is not None:
            self._build(events)

    # --- lifecycle ------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def url(self) -> str:
        # A wildcard bind is reached on the loopback address.
        host = "127.0.0.1" if self._host in ("", "0.0.0.0", "::") else self._host  # noqa: S104
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}{PATH}"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._closing.clear()
        self._host = host
        await self._server.start(host, port)

    async def stop(self) -> None:
        # Streaming handlers wait on _closing: without it the runner would wait for them.
        self._closing.set()
        self._poke()
        await self._server.stop()

    def source_table(self, name: str) -> dict[str, Any]:
        return {
            "type": "tpalerts",
            "name": name,
            "url": self.url,
            "token": self.token,
            "ping_interval": self.ping_interval,
        }

    def usage(self) -> list[str]:
        return [
            f"TradingPartners alerts simulator: SSE stream on {self.url}, token {self.token}",
            f"  {curl(self.url, bearer=self.token, stream=True)}",
        ]

    # --- fault knobs ----------------------------------------------------------------------

    def cut_after(self, k: int) -> None:
        """Close the connection abruptly right after the next ``k`` event frames."""
        self._cut_after = k
        self._poke()

    def cut_mid_frame(self, after: int = 0) -> None:
        """After ``after`` more event frames, send half of the next one and close: it is lost."""
        self._cut_mid = after
        self._poke()

    def stall(self) -> None:
        """Open streams go silent (no pings, no events) but stay open; new ones are healthy."""
        for conn in self._conns:
            conn.stalled = True
        self._poke()

    def inject(self, raw: bytes) -> None:
        """Send ``raw`` as is on the open stream, before the next scripted event."""
        self._injected.append(raw)
        self._poke()

    def inject_malformed_json(self) -> None:
        self.inject(b'event: working\ndata: {"id": 1,, "ticker": "BTC/USD"\n\n')

    def inject_unknown_event(self, name: str = "promoted") -> None:
        self.inject(frame(name, {"id": 1, "level": "gold"}))

    def inject_huge_line(self, size: int = HUGE_LINE) -> None:
        """One ``data:`` line of ``size`` bytes in a ``working`` event."""
        self.inject(b"event: working\ndata: " + b"x" * size + b"\n\n")

    def fail_next(self, status: int = 503, count: int = 1, retry_after: str | None = None) -> None:
        """Answer the next ``count`` connection attempts with ``status``."""
        self._failures.extend([(status, retry_after)] * count)

    # --- the endpoint ---------------------------------------------------------------------

    async def _alerts(self, request: web.Request) -> web.StreamResponse:
        self.attempts += 1
        self.attempt_times.append(time.monotonic())
        self.last_event_ids.append(request.headers.get("Last-Event-ID"))
        if self.never_send:
            await self._closing.wait()  # accept the request, never answer it
            return web.Response(status=503)
        if self._failures:
            status, retry_after = self._failures.popleft()
            headers = {"Retry-After": retry_after} if retry_after is not None else None
            return web.json_response({"error": "unavailable"}, status=status, headers=headers)
        if self.unauthorized or request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response({"error": "unauthorized"}, status=401)
        if self.content_type != "text/event-stream":
            return web.Response(body=b'{"alerts": []}', content_type=self.content_type)
        self._resume_from(request.headers.get("Last-Event-ID"))
        response = web.StreamResponse(headers={"Cache-Control": "no-cache"})
        response.content_type = "text/event-stream"
        await response.prepare(request)
        conn = _Conn()
        self._conns.add(conn)
        try:
            await self._stream(request, response, conn)
        except ConnectionError:
            pass  # the client went away mid-write: its stream simply ends
        finally:
            self._conns.discard(conn)
        return response

    def _resume_from(self, last_event_id: str | None) -> None:
        if (
            self.send_ids
            and last_event_id is not None
            and last_event_id.isascii()
            and last_event_id.isdigit()
            and len(last_event_id) < 20  # int() of 5,000 digits raises
        ):
            self._cursor = min(max(int(last_event_id), self._base), self._end())
        elif self.replay_on_reconnect:
            self._cursor = max(self._base, self._cursor - self.replay_on_reconnect)

    async def _stream(
        self, request: web.Request, response: web.StreamResponse, conn: _Conn
    ) -> None:
        loop = asyncio.get_running_loop()
        next_ping = loop.time() + self.ping_interval
        next_event = loop.time()
        while not self._closing.is_set():
            if conn.stalled:
                await self._closing.wait()
                return
            now = loop.time()
            if self._injected:
                await response.write(self._injected.popleft())
                continue
            if now >= next_ping:
                await response.write(self._ping())
                next_ping = now + self.ping_interval
                continue
            due = self._pending() and (self.rate == 0 or now >= next_event)
            if due:
                if not await self._send_events(request, response):
                    return
                # After a pause, do not burst to catch up: keep the configured pace.
                next_event = max(next_event + (1 / self.rate if self.rate else 0), now - 1)
                continue
            wake_at = next_ping if not self._pending() else min(next_ping, next_event)
            await self._sleep(max(0.0, wake_at - now))

    async def _sleep(self, seconds: float) -> None:
        self._wake.clear()
        waiter = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({waiter}, timeout=seconds)
        finally:
            waiter.cancel()

    def _poke(self) -> None:
        self._wake.set()

    def _ping(self) -> bytes:
        name = "ping," if self.ping_comma else "ping"
        return frame(name, {"ping": iso_ns(time.time_ns())})

    # --- event frames ---------------------------------------------------------------------

    def _pending(self) -> bool:
        return self.events is None or self._cursor < self.events

    def _build(self, upto: int) -> None:
        while self._end() < upto:
            name, payload = next(self._script)
            self._frames.append((name, payload, frame(name, payload)))

    def _take(self, n: int) -> list[tuple[str, dict[str, Any], bytes]]:
        end = self._cursor + n if self.events is None else min(self.events, self._cursor + n)
        self._build(end)
        taken = self._frames[self._cursor - self._base : end - self._base]
        if self.send_ids:
            # Numbered frames (1-based, as Last-Event-ID resumes) are built only when asked for.
            taken = [
                (name, payload, frame(name, payload, number))
                for number, (name, payload, _) in enumerate(taken, self._cursor + 1)
            ]
        self._cursor = end
        if end - self._base > 2 * _KEPT:
            drop = end - self._base - _KEPT
            del self._frames[:drop]
            self._base += drop
        return taken

    def _end(self) -> int:
        return self._base + len(self._frames)

    def _budget(self) -> int:
        n = _BATCH if self.rate == 0 else 1
        for limit in (self._cut_after, self._cut_mid):
            if limit is not None and limit > 0:
                n = min(n, limit)
        return n

    async def _send_events(self, request: web.Request, response: web.StreamResponse) -> bool:
        """Send the next frame(s); False when a fault knob closed the connection."""
        if self._cut_mid == 0:
            self._cut_mid = None
            (name, payload, raw), *_ = self._take(1)
            self.lost.append((name, payload))
            await response.write(raw[: len(raw) // 2])
            abort(request)
            return False
        batch = self._take(self._budget())
        await response.write(b"".join(raw for _, _, raw in batch))
        self.sent.extend((name, payload) for name, payload, _ in batch)
        if self._cut_mid is not None:
            self._cut_mid -= len(batch)
        if self._cut_after is not None:
            self._cut_after -= len(batch)
            if self._cut_after <= 0:
                self._cut_after = None
                abort(request)
                return False
        return True


# --- CLI and demo hooks -----------------------------------------------------------------------


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--rate", type=float, default=5.0, help="alert events/s (0 = max)")
    parser.add_argument("--events", type=int, default=None, help="stop alert events after K")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--token", default=DEMO_TOKEN, help="the Bearer token accepted")
    parser.add_argument("--ping-interval", type=float, default=30.0, help="seconds")


def from_cli(args: argparse.Namespace) -> TpAlertsSimulator:
    return TpAlertsSimulator(
        seed=args.seed,
        rate=args.rate,
        events=args.events,
        token=args.token,
        ping_interval=args.ping_interval,
    )


def for_demo(seed: int) -> TpAlertsSimulator:
    return TpAlertsSimulator(seed=seed, rate=2.0, token=DEMO_TOKEN, ping_interval=5.0)
