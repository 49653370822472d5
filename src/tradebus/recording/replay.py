"""The replayer: an adapter's own code driven by a recording, with the recorded clock.

``ReplayTransport`` is the ``Transport`` an adapter gets in a replay. Every call that waits on
the world (a connect, a read, a send, a sleep) waits on the ``Engine`` instead, which hands out
the recorded outcome, with its recorded time as the task's ``now()``. The adapter decodes,
normalizes, dedupes, resumes, detects gaps and reconciles exactly as it did live, because it
is the same code given the same inputs in the same order.

The order is the subtle part. Live, each record was written when its event reached the
adapter, so the recording is the order the adapter met its events in. The engine gives the
next record only when the adapter can do nothing more without it: the replay runs on an
asyncio loop whose selector calls ``Engine.step`` when the loop is idle (no callback ready,
so every task waits on the engine), and ``step`` delivers one record that wakes a task. A
watchdog's timer and a reader's message therefore reach the adapter in the order they
reached it live, however fast the replay runs. No real timer is involved: ``--speed`` only
makes ``step`` wait, before a record, until its recorded time (scaled) has come.

Records the adapter does not wait for (a request being sent, a close of ours) only move the
engine on; a record the adapter is not waiting for yet (a read while it is busy elsewhere)
waits in its connection's inbox, as bytes wait in a socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import selectors
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
from multidict import CIMultiDict

from tradebus import config as config_mod
from tradebus import times
from tradebus.adapters.base import SourceContext
from tradebus.adapters.live import content_type
from tradebus.adapters.transport import (
    Client,
    HandshakeError,
    NetworkError,
    Reply,
    Stream,
    StreamEndError,
    TransportError,
    WaitTimeoutError,
    WebSocket,
    WSKind,
    WSMessage,
    seeded,
    set_now,
    task_now,
)
from tradebus.config import SourceConfig
from tradebus.errors import ConfigError
from tradebus.plugin import source_factory
from tradebus.recording import files
from tradebus.recording import format as fmt
from tradebus.schemas.events import Event
from tradebus.schemas.events import decoder as event_decoder

_ANSWERS = (fmt.Response, fmt.Error)
_INBOX = (fmt.Recv, fmt.Control, fmt.Timeout, fmt.Close, fmt.Error)


def _ended() -> NetworkError:
    return NetworkError("RecordingEnded", "the recording ends here")


@dataclass(slots=True)
class _Conn:
    """One recorded connection as the replay sees it."""

    answered: bool = False
    inbox: deque[fmt.Record] = field(default_factory=deque)
    reader: asyncio.Future[fmt.Record] | None = None
    sends: deque[asyncio.Future[fmt.Record]] = field(default_factory=deque)
    early_sends: deque[fmt.Record] = field(default_factory=deque)
    opener: asyncio.Future[fmt.Record] | None = None
    answer: fmt.Record | None = None
    closed: bool = False


class Engine:
    """Hands one run's records to the adapter's waiting calls, one per idle loop (``step``)."""

    def __init__(
        self,
        records: Iterator[fmt.Record],
        *,
        speed: float = 0.0,
        since: float | None = None,
        until: float | None = None,
        report: Callable[[str], None] = lambda _: None,
    ) -> None:
        self._records = records
        self.speed = speed
        self.since = since
        self.until = until
        self._report = report
        self.time = 0.0  # the time of the last record handed out
        self.finished = False
        self.done: asyncio.Future[None] | None = None
        self.divergences = 0
        self.skipped = 0
        self._opens = 0  # the adapter's opens so far
        self._recorded_opens = 0
        self._map: dict[int, int] = {}  # recorded connection -> the replay's (open order)
        self._conns: dict[int, _Conn] = {}
        self._methods: dict[int, str] = {}
        self._sleeps: dict[str, deque[asyncio.Future[fmt.Record]]] = {}
        self._credits: dict[str, deque[fmt.Record]] = {}
        self._origin: tuple[float, float] | None = None

    # --- what the adapter waits on ------------------------------------------------------------

    def _future(self) -> asyncio.Future[fmt.Record]:
        return asyncio.get_running_loop().create_future()

    def _conn(self, index: int) -> _Conn:
        conn = self._conns.get(index)
        if conn is None:
            conn = self._conns[index] = _Conn()
        return conn

    def open(self, method: str) -> tuple[int, asyncio.Future[fmt.Record]]:
        """The adapter opens its next connection: its number and the answer to wait for."""
        if self.finished:
            raise _ended()
        self._opens += 1
        index = self._opens
        self._methods[index] = method
        conn = self._conn(index)
        future = self._future()
        if conn.answer is not None:
            future.set_result(conn.answer)
        else:
            conn.opener = future
        return index, future

    def read(self, index: int) -> asyncio.Future[fmt.Record]:
        conn = self._conn(index)
        future = self._future()
        if conn.inbox:
            future.set_result(conn.inbox.popleft())
        elif self.finished:
            future.set_exception(_ended())
        else:
            conn.reader = future
        return future

    def send(self, index: int) -> asyncio.Future[fmt.Record]:
        conn = self._conn(index)
        future = self._future()
        if conn.early_sends:
            future.set_result(conn.early_sends.popleft())
        elif self.finished:
            future.set_exception(_ended())
        else:
            conn.sends.append(future)
        return future

    def close(self, index: int) -> None:
        conn = self._conn(index)
        conn.closed = True
        conn.inbox.clear()

    def sleep(self, label: str) -> asyncio.Future[fmt.Record]:
        future = self._future()
        credits = self._credits.get(label)
        if credits:
            future.set_result(credits.popleft())
        elif self.finished:
            future.set_exception(_ended())
        else:
            self._sleeps.setdefault(label, deque()).append(future)
        return future

    # --- the engine's side --------------------------------------------------------------------

    def step(self) -> bool:
        """Hand out records until one wakes the adapter; False once the run is over."""
        if self.finished:
            return False
        for record in self._records:
            if isinstance(record, fmt.Start):
                # The live adapter died of a bug and the daemon restarted it: what follows
                # came to a restarted adapter, after a supervisor's delay not recorded here.
                self._report(f"the adapter crashed here in the live run, at {fmt_time(record.t)}")
                break
            if isinstance(record, fmt.End) or self._past(record.t):
                break
            self._pace(record.t)
            self.time = max(self.time, record.t)
            if self._deliver(record):
                return True
        self.finished = True
        if self.done is not None and not self.done.done():
            self.done.set_result(None)
        return True

    def _past(self, t: float) -> bool:
        # --to is inclusive to the millisecond, as the ``received`` of the lines is written.
        return self.until is not None and times.from_epoch(t) > times.from_epoch(self.until)

    def _pace(self, t: float) -> None:
        if self.speed <= 0 or (self.since is not None and t < self.since):
            return
        if self._origin is None:
            self._origin = (time.monotonic(), t)
            return
        real, recorded = self._origin
        delay = real + (t - recorded) / self.speed - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # the loop is idle: nothing waits behind this

    def _deliver(self, record: fmt.Record) -> bool:
        if isinstance(record, fmt.Open):
            self._recorded_opens += 1
            self._map[record.conn] = self._recorded_opens
            method = self._methods.get(self._recorded_opens)
            if method is not None and method != record.method:
                self._diverged(f"the adapter opened with {method}, the recording {record.method}")
            return False
        if isinstance(record, fmt.Wake):
            if _hand(self._sleeps.get(record.label), record):
                return True
            self._credits.setdefault(record.label, deque()).append(record)
            return False
        if isinstance(record, fmt.Lost):
            self._diverged(f"the recorder dropped {record.records} records here")
            return False
        if not isinstance(record, _ANSWERS + _INBOX + (fmt.Send,)):
            return False  # a header of a later part
        index = self._map.get(record.conn)
        if index is None:
            self.skipped += 1  # a connection opened before the first file given
            return False
        conn = self._conn(index)
        if not conn.answered and isinstance(record, _ANSWERS):
            conn.answered = True
            opener, conn.opener = conn.opener, None
            if opener is not None and not opener.done():
                opener.set_result(record)
                return True
            conn.answer = record
            return False
        if isinstance(record, fmt.Send):
            if _hand(conn.sends, record):
                return True
            conn.early_sends.append(record)
            return False
        if isinstance(record, fmt.Close) and record.by == "us":
            return False
        if conn.closed:
            return False
        reader, conn.reader = conn.reader, None
        if reader is not None and not reader.done():
            reader.set_result(record)
            return True
        conn.inbox.append(record)
        return False

    def _diverged(self, what: str) -> None:
        self.divergences += 1
        if self.divergences == 1:
            self._report(f"replay diverges from the recording at {fmt_time(self.time)}: {what}")


def _hand(waiting: deque[asyncio.Future[fmt.Record]] | None, record: fmt.Record) -> bool:
    """Give ``record`` to the first call still waiting (one cancelled meanwhile is skipped:
    a watchdog reaped with its connection never took its wake-up, live either)."""
    while waiting:
        future = waiting.popleft()
        if not future.done():
            future.set_result(record)
            return True
    return False


def fmt_time(t: float) -> str:
    return times.from_epoch(t)


def _error(record: fmt.Error) -> TransportError:
    if record.status is not None:
        return HandshakeError(record.status, CIMultiDict(record.headers or {}))
    if record.error == "TimeoutError":
        return WaitTimeoutError(message=record.message)
    return NetworkError(record.error, record.message)


class ReplayTransport:
    """The ``Transport`` of a replayed run: the engine's records, the recorded seed and boot."""

    def __init__(self, engine: Engine, header: fmt.Header, started: float) -> None:
        self._engine = engine
        # The boot in ms is the run's name; half a millisecond more survives the float's trip.
        self._boot = (int(header.run, 16) + 0.5) / 1000
        self._seed = header.seed
        self._started = started

    @property
    def boot(self) -> float:
        return self._boot

    @property
    def path(self) -> str | None:
        return None

    @property
    def recorded_bytes(self) -> int:
        return 0

    def now(self) -> float:
        value = task_now()
        return self._engine.time if value is None else value

    def rng(self, label: str) -> Any:
        return seeded(self._seed, label)

    async def sleep(self, seconds: float, label: str) -> float:
        record = await self._engine.sleep(label)
        return set_now(record.t)

    def begin(self, history: Sequence[Event], stopped_at: float | None) -> None:
        set_now(self._started)

    @contextlib.asynccontextmanager
    async def client(
        self, *, read_bufsize: int = 2**16, limit: int = 100, connect_timeout: float | None = None
    ) -> AsyncIterator[Client]:
        yield ReplayClient(self._engine)

    def close(self) -> None:
        pass


