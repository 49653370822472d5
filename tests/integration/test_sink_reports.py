"""A dead letter in a real daemon: the file in the state dir and one status.error to the sinks."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import web

from tests.unit.deliverykit import quote
from tradebus import config
from tradebus.adapters.base import SourceContext
from tradebus.daemon.app import Daemon
from tradebus.schemas.events import StatusError


class OneQuote:
    def __init__(self, cfg: Any, ctx: SourceContext) -> None:
        self.name = cfg.name
        self.ctx = ctx

    async def run(self) -> None:
        for n in range(3):
            await self.ctx.publish([quote(n, source=self.name)])
        await asyncio.Event().wait()


def lines(path: Path) -> list[Any]:
    return [msgspec.json.decode(x) for x in path.read_bytes().splitlines()] if path.exists() else []


async def test_a_refused_event_is_dead_lettered_and_reported_once(tmp_path: Path) -> None:
    hits = 0

    async def refuse(_request: web.Request) -> web.Response:
        nonlocal hits
        hits += 1
        return web.Response(status=400, text="no")

    app = web.Application()
    app.router.add_post("/hook", refuse)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    archive = tmp_path / "events.jsonl"
    cfg = config.parse(
        {
            "daemon": {"state_dir": str(tmp_path / "state")},
            "sources": [
                {"name": "t", "type": "ttmt", "url": "http://127.0.0.1:1/", "api_key": "k"}
            ],
            "sinks": [
                {"name": "hook", "type": "webhook", "url": f"http://127.0.0.1:{port}/hook"},
                {"name": "archive", "type": "file", "path": str(archive)},
            ],
        },
        env={},
    )
    daemon = Daemon(cfg, factories={"ttmt": OneQuote})
    stop = asyncio.Event()
    running = asyncio.create_task(daemon.run(stop))
    dead = tmp_path / "state" / "dead-letter-hook.jsonl"

    async def reported() -> None:
        while not any(e["type"] == "status.error" for e in lines(archive)):  # noqa: ASYNC110
            await asyncio.sleep(0.02)  # another sink's file: nothing in the loop signals it

    await asyncio.wait_for(reported(), 10)
    stop.set()
    assert await running
    await runner.cleanup()
    letters = lines(dead)
    assert sum(len(x["events"]) for x in letters) >= 3
    errors = [e for e in lines(archive) if e["type"] == "status.error"]
    assert len(errors) == 1  # one a minute at most, though every event was refused
    error = msgspec.convert(errors[0], StatusError)
    assert error.data.reason == "dead_letter"
    assert error.data.code == "hook"
    assert error.provider == "tradebus"
