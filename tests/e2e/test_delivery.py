"""Delivery as its own process (and inline): killed, stopped, stalled, behind. The TTMT
simulators are the ground truth; the file sink must hold each event once, in order."""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import signal
import stat
import time
from pathlib import Path

import msgspec
import pytest

from tests.e2e.delivery_rig import gone, rig, wait_for
from tradebus.journal.store import Journal


def assert_once_in_order(seqs: list[int]) -> None:
    assert seqs == sorted(set(seqs)), "a line was written twice or out of order"


@pytest.mark.parametrize("seed", [1, 2])
async def test_sigkilled_delivery_is_restarted_and_loses_nothing(tmp_path: Path, seed: int) -> None:
    """SIGKILL the delivery process at random moments while two feeds stream: the feeds stay
    connected, each kill is counted, the file sink has every event once, the webhook at least
    once."""
    rng = random.Random(seed)
    async with rig(tmp_path) as r:
        r.write(daemon="drain_timeout = 5.0", sinks=r.hook("jsonl"))
        proc = await r.start()
        pid = await r.delivery_pid()
        for _ in range(3):
            await asyncio.sleep(rng.uniform(0.2, 1.0))  # the moment of the kill, by the seed
            os.kill(pid, signal.SIGKILL)
            pid = await r.delivery_pid(other_than=pid)
        assert await r.metric("tradebus_delivery_restarts_total") == 3
        targets = {f"feed{i}": sim.last_event_id + 20 for i, sim in enumerate(r.sims)}
        await wait_for(lambda: all(r.holds(s, t) for s, t in targets.items()), 30)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
        assert [len(sim.attempts) for sim in r.sims] == [1, 1]  # never disconnected
    assert_once_in_order([line["seq"] for line in r.lines()])
    for source, target in targets.items():
        r.assert_nothing_lost(source, target)
        assert not r.lost(source)  # the feeds never disconnected: no gap at all
    filed = {line["id"] for line in r.lines()}
    assert filed <= set(r.receiver.ids)


async def test_a_sigkilled_daemon_takes_its_delivery_process_within_a_second(
    tmp_path: Path,
) -> None:
    """No orphan: the delivery process exits within 1 s of the daemon's SIGKILL; the next start
    resumes with nothing lost and no line twice."""
    async with rig(tmp_path, feeds=1) as r:
        r.write(daemon="drain_timeout = 5.0")
        proc = await r.start()
        child = await r.delivery_pid()
        await wait_for(lambda: len(r.ttmt_ids().get("feed0", [])) > 20, 20)
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        killed = time.monotonic()
        await wait_for(lambda: gone(child), 2)
        assert time.monotonic() - killed < 1.0
        proc = await r.start()
        target = await r.connected_target("feed0", r.sims[0])
        await wait_for(lambda: r.holds("feed0", target), 30)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    assert_once_in_order([line["seq"] for line in r.lines()])
    r.assert_nothing_lost("feed0", target)


@pytest.mark.parametrize("delivery", ["process", "inline"])
async def test_sigterm_to_every_process_at_once_exits_0_with_everything_delivered(
    tmp_path: Path, delivery: str
) -> None:
    """systemd's KillMode=control-group: SIGTERM reaches the daemon and its delivery process
    at the same instant; both exit 0 and the file holds everything the journal does."""
    async with rig(tmp_path) as r:
        r.write(delivery=delivery, daemon="drain_timeout = 5.0")
        proc = await r.start()
        child = await r.delivery_pid()
        await wait_for(lambda: sum(map(len, r.ttmt_ids().values())) > 50, 20)
        pids = {proc.pid, child}
        for pid in pids:
            os.kill(pid, signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 15) == 0
        await wait_for(lambda: gone(child), 2)
    journal, _ = Journal.open(r.state)
    last = journal.last_seq
    journal.close()
    assert [line["seq"] for line in r.lines()] == list(range(1, last + 1))
    assert len(pids) == (2 if delivery == "process" else 1)


@pytest.mark.parametrize("delivery", ["process", "inline"])
async def test_a_stalled_stdout_and_a_hung_webhook_hold_back_neither_the_file_nor_the_stop(
    tmp_path: Path, delivery: str
) -> None:
    """stdout not read and a webhook receiver that never answers: the file keeps the feed's
    pace, a stop returns within drain_timeout (exit 0), and once both recover every event
    reaches them, in order."""
    async with rig(tmp_path, feeds=1, rate=400.0) as r:
        console = '\n[[sinks]]\nname = "console"\ntype = "stdout"\n'
        r.write(delivery=delivery, daemon="drain_timeout = 2.0", sinks=r.hook() + console)
        r.receiver.mode = "hang"
        proc = await r.start(stdout=asyncio.subprocess.PIPE)
        await wait_for(lambda: len(r.ttmt_ids().get("feed0", [])) > 0, 20)
        stalled_at = r.sims[0].last_event_id
        await asyncio.sleep(3.0)  # nobody reads stdout: the pipe fills in a fraction of this
        await wait_for(lambda: r.holds("feed0", r.sims[0].last_event_id - 100), 5)
        assert r.sims[0].last_event_id - stalled_at > 800  # the feed went on, and so did the file
        stopping = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.stdout is not None
        printed_before = await asyncio.wait_for(proc.stdout.read(), 10)  # EOF: it exited
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        assert time.monotonic() - stopping < 2.0 + 1.5
        # Both recover: the receiver answers, stdout is read.
        r.receiver.mode = "ok"
        r.receiver.release.set()
        proc = await r.start(stdout=asyncio.subprocess.PIPE)
        assert proc.stdout is not None
        reading = asyncio.create_task(proc.stdout.read())
        target = await r.connected_target("feed0", r.sims[0])
        await wait_for(lambda: r.holds("feed0", target), 30)
        filed = [line["id"] for line in r.lines()]
        await wait_for(lambda: set(filed) <= set(r.receiver.ids), 30)
        proc.send_signal(signal.SIGTERM)
        printed = printed_before + await asyncio.wait_for(reading, 20)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    seqs = [line["seq"] for line in r.lines()]
    assert_once_in_order(seqs)
    r.assert_nothing_lost("feed0", target)
    assert [msgspec.json.decode(x)["seq"] for x in printed.splitlines()] == seqs
    hooked = [i for i, _ in itertools.groupby(r.receiver.ids)]  # a resent request, once
    assert [i for i in hooked if i in set(filed)][: len(filed)] == filed


