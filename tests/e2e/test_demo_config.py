"""config/demo.toml works against the simulators started with their command-line defaults."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import msgspec

from tradebus import config
from tradebus.cli import build_parser
from tradebus.config import StdoutSinkConfig
from tradebus.daemon.app import Daemon
from tradebus.schemas.events import Event, event_type
from tradebus.simulators.base import Simulator
from tradebus.sinks.base import Batch, Sink, SinkContext

REPO = Path(__file__).resolve().parents[2]


class Memory(Sink):
    """A sink that keeps events and lets the test await one real event per provider."""

    needs_events = True
    max_batch = 0

    def __init__(self) -> None:
        self.name = "console"
        self.events: list[Event] = []
        self.changed = asyncio.Condition()

    async def open(self, ctx: SinkContext) -> None:
        pass

    async def write(self, batch: Batch) -> None:
        async with self.changed:
            self.events.extend(batch.events)
            self.changed.notify_all()

    async def close(self) -> None:
        pass

    def reopen(self) -> None:
        pass

    def providers_with_data(self) -> set[str]:
        return {e.provider for e in self.events if not event_type(e).startswith("status.")}


def _with_port(url: str, port: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"127.0.0.1:{port}"))


async def test_demo_toml_defaults_match_the_simulators_defaults(tmp_path: Path) -> None:
    """Each demo.toml source, pointed at `tradebus simulate KIND` (defaults), yields events."""
    cfg = config.load(REPO / "config" / "demo.toml", env={"TRADEBUS_STATE_DIR": str(tmp_path)})
    parser = build_parser()
    sims: list[Simulator] = []
    sources = []
    try:
        for source in cfg.sources:
            args = parser.parse_args(["simulate", config.kind(source), "--rate", "20"])
            sim = args.sim_module.from_cli(args)
            await sim.start("127.0.0.1", 0)
            sims.append(sim)
            sources.append(msgspec.structs.replace(source, url=_with_port(source.url, sim.port)))
        cfg = msgspec.structs.replace(
            cfg, sources=sources, sinks=[StdoutSinkConfig(name="console")]
        )
        sink = Memory()
        daemon = Daemon(cfg, sinks=[sink])
        stop = asyncio.Event()
        running = asyncio.create_task(daemon.run(stop))
        async with sink.changed:
            await asyncio.wait_for(
                sink.changed.wait_for(lambda: len(sink.providers_with_data()) == 4), 20
            )
        stop.set()
        assert await running
        assert not [e for e in sink.events if event_type(e) in ("status.auth_failed",)]
    finally:
        for sim in sims:
            await sim.stop()
