"""Trader WS adapter against the simulator over 127.0.0.1: auth, subscriptions, cuts, back-fill."""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp
import msgspec
import pytest

from tests import hostile
from tests.conftest import Collector
from tradebus import config, log
from tradebus.adapters.base import SourceContext
from tradebus.adapters.traderws.adapter import TraderWsAdapter
from tradebus.config import TraderWsSource
from tradebus.schemas.events import Event, GapData, StatusData, event_type
from tradebus.simulators.traderws import TraderWsSimulator

USER = "trader-7"
PASSWORD = "pw-Kx93-never-logged"
EXPECTED_SUBSCRIPTIONS = {
    ("quoteEvent", "EURUSD"),
    ("quoteEvent", "GBPUSD"),
    ("executionEvent", "EURUSD"),
    ("executionEvent", "GBPUSD"),
    ("portfolioEvent", "EURUSD"),
    ("portfolioEvent", "GBPUSD"),
    ("depthEvent", "EURUSD", "5"),
    ("metricsEvent", "acc_123"),
}


def simulator(**kwargs: Any) -> TraderWsSimulator:
    options: dict[str, Any] = {"rate": 40.0, "seed": 7, "auto_fills": False, **kwargs}
    return TraderWsSimulator(username=USER, password=PASSWORD, **options)


@pytest.fixture
async def sim() -> AsyncIterator[TraderWsSimulator]:
    server = simulator()
    await server.start()
    yield server
    await server.stop()


def source(server: TraderWsSimulator, **overrides: Any) -> TraderWsSource:
    table = {
        **server.source_table("tws"),
        "reconnect_min": 0.01,
        "reconnect_max": 0.05,
        "auth_retry": 0.2,
        "ping_interval": 0.2,
        "ping_timeout": 0.5,
        "idle_timeout": 5.0,
        "subscribe_timeout": 2.0,
        "connect_timeout": 2.0,
        **overrides,
    }
    parsed = config.parse({"sources": [table], "sinks": [{"type": "stdout", "name": "out"}]})
    cfg = parsed.sources[0]
    assert isinstance(cfg, TraderWsSource)
    return cfg


# A status event's type, and the source's state (up, planned, last error) as it was published.
State = tuple[str, bool, bool, str | None]


@contextlib.asynccontextmanager
async def running(
    cfg: TraderWsSource,
    collector: Collector,
    history: Sequence[Event] = (),
    states: list[State] | None = None,
) -> AsyncIterator[SourceContext]:
    async def publish(events: Sequence[Event]) -> None:
        if states is not None:
            states.extend(
                (event_type(e), ctx.up, ctx.planned, ctx.last_error)
                for e in events
                if event_type(e).startswith("status.")
            )
        await collector.publish(events)

    ctx = SourceContext(cfg.name, "traderws", publish, history=history)
    task = asyncio.ensure_future(TraderWsAdapter(cfg, ctx).run())
    try:
        yield ctx
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def statuses(collector: Collector, type_: str) -> list[StatusData]:
    out: list[StatusData] = []
    for e in collector.of_type(type_):
        assert isinstance(e.data, StatusData)
        out.append(e.data)
    return out


def executions(collector: Collector) -> list[str]:
    return [e.id for e in collector.events if event_type(e).startswith("order.")]


def index_of(collector: Collector, event_id: str) -> int:
    return next(i for i, e in enumerate(collector.events) if e.id == event_id)


def exec_ids(made: list[dict[str, Any]]) -> list[str]:
    return [f"tws:exec:{ex['executionId']}" for ex in made]


async def test_login_subscribe_and_stream(sim: TraderWsSimulator, collector: Collector) -> None:
    """Logs in once, subscribes the configured set and streams only subscribed symbols."""
    async with running(source(sim), collector):
        await collector.wait_count("status.connected", 1)
        await collector.wait_count("quote.updated", 10)
        await collector.wait_count("depth.updated", 1)
    assert len(sim.login_attempts) == 1
    assert sim.connections[0].subscriptions == EXPECTED_SUBSCRIPTIONS
    assert {e.symbol for e in collector.of_type("quote.updated")} <= {"EURUSD", "GBPUSD"}
    depth = collector.of_type("depth.updated")[0]
    assert (depth.symbol, len(depth.data.bids), len(depth.data.asks)) == ("EURUSD", 5, 5)  # type: ignore[union-attr]
    assert collector.types()[0] == "status.connected"


