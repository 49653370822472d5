"""``tradebus tail`` against a running daemon: its lines, its filters, and a restart of the
daemon that it rides out with no event missing or repeated."""

from __future__ import annotations

import asyncio
import re
import signal
from pathlib import Path

import msgspec

from tests.e2e.delivery_rig import Rig, rig
from tests.e2e.process import TRADEBUS


async def start_tail(r: Rig, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *TRADEBUS,
        "tail",
        "--url",
        f"http://127.0.0.1:{r.http}",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def lines(proc: asyncio.subprocess.Process, n: int, timeout: float = 20) -> list[bytes]:
    assert proc.stdout is not None
    async with asyncio.timeout(timeout):
        return [await proc.stdout.readline() for _ in range(n)]


async def stop(proc: asyncio.subprocess.Process) -> bytes:
    proc.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(proc.communicate(), 10)
    return err


async def test_tail_filters_and_resumes_after_a_restart(tmp_path: Path) -> None:
    """--type order. --json: only order events, raw; across a daemon restart the seqs go on
    with none missing or repeated (the file sink's order events are the truth)."""
    async with rig(tmp_path, feeds=1, rate=300.0) as r:
        r.write(daemon="drain_timeout = 5.0")
        daemon = await r.start()
        await r.until_ready(lambda b: b["sources"]["feed0"]["connected"], 20)
        tail = await start_tail(r, "--from", "earliest", "--type", "order.", "--json")
        try:
            got = await lines(tail, 30)
            daemon.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(daemon.wait(), 20) == 0
            before_restart = max(line["seq"] for line in r.lines())
            daemon = await r.start()
            got += await lines(tail, 60)
            while msgspec.json.decode(got[-1])["seq"] <= before_restart:
                got += await lines(tail, 1)  # on to an event of the second run
        finally:
            err = await stop(tail)
            daemon.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(daemon.wait(), 20) == 0
    events = [msgspec.json.decode(raw) for raw in got]
    assert {e["type"].split(".")[0] for e in events} == {"order"}
    seqs = [e["seq"] for e in events]
    filed = [line["seq"] for line in r.lines() if line["type"].startswith("order.")]
    assert seqs == filed[: len(seqs)], "an order event missing or repeated"
    assert b"retrying" in err
    assert b"reconnected, resuming after seq" in err


async def test_tail_prints_one_readable_line_per_event(tmp_path: Path) -> None:
    """Without --json: time, source, type and symbol columns, no escapes when not a terminal,
    and only the source asked for."""
    async with rig(tmp_path, feeds=2) as r:
        r.write()
        daemon = await r.start()
        await r.until_ready(lambda b: b["sources"]["feed1"]["connected"], 20)
        tail = await start_tail(r, "--from", "earliest", "--source", "feed1")
        try:
            got = [raw.decode() for raw in await lines(tail, 10)]
        finally:
            await stop(tail)
            daemon.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(daemon.wait(), 20) == 0
    for text in got:
        stamp, source, kind, *_ = text.split()
        assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3}", stamp)
        assert source == "feed1"
        assert "." in kind
        assert "\033" not in text
