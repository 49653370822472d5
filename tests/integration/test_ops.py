"""The ops endpoint over a real socket: /healthz, /readyz with per-source state, /metrics."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from tests import tools
from tradebus import config
from tradebus.adapters.base import SourceContext
from tradebus.daemon.app import Daemon, start_ops
from tradebus.daemon.ops import OpsServer
from tradebus.delivery.links import InlineDelivery
from tradebus.errors import ConfigError, FatalSinkError
from tradebus.plugin import sink_factory
from tradebus.schemas.events import QuoteData, QuoteUpdated
from tradebus.secret import Secret
from tradebus.sinks import base as sink_base
from tradebus.sinks.base import Batch, SinkContext

T = "2026-06-09T14:32:01.123Z"
ANY = "0.0.0.0"  # noqa: S104 - bound for a moment, to see the warning it earns


class Idle:
    """A source whose events the test publishes through its context."""

    def __init__(self, cfg: Any, _ctx: SourceContext) -> None:
        self.name = cfg.name

    async def run(self) -> None:
        await asyncio.Event().wait()


class Sink(sink_base.Sink):
    needs_events = False
    max_batch = 0

    def __init__(self, name: str) -> None:
        self.name = name
        self.fail = False
        self.counters: dict[str, float] = {}  # what ``metrics()`` reports

    async def open(self, ctx: SinkContext) -> None:
        pass

    async def write(self, _batch: Batch) -> None:
        if self.fail:
            raise FatalSinkError("disk gone")

    async def close(self) -> None:
        pass

    def reopen(self) -> None:
        pass

    def metrics(self) -> dict[str, float]:
        return self.counters


def two_sources(state: Path) -> config.Config:
    source = {"type": "ttmt", "url": "http://127.0.0.1:1/s", "api_key": "k"}
    return config.parse(
        {
            "daemon": {"http": "127.0.0.1:0", "state_dir": str(state)},
            "sources": [
                {**source, "name": "main"},
                {**source, "name": "spare", "required": False},
            ],
            "sinks": [{"name": "out", "type": "stdout"}],
        },
        env={},
    )


class Running:
    def __init__(self, daemon: Daemon, ops: OpsServer, http: aiohttp.ClientSession) -> None:
        self.daemon, self.ops, self.http = daemon, ops, http
        assert isinstance(daemon.link, InlineDelivery)
        self.follower = daemon.link.delivery.followers[0]
        self.sink: Sink = self.follower.sink  # type: ignore[assignment]

    async def get(self, path: str) -> tuple[int, bytes]:
        async with self.http.get(f"http://127.0.0.1:{self.ops.port}{path}") as r:
            return r.status, await r.read()

    async def readyz(self) -> tuple[int, dict[str, Any]]:
        async with self.http.get(f"http://127.0.0.1:{self.ops.port}/readyz") as r:
            return r.status, await r.json()

    async def publish(self, source: str, *events: Any) -> None:
        await self.daemon.contexts[source].publish(list(events))

    async def turns(self, done: Callable[[], bool]) -> None:
        """Let the sink worker task run (it writes on its next turns of the loop)."""
        for _ in range(1000):
            if done():
                return
            await asyncio.sleep(0)
        raise AssertionError("the sink worker never got there")

    @property
    def contexts(self) -> dict[str, SourceContext]:
        return self.daemon.contexts

    def quote(self, source: str, n: int) -> QuoteUpdated:
        return QuoteUpdated(
            id=f"{source}:{n}", source=source, provider="ttmt", time=T, received=T, data=QuoteData()
        )


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    daemon = Daemon(two_sources(tmp_path), sinks=[Sink("out")], factories={"ttmt": Idle})
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(stop))
    await asyncio.wait_for(daemon.ready.wait(), 5)
    ops = await start_ops(daemon)
    assert ops is not None
    async with aiohttp.ClientSession() as http:
        yield Running(daemon, ops, http)
    await ops.stop()
    stop.set()
    await task


async def test_healthz_answers_while_the_loop_turns(running: Running) -> None:
    """/healthz is 200 from the start, before any source connected."""
    assert await running.get("/healthz") == (200, b"ok\n")


async def test_readyz_follows_connects_and_disconnects(running: Running) -> None:
    """503 until the required source connects, 200 then, 503 again once it drops."""
    status, body = await running.readyz()
    assert status == 503
    assert body["sources"]["main"]["connected"] is False
    await running.publish("main", running.contexts["main"].connected())
    await running.publish("main", running.quote("main", 1), running.quote("main", 2))
    status, body = await running.readyz()
    assert status == 200, body
    main = body["sources"]["main"]
    assert main["connected"] is True
    assert main["events"] == 3
    assert main["reconnects"] == 0
    assert 0 <= main["last_event_age"] < 5
    assert body["sources"]["spare"]["ready"] is True  # not required: never connected, still ready
    await running.turns(lambda: running.follower.written == 3)
    status, body = await running.readyz()
    assert body["sinks"]["out"] == {
        "state": "idle",
        "written": 3,
        "failed": False,
        "retries": 0,
        "backlog": 0,
        "cursor": 3,
        "lag_seconds": 0.0,
        "max_lag": 60.0,
        "gaps": 0,
        "dead_letters": 0,
        "error": None,
        "last_error": None,
        "ready": True,
    }
    assert body["delivery"] == {
        "mode": "inline",
        "pid": os.getpid(),
        "running": True,
        "restarts": 0,
    }
    await running.publish(
        "main", running.contexts["main"].disconnected("read_timeout", planned=False, retry_in=1.0)
    )
    status, body = await running.readyz()
    assert status == 503
    assert body["sources"]["main"]["last_error"] == "status.disconnected:read_timeout"
    await running.publish("main", running.contexts["main"].connected())
    status, body = await running.readyz()
    assert status == 200
    assert body["sources"]["main"]["reconnects"] == 1


async def test_a_planned_reconnect_keeps_readiness_within_the_grace(running: Running) -> None:
    """A planned reconnect (a TTMT recycle) keeps the source ready while it is under way, and
    no longer than its grace."""
    await running.publish("main", running.contexts["main"].connected())
    await running.publish(
        "main", running.contexts["main"].disconnected("recycle", planned=True, retry_in=0.0)
    )
    status, body = await running.readyz()
    assert status == 200
    assert body["sources"]["main"]["connected"] is False
    assert body["sources"]["main"]["last_error"] is None
    running.contexts["main"].reconnect_grace = 0.0  # an adapter may shorten its grace
    status, body = await running.readyz()
    assert status == 503
    assert body["sources"]["main"]["ready"] is False


async def test_a_reload_that_restarts_a_source_keeps_it_ready_within_the_grace(
    tmp_path: Path,
) -> None:
    """A source a reload restarts goes down with ``config_reloaded``, planned: ready still,
    with no error, until its grace runs out."""
    path = tmp_path / "tradebus.toml"
    text = (
        f'[daemon]\nhttp = "127.0.0.1:0"\nstate_dir = "{tmp_path / "state"}"\n'
        '[[sources]]\nname = "main"\ntype = "ttmt"\nurl = "http://127.0.0.1:1/s"\n'
        'api_key = "k"\n[[sinks]]\nname = "out"\ntype = "stdout"\n'
    )
    path.write_text(text)
    daemon = Daemon(
        config.load(path), sinks=[Sink("out")], factories={"ttmt": Idle}, config_path=path
    )
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(stop))
    try:
        await asyncio.wait_for(daemon.ready.wait(), 5)
        ctx = daemon.contexts["main"]
        await ctx.publish([ctx.connected()])
        path.write_text(text.replace('api_key = "k"', 'api_key = "k"\nread_timeout = 99.0'))
        assert (await daemon.reload()).result == "applied"
        row = daemon.state()["sources"]["main"]
        assert (row["connected"], row["ready"], row["last_error"]) == (False, True, None)
        assert (ctx.last_reason, ctx.planned) == ("config_reloaded", True)
        ctx.reconnect_grace = 0.0
        assert daemon.state()["ready"] is False
    finally:
        stop.set()
        await task


async def test_readyz_fails_once_a_sink_fails(running: Running) -> None:
    """A sink that failed for good makes the daemon not ready, and says which."""
    await running.publish("main", running.contexts["main"].connected())
    running.sink.fail = True
    await running.publish("main", running.quote("main", 1))
    await running.turns(lambda: running.follower.failed)
    status, body = await running.readyz()
    assert status == 503
    assert body["sinks"]["out"]["failed"] is True
    assert body["sinks"]["out"]["last_error"] == "disk gone"
    # What it never acknowledged stays its backlog, behind its cursor, for after a restart.
    out = body["sinks"]["out"]
    assert out["backlog"] >= 1
    assert out["cursor"] + out["backlog"] == running.daemon.bus.last_seq == 2


async def _scrape(running: Running) -> str:
    status, body = await running.get("/metrics")
    assert status == 200
    return body.decode()


async def test_metrics_parse_with_prometheus_clients_parser(running: Running) -> None:
    """/metrics is valid exposition with the counters by source, type and sink."""
    ctx = running.daemon.contexts["main"]
    await running.publish("main", running.contexts["main"].connected())
    await running.publish("main", running.quote("main", 1), running.quote("main", 2))
    await running.publish("main", ctx.gap(first_missing=3, last_missing=4, reason="replay"))
    ctx.bad_input("malformed", b"{")
    ctx.unknown_type("newThing")
    ctx.counters["time_fallback"] += 2  # as the adapters count junk upstream times
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(await _scrape(running))
        for s in family.samples
    }
    src = (("source", "main"),)
    assert samples["tradebus_source_events_total", (*src, ("type", "quote.updated"))] == 2
    assert samples["tradebus_source_events_total", (*src, ("type", "status.gap"))] == 1
    assert samples["tradebus_source_bad_input_total", (("kind", "malformed"), *src)] == 1
    assert samples["tradebus_source_unknown_types_total", src] == 1
    assert samples["tradebus_source_time_fallback_total", src] == 2
    assert samples["tradebus_source_gaps_total", src] == 1
    assert samples["tradebus_source_connected", src] == 1
    assert samples["tradebus_source_connected", (("source", "spare"),)] == 0
    assert samples["tradebus_bus_events_total", ()] == 4
    assert samples["tradebus_sink_failed", (("sink", "out"),)] == 0
    assert ("tradebus_sink_backlog_events", (("sink", "out"),)) in samples
    assert ("tradebus_sink_cursor_seq", (("sink", "out"),)) in samples
    assert ("tradebus_source_last_event_age_seconds", src) in samples
    assert all(name.startswith("tradebus_") for name, _ in samples)
    # Latency: every event the sink acknowledged is observed once, in a finite bucket.
    await running.turns(lambda: running.follower.written == 4)
    latency = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(await _scrape(running))
        for s in family.samples
        if s.name.startswith("tradebus_sink_latency_seconds")
    }
    out = ("sink", "out")
    assert latency["tradebus_sink_latency_seconds_count", (out,)] == 4
    assert latency["tradebus_sink_latency_seconds_bucket", (("le", "60.0"), out)] == 4
    assert latency["tradebus_sink_latency_seconds_sum", (out,)] < 60
    # A sink without a dead-letter count reads 0; one that keeps it (a webhook) is read.
    assert samples["tradebus_sink_dead_letters_total", (("sink", "out"),)] == 0
    running.sink.counters["dead_letters"] = 2
    again = text_string_to_metric_families(await _scrape(running))
    dead = [s for f in again for s in f.samples if s.name == "tradebus_sink_dead_letters_total"]
    assert [s.value for s in dead] == [2]
    _, body = await running.readyz()
    assert body["sinks"]["out"]["dead_letters"] == 2


# The counters the NATS and webhook sinks report (``metrics()``), by key, and each one's family.
SINK_COUNTERS = {
    "acked": "tradebus_sink_nats_acked_total",
    "duplicates": "tradebus_sink_nats_duplicates_total",
    "disconnects": "tradebus_sink_nats_disconnects_total",
    "reconnects": "tradebus_sink_nats_reconnects_total",
    "delivered": "tradebus_sink_webhook_delivered_total",
    "retries": "tradebus_sink_webhook_retries_total",
}


async def _sink_samples(running: Running) -> dict[str, dict[str, float]]:
    """Each sink-specific family's samples, by sink."""
    found: dict[str, dict[str, float]] = {name: {} for name in SINK_COUNTERS.values()}
    for family in text_string_to_metric_families(await _scrape(running)):
        for s in family.samples:
            if s.name in found:
                found[s.name][s.labels["sink"]] = s.value
    return found