class ReplayClient:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    async def _answer(self, method: str) -> tuple[int, fmt.Response]:
        index, future = self._engine.open(method)
        record = await future
        set_now(record.t)
        if isinstance(record, fmt.Error):
            raise _error(record)
        assert isinstance(record, fmt.Response)
        return index, record

    async def stream(
        self,
        url: str,
        *,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None,
        timeout: float,
    ) -> Stream:
        index, response = await self._answer("GET")
        return ReplayStream(self._engine, index, response)

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None = None,
        timeout: float,
    ) -> Reply:
        _, response = await self._answer(method)
        return Reply(response.status, CIMultiDict(response.headers), fmt.payload(response))

    async def websocket(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        timeout: float,
        max_msg_size: int,
        heartbeat: float | None = None,
        close_timeout: float = 2.0,
    ) -> WebSocket:
        index, _ = await self._answer("WS")
        return ReplayWebSocket(self._engine, index)


class ReplayStream:
    def __init__(self, engine: Engine, index: int, response: fmt.Response) -> None:
        self._engine = engine
        self._index = index
        self.status = response.status
        self.headers: Mapping[str, str] = CIMultiDict(response.headers)
        self.content_type = content_type(self.headers)

    async def read(self, timeout: float) -> bytes:
        record = await self._engine.read(self._index)
        set_now(record.t)
        if isinstance(record, fmt.Recv):
            return fmt.payload(record)
        if isinstance(record, fmt.Timeout):
            raise WaitTimeoutError(message=f"no byte in {timeout}s")
        if isinstance(record, fmt.Close):
            raise StreamEndError
        if isinstance(record, fmt.Error):
            raise NetworkError(record.error, record.message)
        raise NetworkError("UnexpectedRecord", f"a {type(record).__name__} on a stream")

    async def excerpt(self, size: int, timeout: float) -> bytes:
        record = await self._engine.read(self._index)
        return fmt.payload(record)[:size] if isinstance(record, fmt.Recv) else b""

    def close(self) -> None:
        self._engine.close(self._index)


