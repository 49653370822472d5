"""Plugins by entry point: the built-ins registered like any package, a plugin's config checked
like a built-in's, two packages claiming one type refused."""

from __future__ import annotations

import os
from importlib.metadata import distribution
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.process import run_cli, start_daemon
from tests.unit.test_config import installed
from tradebus import config
from tradebus.errors import ConfigError
from tradebus.plugin import SINKS, SOURCES, SinkPlugin, SourcePlugin
from tradebus.registry import Registry
from tradebus.schemas.events import event_type
from tradebus.sinks.webhook import WebhookSink

FAKE_SINK = """
import msgspec
from typing import Annotated
from tradebus.config import SinkBase
from tradebus.plugin import Sink, SinkPlugin

class ColorConfig(SinkBase, tag="color", frozen=True, kw_only=True):
    size: Annotated[int, msgspec.Meta(ge=1)] = 1
    hue: str

    def __post_init__(self) -> None:
        if self.hue == "ultraviolet":
            raise ValueError("hue: expected a visible colour")

PLUGIN = SinkPlugin("color", ColorConfig, lambda config: Sink())
"""


def fake_package(tmp_path: Path, package: str, entry_points: str, modules: dict[str, str]) -> Path:
    """A distribution ``package`` importable from a folder of its own (as pip installs one)."""
    site = tmp_path / "site"
    info = site / f"{package.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(entry_points)
    for name, text in modules.items():
        (site / f"{name}.py").write_text(text)
    return site


def env_with(site: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(site)}


def a_config(tmp_path: Path, sinks: str) -> Path:
    path = tmp_path / "tradebus.toml"
    path.write_text(
        f'[daemon]\nstate_dir = "{tmp_path / "state"}"\n'
        '[[sources]]\nname = "a"\ntype = "ttmt"\nurl = "http://127.0.0.1:1/"\napi_key = "k"\n'
        f"{sinks}"
    )
    return path


def test_the_built_ins_are_entry_points_of_tradebus() -> None:
    """Each built-in sink and source is an entry point of the tradebus distribution, and the
    registry gives what it names."""
    eps = distribution("tradebus").entry_points
    assert [ep.name for ep in eps if ep.group == "tradebus.sinks"] == sorted(
        ["stdout", "file", "webhook", "nats"]
    )
    assert sorted(ep.name for ep in eps if ep.group == "tradebus.sources") == sorted(
        ["ttmt", "tpalerts", "traderws", "mt4bridge"]
    )
    assert SINKS.get("webhook").factory is WebhookSink
    assert SINKS.get("webhook").config is config.WebhookSinkConfig
    assert SOURCES.get("ttmt").config is config.TtmtSource
    assert all(SINKS.builtin(t) for t in ("stdout", "file", "webhook", "nats"))


def test_a_plugin_is_loaded_alone_by_its_reference() -> None:
    """What the delivery process does: one plugin imported from the reference the daemon gave,
    the others left alone; a reference to anything but that type's plugin is refused."""
    assert SINKS.ref("webhook") == "tradebus.sinks.webhook:PLUGIN"
    alone: Registry[SinkPlugin] = Registry("tradebus.sinks", SinkPlugin)
    assert alone.load("webhook", SINKS.ref("webhook")) is SINKS.get("webhook")
    assert alone.get("webhook") is SINKS.get("webhook")
    with pytest.raises(ConfigError, match="is not a SinkPlugin of type 'file'"):
        alone.load("file", "tradebus.sinks.webhook:PLUGIN")


async def test_a_type_claimed_twice_is_refused_naming_both_packages(tmp_path: Path) -> None:
    """A package that registers ``stdout`` again stops check-config and run at start, with one
    line naming both packages."""
    site = fake_package(
        tmp_path, "tradebus-sink-rival", "[tradebus.sinks]\nstdout = rival:PLUGIN\n", {}
    )
    path = a_config(tmp_path, '[[sinks]]\nname = "out"\ntype = "stdout"\n')
    for command in ("check-config", "run"):
        code, out, err = await run_cli(command, "-c", str(path), env=env_with(site))
        assert code == 2
        assert out == b""
        assert err.decode().splitlines() == [
            "config error: tradebus.sinks: type 'stdout' is claimed by two installed packages,"
            " tradebus and tradebus-sink-rival: uninstall one"
        ]