async def test_nats_and_webhook_counters_only_for_a_sink_that_keeps_them(
    running: Running,
) -> None:
    """A sink without the counters has no sample in their families; one with them (the NATS
    sink keeps the first four, the webhook sink the last two) reports each, labelled by sink."""
    assert await _sink_samples(running) == {name: {} for name in SINK_COUNTERS.values()}
    running.sink.counters.update(
        acked=40, duplicates=2, disconnects=1, reconnects=1, delivered=38, retries=3
    )
    assert await _sink_samples(running) == {
        SINK_COUNTERS["acked"]: {"out": 40},
        SINK_COUNTERS["duplicates"]: {"out": 2},
        SINK_COUNTERS["disconnects"]: {"out": 1},
        SINK_COUNTERS["reconnects"]: {"out": 1},
        SINK_COUNTERS["delivered"]: {"out": 38},
        SINK_COUNTERS["retries"]: {"out": 3},
    }
    # A sink's row counts its own retries too (a webhook retries requests inside one write):
    # a sink that cannot deliver never reads "retries 0".
    _, body = await running.readyz()
    assert body["sinks"]["out"]["retries"] == 3


def test_the_nats_and_webhook_sinks_keep_the_counters_read() -> None:
    """The keys exported are what the real sinks' ``metrics()`` report (a rename would
    silently empty the families)."""
    cfg = config.parse(
        {
            **_minimal(),
            "sinks": [
                {"name": "bus", "type": "nats", "servers": ["nats://127.0.0.1:4222"]},
                {"name": "hook", "type": "webhook", "url": "http://127.0.0.1:1/hook"},
            ],
        },
        env={},
    )
    nats, hook = (sink_factory(config.kind(s))(s) for s in cfg.sinks)
    assert dict(nats.metrics()) == dict.fromkeys(list(SINK_COUNTERS)[:4], 0)
    # The webhook's dead letters feed tradebus_sink_dead_letters, every sink's row.
    assert dict(hook.metrics()) == dict.fromkeys([*list(SINK_COUNTERS)[4:], "dead_letters"], 0)


