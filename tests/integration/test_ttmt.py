"""TTMT adapter against the TTMT simulator over 127.0.0.1: resume, recycle, auth, faults."""

from __future__ import annotations

import argparse
import asyncio
import itertools
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import msgspec
import pytest

from tests import hostile
from tests.conftest import Collector
from tradebus import config, times
from tradebus.adapters.base import SourceContext
from tradebus.adapters.ttmt import wire
from tradebus.adapters.ttmt.adapter import TtmtAdapter
from tradebus.adapters.ttmt.normalize import SymbolCache, normalize
from tradebus.plugin import source_factory
from tradebus.schemas.events import Event, event_type
from tradebus.simulators import ttmt as ttmt_sim
from tradebus.simulators.ttmt import TtmtSimulator

NAME = "ttmt-main"
KEY = "ttmt_live_test_9d3f01"
# Fast knobs: the whole file must run in well under 40 s.
FAST: dict[str, Any] = {
    "reconnect_min": 0.01,
    "reconnect_max": 0.05,
    "auth_retry": 0.2,
    "read_timeout": 5.0,
}
DATA_PREFIXES = ("position.", "order.", "trade.")


@pytest.fixture
async def sim() -> AsyncIterator[TtmtSimulator]:
    simulator = TtmtSimulator(
        seed=0, rate=50.0, api_keys=(KEY,), paused=True, auth_check_interval=0.2
    )
    await simulator.start()
    yield simulator
    await simulator.stop()


@asynccontextmanager
async def running(
    sim: TtmtSimulator,
    collector: Collector,
    *,
    history: Sequence[Event] = (),
    **overrides: Any,
) -> AsyncIterator[TtmtAdapter]:
    """The adapter built as the daemon builds it (config → registry), run until the block ends;
    ``history`` is what the journal held of the source at start."""
    table = {**sim.source_table(NAME), **FAST, **overrides}
    cfg = config.parse({"sources": [table], "sinks": [{"type": "stdout", "name": "out"}]})
    ctx = SourceContext(NAME, "ttmt", collector.publish, history=history)
    adapter = source_factory("ttmt")(cfg.sources[0], ctx)
    assert isinstance(adapter, TtmtAdapter)
    task = asyncio.get_running_loop().create_task(adapter.run())
    try:
        yield adapter
    finally:
        task.cancel()
        await asyncio.wait({task})
        assert task.cancelled(), task.exception()


def data_events(c: Collector) -> list[Event]:
    return [e for e in c.events if event_type(e).startswith(DATA_PREFIXES)]


def upstream_ids(c: Collector) -> list[int]:
    """The TTMT eventIds delivered, one per upstream message, in order."""
    ids: list[int] = []
    for e in data_events(c):
        n = int(e.id.split(":")[1].split("#")[0])
        if not ids or ids[-1] != n:
            ids.append(n)
    return ids


def has_ids(*ids: int) -> Callable[[Collector], bool]:
    wanted = set(ids)
    return lambda c: wanted <= set(upstream_ids(c))


def expected(sim: TtmtSimulator, ids: range) -> list[Event]:
    """What the adapter must publish for ``ids``: the simulator's payloads through normalize."""
    cache = SymbolCache(100)
    out: list[Event] = []
    for n in ids:
        message = wire.decode(msgspec.json.encode(sim.produced[n]))
        out += cache.apply(normalize(message, NAME, "2026-01-01T00:00:00.000Z", times.Refusals()))
    return out


def without_received(events: list[Event]) -> list[Event]:
    return [msgspec.structs.replace(e, received="2026-01-01T00:00:00.000Z") for e in events]


async def connected(c: Collector, n: int = 1) -> None:
    await c.wait_count("status.connected", n)


# --- the happy path ---------------------------------------------------------------------------