async def test_resubscribe_after_cut(sim: TraderWsSimulator, collector: Collector) -> None:
    """After a cut the adapter reconnects with the same token and the same subscription set."""
    async with running(source(sim), collector):
        await collector.wait_count("status.connected", 1)
        sim.cut()
        await collector.wait_count("status.connected", 2)
    assert [d.reason for d in statuses(collector, "status.disconnected")] == ["connection_lost"]
    assert len(sim.login_attempts) == 1
    assert len(sim.connections) == 2
    assert sim.connections[0].subscriptions == sim.connections[1].subscriptions
    assert sim.connections[1].subscriptions == EXPECTED_SUBSCRIPTIONS


async def test_expired_token_logs_in_again(collector: Collector) -> None:
    """A token past its lifetime closes the socket (4001); the adapter logs in again at once."""
    server = simulator(token_lifetime=3.0)
    await server.start()
    states: list[State] = []
    try:
        async with running(source(server), collector, (), states):
            await collector.wait_count("status.connected", 2, timeout=15)
    finally:
        await server.stop()
    # A renewal on schedule is a planned reconnect: no error, ready within the grace.
    assert states[:3] == [
        ("status.connected", True, False, None),
        ("status.disconnected", False, True, None),
        ("status.connected", True, False, None),
    ]
    [gone] = statuses(collector, "status.disconnected")
    assert (gone.reason, gone.code) == ("token_expired", "4001")
    assert statuses(collector, "status.auth_failed") == []
    assert len(server.login_attempts) == 2
    assert server.connections[0].token != server.connections[1].token


async def test_revoked_token_is_auth_failure_then_relogin(
    sim: TraderWsSimulator, collector: Collector
) -> None:
    """A token the server revokes (4001 while our clock says valid) → auth_failed, slow re-login."""
    async with running(source(sim), collector):
        await collector.wait_count("status.connected", 1)
        await sim.expire_tokens()
        await collector.wait_count("status.connected", 2)
    [failed] = statuses(collector, "status.auth_failed")
    assert (failed.reason, failed.code) == ("token_rejected", "4001")
    assert failed.retry_in is not None
    assert 0.1 <= failed.retry_in <= 0.2
    assert len(sim.login_attempts) == 2


async def test_login_rejected_is_auth_failed_without_hot_loop(
    sim: TraderWsSimulator, collector: Collector
) -> None:
    """Login 401 → status.auth_failed each time, retried no faster than auth_retry allows."""
    sim.reject_logins = True
    async with running(source(sim), collector):
        await collector.wait_count("status.auth_failed", 3)
        failed = statuses(collector, "status.auth_failed")
        attempts = list(sim.login_attempts)
        sim.reject_logins = False
        await collector.wait_count("status.connected", 1)
    assert [(d.reason, d.code) for d in failed[:3]] == [("login_rejected", "401")] * 3
    assert all(d.retry_in is not None and 0.1 <= d.retry_in <= 0.2 for d in failed)
    assert len(attempts) in (len(failed), len(failed) + 1)
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert min(gaps) >= 0.09
    assert sim.connections[0].subscriptions == EXPECTED_SUBSCRIPTIONS


async def test_stall_is_ping_timeout(sim: TraderWsSimulator, collector: Collector) -> None:
    """A server that stops answering pings → status.disconnected ping_timeout, then reconnect."""
    async with running(source(sim), collector):
        await collector.wait_count("status.connected", 1)
        sim.stall()
        await collector.wait_count("status.connected", 2)
    assert [d.reason for d in statuses(collector, "status.disconnected")] == ["ping_timeout"]


async def test_silence_is_idle_timeout(sim: TraderWsSimulator, collector: Collector) -> None:
    """A server that pongs but sends nothing for idle_timeout → disconnected idle_timeout."""
    async with running(source(sim, idle_timeout=0.6), collector):
        await collector.wait_count("quote.updated", 1)
        sim.quiet()
        await collector.wait_count("status.connected", 2)
    assert [d.reason for d in statuses(collector, "status.disconnected")] == ["idle_timeout"]


