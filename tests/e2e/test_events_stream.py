"""``/api/v1/events`` of a daemon process: resumed across a restart with nothing missing or
repeated; a client that stops reading slows nothing and costs no memory."""

from __future__ import annotations

import asyncio
import signal
import socket
from pathlib import Path

import aiohttp
import h11
import msgspec

from tests.e2e.delivery_rig import Rig, rig, wait_for
from tradebus.sse import SSEDecoder, SSEMessage


async def read_stream(
    r: Rig, decoder: SSEDecoder, got: list[SSEMessage], query: str = "from=earliest"
) -> None:
    """Read the stream into ``got`` until the daemon ends it; resume from the decoder's last id."""
    headers = {"Last-Event-ID": decoder.last_event_id} if decoder.last_event_id else {}
    url = f"http://127.0.0.1:{r.http}/api/v1/events?{query}"
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as response:
        assert response.status == 200
        async for chunk in response.content.iter_any():
            got += decoder.feed(chunk)
    decoder.close()


async def test_last_event_id_resumes_across_a_restart(tmp_path: Path) -> None:
    """Stopped and started again, the daemon gives a client back everything after its
    Last-Event-ID: the seqs it read are those the file sink holds, each once, in order."""
    async with rig(tmp_path, feeds=1, rate=300.0) as r:
        r.write(daemon="drain_timeout = 5.0")
        decoder, got = SSEDecoder(), list[SSEMessage]()
        for _ in range(2):
            proc = await r.start()
            await r.until_ready(lambda b: b["sources"]["feed0"]["connected"], 20)
            reading = asyncio.create_task(read_stream(r, decoder, got))
            before = len(got)
            await wait_for(lambda n=before: len(got) > n + 200, 20, lambda: len(got))  # type: ignore[misc]
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 20) == 0
            await asyncio.wait_for(reading, 10)  # the stop ends the stream
    filed = {line["seq"]: line["id"] for line in r.lines()}
    seqs = [int(m.id or 0) for m in got]
    assert seqs == list(range(1, len(seqs) + 1)), "a seq missing or repeated"
    assert [msgspec.json.decode(m.data)["id"] for m in got] == [filed[s] for s in seqs]


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def test_a_stalled_client_slows_nothing_and_costs_no_memory(tmp_path: Path) -> None:
    """At 5,000 events/s, a client that stops reading for 10 s: the file sink keeps pace with
    the bus and the daemon's RSS stays within 10%; the client then gets every seq in order
    (or a status.gap for what retention deleted meanwhile)."""
    async with rig(tmp_path, feeds=2, rate=2500.0) as r:
        r.write(daemon="drain_timeout = 5.0")
        proc = await r.start()
        await r.until_ready(lambda b: all(s["connected"] for s in b["sources"].values()), 20)
        await asyncio.sleep(5)  # warm: allocator pools, segment files, the stream code paths
        stalled = socket.socket()
        # Set before the connect, so the window stays this small: with the server's send
        # buffer (4 MiB at most) it holds a few seconds of the feeds; the stall outlasts it.
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
        stalled.connect(("127.0.0.1", r.http))
        http = h11.Connection(h11.CLIENT)
        path = b"/api/v1/events?from=earliest"
        stalled.sendall(http.send(h11.Request(method="GET", target=path, headers=[("Host", "x")])))
        stalled.sendall(http.send(h11.EndOfMessage()))
        try:
            published0 = await r.metric("tradebus_bus_events_total")
            written0 = await r.metric('tradebus_sink_events_total{sink="archive"}')
            rss0 = rss_kib(proc.pid)
            await asyncio.sleep(10)  # the stall itself is what is measured
            published = await r.metric("tradebus_bus_events_total") - published0
            written = await r.metric('tradebus_sink_events_total{sink="archive"}') - written0
            rss = rss_kib(proc.pid)
            assert published > 40_000, published  # the feeds did stream at about 5,000/s
            assert written >= 0.9 * published, (written, published)
            assert abs(rss - rss0) <= 0.1 * rss0, (rss0, rss)
            # The client was held, not dropped: reading now, it gets seq 1, 2, 3, ... in order.
            stalled.setblocking(False)
            assert_every_seq_or_a_gap(await read_frames(stalled, http, 20_000))
        finally:
            stalled.close()
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 20) == 0


async def read_frames(sock: socket.socket, http: h11.Connection, n: int) -> list[SSEMessage]:
    """The first ``n`` SSE frames of the response on ``sock``."""
    loop = asyncio.get_running_loop()
    decoder, frames = SSEDecoder(), list[SSEMessage]()
    while len(frames) < n:
        event = http.next_event()
        if event is h11.NEED_DATA:
            http.receive_data(await asyncio.wait_for(loop.sock_recv(sock, 1 << 16), 10))
        elif isinstance(event, h11.Response):
            assert event.status_code == 200
        elif isinstance(event, h11.Data):
            frames += decoder.feed(bytes(event.data))
        else:
            raise AssertionError(f"the stream ended: {event!r}")
    return frames[:n]


def assert_every_seq_or_a_gap(frames: list[SSEMessage]) -> None:
    """From seq 1 on, each seq comes once in order, or a status.gap names it (retention deletes
    what every sink has passed: the stream holds no cursor)."""
    expected = 1
    for frame in frames:
        event = msgspec.json.decode(frame.data)
        if event["type"] == "status.gap" and event["source"] == "journal":
            assert event["data"]["first_missing"] == expected
            expected = event["data"]["last_missing"] + 1
            assert frame.id == str(expected - 1)
        else:
            assert (frame.id, event["seq"]) == (str(expected), expected)
            expected += 1
