"""`tradebus replay --speed 1` keeps the recorded pacing: within 5% over 10 s."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.e2e.process import TRADEBUS
from tests.recorded import framed, records_of
from tradebus import times
from tradebus.recording import format as fmt

KEPT = Path(__file__).resolve().parents[1] / "recordings" / "ttmt-recycle.jsonl.zst"
SPAN = 10.0


def paced_recording(path: Path) -> int:
    """The kept TTMT recording's events on one connection, one a read, spread over 10 s."""
    records = records_of(KEPT)
    header, start, opened, answer = records[:4]
    assert isinstance(opened, fmt.Open)
    assert isinstance(answer, fmt.Response)
    text = "".join(r.text or "" for r in records[4:] if isinstance(r, fmt.Recv))
    events = [e + "\n\n" for e in text.split("\n\n") if e.startswith("id:")]
    t0 = answer.t
    reads = [
        fmt.Recv(t=t0 + SPAN * i / (len(events) - 1), conn=opened.conn, text=e)
        for i, e in enumerate(events)
    ]
    end = fmt.End(t=t0 + SPAN)
    path.write_bytes(framed([header, start, opened, answer, *reads, end])[0])
    return len(events)


@pytest.mark.slow
async def test_speed_one_keeps_the_recorded_pacing_within_five_percent(tmp_path: Path) -> None:
    """Each line comes out when its read came in, relative to the first, within 5% of the
    10 s the recording spans; the whole replay takes those 10 s, not less."""
    path = tmp_path / "paced.jsonl.zst"
    reads = paced_recording(path)
    assert reads >= 8
    proc = await asyncio.create_subprocess_exec(
        *TRADEBUS,
        "replay",
        str(path),
        "--speed",
        "1",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    loop = asyncio.get_running_loop()
    seen: list[tuple[float, float]] = []  # (arrived, recorded) per data line
    async with asyncio.timeout(SPAN * 3):
        while line := await proc.stdout.readline():
            event = json.loads(line)
            if not event["type"].startswith("status."):
                seen.append((loop.time(), times.to_epoch(event["received"])))
        await proc.wait()
    assert len(seen) >= reads
    first_arrived, first_recorded = seen[0]
    drift = [
        abs((arrived - first_arrived) - (recorded - first_recorded)) for arrived, recorded in seen
    ]
    assert max(drift) <= 0.05 * SPAN
    span = seen[-1][0] - first_arrived
    assert abs(span - SPAN) <= 0.05 * SPAN