async def test_answers_server_pings(collector: Collector) -> None:
    """Server pings are answered with pongs; the connection stays up."""
    server = simulator(server_ping_interval=0.1)
    await server.start()
    try:
        async with running(source(server), collector):
            await collector.wait_count("status.connected", 1)
            await server.wait_until(lambda: server.connections[0].pongs >= 3)
    finally:
        await server.stop()
    assert collector.of_type("status.disconnected") == []


async def test_fills_during_cut_backfilled_once_before_live(
    sim: TraderWsSimulator, collector: Collector
) -> None:
    """Fills made while away are emitted once, after the gap, before later live events."""
    async with running(source(sim), collector):
        await collector.wait_count("status.connected", 1)
        before = exec_ids(await sim.make_fill(symbol="EURUSD"))
        await collector.wait_for(lambda c: set(before) <= set(executions(c)))
        away = exec_ids(await sim.fills_while_away(1, symbol="GBPUSD", partial=True))
        await collector.wait_count("status.connected", 2)
        away += exec_ids(await sim.fills_while_away(1, symbol="EURUSD"))
        await collector.wait_count("status.connected", 3)
        await collector.wait_for(lambda c: set(away) <= set(executions(c)))
        after = exec_ids(await sim.make_fill(symbol="GBPUSD"))
        await collector.wait_for(lambda c: set(after) <= set(executions(c)))
    assert len(away) == 5
    assert executions(collector) == before + away + after
    gaps = [e.data for e in collector.of_type("status.gap") if isinstance(e.data, GapData)]
    assert [g.reason for g in gaps] == ["quotes_not_backfilled"] * 2
    assert all(g.since is not None and g.until is not None and g.since < g.until for g in gaps)
    last_gap = collector.of_type("status.gap")[-1].id
    assert index_of(collector, last_gap) < index_of(collector, away[-2])
    kinds = [r["type"] for r in sim.history_requests]
    assert kinds == ["dealHistory", "orderHistory"] * 2
    assert all(r["accountId"] == "acc_123" for r in sim.history_requests)


async def test_a_restart_back_fills_since_the_newest_journaled_event(
    sim: TraderWsSimulator, collector: Collector
) -> None:
    """Fills made while the daemon was down come once after the restart; what the journal
    holds is not given again, though the history window overlaps it."""
    async with running(source(sim), collector):
        await collector.wait_count("status.connected", 1)
        before = exec_ids(await sim.make_fill(symbol="EURUSD"))
        await collector.wait_for(lambda c: set(before) <= set(executions(c)))
    await sim.wait_until(lambda: not sim.live)
    away = exec_ids(await sim.make_fill(symbol="GBPUSD"))
    after = Collector()
    async with running(source(sim), after, history=collector.events):
        await after.wait_for(lambda c: set(away) <= set(executions(c)))
    assert executions(after) == away
    assert [r["type"] for r in sim.history_requests] == ["dealHistory", "orderHistory"]
    gaps = [e.data for e in after.of_type("status.gap") if isinstance(e.data, GapData)]
    assert [g.reason for g in gaps] == ["quotes_not_backfilled"]


async def test_live_messages_held_until_history_is_in(
    sim: TraderWsSimulator, collector: Collector
) -> None:
    """Live events arriving while the history is pending are published after the back-fill."""
    async with running(source(sim), collector):
        await collector.wait_count("status.connected", 1)
        sim.hold_history = True
        away = exec_ids(await sim.fills_while_away(1, symbol="EURUSD"))
        await asyncio.wait_for(sim.history_held.wait(), 10)
        live = exec_ids(await sim.make_fill(symbol="GBPUSD"))
        quotes_before = len(collector.of_type("quote.updated"))
        await sim.wait_until(lambda: len(sim.history_requests) == 2)
        sim.release_history()
        await collector.wait_for(lambda c: set(away + live) <= set(executions(c)))
        await collector.wait_count("quote.updated", quotes_before + 1)
    assert executions(collector) == away + live
    resumed = index_of(collector, collector.of_type("status.connected")[1].id)
    after = [event_type(e) for e in collector.events[resumed:]]
    first_quote = after.index("quote.updated")
    assert after[:first_quote].count("order.filled") == 2  # both fills came before any quote


