"""``GET /api/v1/events`` over a real socket: filters, starts, resume, gaps, the client limit,
read with tradebus's own SSE decoder and with a third-party client (httpx-sse)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import msgspec
import pytest
from httpx_sse import aconnect_sse

from tests.integration.test_ops import Idle, Sink, two_sources
from tradebus import config
from tradebus.daemon import page
from tradebus.daemon.app import Daemon, start_ops
from tradebus.daemon.ops import OpsServer
from tradebus.daemon.stream import Query, Streams, follow
from tradebus.reload import Outcome
from tradebus.schemas.events import (
    Event,
    OrderAccepted,
    OrderData,
    PositionData,
    PositionOpened,
    QuoteData,
    QuoteUpdated,
)
from tradebus.schemas.filter import EventFilter
from tradebus.sse import SSEDecoder, SSEMessage

T = "2026-06-09T14:32:01.123Z"


def order(source: str, n: int, symbol: str = "EURUSD") -> OrderAccepted:
    return OrderAccepted(
        id=f"{source}:o{n}",
        source=source,
        provider="ttmt",
        time=T,
        received=T,
        symbol=symbol,
        data=OrderData(order_id=str(n)),
    )


def quote(source: str, n: int) -> QuoteUpdated:
    return QuoteUpdated(
        id=f"{source}:q{n}",
        source=source,
        provider="ttmt",
        time=T,
        received=T,
        symbol="EURUSD",
        data=QuoteData(bid=1.0),
    )


def position(source: str, n: int) -> PositionOpened:
    return PositionOpened(
        id=f"{source}:p{n}",
        source=source,
        provider="ttmt",
        time=T,
        received=T,
        symbol="XAUUSD",
        data=PositionData(position_id=str(n)),
    )


class Stream:
    """One open ``/api/v1/events`` response, its frames decoded by ``SSEDecoder``."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.decoder = SSEDecoder()
        self.pending: list[SSEMessage] = []

    async def take(self, n: int, timeout: float = 5) -> list[SSEMessage]:
        async with asyncio.timeout(timeout):
            while len(self.pending) < n:
                chunk = await self.response.content.readany()
                assert chunk, "the stream ended"
                self.pending += self.decoder.feed(chunk)
        out, self.pending = self.pending[:n], self.pending[n:]
        return out

    async def events(self, n: int) -> list[dict[str, Any]]:
        return [msgspec.json.decode(m.data) for m in await self.take(n)]


class Ops:
    def __init__(self, daemon: Daemon, ops: OpsServer, http: aiohttp.ClientSession) -> None:
        self.daemon, self.ops, self.http = daemon, ops, http
        self.base = f"http://127.0.0.1:{ops.port}"
        self.opened: list[aiohttp.ClientResponse] = []

    async def publish(self, source: str, *events: Event) -> None:
        await self.daemon.contexts[source].publish(list(events))

    async def open(self, query: str = "", **headers: str) -> Stream:
        response = await self.http.get(f"{self.base}/api/v1/events?{query}", headers=headers)
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"].startswith("text/event-stream")
        self.opened.append(response)
        return Stream(response)


async def running_daemon(cfg: config.Config) -> AsyncIterator[Ops]:
    daemon = Daemon(cfg, sinks=[Sink("out")], factories={"ttmt": Idle})
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(stop))
    await asyncio.wait_for(daemon.ready.wait(), 5)
    ops = await start_ops(daemon)
    assert ops is not None
    try:
        async with aiohttp.ClientSession() as http:
            running = Ops(daemon, ops, http)
            yield running
            for response in running.opened:
                response.close()
    finally:
        await ops.stop()
        stop.set()
        await task


def with_daemon(cfg: config.Config, **daemon: Any) -> config.Config:
    return config.with_overrides(cfg, daemon=msgspec.structs.replace(cfg.daemon, **daemon))


@pytest.fixture
async def ops(tmp_path: Path) -> AsyncIterator[Ops]:
    cfg = with_daemon(two_sources(tmp_path), http_max_clients=3, segment_bytes=4096)
    async for running in running_daemon(cfg):
        yield running


async def test_filters_pick_types_by_prefix_sources_and_symbols(ops: Ops) -> None:
    """types are prefixes, sources/symbols exact, combined: only what passes all, in seq order."""
    await ops.publish("main", order("main", 1), quote("main", 1), position("main", 1))
    await ops.publish("spare", order("spare", 2), order("spare", 3, symbol="GBPUSD"))
    await ops.publish("main", order("main", 4, symbol="GBPUSD"))
    orders = await ops.open("from=earliest&types=order.")
    got = await orders.events(4)
    assert [e["id"] for e in got] == ["main:o1", "spare:o2", "spare:o3", "main:o4"]
    narrow = await ops.open("from=earliest&types=order.,position.&sources=spare&symbols=GBPUSD")
    (only,) = await narrow.take(1)
    assert msgspec.json.decode(only.data)["id"] == "spare:o3"
    assert only.id == "5"  # id: is the seq
    both = await ops.open("from=earliest&types=position.&types=quote.")
    assert [e["id"] for e in await both.events(2)] == ["main:q1", "main:p1"]