async def test_an_entry_point_that_is_no_plugin_is_refused(tmp_path: Path) -> None:
    """An entry point naming something else than a SinkPlugin of its type is named, not run."""
    site = fake_package(
        tmp_path,
        "tradebus-sink-odd",
        "[tradebus.sinks]\nodd = odd:PLUGIN\n",
        {"odd": "PLUGIN = 1"},
    )
    path = a_config(tmp_path, '[[sinks]]\nname = "out"\ntype = "stdout"\n')
    code, _, err = await run_cli("check-config", "-c", str(path), env=env_with(site))
    assert code == 2
    assert err.decode().splitlines() == [
        "config error: tradebus.sinks: entry point 'odd' of tradebus-sink-odd (odd:PLUGIN) is"
        " not a SinkPlugin of type 'odd'"
    ]


async def test_a_plugin_config_is_checked_with_field_paths(tmp_path: Path) -> None:
    """check-config lists an installed plugin's type among the choices and checks its keys
    (unknown, wrong type, missing, its own __post_init__) with field paths like a built-in's."""
    site = fake_package(
        tmp_path,
        "tradebus-sink-color",
        "[tradebus.sinks]\ncolor = color:PLUGIN\n",
        {"color": FAKE_SINK},
    )
    env = env_with(site)
    path = a_config(
        tmp_path,
        '[[sinks]]\nname = "a"\ntype = "color"\nhue = "red"\nsize = 0\nshade = 1\n'
        '[[sinks]]\nname = "b"\ntype = "color"\n'
        '[[sinks]]\nname = "c"\ntype = "color"\nhue = "ultraviolet"\n'
        '[[sinks]]\nname = "d"\ntype = "kafka"\n',
    )
    code, out, err = await run_cli("check-config", "-c", str(path), env=env)
    assert code == 2
    assert err.decode().splitlines() == [
        "config error: sinks[0].size: expected `int` >= 1",
        "config error: sinks[0].shade: unknown field (check its spelling and section)",
        "config error: sinks[1].hue: required, not given",
        "config error: sinks[2].hue: expected a visible colour",
        "config error: sinks[3].type: unknown type 'kafka'; expected one of: stdout, file,"
        f" webhook, nats, {', '.join(sorted(['color', *installed('sinks').split(', ')[1:]]))}",
    ]
    path.write_text(
        path.read_text().replace("size = 0\nshade = 1\n", "").split('[[sinks]]\nname = "b"')[0]
    )
    code, out, err = await run_cli("check-config", "-c", str(path), env=env)
    assert (code, err) == (0, b"")
    assert b"ok (1 sources, 1 sinks)" in out


async def test_a_sink_class_missing_members_is_refused_naming_them(tmp_path: Path) -> None:
    """A sink class that is no ``Sink`` subclass and leaves out what the follower calls is
    refused at check time, naming the members, not when its follower first starts."""
    bare = FAKE_SINK.replace(
        'PLUGIN = SinkPlugin("color", ColorConfig, lambda config: Sink())',
        "class Bare:\n"
        "    async def open(self, ctx): ...\n"
        "    async def write(self, batch): ...\n"
        "    async def close(self): ...\n\n"
        'PLUGIN = SinkPlugin("color", ColorConfig, Bare)',
    )
    assert bare != FAKE_SINK
    site = fake_package(
        tmp_path, "tradebus-sink-color", "[tradebus.sinks]\ncolor = color:PLUGIN\n", {"color": bare}
    )
    path = a_config(tmp_path, '[[sinks]]\nname = "out"\ntype = "stdout"\n')
    code, _, err = await run_cli("check-config", "-c", str(path), env=env_with(site))
    assert code == 2
    assert err.decode().splitlines() == [
        "config error: tradebus.sinks: entry point 'color' of tradebus-sink-color"
        " (color:PLUGIN) cannot be loaded: sink Bare lacks reopen, metrics, errors, linger:"
        " subclass tradebus.plugin.Sink, which has their defaults"
    ]