async def test_upstream_error_and_subscribe_timeout(
    sim: TraderWsSimulator, collector: Collector
) -> None:
    """An error reply becomes status.error; the ack that never comes → subscribe_timeout."""
    cfg = source(sim, depth=["XAUEUR"], subscribe_timeout=0.5)
    async with running(cfg, collector):
        await collector.wait_count("status.disconnected", 1)
    [error] = statuses(collector, "status.error")[:1]
    assert (error.reason, error.code, error.message) == (
        "depthSubscribe",
        "UNKNOWN_SYMBOL",
        "symbol XAUEUR is not tradable",
    )
    assert statuses(collector, "status.disconnected")[0].reason == "subscribe_timeout"


async def test_an_upstream_error_names_the_last_error_as_it_is_published(
    sim: TraderWsSimulator, collector: Collector
) -> None:
    """The source's state as each status event is handed over: the error reply names the last
    error, the subscribe timeout then ends the attempt and names itself."""
    states: list[State] = []
    async with running(source(sim, depth=["XAUEUR"], subscribe_timeout=0.5), collector, (), states):
        await collector.wait_count("status.disconnected", 1)
    assert states[:2] == [
        ("status.error", False, False, "status.error:depthSubscribe:UNKNOWN_SYMBOL"),
        ("status.disconnected", False, False, "status.disconnected:subscribe_timeout"),
    ]


async def test_token_and_password_never_logged(
    sim: TraderWsSimulator, collector: Collector
) -> None:
    """Neither the JWT nor the password appears in any log line or event."""
    stream = io.StringIO()
    log.configure("debug", stream=stream)
    try:
        async with running(source(sim), collector):
            await collector.wait_count("status.connected", 1)
            sim.refuse_connections = True
            sim.cut()
            await collector.wait_for(
                lambda c: any(d.code == "503" for d in statuses(c, "status.disconnected"))
            )
            sim.refuse_connections = False
            await sim.expire_tokens()
            await collector.wait_count("status.connected", 2)
    finally:
        log.configure("debug")
    text = stream.getvalue()
    events = b"".join(msgspec.json.encode(e) for e in collector.events).decode()
    assert len(sim.tokens) == 2
    for token in sim.tokens:
        assert token not in text
        assert token not in events
        assert token.split(".")[2] not in text
    assert PASSWORD not in text
    assert PASSWORD not in events
    assert f'"url": "ws://127.0.0.1:{sim.port}/api/v1/ws"' in text
    assert '"event": "ws_connected"' in text


async def test_bad_and_unknown_messages_are_counted_and_skipped(
    sim: TraderWsSimulator, collector: Collector
) -> None:
    """Malformed, invalid and unknown messages are counted, skipped, and the stream goes on."""
    async with running(source(sim), collector) as ctx:
        await collector.wait_count("status.connected", 1)
        sim.inject("not json")
        sim.inject('{"type":"newsEvent","payload":{"headline":"x"}}')
        sim.inject('{"type":"quoteEvent","payload":{"bid":1.0}}')
        sim.inject(
            '{"type":"executionEvent","payload":'
            '{"executionId":"e1","orderId":"o1","status":"SETTLED"}}'
        )
        seen = len(collector.of_type("quote.updated"))
        await collector.wait_count("quote.updated", seen + 3)
        counters = dict(ctx.counters)
    assert counters == {
        "bad.message": 1,
        "unknown.newsEvent": 1,
        "bad.quoteEvent": 1,
        "bad.executionEvent": 1,
    }
    assert executions(collector) == []
    assert collector.of_type("status.disconnected") == []


async def test_rate_zero_streams_distinct_quotes_fast(collector: Collector) -> None:
    """--rate 0: distinct quotes on a 1 ms synthetic clock, acks get through, reads batch up."""
    server = simulator(rate=0.0)
    await server.start()
    try:
        async with running(source(server), collector):
            await collector.wait_count("quote.updated", 3000)
    finally:
        await server.stop()
    quotes = collector.of_type("quote.updated")
    assert len({q.id for q in quotes}) == len(quotes)
    first = {q.symbol: q.time for q in reversed(quotes)}
    assert first == {"EURUSD": "2026-06-01T00:00:00.000Z", "GBPUSD": "2026-06-01T00:00:00.000Z"}
    assert collector.types()[0] == "status.connected"
    assert collector.of_type("status.disconnected") == []
    # One publish per socket read, not per message: a fast sender gives many per batch.
    assert collector.batches * 4 < len(collector.events)