async def test_a_frame_is_the_line_a_sink_writes(ops: Ops) -> None:
    """data: is the journaled line byte for byte, id: its seq."""
    await ops.publish("main", order("main", 1), quote("main", 2))
    stream = await ops.open("from=earliest")
    frames = await stream.take(2)
    lines = (ops.daemon.bus.journal.segments[0].path.read_bytes()).split(b"\n")
    for frame in frames:
        assert frame.data.encode() in lines[0] + b"\n".join(lines[1:])
        assert msgspec.json.decode(frame.data)["seq"] == int(frame.id or "0")


async def test_from_now_sends_only_what_comes_next(ops: Ops) -> None:
    """The default start is the journal's end; from=<seq> starts at that seq."""
    await ops.publish("main", order("main", 1), order("main", 2), order("main", 3))
    now = await ops.open()
    at = await ops.open("from=2")
    await ops.publish("main", order("main", 4))
    assert [e["id"] for e in await now.events(1)] == ["main:o4"]
    assert [e["id"] for e in await at.events(3)] == ["main:o2", "main:o3", "main:o4"]


async def test_last_event_id_resumes_after_it(ops: Ops) -> None:
    """A client back with Last-Event-ID gets everything after that seq, whatever from= says."""
    await ops.publish("main", *(order("main", n) for n in range(1, 6)))
    first = await ops.open("from=earliest")
    seen = await first.take(2)
    first.response.close()
    again = await ops.open("from=now", **{"Last-Event-ID": seen[-1].id or ""})
    assert [e["seq"] for e in await again.events(3)] == [3, 4, 5]


async def test_what_retention_removed_comes_as_a_gap(ops: Ops) -> None:
    """A resume from before the oldest seq held gets a status.gap naming the lost seqs first."""
    journal = ops.daemon.bus.journal
    for n in range(40):  # 4 KiB segments: several of them
        await ops.publish("main", *(order("main", n * 10 + i) for i in range(10)))
    assert len(journal.segments) > 2
    journal.enforce_retention(journal.last_seq, 4096, 1e9, 0.0)
    oldest = journal.first_seq
    assert oldest > 2
    stream = await ops.open(**{"Last-Event-ID": "1"})
    gap, after = await stream.take(2)
    body = msgspec.json.decode(gap.data)
    assert body["type"] == "status.gap"
    assert body["data"] == {"first_missing": 2, "last_missing": oldest - 1, "reason": "retention"}
    assert gap.id == str(oldest - 1)
    assert msgspec.json.decode(after.data)["seq"] == oldest


async def test_past_http_max_clients_the_next_gets_503(ops: Ops) -> None:
    """Past the limit the next stream is refused with 503; once one goes, a new one is served."""
    one, *_more = [await ops.open() for _ in range(ops.daemon.config.daemon.http_max_clients)]
    async with ops.http.get(f"{ops.base}/api/v1/events") as third:
        assert third.status == 503
        assert "http_max_clients" in await third.text()
    one.response.close()

    async def admitted() -> None:
        while True:
            async with ops.http.get(f"{ops.base}/api/v1/events") as r:
                if r.status == 200:
                    return
            await asyncio.sleep(0.02)  # the server notices the close on its next write

    await ops.publish("main", order("main", 1))  # the write that finds the client gone
    await asyncio.wait_for(admitted(), 5)


async def test_a_bad_start_is_a_400_naming_it(ops: Ops) -> None:
    """from= and Last-Event-ID must be seqs: a one-line 400 says which."""
    async with ops.http.get(f"{ops.base}/api/v1/events?from=yesterday") as r:
        assert r.status == 400
        assert (await r.text()).startswith("from: expected now, earliest or a seq")
    async with ops.http.get(f"{ops.base}/api/v1/events", headers={"Last-Event-ID": "x"}) as r:
        assert r.status == 400


async def test_httpx_sse_reads_and_resumes(ops: Ops) -> None:
    """A third-party SSE client gets the same ids and lines, and resumes by Last-Event-ID."""
    await ops.publish("main", *(order("main", n) for n in range(1, 4)))
    url = f"{ops.base}/api/v1/events"
    async with httpx.AsyncClient(timeout=5) as client:
        got: list[tuple[str, dict[str, Any]]] = []
        async with aconnect_sse(client, "GET", url, params={"from": "earliest"}) as source:
            async for sse in source.aiter_sse():
                got.append((sse.id, msgspec.json.decode(sse.data)))
                if len(got) == 2:
                    break
        assert [(i, e["id"]) for i, e in got] == [("1", "main:o1"), ("2", "main:o2")]
        headers = {"Last-Event-ID": got[-1][0]}
        async with aconnect_sse(client, "GET", url, headers=headers) as source:
            async for sse in source.aiter_sse():
                assert (sse.id, msgspec.json.decode(sse.data)["id"]) == ("3", "main:o3")
                break


