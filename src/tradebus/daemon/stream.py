"""``GET /api/v1/events``: the canonical events as Server-Sent Events, one more journal follower.

Each client is a follower of the journal in the daemon's process: a ``Reader`` from the seq it
asked for, bounded by the journal's own ``view()``, woken by every append, reading one step
(``STEP_BYTES``) at a time on a thread and writing it before it reads the next. aiohttp's write
waits while the socket's buffers are full, so a slow or stalled client holds at most one step
and its socket's buffer, and slows nothing but itself; one stalled past ``STALL_TIMEOUT`` is
closed (it resumes with ``Last-Event-ID``). The stream holds no cursor: retention does not wait
for it, and what it deleted before a client read it comes as a ``status.gap``, as to a sink.

The frames follow the WHATWG "server-sent events" format: ``id:`` is the event's ``seq`` (so
``Last-Event-ID`` is the last seq a client got) and ``data:`` the event's line exactly as the
sinks write it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass

import msgspec
from aiohttp import web

from tradebus import times
from tradebus.delivery.follower import gap_events
from tradebus.delivery.tail import Wakeups
from tradebus.journal.records import Record
from tradebus.journal.store import Gap, Journal, Reader
from tradebus.schemas.filter import EventFilter

# About this much journal per read: what one client holds at most, besides its socket buffer.
STEP_BYTES = 128 << 10
# A comment this often on a quiet stream: proxies close connections that say nothing.
KEEPALIVE = 15.0
# A client that has not taken a step's bytes for this long is closed: it resumes by itself.
STALL_TIMEOUT = 60.0
# Where a browser's EventSource retries after a lost connection (milliseconds).
RETRY_MS = 1000
# The name status.gap events of this stream carry (``journal:<name>:gap:<range>``).
NAME = "api"
_encoder = msgspec.json.Encoder()


class QueryError(ValueError):
    """A query the stream cannot serve; its message says which parameter and why."""


@dataclass(frozen=True, slots=True)
class Query:
    """What a client asked for: its filter and where to start (``from``, ``Last-Event-ID``)."""

    filter: EventFilter
    start: str  # "now", "earliest", or a seq in digits
    after: int | None  # Last-Event-ID: the last seq the client got

    def first_seq(self, journal: Journal) -> int:
        """The first seq to send: before the oldest one held means a ``status.gap`` first."""
        end = journal.next_seq
        if self.after is not None:
            return min(self.after + 1, end)
        if self.start == "now":
            return end
        if self.start == "earliest":
            return journal.first_seq
        return min(int(self.start), end)


def _values(query: Callable[[str], list[str]], key: str) -> list[str]:
    """``key=a,b&key=c`` as ``[a, b, c]``."""
    return [v for raw in query(key) for v in raw.split(",") if v]


def parse_query(query: Callable[[str], list[str]], last_event_id: str | None) -> Query:
    """The filters (the sinks' semantics: ``types`` are prefixes) and the start of a request."""
    start = (query("from") or ["now"])[-1]
    if start not in ("now", "earliest") and not start.isdigit():
        raise QueryError(f"from: expected now, earliest or a seq, got {start[:40]!r}")
    after = None
    if last_event_id:  # an empty Last-Event-ID is what a browser sends before any event
        if not last_event_id.isdigit():
            raise QueryError(f"Last-Event-ID: expected a seq, got {last_event_id[:40]!r}")
        after = int(last_event_id)
    filt = EventFilter(
        types=_values(query, "types"),
        sources=_values(query, "sources"),
        providers=_values(query, "providers"),
        symbols=_values(query, "symbols"),
    )
    return Query(filt, start, after)


def frames(items: Sequence[Record | Gap], next_seq: int, filt: EventFilter) -> bytes:
    """SSE frames of a step's records and gaps, from ``next_seq`` on (a record may begin before
    it); every gap passes whatever the filter, as it does to a sink."""
    out: list[bytes] = []
    passes = filt.line if filt else None
    for item in items:
        if isinstance(item, Gap):
            now = times.now()
            out.extend(
                b"id: %d\ndata: %s\n\n" % (item.last, _encoder.encode(event))
                for event in gap_events(NAME, item, now)
            )
            continue
        skip = max(0, next_seq - item.first_seq)
        seq = item.first_seq + skip
        for line in item.payload.split(b"\n")[skip:-1]:
            if passes is None or passes(line):
                out.append(b"id: %d\ndata: %s\n\n" % (seq, line))
            seq += 1
    return b"".join(out)


class Streams(Wakeups):
    """The streams being served: how many (``max_clients`` at most), their wake-ups, their end."""

    def __init__(self, max_clients: int) -> None:
        super().__init__()
        self.max_clients = max_clients
        self.clients = 0
        self.closing = False

    @property
    def full(self) -> bool:
        return self.clients >= self.max_clients

    def close(self) -> None:
        self.closing = True
        self.wake()


async def follow(
    journal: Journal,
    query: Query,
    streams: Streams,
    write: Callable[[bytes], Awaitable[None]],
    *,
    keepalive: float = KEEPALIVE,
) -> None:
    """Send the journal from the query's start to ``write`` until the endpoint stops or the
    client goes. ``write`` is awaited: it returns once the bytes are on their way."""
    reader = Reader(query.first_seq(journal), keep_open=True)
    waiter = streams.waiter()
    loop = asyncio.get_running_loop()

    async def send(data: bytes) -> None:
        async with asyncio.timeout(STALL_TIMEOUT):
            await write(data)

    try:
        # No blank line after these: a blank line ends an event, and some clients (httpx-sse)
        # hand one out even when it has no data. The retry goes with the first event.
        await send(b"retry: %d\n: tradebus\n" % RETRY_MS)
        quiet_since = loop.time()
        while not streams.closing:
            view = journal.view()
            if reader.next_seq >= view.end_seq:
                waiter.clear()
                left = keepalive - (loop.time() - quiet_since)
                if left <= 0:
                    await send(b": keepalive\n")
                    quiet_since = loop.time()
                    continue
                with suppress(TimeoutError):
                    async with asyncio.timeout(left):
                        await waiter.wait()
                continue
            start = reader.next_seq
            items = await asyncio.to_thread(reader.read, view, STEP_BYTES)
            if not items:
                # A segment went (retention) since the view: the next view says so.
                await asyncio.sleep(0.01)
                continue
            data = frames(items, start, query.filter)
            if data:
                await send(data)
                quiet_since = loop.time()
    finally:
        streams.forget(waiter)
        reader.close()


def handler(
    journal: Journal, streams: Streams, *, keepalive: float = KEEPALIVE
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The aiohttp handler of ``GET /api/v1/events``."""

    async def events(request: web.Request) -> web.StreamResponse:
        try:
            query = parse_query(
                lambda key: request.query.getall(key, []), request.headers.get("Last-Event-ID")
            )
        except QueryError as exc:
            return web.Response(status=400, text=f"{exc}\n")
        if streams.full or streams.closing:
            return web.Response(
                status=503,
                headers={"Retry-After": "5"},
                text=f"at most {streams.max_clients} streams at once (http_max_clients)\n",
            )
        streams.clients += 1
        try:
            response = web.StreamResponse(
                headers={
                    "Content-Type": "text/event-stream; charset=utf-8",
                    "Cache-Control": "no-cache, no-store",
                    "X-Accel-Buffering": "no",  # nginx: pass each frame on at once
                }
            )
            await response.prepare(request)
            with suppress(ConnectionError, TimeoutError):
                await follow(journal, query, streams, response.write, keepalive=keepalive)
            return response
        finally:
            streams.clients -= 1

    return events