def test_a_sink_subclass_or_a_factory_function_is_accepted() -> None:
    plugin = SINKS.get("webhook")
    assert SinkPlugin("webhook", plugin.config, WebhookSink).factory is WebhookSink

    def make(config: object) -> WebhookSink:
        return WebhookSink(config)  # type: ignore[arg-type]

    assert SinkPlugin("webhook", plugin.config, make).factory is make


FAKE_SOURCE = """
import asyncio
from tradebus import times
from tradebus.config import SourceBase
from tradebus.plugin import SourcePlugin
from tradebus.schemas.events import QuoteData, QuoteUpdated

class MetronomeConfig(SourceBase, tag="metronome", frozen=True, kw_only=True):
    ticks: int = 3

class Metronome:
    def __init__(self, config, ctx):
        self.name, self.config, self.ctx = config.name, config, ctx

    async def run(self):
        self.ctx.begin()
        now = times.from_epoch(self.ctx.transport.now())
        ticks = [
            QuoteUpdated(
                id=f"{self.name}:tick:{i}", source=self.name, provider=self.ctx.provider,
                time=now, received=now, symbol="TICK", data=QuoteData(last=float(i)),
            )
            for i in range(self.config.ticks)
        ]
        await self.ctx.publish([self.ctx.connected(), *ticks])
        await asyncio.Event().wait()

PLUGIN = SourcePlugin("metronome", MetronomeConfig, Metronome)
"""


async def test_a_source_plugin_publishes_under_its_own_provider(tmp_path: Path) -> None:
    """An installed source plugin's events carry its type as their provider: a sink filters
    on it, the lines decode as events, and the source's ``connected()`` makes it ready."""
    site = fake_package(
        tmp_path,
        "tradebus-source-metronome",
        "[tradebus.sources]\nmetronome = metronome:PLUGIN\n",
        {"metronome": FAKE_SOURCE},
    )
    path = tmp_path / "tradebus.toml"
    path.write_text(
        f'[daemon]\nlog_format = "json"\nhttp = "127.0.0.1:0"\n'
        f'state_dir = "{tmp_path / "state"}"\n'
        '[[sources]]\nname = "tick"\ntype = "metronome"\nurl = "http://127.0.0.1:1/"\n'
        '[[sinks]]\nname = "console"\ntype = "stdout"\nproviders = ["metronome"]\n'
    )
    daemon = await start_daemon(path, env={"PYTHONPATH": str(site)})
    try:
        port = (await daemon.wait_log("ops_endpoint_listening"))["port"]
        events = await daemon.read_events(4)
        assert [(event_type(e), e.provider, e.source) for e in events] == [
            ("status.connected", "metronome", "tick"),
            *[("quote.updated", "metronome", "tick")] * 3,
        ]
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/readyz") as reply,
        ):
            assert reply.status == 200
            row = (await reply.json())["sources"]["tick"]
        assert (row["connected"], row["ready"], row["events"]) == (True, True, 4)
    finally:
        daemon.proc.terminate()
        await daemon.proc.wait()


def test_a_source_type_that_cannot_be_a_provider_is_refused() -> None:
    """A type with a dot or upper case would name events in a way a NATS subject or a metric
    label must escape: the plugin is refused when it is made."""
    ttmt = SOURCES.get("ttmt")
    for bad in ("Metronome", "my.source", "", "x" * 65):
        with pytest.raises(ValueError, match="expected lower-case letters"):
            SourcePlugin(bad, ttmt.config, ttmt.factory)
    assert SourcePlugin("my-source_2", ttmt.config, ttmt.factory).type == "my-source_2"
