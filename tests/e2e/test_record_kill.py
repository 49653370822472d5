"""A daemon SIGKILLed while it records: the recording reads back to within its last second."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

from tests.e2e.test_restart import start, wait_for, write_config
from tests.recorded import replayed
from tradebus.recording import files
from tradebus.recording import format as fmt
from tradebus.simulators.ttmt import TtmtSimulator


async def test_a_recording_cut_by_sigkill_reads_back_up_to_its_last_second(
    tmp_path: Path,
) -> None:
    """Events flow until the kill; every record read back is whole, the newest is less than a
    second older than the kill, at most the frame being written is reported, and the replay of
    what is there runs to its end."""
    sim = TtmtSimulator(seed=2, rate=300.0, api_keys=("kill-test-key",), lifetime=0.7)
    await sim.start()
    try:
        config = write_config(tmp_path, sim)
        config.write_text(
            config.read_text().replace("reconnect_min", "record = true\nreconnect_min")
        )
        proc = await start(config)
        recordings = tmp_path / "state" / "recordings" / "feed"

        def size() -> int:
            return sum(p.stat().st_size for p in recordings.glob("*.zst"))

        await wait_for(lambda: size() > 20_000, 30)
        for _ in range(2):  # two more flushes: the kill lands while frames keep coming
            grown = size()
            await wait_for(lambda: size() > grown, 5)  # noqa: B023
        killed_at = time.time()
        os.kill(proc.pid, signal.SIGKILL)
        await proc.wait()
    finally:
        await sim.stop()
    (path,) = sorted(recordings.glob("*.zst"))
    items = list(files.items(path))
    damage = [i for i in items if isinstance(i, fmt.Damage)]
    records = [i.record for i in items if isinstance(i, fmt.Line)]
    assert len(damage) <= 1
    assert not any(isinstance(r, fmt.End) for r in records)  # it never got to say goodbye
    newest = max(r.t for r in records)
    assert killed_at - 1.0 <= newest <= killed_at
    recvs = [r for r in records if isinstance(r, fmt.Recv)]
    assert len(recvs) > 20
    lines, stats = await asyncio.to_thread(replayed, [path])
    assert stats.crashed is None
    assert len(lines) > 100