async def test_happy_path_publishes_every_event_exactly_in_order(
    sim: TtmtSimulator, collector: Collector
) -> None:
    """60 produced events arrive as their exact canonical events, in order, seq untouched."""
    async with running(sim, collector) as adapter:
        await connected(collector)
        sim.produce(60)
        await collector.wait_for(has_ids(*range(1, 61)))
    assert without_received(data_events(collector)) == expected(sim, range(1, 61))
    assert collector.types()[0] == "status.connected"
    assert {event_type(e) for e in data_events(collector)} == {
        "trade.opened",
        "order.filled",
        "position.updated",
        "trade.tp_hit",
        "position.breakeven_set",
        "position.breakeven_failed",
        "position.closed",
        "trade.closed",
    }
    batch_ids = [e.id for e in data_events(collector) if "#" in e.id]
    assert batch_ids[:2] == ["ttmt-main:37#1", "ttmt-main:37#2"]  # seed 0: the first batch
    assert all(e.seq == 0 and e.source == NAME and e.provider == "ttmt" for e in collector.events)
    # tp_hit / position_closed / trade_finalized got their trade's symbol from the cache;
    # breakeven_set's DB position UUID is tied to no symbol unless a breakeven_failed named it.
    assert all(
        e.symbol is not None
        for e in data_events(collector)
        if event_type(e) != "position.breakeven_set"
    )
    assert adapter.ctx.counters["connects"] == 1
    assert sim.attempts[0][1:] == (200, "0")  # first start, nothing journaled: all the buffer holds


async def test_clock_production_streams_contiguous_ids(
    sim: TtmtSimulator, collector: Collector
) -> None:
    """Unpaused, the simulator produces on its clock; a live client sees contiguous ids."""
    sim.unpause()
    async with running(sim, collector):
        await collector.wait_for(lambda c: len(upstream_ids(c)) >= 10)
    ids = upstream_ids(collector)
    assert ids == list(range(ids[0], ids[0] + len(ids)))


# --- resume, recycle, dedupe, gap ---------------------------------------------------------------


async def test_reconnect_resumes_with_last_event_id(
    sim: TtmtSimulator, collector: Collector
) -> None:
    """A cut connection resumes after the last id: nothing missing, nothing twice, no gap."""
    async with running(sim, collector):
        await connected(collector)
        sim.produce(10)
        await collector.wait_for(has_ids(*range(1, 11)))
        sim.cut_after(5)
        sim.produce(10)
        await collector.wait_for(has_ids(*range(1, 21)))
    assert upstream_ids(collector) == list(range(1, 21))
    assert without_received(data_events(collector)) == expected(sim, range(1, 21))
    assert [a[1:] for a in sim.attempts] == [(200, "0"), (200, "15")]
    assert collector.types().count("status.disconnected") == 1
    assert collector.of_type("status.gap") == []


async def test_a_restart_resumes_from_the_journal_with_nothing_twice(
    sim: TtmtSimulator, collector: Collector
) -> None:
    """The first connect after a restart sends the highest journaled eventId; what the upstream
    replays that the journal holds is dropped."""
    async with running(sim, collector):
        await connected(collector)
        sim.produce(20)
        await collector.wait_for(has_ids(*range(1, 21)))
    sim.produce(10)  # while the daemon is down
    journaled = list(collector.events)
    after = Collector()
    async with running(sim, after, history=journaled[:-3]):  # the last read not yet journaled
        await connected(after)
        await after.wait_for(has_ids(*range(1, 31)[-10:]))
    assert sim.attempts[-1][1:] == (200, str(upstream_ids(Collector.of(journaled[:-3]))[-1]))
    merged = upstream_ids(Collector.of(journaled[:-3])) + upstream_ids(after)
    assert merged == list(range(1, 31))
    assert after.of_type("status.gap") == []


async def test_a_restart_past_the_replay_buffer_says_status_gap(
    sim: TtmtSimulator, collector: Collector
) -> None:
    async with running(sim, collector):
        await connected(collector)
        sim.produce(5)
        await collector.wait_for(has_ids(*range(1, 6)))
    sim.produce(150)  # more than the upstream's 100-event buffer
    after = Collector()
    async with running(sim, after, history=collector.events):
        await after.wait_count("status.gap", 1)
    gap = after.of_type("status.gap")[0]
    assert gap.data.first_missing == 6  # type: ignore[union-attr]
    assert gap.data.last_missing == 155 - 100  # type: ignore[union-attr]


async def test_start_latest_asks_for_nothing_old_on_a_first_start(
    sim: TtmtSimulator, collector: Collector
) -> None:
    async with running(sim, collector, start="latest"):
        await connected(collector)
    assert sim.attempts[0][1:] == (200, None)