HOSTILE: list[bytes] = [
    hostile.nested(),
    hostile.envelope(b'{"type":"quoteEvent","payload":@}', hostile.nested()),
    hostile.envelope(
        b'{"type":"quoteEvent","payload":{"symbol":"EURUSD","x":@}}', hostile.nested()
    ),
    hostile.envelope(b'{"type":"newsEvent","payload":@}', hostile.nested()),
    hostile.envelope(b'{"payload":@,"type":"newsEvent"}', hostile.nested_objects()),
    b'{"type":"quoteEvent","payload":{"symbol":"EURUSD","bid":NaN}}',
    b'{"type":"quoteEvent","payload":{"symbol":"EURUSD","ask":Infinity}}',
    b'{"type":"quoteEvent","payload":{"symbol":"EURUSD","ask":1e999}}',
    b'{"type":"quoteEvent","payload":{"symbol":["EURUSD"]}}',
    b'{"type":"executionEvent","payload":{"executionId":1,"orderId":"o","status":"FILLED"}}',
]


def valid_quote(n: int) -> str:
    return (
        '{"type":"quoteEvent","payload":{"symbol":"EURUSD","bid":1.5,"ask":1.6,'
        f'"ts":"2030-01-01T00:00:00.{n:03d}Z"}}}}'
    )


async def test_hostile_messages_are_bad_input_and_every_valid_message_follows(
    sim: TraderWsSimulator, collector: Collector
) -> None:
    """Deep nesting, NaN/Infinity, wrong types: each counted; the valid quotes after arrive."""
    async with running(source(sim), collector) as ctx:
        await collector.wait_count("status.connected", 1)
        for payload in HOSTILE:
            sim.inject(payload.decode())
        for n in range(5):
            sim.inject(valid_quote(n))
        wanted = {f"tws:quote:EURUSD:2030-01-01T00:00:00.{n:03d}Z:1.5:1.6" for n in range(5)}
        await collector.wait_for(lambda c: wanted <= {e.id for e in c.events})
        counters = dict(ctx.counters)
    bad = sum(v for k, v in counters.items() if k.startswith("bad."))
    assert bad == len(HOSTILE)
    assert len(collector.of_type("status.connected")) == 1
    assert collector.of_type("status.disconnected") == []


OVERLONG = [
    # The issue's own case: a quote whose ``ts`` is 4 MB of ``x``.
    '{"type":"quoteEvent","payload":{"symbol":"EURUSD","bid":1.5,"ts":"' + "x" * 4_000_000 + '"}}',
    '{"type":"quoteEvent","payload":{"symbol":"' + "E" * 65 + '","bid":1.5}}',
    '{"type":"executionEvent","payload":{"executionId":"' + "e" * 257 + '","orderId":"o",'
    '"status":"FILLED"}}',
]
# No event built from bounded fields comes near this; a 4 MB field would pass it by far.
LINE_BOUND = 16 * 1024


async def test_overlong_strings_are_bad_input_and_a_junk_time_is_the_receipt_time(
    sim: TraderWsSimulator, collector: Collector
) -> None:
    """Over-long ts, symbol and id: each message counted and skipped, no line over a bound; a
    short ``ts`` that is no time keeps its quote, stamped with the receipt time, and counted."""
    async with running(source(sim), collector) as ctx:
        await collector.wait_count("status.connected", 1)
        for payload in OVERLONG:
            sim.inject(payload)
        sim.inject('{"type":"quoteEvent","payload":{"symbol":"EURUSD","bid":1.5,"ts":"soon"}}')
        for n in range(3):
            sim.inject(valid_quote(n))
        wanted = {f"tws:quote:EURUSD:2030-01-01T00:00:00.{n:03d}Z:1.5:1.6" for n in range(3)}
        await collector.wait_for(lambda c: wanted <= {e.id for e in c.events})
        counters = dict(ctx.counters)
    assert sum(v for k, v in counters.items() if k.startswith("bad.")) == len(OVERLONG)
    assert counters["time_fallback"] == 1
    junk = [e for e in collector.events if e.id.startswith("tws:quote:EURUSD:soon:")]
    assert len(junk) == 1
    assert junk[0].time == junk[0].received
    assert max(len(msgspec.json.encode(e)) for e in collector.events) < LINE_BOUND
    assert collector.of_type("status.disconnected") == []


