"""`tradebus simulate replay` serves a recording as its upstream: a real daemon connected to it
makes the lines `tradebus replay` makes, but for what the daemon's own clock stamps."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tests.e2e.process import run_cli
from tests.recorded import live, replayed
from tradebus.recording import files
from tradebus.simulators.replay import ReplaySimulator

KEPT = Path(__file__).resolve().parents[1] / "recordings"
# A connected source after the recording's end retries; what it says then is the daemon's.
STATUS = "status."


def comparable(lines: list[bytes]) -> list[Any]:
    """Data events whole but for ``seq`` and ``received`` (and the time of one the upstream
    did not stamp, which is its receipt time, in its id too); status events by type and reason
    (their ids and times are the daemon's own clock)."""
    out: list[Any] = []
    for line in lines:
        event = msgspec.json.decode(line)
        event.pop("seq")
        received = event.pop("received")
        if event["time"] == received:
            event["time"] = "<received>"
            event["id"] = event["id"].replace(received, "<received>")
        if event["type"].startswith(STATUS):
            event = (event["type"], event["data"].get("reason"))
        out.append(event)
    return out


def data_count(lines: list[bytes]) -> int:
    return sum(not msgspec.json.decode(line)["type"].startswith(STATUS) for line in lines)


@pytest.mark.parametrize("case", ["ttmt-recycle", "traderws-backfill", "mt4-reconcile"])
async def test_a_daemon_on_a_served_recording_makes_the_replays_lines(
    tmp_path: Path, case: str
) -> None:
    """Every data event as the replay gives it, in its order, with the status events between
    (the connects, the recycles and cuts as they were recorded)."""
    path = KEPT / f"{case}.jsonl.zst"
    expected, _ = await asyncio.to_thread(replayed, [path])
    sim = ReplaySimulator(files.runs([path]), speed=4.0)
    await sim.start()
    try:
        table = sim.source_table(files.header(path).source)
        async with live(tmp_path, {**table, "record": False}) as (_, lines):
            await lines.wait_for(lambda s: data_count(s.lines) >= data_count(expected))
            want = comparable(expected)
            # The recording's last connection ends the way it ended; after it the daemon's
            # reconnects meet a server with nothing more to give.
            await lines.wait_for(lambda s: len(s.lines) >= len(want))
    finally:
        await sim.stop()
    got = comparable(lines.lines)
    assert got[: len(want) - 1] == want[:-1]
    assert want[-1][0] in ("status.disconnected", "status.error")
    assert got[len(want) - 1][0] in ("status.disconnected", "status.error")
    assert sim.served >= len(sim.recorded) - 2


async def test_simulate_replay_on_the_command_line_refuses_in_one_line(tmp_path: Path) -> None:
    """No recording, or several sources without --source: one line, exit 2."""
    code, _, err = await run_cli("simulate", "replay", str(tmp_path))
    assert code == 2
    assert err.decode().endswith("no recording files (.jsonl.zst) there\n")
    code, _, err = await run_cli(
        "simulate",
        "replay",
        str(KEPT / "ttmt-recycle.jsonl.zst"),
        str(KEPT / "mt4-reconcile.jsonl.zst"),
    )
    assert code == 2
    assert err.decode() == (
        "tradebus simulate replay: the files hold recordings of mt4, ttmt-main: "
        "name one with --source\n"
    )