async def test_recycle_reconnects_at_once_without_escalation(
    sim: TtmtSimulator, collector: Collector
) -> None:
    """recycle → status.disconnected "recycle", retry_in 0, an instant resume; no backoff."""
    sim.lifetime = 0.3
    slow: dict[str, Any] = {"reconnect_min": 2.0, "reconnect_max": 4.0}
    async with running(sim, collector, **slow) as adapter:
        await connected(collector)
        ctx = adapter.ctx
        sim.produce(3)
        await collector.wait_for(has_ids(1, 2, 3))
        await connected(collector, 3)
        sim.produce(3)
        await collector.wait_for(has_ids(4, 5, 6))
        assert adapter.backoff.attempts == 0
    # Planned reconnects: none of the recycles is the source's last error.
    assert (ctx.up, ctx.last_error, ctx.reconnects >= 2) == (True, None, True)
    recycles = collector.of_type("status.disconnected")[:2]
    assert [(e.data.reason, e.data.retry_in) for e in recycles] == [("recycle", 0.0)] * 2  # type: ignore[union-attr]
    times = [t for t, status, _ in sim.attempts if status == 200]
    # Each reconnect follows the 0.3 s lifetime at once, far inside reconnect_min's 2 s.
    assert all(0.25 < b - a < 0.3 + 0.5 for a, b in itertools.pairwise(times))
    assert upstream_ids(collector) == [1, 2, 3, 4, 5, 6]
    assert sim.attempts[1][2] == "3"


async def test_replayed_duplicates_are_dropped(sim: TtmtSimulator, collector: Collector) -> None:
    """A server that replays 5 events already published: they are dropped by eventId."""
    sim.rewind = 5
    async with running(sim, collector) as adapter:
        await connected(collector)
        sim.produce(8)
        await collector.wait_for(has_ids(*range(1, 9)))
        sim.disconnect_all()
        sim.produce(2)
        await collector.wait_for(has_ids(9, 10))
        assert adapter.ctx.counters["duplicates"] == 5
    assert upstream_ids(collector) == list(range(1, 11))
    assert without_received(data_events(collector)) == expected(sim, range(1, 11))


async def test_gap_beyond_the_replay_buffer_is_one_status_gap(
    sim: TtmtSimulator, collector: Collector
) -> None:
    """150 events missed while away: 100 replayed, one status.gap names ids 11..60 exactly."""
    async with running(sim, collector):
        await connected(collector)
        sim.produce(10)
        await collector.wait_for(has_ids(*range(1, 11)))
        sim.disconnect_all()
        sim.produce(150)  # before the adapter can reconnect: same synchronous block
        await collector.wait_for(has_ids(160))
        sim.produce(5)
        await collector.wait_for(has_ids(165))
    (gap,) = collector.of_type("status.gap")
    assert (gap.data.first_missing, gap.data.last_missing) == (11, 60)  # type: ignore[union-attr]
    assert upstream_ids(collector) == [*range(1, 11), *range(61, 166)]
    types = collector.types()
    assert types.index("status.gap") == types.index("status.connected", 1) + 1


# --- auth -------------------------------------------------------------------------------------


def _intervals(sim: TtmtSimulator, status: int) -> list[float]:
    times = [t for t, s, _ in sim.attempts if s == status]
    return [b - a for a, b in itertools.pairwise(times)]


async def test_auth_revoked_gives_status_and_a_slow_retry(
    sim: TtmtSimulator, collector: Collector
) -> None:
    """auth_revoked → status.auth_revoked, then 401s answered by status.auth_failed, slowly."""
    async with running(sim, collector) as adapter:
        await connected(collector)
        sim.produce(2)
        await collector.wait_for(has_ids(1, 2))
        sim.revoke(KEY, "access_disabled")
        await collector.wait_count("status.auth_failed", 3)
        attempts = adapter.ctx.counters["connect_attempts"]
    (revoked,) = collector.of_type("status.auth_revoked")
    assert revoked.data.reason == "access_disabled"  # type: ignore[union-attr]
    after = collector.types()[collector.types().index("status.auth_revoked") :]
    assert after[:4] == [
        "status.auth_revoked",
        "status.disconnected",
        "status.auth_failed",
        "status.auth_failed",
    ]
    disconnected = collector.of_type("status.disconnected")[0]
    assert disconnected.data.reason == "auth_revoked"  # type: ignore[union-attr]
    assert 0.1 <= disconnected.data.retry_in <= 0.2  # type: ignore[union-attr,operator]
    # No hot loop: every retry waited at least half of auth_retry (0.2 s, jittered 0.5-1x).
    assert all(gap >= 0.09 for gap in _intervals(sim, 401))
    assert attempts <= 5