async def test_a_message_over_max_message_bytes_is_bad_input_then_reconnect_and_backfill(
    sim: TraderWsSimulator, collector: Collector
) -> None:
    """One message past ``max_message_bytes``: closed with 1009, counted, reconnected, back-filled;
    a message of exactly the bound is taken."""
    bound = 64 * 1024
    async with running(source(sim, max_message_bytes=bound), collector) as ctx:
        await collector.wait_count("status.connected", 1)
        sim.inject_huge(bound)
        # The simulator's own quotes are near 1.08: a bid of 1.5 is the padded one.
        await collector.wait_for(
            lambda c: any(getattr(e.data, "bid", None) == 1.5 for e in c.events)
        )
        sim.inject_huge(bound + 1)
        await collector.wait_count("status.connected", 2)
        await sim.wait_until(lambda: len(sim.history_requests) == 2)
        counters = dict(ctx.counters)
    assert counters["bad.oversized_message"] == 1
    assert sum(v for k, v in counters.items() if k.startswith("bad.")) == 1
    down = statuses(collector, "status.disconnected")
    assert [(d.reason, d.code) for d in down] == [("message_too_big", "1009")]
    assert [r["type"] for r in sim.history_requests] == ["dealHistory", "orderHistory"]
    assert sim.connections[1].subscriptions == EXPECTED_SUBSCRIPTIONS


def test_max_message_bytes_defaults_to_sixty_four_mebibytes(sim: TraderWsSimulator) -> None:
    """The documented default."""
    assert source(sim).max_message_bytes == 64 * 1024 * 1024


HOSTILE_CLIENT: list[bytes] = [
    hostile.nested(),
    hostile.nested_objects(),
    hostile.envelope(b'{"type":"subscribe","payload":{"symbols":@}}', hostile.nested()),
    b'{"type":"subscribe","payload":{"symbols":[{"a":1}],"events":5}}',
    b'{"type":"depthSubscribe","payload":{"symbol":"EURUSD","depth":"' + b"9" * 5000 + b'"}}',
    b'{"type":"createOrder","payload":{"quantity":"lots"}}',
    b"\xff\xfe not json",
]


async def test_the_simulator_survives_hostile_clients(
    sim: TraderWsSimulator, collector: Collector
) -> None:
    """Deep nesting and wrong types in a login body or a WS message get a 4xx or an ``error``
    message, never a server error or a dropped connection; a message past the server's maximum
    closes that connection alone (1009); a real client is served after them all."""
    base = f"http://127.0.0.1:{sim.port}/api/v1"
    async with aiohttp.ClientSession() as http:
        for body in [*HOSTILE_CLIENT, b"x" * (2 * 1024 * 1024)]:
            async with http.post(f"{base}/login", data=io.BytesIO(body)) as response:
                assert 400 <= response.status < 500
        login = {"username": USER, "password": PASSWORD}
        async with http.post(f"{base}/login", json=login) as response:
            token = (await response.json())["token"]
        async with http.ws_connect(f"{base}/ws?token={token}", autoping=True) as ws:
            for payload in HOSTILE_CLIENT:
                await ws.send_str(payload.decode(errors="replace"))
                reply = await ws.receive_json(timeout=5)
                assert reply["type"] == "error", reply
            await ws.send_json({"type": "subscribe", "payload": {"symbols": [], "events": []}})
            assert (await ws.receive_json(timeout=5))["type"] == "subscribed"
            # The server refuses it at its header (1009) and drops the connection while the
            # rest is still being written: that connection ends, the server goes on.
            with contextlib.suppress(ConnectionError):
                await ws.send_str("x" * (8 * 1024 * 1024))
            ended = await ws.receive(timeout=5)
            assert ended.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSED,
                aiohttp.WSMsgType.ERROR,
            )
    async with running(source(sim), collector):
        await collector.wait_count("status.connected", 1)
        await collector.wait_count("quote.updated", 3)
