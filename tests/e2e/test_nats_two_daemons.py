"""Scale-out: two daemons, each with its own upstream, source and state dir, feed one stream; a
consumer of that stream reads every event of both exactly once.

Each daemon's file sink is the reference for what it delivered (exactly-once across restarts).
One daemon is SIGKILLed and restarted on the way, so its replay reaches the stream again and the
Msg-Id dedupe is what keeps the consumer's view free of duplicates.
"""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from pathlib import Path

import nats
from nats.aio.msg import Msg

from tests.e2e.test_nats_restart import running, stream_ids
from tests.e2e.test_restart import _ids, events_in, wait_for, write_config
from tests.integration.test_nats import NatsServer
from tradebus.simulators.ttmt import TtmtSimulator

STREAM = "SCALE"


def _sink(url: str) -> str:
    return (
        f'\n[[sinks]]\nname = "bus"\ntype = "nats"\nservers = ["{url}"]\nstream = "{STREAM}"\n'
        'subject_prefix = "scale"\nack_timeout = 1.0\nconnect_timeout = 1.0\n'
    )


async def test_two_daemons_feed_one_stream_and_a_consumer_reads_both_once(tmp_path: Path) -> None:
    node = NatsServer(tmp_path / "nats")
    node.start()
    sims = [TtmtSimulator(seed=5, rate=200.0), TtmtSimulator(seed=6, rate=200.0)]
    for sim in sims:
        await sim.start()
    dirs = [tmp_path / "a", tmp_path / "b"]
    configs = []
    for d, sim, source in zip(dirs, sims, ("desk-a", "desk-b"), strict=True):
        d.mkdir()
        configs.append(write_config(d, sim, sinks=_sink(node.url), source=source))
    outs = [d / "events.jsonl" for d in dirs]
    seen: list[str] = []
    got_all = asyncio.Event()
    wanted: set[str] = set()

    async def consume(msg: Msg) -> None:
        seen.append((msg.headers or {})["Nats-Msg-Id"])
        if wanted and wanted <= set(seen):
            got_all.set()

    nc = await nats.connect(node.url)
    try:
        procs = [await running(c, s) for c, s in zip(configs, sims, strict=True)]
        for out, sim in zip(outs, sims, strict=True):
            target = sim.last_event_id + 10
            await wait_for(lambda: target in set(_ids(out)), 20)  # noqa: B023
        # The consumer joins a stream both daemons already write, and reads it live from seq 1.
        sub = await nc.jetstream().subscribe("scale.>", cb=consume, ordered_consumer=True)
        procs[0].send_signal(signal.SIGKILL)  # daemon a dies mid-stream; b goes on
        await procs[0].wait()
        procs[0] = await running(configs[0], sims[0])
        for out, sim in zip(outs, sims, strict=True):
            target = sim.last_event_id + 20
            await wait_for(lambda: target in set(_ids(out)), 20)  # noqa: B023
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            assert await asyncio.wait_for(proc.wait(), 20) == 0
        per_daemon = [[e.id for e in events_in(out)] for out in outs]
        wanted.update(*per_daemon)
        await consume_done(got_all, seen, wanted)
        await sub.unsubscribe()
        stored = await stream_ids(node.url, STREAM)
    finally:
        await nc.close()
        for sim in sims:
            await sim.stop()
        node.kill()
    assert all(len(ids) > 50 for ids in per_daemon)
    assert {i.split(":")[0] for ids in per_daemon for i in ids} == {"desk-a", "desk-b"}
    dupes = [i for i, n in Counter(seen).items() if n > 1]
    assert not dupes, f"read twice: {dupes[:5]}"
    assert set(seen) == wanted
    assert sorted(stored) == sorted(seen)  # the stream holds exactly what was read
    for source, ids in zip(("desk-a", "desk-b"), per_daemon, strict=True):
        assert [i for i in seen if i.startswith(source + ":")] == ids, f"{source} out of order"


async def consume_done(done: asyncio.Event, seen: list[str], wanted: set[str]) -> None:
    """The consumer callback sets ``done`` at the read that completes ``wanted``; it may already
    have happened before ``wanted`` was known."""
    if wanted <= set(seen):
        return
    try:
        await asyncio.wait_for(done.wait(), 20)
    except TimeoutError:
        missing = sorted(wanted - set(seen))
        raise AssertionError(f"{len(missing)} never read, e.g. {missing[:5]}") from None