@pytest.mark.tool("promtool")
async def test_promtool_accepts_the_metrics(running: Running) -> None:
    """``promtool check metrics`` finds nothing to complain about (lint included), the sink
    specific counters with samples in them."""
    await running.publish("main", running.contexts["main"].connected())
    for n, key in enumerate(SINK_COUNTERS, 1):
        running.sink.counters[key] = n
    result = subprocess.run(  # noqa: ASYNC221, S603 - our fixed command, once
        [tools.path("promtool"), "check", "metrics"],
        input=(await _scrape(running)).encode(),
        capture_output=True,
        check=False,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


async def test_binding_beyond_loopback_is_logged(tmp_path: Path) -> None:
    """A non-loopback address (with its token) is allowed and said so in the log."""
    cfg = config.with_overrides(
        two_sources(tmp_path),
        daemon=config.DaemonConfig(
            http=f"{ANY}:0", state_dir=str(tmp_path), http_token=Secret("ops-test-token-2b8e41d0")
        ),
    )
    daemon = Daemon(cfg, sinks=[Sink("out")], factories={"ttmt": Idle})
    with capture_logs() as logs:
        ops = await start_ops(daemon)
    assert ops is not None
    await ops.stop()
    assert any(e["event"] == "ops_endpoint_public" and e["host"] == ANY for e in logs)


def test_http_address_is_checked_in_the_config() -> None:
    """A malformed ``[daemon] http`` names the field."""
    with pytest.raises(ConfigError) as err:
        config.parse({**_minimal(), "daemon": {"http": "9464"}}, env={})
    assert err.value.problems == ["daemon.http: expected host:port, got '9464'"]


def _minimal() -> dict[str, Any]:
    return {
        "sources": [{"name": "t", "type": "ttmt", "url": "http://h/s", "api_key": "k"}],
        "sinks": [{"name": "o", "type": "stdout"}],
    }


async def test_a_recording_source_shows_its_path_and_bytes(tmp_path: Path) -> None:
    """record = true: /metrics has the bytes written and the file's path, /readyz the same;
    a source that does not record has neither."""
    cfg = two_sources(tmp_path)
    recording = [msgspec.structs.replace(cfg.sources[0], record=True), cfg.sources[1]]
    daemon = Daemon(
        config.with_overrides(cfg, sources=recording), sinks=[Sink("out")], factories={"ttmt": Idle}
    )
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(stop))
    ops = await start_ops(daemon)
    assert ops is not None
    try:
        transport = daemon.contexts["main"].transport
        for _ in range(500):  # the recorder's thread opens the file
            if transport.path is not None and transport.recorded_bytes:
                break
            await asyncio.sleep(0.01)
        async with aiohttp.ClientSession() as http:
            running = Running(daemon, ops, http)
            _, body = await running.readyz()
            samples = {
                (s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(await _scrape(running))
                for s in family.samples
            }
    finally:
        await ops.stop()
        stop.set()
        await task
    path = transport.path
    assert path is not None
    assert Path(path).parent == tmp_path / "recordings" / "main"
    main = body["sources"]["main"]
    assert (main["recording"], main["recorded_bytes"] > 0) == (path, True)
    assert (body["sources"]["spare"]["recording"], body["sources"]["spare"]["recorded_bytes"]) == (
        None,
        0,
    )
    assert samples["tradebus_source_recorded_bytes_total", (("source", "main"),)] > 0
    assert samples["tradebus_source_recording", (("path", path), ("source", "main"))] == 1
    assert not [
        k for k in samples if k[0].startswith("tradebus_source_record") and "spare" in str(k)
    ]


async def test_reload_with_a_token_configured_needs_it_even_from_loopback(
    tmp_path: Path,
) -> None:
    """With ``http_token`` set, ``POST /-/reload`` over 127.0.0.1 without the token is 401;
    with it, the handler answers (422: this daemon was not started from a file)."""
    token = "ops-test-token-7c1f93ae"
    cfg = config.with_overrides(
        two_sources(tmp_path),
        daemon=config.DaemonConfig(
            http="127.0.0.1:0", state_dir=str(tmp_path), http_token=Secret(token)
        ),
    )
    daemon = Daemon(cfg, sinks=[Sink("out")], factories={"ttmt": Idle})
    ops = await start_ops(daemon)
    assert ops is not None
    url = f"http://127.0.0.1:{ops.port}/-/reload"
    try:
        async with aiohttp.ClientSession() as http:
            for headers in ({}, {"Authorization": "Bearer not-the-token-000000"}):
                async with http.post(url, headers=headers) as resp:
                    assert resp.status == 401
                    assert token not in await resp.text()
            auth = {"Authorization": f"Bearer {token}"}
            async with http.post(url, headers=auth) as resp:
                assert resp.status == 422
                assert (await resp.json())["problems"] == [
                    "reload: the daemon was not started from a file"
                ]
    finally:
        await ops.stop()
