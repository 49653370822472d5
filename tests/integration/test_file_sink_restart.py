"""The file sink across restarts of a real daemon: a lost state dir, a second daemon."""

from __future__ import annotations

import asyncio
import shutil
from functools import partial
from pathlib import Path
from typing import Any

import msgspec
import pytest
from structlog.testing import capture_logs

from tests.unit.deliverykit import quote
from tradebus import config
from tradebus.adapters.base import SourceContext
from tradebus.daemon.app import Daemon


class Run:
    """Publishes ``count`` quotes tagged with ``run`` in batches of two, then idles."""

    def __init__(
        self, run: str, count: int, done: asyncio.Event, cfg: Any, ctx: SourceContext
    ) -> None:
        self.name = cfg.name
        self.ctx = ctx
        self.quotes = [quote(n, source=f"{self.name}-{run}") for n in range(1, count + 1)]
        self.done = done

    async def run(self) -> None:
        for i in range(0, len(self.quotes), 2):
            await self.ctx.publish(self.quotes[i : i + 2])
        self.done.set()
        await asyncio.Event().wait()


def archive_config(state: Path, archive: Path, delivery: str = "process") -> config.Config:
    return config.parse(
        {
            "daemon": {"state_dir": str(state), "drain_timeout": 5, "delivery": delivery},
            "sources": [
                {"name": "t", "type": "ttmt", "url": "http://127.0.0.1:1/", "api_key": "k"}
            ],
            "sinks": [{"name": "archive", "type": "file", "path": str(archive)}],
        },
        env={},
    )


async def run_daemon(cfg: config.Config, run: str, count: int) -> None:
    """One daemon from start to a drained stop, its source publishing ``count`` quotes."""
    done = asyncio.Event()
    daemon = Daemon(cfg, factories={"ttmt": partial(Run, run, count, done)})
    stop = asyncio.Event()
    running = asyncio.create_task(daemon.run(stop))
    await asyncio.wait_for(done.wait(), 10)
    stop.set()
    assert await asyncio.wait_for(running, 10)


def ids(path: Path) -> list[str]:
    return [msgspec.json.decode(line)["id"] for line in path.read_bytes().splitlines()]


@pytest.mark.parametrize("delivery", ["process", "inline"])
async def test_a_lost_state_dir_does_not_drop_the_file_sinks_output(
    tmp_path: Path, delivery: str
) -> None:
    """Run, stop, remove the state dir, run again: the new journal numbers from 1 again, and
    the file gains every event of the second run (once), after every line of the first."""
    state, archive = tmp_path / "state", tmp_path / "events.jsonl"
    cfg = archive_config(state, archive, delivery)
    await run_daemon(cfg, "first", 9)
    first = [f"t-first:{n}" for n in range(1, 10)]
    assert ids(archive) == first
    shutil.rmtree(state)
    with capture_logs() as logs:
        await run_daemon(cfg, "second", 6)
    assert ids(archive) == first + [f"t-second:{n}" for n in range(1, 7)]
    said = [e for e in logs if e["event"] == "file_holds_other_journal"]
    if delivery == "inline":  # a delivery process logs in its own process
        assert [(e["path"], e["last_seq"]) for e in said] == [(str(archive), 9)]
    # A third run on the second run's state dir: its own lines are recognised again.
    await run_daemon(cfg, "third", 2)
    assert ids(archive)[-3:] == ["t-second:6", "t-third:1", "t-third:2"]