async def test_401_gives_auth_failed_and_a_slow_retry(
    sim: TtmtSimulator, collector: Collector
) -> None:
    """A wrong key: status.auth_failed code 401, retried at the auth pace, never logged."""
    async with running(sim, collector, api_key="ttmt_live_wrong_0000"):
        await collector.wait_count("status.auth_failed", 3)
    failed = collector.of_type("status.auth_failed")
    assert [(e.data.reason, e.data.code) for e in failed[:3]] == [("unauthorized", "401")] * 3  # type: ignore[union-attr]
    assert all(0.1 <= e.data.retry_in <= 0.2 for e in failed)  # type: ignore[union-attr,operator]
    assert all(gap >= 0.09 for gap in _intervals(sim, 401))
    assert "status.connected" not in collector.types()


# --- 409 and 503 ------------------------------------------------------------------------------


async def test_409_backs_off_until_the_other_stream_closes(
    sim: TtmtSimulator, collector: Collector
) -> None:
    """Another stream open for the key: status.error 409 and backoff; then a clean connect."""
    async with aiohttp.ClientSession() as session:
        other = await session.get(sim.url, headers={"Authorization": f"Bearer {KEY}"})
        assert other.status == 200
        async with running(sim, collector) as adapter:
            await collector.wait_count("status.error", 3)
            assert "status.connected" not in collector.types()
            other.close()
            await connected(collector)
            sim.produce(2)
            await collector.wait_for(has_ids(1, 2))
            assert adapter.backoff.attempts >= 3
    errors = collector.of_type("status.error")
    assert {(e.data.reason, e.data.code) for e in errors} == {("conflict", "409")}  # type: ignore[union-attr]
    assert all(0 <= e.data.retry_in <= 0.05 for e in errors)  # type: ignore[union-attr,operator]


async def test_503_backs_off_no_faster_than_the_streams_retry_field(
    sim: TtmtSimulator, collector: Collector
) -> None:
    """After ``retry: 300`` a 503 is retried no sooner than 0.3 s, each time a status.error."""
    sim.retry_ms = 300
    async with running(sim, collector):
        await connected(collector)
        sim.produce(1)
        await collector.wait_for(has_ids(1))
        sim.unavailable = True
        sim.disconnect_all()
        await collector.wait_count("status.error", 3)
        sim.unavailable = False
        await connected(collector, 2)
    errors = collector.of_type("status.error")
    assert [(e.data.reason, e.data.code) for e in errors[:3]] == [("server_error", "503")] * 3  # type: ignore[union-attr]
    assert all(e.data.retry_in == 0.3 for e in errors)  # type: ignore[union-attr]
    (dropped,) = collector.of_type("status.disconnected")
    assert dropped.data.retry_in == 0.3  # type: ignore[union-attr]
    assert all(gap >= 0.29 for gap in _intervals(sim, 503))


# --- faults -----------------------------------------------------------------------------------


async def test_cut_mid_event_loses_nothing(sim: TtmtSimulator, collector: Collector) -> None:
    """Half a frame then a cut: the half is not dispatched, its id not sent, the replay has it."""
    async with running(sim, collector) as adapter:
        await connected(collector)
        sim.produce(5)
        await collector.wait_for(has_ids(*range(1, 6)))
        sim.cut_mid_frame()
        sim.produce(5)
        await collector.wait_for(has_ids(*range(1, 11)))
        assert sum(adapter.ctx.counters[k] for k in adapter.ctx.counters if "bad" in k) == 0
    assert sim.lost == [6]
    assert sim.attempts[-1][2] == "5"
    assert upstream_ids(collector) == list(range(1, 11))
    assert without_received(data_events(collector)) == expected(sim, range(1, 11))


@pytest.mark.parametrize(
    ("inject", "counter"),
    [
        ("inject_malformed", "bad.malformed"),
        ("inject_unknown_type", "unknown.margin_call"),
        ("inject_oversized", "bad.oversized_line"),
    ],
)
async def test_bad_frames_are_counted_and_good_events_follow(
    sim: TtmtSimulator, collector: Collector, inject: str, counter: str
) -> None:
    """A bad frame is counted once and skipped; the events after it are delivered, no gap."""
    async with running(sim, collector) as adapter:
        await connected(collector)
        sim.produce(2)
        bad_id = getattr(sim, inject)()
        sim.produce(2)
        await collector.wait_for(has_ids(1, 2, 4, 5))
        # A resume after the bad frame must not take its id for a gap.
        sim.disconnect_all()
        sim.produce(1)
        await collector.wait_for(has_ids(6))
        counters = dict(adapter.ctx.counters)
    assert bad_id == 3
    assert counters[counter] == 1
    assert upstream_ids(collector) == [1, 2, 4, 5, 6]
    assert collector.of_type("status.gap") == []


