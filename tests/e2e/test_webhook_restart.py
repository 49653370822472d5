"""Webhook receiver down while the daemon is SIGKILLed and restarted: everything arrives after.

The receiver is refused (nothing listens on its port) through two kills and restarts; once it
listens, every event the TTMT simulator produced arrives, and an event delivered twice carries
the same webhook-id both times (``json`` format: the webhook-id is the event id).
"""

from __future__ import annotations

import asyncio
import random
import signal
import socket
from collections import defaultdict
from pathlib import Path

import msgspec
from aiohttp import web

from tests.e2e.test_restart import start, wait_for
from tradebus.simulators.ttmt import TtmtSimulator


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def upstream_id(event_id: str) -> int | None:
    rest = event_id.split(":", 1)[1].split("#", maxsplit=1)[0]
    return int(rest) if rest.isdigit() else None


async def test_receiver_down_through_sigkills_gets_every_event_once_it_is_back(
    tmp_path: Path,
) -> None:
    rng = random.Random(7)
    sim = TtmtSimulator(seed=7, rate=40.0)
    await sim.start()
    port = free_port()
    table = sim.source_table("feed")
    source = "".join(f"{k} = {msgspec.json.encode(v).decode()}\n" for k, v in table.items())
    config = tmp_path / "tradebus.toml"
    config.write_text(
        f'[daemon]\nlog_format = "json"\nstate_dir = "{tmp_path / "state"}"\n'
        f"drain_timeout = 5.0\n\n[[sources]]\n{source}\n"
        '[[sinks]]\nname = "hook"\ntype = "webhook"\nformat = "json"\n'
        f'url = "http://127.0.0.1:{port}/hook"\nretry_base = 0.05\nretry_cap = 0.3\n'
    )
    deliveries: dict[str, set[str]] = defaultdict(set)
    seen: set[int] = set()

    async def hook(request: web.Request) -> web.Response:
        event = msgspec.json.decode(await request.read())
        deliveries[event["id"]].add(request.headers["webhook-id"])
        if (n := upstream_id(event["id"])) is not None and event["type"] != "status.gap":
            seen.add(n)
        return web.Response(status=204)

    runner: web.AppRunner | None = None
    try:
        for _ in range(2):
            before = len(sim.attempts)
            proc = await start(config)
            await wait_for(lambda: len(sim.attempts) > before, 20)  # noqa: B023
            await asyncio.sleep(rng.uniform(0.3, 1.2))
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
        before = len(sim.attempts)
        proc = await start(config)
        await wait_for(lambda: len(sim.attempts) > before, 20)
        app = web.Application()
        app.router.add_post("/hook", hook)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        target = sim.last_event_id + 10
        await wait_for(lambda: target in seen, 30)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        if runner is not None:
            await runner.cleanup()
        await sim.stop()
    missing = set(range(1, target + 1)) - seen
    assert not missing, f"never delivered: {sorted(missing)[:20]}"
    assert all(len(ids) == 1 for ids in deliveries.values()), "a duplicate with a new webhook-id"