class ReplayWebSocket:
    def __init__(self, engine: Engine, index: int) -> None:
        self._engine = engine
        self._index = index
        self._close_code: int | None = None

    @property
    def close_code(self) -> int | None:
        return self._close_code

    async def receive(self, timeout: float | None = None) -> WSMessage:
        record = await self._engine.read(self._index)
        t = set_now(record.t)
        if isinstance(record, fmt.Recv):
            if record.b64 is not None:
                return WSMessage(WSKind.BINARY, bytes(record.b64), t=t)
            return WSMessage(WSKind.TEXT, record.text or "", t=t)
        if isinstance(record, fmt.Timeout):
            raise WaitTimeoutError(message=f"no message in {timeout}s")
        if isinstance(record, fmt.Control):
            kind = WSKind(record.op)
            data: str | bytes = b""
            if kind is WSKind.CLOSE:
                data = record.text or ""
            elif kind in (WSKind.PING, WSKind.PONG):
                data = bytes(record.b64 or b"")
            if kind not in (WSKind.PING, WSKind.PONG):
                self._close_code = record.code
            return WSMessage(kind, data, code=record.code, error=record.error, t=t)
        what = record.error if isinstance(record, fmt.Error) else "UnexpectedRecord"
        return WSMessage(WSKind.ERROR, error=what, t=t)

    async def _sent(self) -> None:
        record = await self._engine.send(self._index)
        if isinstance(record, fmt.Send) and record.error is not None:
            raise NetworkError(record.error)

    async def send_str(self, data: str) -> None:
        await self._sent()

    async def ping(self) -> None:
        await self._sent()

    async def pong(self, data: bytes) -> None:
        await self._sent()

    async def close(self) -> None:
        self._engine.close(self._index)