async def test_a_quiet_stream_sends_a_comment(tmp_path: Path) -> None:
    """With nothing to send for the keepalive interval, a comment line goes out."""
    cfg = two_sources(tmp_path)
    daemon = Daemon(cfg, sinks=[Sink("out")], factories={"ttmt": Idle})
    journal = daemon.bus.journal
    streams = Streams(1)
    sent: list[bytes] = []
    two = asyncio.Event()

    async def write(data: bytes) -> None:
        sent.append(data)
        if len(sent) == 3:
            two.set()

    query = Query(EventFilter(), "now", None)
    task = asyncio.create_task(follow(journal, query, streams, write, keepalive=0.05))
    await asyncio.wait_for(two.wait(), 5)
    streams.close()
    await asyncio.wait_for(task, 5)
    journal.close()
    assert sent[0] == b"retry: 1000\n: tradebus\n"
    assert sent[1:] == [b": keepalive\n", b": keepalive\n"]


async def test_a_stream_reads_across_segments_without_a_hole(ops: Ops) -> None:
    """From the earliest seq through many 4 KiB segments, every seq comes once, in order,
    while more is appended."""
    for n in range(30):
        await ops.publish("main", *(order("main", n * 10 + i) for i in range(10)))
    stream = await ops.open("from=earliest")
    first = await stream.take(150)
    for n in range(30, 60):
        await ops.publish("main", *(order("main", n * 10 + i) for i in range(10)))
    rest = await stream.take(450)
    assert [int(m.id or 0) for m in first + rest] == list(range(1, 601))


async def test_status_snapshots_carry_the_config_generation_and_the_last_reload(
    ops: Ops,
) -> None:
    """The page's snapshots say the generation and what the last reload did, and when."""
    response = await ops.http.get(f"{ops.base}/api/v1/status/stream")
    ops.opened.append(response)
    assert response.headers["Content-Type"] == "text/event-stream"
    frames = Stream(response)
    (first,) = await frames.take(1)
    assert msgspec.json.decode(first.data)["reload"] == {
        "generation": 1,
        "last_result": None,
        "last_time": None,
        "last_problems": [],
        "failed_sinks": {},
    }
    # Started without a file, the daemon refuses a reload: the next snapshots say so.
    before = time.time()
    outcome = await ops.daemon.reload()
    assert outcome.result == "refused"
    async with asyncio.timeout(5):
        while True:
            (frame,) = await frames.take(1)
            reload = msgspec.json.decode(frame.data)["reload"]
            if reload["last_result"] is not None:
                break
    assert reload["generation"] == 1
    assert reload["last_result"] == "refused"
    assert before <= reload["last_time"] <= time.time()
    assert reload["last_problems"] == ["reload: the daemon was not started from a file"]


async def test_status_snapshots_bound_the_last_reloads_problems(ops: Ops) -> None:
    """A reload refused for many long problems: each snapshot carries the first few, each cut,
    and how many more there are; /readyz keeps them all."""
    problems = [f"sinks[{n}].path: " + "x" * 5_000 for n in range(40)]
    ops.daemon.reloads.note(Outcome(result="refused", problems=problems))
    response = await ops.http.get(f"{ops.base}/api/v1/status/stream")
    ops.opened.append(response)
    (frame,) = await Stream(response).take(1)
    shown = msgspec.json.decode(frame.data)["reload"]["last_problems"]
    assert len(shown) == page.MAX_PROBLEMS + 1
    assert all(len(p) <= page.MAX_PROBLEM_CHARS for p in shown)
    assert shown[0].startswith("sinks[0].path: xxx")
    assert shown[0].endswith("…")
    assert shown[-1] == f"{40 - page.MAX_PROBLEMS} more in /readyz"
    assert len(frame.data) < 4_000
    async with ops.http.get(f"{ops.base}/readyz") as ready:
        assert (await ready.json())["reload"]["last_problems"] == problems


async def test_status_snapshots_name_the_sinks_a_reload_could_not_open(ops: Ops) -> None:
    """A partial reload: each snapshot names the sinks not applied, each reason cut, and not
    again among the reload's problems."""
    why = "sink side: cannot open /srv/" + "x" * 5_000
    ops.daemon.reloads.note(
        Outcome(result="partial", problems=[f"sinks.side: {why}"], failed_sinks={"side": why})
    )
    response = await ops.http.get(f"{ops.base}/api/v1/status/stream")
    ops.opened.append(response)
    (frame,) = await Stream(response).take(1)
    reload = msgspec.json.decode(frame.data)["reload"]
    assert reload["last_problems"] == []
    failed = reload["failed_sinks"]
    assert list(failed) == ["side"]
    assert failed["side"].startswith("cannot open /srv/xxx")
    assert len(failed["side"]) == page.MAX_PROBLEM_CHARS