@pytest.mark.parametrize("delivery", ["process", "inline"])
async def test_a_sink_past_its_max_lag_is_not_ready_until_it_catches_up(
    tmp_path: Path, delivery: str
) -> None:
    """/readyz is 503 naming the sink while it lags past max_lag, 200 again once it caught up."""
    async with rig(tmp_path, feeds=1, rate=100.0) as r:
        r.write(delivery=delivery, sinks=r.hook(extra="max_lag = 1.0\n"))
        r.receiver.mode = "hang"
        proc = await r.start()
        await r.until_ready(lambda b: b["sources"]["feed0"]["connected"], 20)
        await r.until_ready(lambda b: not b["sinks"]["hook"]["ready"], 10)
        status, body = await r.readyz()
        assert status == 503
        assert body["sinks"]["hook"]["lag_seconds"] > 1.0
        assert body["sinks"]["archive"]["ready"]
        r.receiver.mode = "ok"
        r.receiver.release.set()
        await r.until_ready(lambda b: b["ready"], 15)
        status, body = await r.readyz()
        assert status == 200
        assert body["sinks"]["hook"]["lag_seconds"] < 1.0
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0


@pytest.mark.parametrize("delivery", ["process", "inline"])
async def test_a_file_sink_on_a_blocked_disk_does_not_hold_the_stop(
    tmp_path: Path, delivery: str
) -> None:
    """A file target that blocks (a FIFO nobody reads): the stop still returns within
    drain_timeout and exits 0; what was not written stays in the journal."""
    async with rig(tmp_path, feeds=1, rate=100.0) as r:
        r.write(delivery=delivery, daemon="drain_timeout = 2.0")
        fifo = r.out
        os.mkfifo(fifo)
        assert stat.S_ISFIFO(fifo.stat().st_mode)
        proc = await r.start()
        await r.until_ready(lambda b: b["sources"]["feed0"]["connected"], 20)
        await asyncio.sleep(0.5)  # events journaled that the sink cannot write
        stopping = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 15) == 0
        assert time.monotonic() - stopping < 2.0 + 1.5


async def test_a_slow_receiver_moves_the_cursor_with_every_acknowledged_request(
    tmp_path: Path,
) -> None:
    """A receiver that takes 25 ms a request, the daemon stopped three times with a backlog:
    each stop resends at most the one request it cut, and every stop reports progress."""
    async with rig(tmp_path, feeds=1, rate=200.0) as r:
        r.write(daemon="drain_timeout = 0.5", sinks=r.hook("json"))
        r.receiver.delay = 0.025
        for _ in range(3):
            proc = await r.start(stderr=asyncio.subprocess.PIPE)
            before = len(r.receiver.ids)
            await wait_for(lambda: len(r.receiver.ids) > before + 20, 20)  # noqa: B023
            await asyncio.sleep(1.0)
            proc.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(proc.communicate(), 20)
            assert proc.returncode == 0
            assert b'"event": "delivery_not_drained"' in err  # 200/s against 40/s: behind
    counts = [len(list(g)) for _, g in itertools.groupby(sorted(r.receiver.ids))]
    assert sum(c - 1 for c in counts) <= 3


@pytest.mark.parametrize("delivery", ["process", "inline"])
async def test_a_sink_that_cannot_deliver_says_so(tmp_path: Path, delivery: str) -> None:
    """Receiver down, then refusing: /readyz shows the retries and the error, not ready; a
    refused batch is counted as a dead letter; once it takes requests, ready again."""
    async with rig(tmp_path, feeds=1, rate=50.0) as r:
        url = r.receiver.url
        await r.receiver.stop()  # nothing listens: connection refused
        r.write(delivery=delivery, sinks=r.hook("json"))
        proc = await r.start()
        await r.until_ready(lambda b: b["sinks"]["hook"]["retries"] > 0, 20)
        status, body = await r.readyz()
        hook = body["sinks"]["hook"]
        assert status == 503
        assert hook["error"]
        assert not hook["ready"]
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
        r.receiver.mode = "refuse"
        r.receiver.release.clear()
        await r.receiver.start()
        r.write(delivery=delivery, sinks=r.hook("json").replace(url, r.receiver.url))
        proc = await r.start()
        await r.until_ready(lambda b: b["sinks"]["hook"]["dead_letters"] > 0, 20)
        _, body = await r.readyz()
        assert body["sinks"]["hook"]["error"].startswith("HTTP 400")
        assert not body["sinks"]["hook"]["ready"]
        r.receiver.mode = "ok"
        await r.until_ready(lambda b: b["sinks"]["hook"]["ready"], 20)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
