"""The daemon SIGKILLed and nats-server restarted during publishing: the stream holds every event
exactly once, in order.

The file sink (exactly-once across restarts) is the reference: the stream's Msg-Ids must be the
file's event ids, one for one, in the same (seq) order.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import msgspec
import nats

from tests.e2e.test_restart import _ids, events_in, start, wait_for, write_config
from tests.integration.test_nats import NatsServer
from tradebus.simulators.ttmt import TtmtSimulator


async def stream_ids(url: str, stream: str) -> list[str]:
    nc = await nats.connect(url)
    try:
        jsm = nc.jsm()
        info = await jsm.stream_info(stream)
        msgs = [await jsm.get_msg(stream, s) for s in range(1, info.state.messages + 1)]
    finally:
        await nc.close()
    return [(m.headers or {})["Nats-Msg-Id"] for m in msgs]


async def running(config: Path, sim: TtmtSimulator) -> asyncio.subprocess.Process:
    """The daemon, started and connected to the simulator (ids produced from now on reach it)."""
    before = len(sim.attempts)
    proc = await start(config)
    await wait_for(lambda: len(sim.attempts) > before, 20)
    return proc


async def test_sigkills_and_a_server_restart_leave_each_event_once_in_order(
    tmp_path: Path,
) -> None:
    """SIGKILL twice, nats-server killed and restarted once: stream == file sink, in order."""
    node = NatsServer(tmp_path / "nats")
    node.start()
    sim = TtmtSimulator(seed=3, rate=200.0)
    await sim.start()
    out = tmp_path / "events.jsonl"
    try:
        nats_sink = (
            f'\n[[sinks]]\nname = "bus"\ntype = "nats"\nservers = ["{node.url}"]\n'
            'stream = "E2E"\nsubject_prefix = "e2e"\nack_timeout = 1.0\nconnect_timeout = 1.0\n'
        )
        config = write_config(tmp_path, sim, sinks=nats_sink)
        for _ in range(2):
            proc = await running(config, sim)
            target = sim.last_event_id + 20
            await wait_for(lambda: target in set(_ids(out)), 20)  # noqa: B023
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
        proc = await running(config, sim)
        target = sim.last_event_id + 20
        await wait_for(lambda: target in set(_ids(out)), 20)
        node.kill()  # while the daemon publishes
        await asyncio.sleep(0.5)  # an outage of some length, during which events keep coming
        node.start()
        target = sim.last_event_id + 40
        await wait_for(lambda: target in set(_ids(out)), 30)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
        ids = await stream_ids(node.url, "E2E")
    finally:
        await sim.stop()
        node.kill()
    expected = [e.id for e in events_in(out)]
    assert len(expected) > 100
    assert ids == expected
    assert msgspec.json.decode(out.read_bytes().splitlines()[0])["id"] == ids[0]