async def test_non_sse_content_type_is_counted_and_retried(
    sim: TtmtSimulator, collector: Collector
) -> None:
    """A 200 text/html answer: bad.content_type counted, status.error, and a later recovery."""
    sim.content_type = "text/html"
    async with running(sim, collector) as adapter:
        await collector.wait_count("status.error", 2)
        sim.content_type = "text/event-stream"
        await connected(collector)
        sim.produce(1)
        await collector.wait_for(has_ids(1))
        assert adapter.ctx.counters["bad.content_type"] >= 2
    assert collector.of_type("status.error")[0].data.reason == "content_type"  # type: ignore[union-attr]


async def test_server_that_never_answers_times_out_and_recovers(
    sim: TtmtSimulator, collector: Collector
) -> None:
    """Accepted but never answered: a read timeout, counted, retried; events flow after."""
    sim.never_send = True
    async with running(sim, collector, read_timeout=0.3) as adapter:
        await collector.wait_count("status.error", 1)
        sim.never_send = False
        await connected(collector)
        sim.produce(1)
        await collector.wait_for(has_ids(1))
        assert adapter.ctx.counters["bad.read_timeout"] >= 1
    assert collector.of_type("status.error")[0].data.reason == "read_timeout"  # type: ignore[union-attr]


async def test_stalled_stream_hits_read_timeout_and_reconnects(
    sim: TtmtSimulator, collector: Collector
) -> None:
    """A stream gone silent: status.disconnected read_timeout, a resume, nothing lost."""
    async with running(sim, collector, read_timeout=0.3):
        await connected(collector)
        sim.produce(3)
        await collector.wait_for(has_ids(1, 2, 3))
        sim.stall()
        sim.produce(3)
        await collector.wait_count("status.disconnected", 1)
        sim.unstall()
        await collector.wait_for(has_ids(*range(1, 7)))
    first = collector.of_type("status.disconnected")[0]
    assert first.data.reason == "read_timeout"  # type: ignore[union-attr]
    assert upstream_ids(collector) == list(range(1, 7))
    assert sim.attempts[1][2] == "3"


async def test_account_filter_is_sent_and_only_that_accounts_events_arrive(
    sim: TtmtSimulator, collector: Collector
) -> None:
    """``account_id`` goes out as the query parameter; other accounts' events never arrive."""
    account = sim.accounts[1]
    async with running(sim, collector, account_id=account):
        await connected(collector)
        ids = sim.produce(60)
        mine = [n for n in ids if sim.produced[n]["data"]["accountId"] == account]
        await collector.wait_for(has_ids(*mine))
    assert upstream_ids(collector) == mine
    assert {e.account for e in data_events(collector)} == {account}


async def test_the_api_key_never_reaches_an_event(sim: TtmtSimulator, collector: Collector) -> None:
    """No status event, whatever the failure, carries the key."""
    async with running(sim, collector, api_key="ttmt_live_wrong_0000"):
        await collector.wait_count("status.auth_failed", 1)
    encoded = b"".join(msgspec.json.encode(e) for e in collector.events)
    assert b"ttmt_live_wrong_0000" not in encoded


async def test_rate_zero_releases_every_prebuilt_frame_from_id_one(collector: Collector) -> None:
    """--rate 0 --events 300: a client connecting later still gets ids 1..300, then nothing."""
    fast = TtmtSimulator(seed=3, rate=0, events=300, api_keys=(KEY,))
    await fast.start()
    try:
        async with running(fast, collector):
            await collector.wait_for(has_ids(300))
        assert upstream_ids(collector) == list(range(1, 301))
        assert without_received(data_events(collector)) == expected(fast, range(1, 301))
    finally:
        await fast.stop()


