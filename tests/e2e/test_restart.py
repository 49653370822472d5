"""The daemon as a real process, SIGKILLed mid-stream and restarted: nothing lost, nothing twice.

The TTMT simulator runs in the test's loop and is the ground truth: every eventId it produced is
either in the file sink exactly once or inside a ``status.gap`` the daemon wrote.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
from pathlib import Path

import msgspec
import pytest

from tradebus.schemas.events import Event, StatusGap
from tradebus.simulators.ttmt import TtmtSimulator

TRADEBUS = [sys.executable, "-m", "tradebus"]


def write_config(
    tmp_path: Path, sim: TtmtSimulator, *, sinks: str = "", source: str = "feed"
) -> Path:
    table = sim.source_table(source)
    source = "".join(f"{k} = {msgspec.json.encode(v).decode()}\n" for k, v in table.items())
    path = tmp_path / "tradebus.toml"
    path.write_text(
        f'[daemon]\nlog_format = "json"\nstate_dir = "{tmp_path / "state"}"\n'
        f"drain_timeout = 5.0\n\n[[sources]]\n{source}reconnect_min = 0.05\n"
        'reconnect_max = 0.2\n\n[[sinks]]\nname = "archive"\ntype = "file"\n'
        f'path = "{tmp_path / "events.jsonl"}"\n{sinks}'
    )
    return path


async def start(config: Path, **kw: object) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *TRADEBUS,
        "run",
        "-c",
        str(config),
        stdin=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        stdout=kw.pop("stdout", asyncio.subprocess.DEVNULL),  # type: ignore[arg-type]
    )


def events_in(path: Path) -> list[Event]:
    data = path.read_bytes() if path.exists() else b""
    return [msgspec.json.decode(line, type=Event) for line in data.splitlines()]


async def wait_for(cond: object, timeout: float) -> None:
    """Poll the file a separate process writes: nothing in this process can signal it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():  # type: ignore[operator]
        if loop.time() > deadline:
            pytest.fail(f"not reached in {timeout}s")
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("seed", [1, 2])
async def test_sigkill_at_random_moments_loses_nothing_and_writes_nothing_twice(
    tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    sim = TtmtSimulator(seed=seed, rate=60.0)
    await sim.start()
    # Nothing before the first connect: on a loaded machine the first start could take longer
    # than the upstream's replay buffer lasts (100 events, 1.7 s at this rate), and what a first
    # start never saw is no gap of ours. Restarts later in the test may still outrun it.
    sim.pause()
    out = tmp_path / "events.jsonl"
    try:
        config = write_config(tmp_path, sim)
        for _ in range(3):
            proc = await start(config)
            before = len(sim.attempts)
            await wait_for(lambda: len(sim.attempts) > before, 20)  # noqa: B023
            sim.unpause()
            await asyncio.sleep(rng.uniform(0.2, 1.5))  # the moment of the kill, by the seed
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
        before = len(sim.attempts)
        proc = await start(config)
        await wait_for(lambda: len(sim.attempts) > before, 20)  # it runs: SIGTERM is handled
        target = sim.last_event_id + 10  # produced after this start
        await wait_for(lambda: target in set(_ids(out)), 30)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        await sim.stop()
    events = events_in(out)
    seqs = [e.seq for e in events]
    assert seqs == sorted(set(seqs)), "a line was written twice or out of order"
    assert len({e.id for e in events}) == len(events)
    got = set(_ids(out))
    gaps = [e for e in events if isinstance(e, StatusGap)]
    missing = {
        n
        for g in gaps
        if g.data.first_missing is not None and g.data.last_missing is not None
        for n in range(g.data.first_missing, g.data.last_missing + 1)
    }
    produced = set(range(1, target + 1))
    assert produced - got <= missing, f"lost without a gap: {sorted(produced - got - missing)}"


def _ids(path: Path) -> list[int]:
    out: list[int] = []
    data = path.read_bytes() if path.exists() else b""
    for line in data.splitlines():
        head = msgspec.json.decode(line)
        if head.get("provider") == "ttmt" and not head["type"].startswith("status"):
            n = int(head["id"].split(":")[1].split("#")[0])
            if not out or out[-1] != n:
                out.append(n)
    return out


async def test_a_stdout_reader_that_stops_stalls_only_stdout(tmp_path: Path) -> None:
    """stdout not read for a while: the file sink keeps the upstream's pace; then stdout gets
    every event in order, none twice."""
    sim = TtmtSimulator(seed=3, rate=400.0)
    await sim.start()
    out = tmp_path / "events.jsonl"
    try:
        config = write_config(
            tmp_path, sim, sinks='\n[[sinks]]\nname = "console"\ntype = "stdout"\n'
        )
        proc = await start(config, stdout=asyncio.subprocess.PIPE)
        assert proc.stdout is not None
        await wait_for(lambda: len(_ids(out)) > 0, 20)
        # Nobody reads stdout now: the pipe (64 KiB) fills within a fraction of a second.
        stalled_at = sim.last_event_id
        await asyncio.sleep(4.0)
        await wait_for(lambda: max(_ids(out), default=0) >= sim.last_event_id - 100, 5)
        assert sim.last_event_id - stalled_at > 1000  # the upstream went on, and so did the file
        read = asyncio.create_task(proc.stdout.read())
        target = sim.last_event_id
        await wait_for(lambda: target in set(_ids(out)), 20)
        os.kill(proc.pid, signal.SIGTERM)
        data = await asyncio.wait_for(read, 30)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        await sim.stop()
    printed = [msgspec.json.decode(line)["seq"] for line in data.splitlines()]
    filed = [e.seq for e in events_in(out)]
    assert printed == filed