# --- driving a run --------------------------------------------------------------------------


class IdleSelector(selectors.DefaultSelector):
    """The loop's selector; when the loop would wait (nothing ready), ``on_idle`` goes first.

    asyncio asks its selector with a timeout of 0 while callbacks are ready, and with a longer
    one (or none) only when it has nothing to run: that is the moment every task waits."""

    on_idle: Callable[[], bool] | None = None

    def select(self, timeout: float | None = None) -> list[tuple[Any, int]]:
        if timeout is not None and timeout <= 0:
            return super().select(timeout)
        ready = super().select(0)
        if ready:
            return ready
        if self.on_idle is not None and self.on_idle():
            return []
        return super().select(timeout)


class ReplayError(files.RecordingError):
    """The replay cannot start (a recording given as another source, say)."""


Emit = Callable[[Sequence[Event]], None]


@dataclass(slots=True)
class Stats:
    events: int = 0
    damage: int = 0
    divergences: int = 0
    skipped: int = 0
    crashed: str | None = None
    closed: bool = False  # the reader of the lines went away


def source_config(run: files.Run) -> SourceConfig:
    """The recorded source's config (its secrets redacted: the replay sends nothing)."""
    table = dict(run.header.config)
    try:
        parsed = config_mod.parse(
            {"sources": [table], "sinks": [{"type": "stdout", "name": "replay"}]}, env={}
        )
    except ConfigError as exc:
        raise ReplayError(
            f"{run.parts[0].path}: the recorded source config does not load: {exc.problems[0]}"
        ) from None
    return parsed.sources[0]


async def _drive(ctx: SourceContext, cfg: SourceConfig, engine: Engine, stats: Stats) -> None:
    engine.done = asyncio.get_running_loop().create_future()
    adapter = source_factory(config_mod.kind(cfg))(cfg, ctx)
    task = asyncio.ensure_future(adapter.run())
    await asyncio.wait({task, engine.done}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        error = task.exception()
        if isinstance(error, BrokenPipeError):
            raise error  # the reader of the lines went away (`| head`): nothing more to do
        stats.crashed = "the adapter stopped" if error is None else repr(error)[:300]
        return
    task.cancel()
    await asyncio.wait({task})


def replay(
    runs: Sequence[files.Run],
    emit: Emit,
    *,
    speed: float = 0.0,
    since: float | None = None,
    until: float | None = None,
    report: Callable[[str], None] = lambda _: None,
) -> Stats:
    """Replay ``runs`` (in order) through their adapters; canonical events go to ``emit``."""
    stats = Stats()

    def damage(path: Any, item: fmt.Damage) -> None:
        stats.damage += 1
        where = f"offset {item.offset}" + (f", line {item.index}" if item.index is not None else "")
        report(f"{path}: {where}: {item.what}; skipped")

    selector = IdleSelector()
    loop = asyncio.SelectorEventLoop(selector)
    try:
        for run in runs:
            cfg = source_config(run)
            records = files.records(run, damage)
            first = next(records, None)
            if first is None:
                continue
            start = first if isinstance(first, fmt.Start) else None
            rest = records if start is not None else _chain(first, records)
            engine = Engine(rest, speed=speed, since=since, until=until, report=report)
            engine.time = first.t
            history = [event_decoder.decode(raw) for raw in start.history] if start else []

            async def publish(events: Sequence[Event], engine: Engine = engine) -> None:
                if since is None or engine.time >= since:
                    stats.events += len(events)
                    emit(events)

            ctx = SourceContext(
                cfg.name,
                config_mod.kind(cfg),
                publish,
                history=history,
                stopped_at=start.stopped_at if start else None,
                transport=ReplayTransport(engine, run.header, first.t),
            )
            selector.on_idle = engine.step
            loop.run_until_complete(_drive(ctx, cfg, engine, stats))
            selector.on_idle = None
            stats.divergences += engine.divergences
            stats.skipped += engine.skipped
            if stats.crashed is not None:
                report(f"{run.source}: replay stopped: {stats.crashed}")
                break
    finally:
        loop.close()
    return stats


def _chain(first: fmt.Record, rest: Iterator[fmt.Record]) -> Iterator[fmt.Record]:
    yield first
    yield from rest


def encoder() -> Callable[[Sequence[Event], int], tuple[bytes, int]]:
    """Lines as the bus writes them: ``seq`` from 1 in replay order, one encode per batch."""
    encode = msgspec.json.Encoder().encode_lines
    set_seq = msgspec.structs.force_setattr

    def lines(events: Sequence[Event], seq: int) -> tuple[bytes, int]:
        for event in events:
            seq += 1
            set_seq(event, "seq", seq)
        return encode(events), seq

    return lines