def test_cli_flags_configure_the_simulator() -> None:
    """Every documented CLI flag reaches the simulator, and the table carries the key."""
    parser = argparse.ArgumentParser()
    ttmt_sim.add_cli_arguments(parser)
    args = parser.parse_args(
        [
            "--port",
            "9100",
            "--rate",
            "0",
            "--events",
            "7",
            "--seed",
            "5",
            "--api-key",
            "k_1234",
            "--lifetime",
            "2",
            "--auth-check-interval",
            "0.5",
        ]
    )
    sim = ttmt_sim.from_cli(args)
    assert (args.host, args.port) == ("127.0.0.1", 9100)
    assert (sim.rate, sim.events, sim.seed, sim.api_keys) == (0, 7, 5, ("k_1234",))
    assert (sim.lifetime, sim.auth_check_interval) == (2.0, 0.5)
    assert sim.source_table("x")["api_key"] == "k_1234"
    demo = ttmt_sim.for_demo(1)
    assert 0 < demo.rate <= 5
    assert demo.source_table("d")["api_key"] == ttmt_sim.DEMO_KEY


# --- hostile input ----------------------------------------------------------------------------

HOSTILE: list[bytes] = [
    hostile.nested(),
    hostile.nested_objects(),
    hostile.envelope(b'{"type":"tp_hit","eventId":9,"data":@}', hostile.nested()),
    hostile.envelope(
        b'{"type":"tp_hit","eventId":9,"data":{"tradeId":"t","x":@}}', hostile.nested()
    ),
    hostile.envelope(b'{"type":"margin_call","eventId":9,"data":@}', hostile.nested()),
    hostile.envelope(b'{"eventId":9,"data":@,"type":"margin_call"}', hostile.nested_objects()),
    b'{"type":"order_fill","eventId":9,"data":{"orderId":"o","volume":NaN}}',
    b'{"type":"order_fill","eventId":9,"data":{"orderId":"o","fillPrice":Infinity}}',
    b'{"type":"order_fill","eventId":9,"data":{"orderId":"o","fillPrice":-1e999}}',
    b'{"type":"tp_hit","eventId":"nine","data":{"tradeId":"t"}}',
    b'{"type":"tp_hit","eventId":9,"data":{"tradeId":["t"]}}',
    b'{"type":"tp_hit","eventId":123456789012345678901234567890,"data":{"tradeId":"t"}}',
    b'{"type":"position_update","eventId":9,"data":{"symbol":"EURUSD"}}',
    # Over their bounds (tradebus.adapters.bounds): an id, a symbol, a time, free text.
    b'{"type":"tp_hit","eventId":9,"data":{"tradeId":"' + b"t" * 257 + b'"}}',
    b'{"type":"order_fill","eventId":9,"data":{"orderId":"o","symbol":"' + b"S" * 65 + b'"}}',
    b'{"type":"tp_hit","eventId":9,"timestamp":"' + b"9" * 65 + b'","data":{"tradeId":"t"}}',
    b'{"type":"position_closed","eventId":9,"data":{"positionId":"p","reason":"'
    + b"r" * 4097
    + b'"}}',
]


async def test_hostile_payloads_are_bad_input_and_every_valid_event_follows(
    sim: TtmtSimulator, collector: Collector
) -> None:
    """Deep nesting, NaN/Infinity, wrong types: each counted once, no crash, no valid event lost."""
    async with running(sim, collector) as adapter:
        await connected(collector)
        sim.produce(2)
        bad = [sim.inject_raw(payload) for payload in HOSTILE]
        sim.produce(3)
        last = bad[-1] + 3
        await collector.wait_for(has_ids(1, 2, last))
        counters = dict(adapter.ctx.counters)
    assert upstream_ids(collector) == [1, 2, *range(bad[-1] + 1, last + 1)]
    assert counters["bad.malformed"] == len(HOSTILE)
    assert len(collector.of_type("status.connected")) == 1  # never restarted, never reconnected


async def test_the_simulator_survives_hostile_clients(collector: Collector) -> None:
    """Last-Event-IDs no server sent (5,000 digits, signs, other scripts) get a stream, never a
    server error; a real client is served after them."""
    hostile_ids = ["9" * 5000, "-1", "1e3", "\u0663", "x" * 4000]
    keys = tuple(f"key-{n}" for n in range(len(hostile_ids)))
    server = TtmtSimulator(seed=0, rate=50.0, api_keys=(KEY, *keys), paused=True)
    await server.start()
    try:
        async with aiohttp.ClientSession() as http:
            for key, last in zip(keys, hostile_ids, strict=True):
                headers = {"Authorization": f"Bearer {key}", "Last-Event-ID": last}
                async with http.get(server.url, headers=headers) as response:
                    assert response.status == 200, last[:10]
        async with running(server, collector):
            await connected(collector)
            server.produce(3)
            await collector.wait_for(has_ids(1, 2, 3))
    finally:
        await server.stop()
