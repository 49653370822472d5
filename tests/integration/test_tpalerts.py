"""TradingPartners alerts adapter against its simulator over 127.0.0.1: liveness and faults."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests import hostile
from tests.conftest import Collector
from tradebus import config, times
from tradebus.adapters.base import SourceContext
from tradebus.adapters.tpalerts.adapter import TpAlertsAdapter
from tradebus.plugin import source_factory
from tradebus.schemas.events import Event, GapData, SignalData, StatusData, event_type
from tradebus.simulators.tpalerts import FIRST_ALERT_ID, MARKETS, AlertScript, TpAlertsSimulator

REPO_DATA = Path(__file__).parents[2] / "examples" / "upstreams" / "tpalerts"

NAME = "alerts"
TOKEN = "tp_live_test_7a1c2e"
# Fast knobs: the whole file must run in well under 40 s. The simulator pings every 0.1 s;
# the adapter gives up after 2 x 0.5 s of silence, a wide margin on two busy cores.
FAST: dict[str, Any] = {
    "reconnect_min": 0.01,
    "reconnect_max": 0.05,
    "auth_retry": 0.3,
    "ping_interval": 0.5,
    "missed_pings": 2,
}
SIGNAL_TYPES = {
    "working": "signal.detected",
    "onGoing": "signal.active",
    "aborted": "signal.aborted",
    "closed": "signal.closed",
}


@pytest.fixture
async def sim() -> AsyncIterator[TpAlertsSimulator]:
    simulator = TpAlertsSimulator(seed=0, rate=0, events=10, token=TOKEN, ping_interval=0.1)
    await simulator.start()
    yield simulator
    await simulator.stop()


@asynccontextmanager
async def running(
    sim: TpAlertsSimulator,
    collector: Collector,
    *,
    history: Sequence[Event] = (),
    stopped_at: float | None = None,
    **overrides: Any,
) -> AsyncIterator[TpAlertsAdapter]:
    """The adapter built as the daemon builds it (config → registry), run until the block ends;
    ``history`` and ``stopped_at`` are what the journal held at start."""
    table = {**sim.source_table(NAME), **FAST, **overrides}
    cfg = config.parse({"sources": [table], "sinks": [{"type": "stdout", "name": "out"}]})
    ctx = SourceContext(NAME, "tpalerts", collector.publish, history=history, stopped_at=stopped_at)
    adapter = source_factory("tpalerts")(cfg.sources[0], ctx)
    assert isinstance(adapter, TpAlertsAdapter)
    task = asyncio.get_running_loop().create_task(adapter.run())
    try:
        yield adapter
    finally:
        task.cancel()
        await asyncio.wait({task})
        assert task.cancelled(), task.exception()


def signals(c: Collector) -> list[Event]:
    return [e for e in c.events if event_type(e).startswith("signal.")]


def n_signals(n: int) -> Callable[[Collector], bool]:
    return lambda c: len(signals(c)) >= n


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll a condition no published event signals (counters, simulator state)."""
    async with asyncio.timeout(timeout):
        # Counters change without a notification to wait on: polling them is the only way.
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


def expected(sent: list[tuple[str, dict[str, Any]]]) -> list[tuple[Any, ...]]:
    """(type, id, symbol, time or None for receipt time, data) of each upstream event sent,
    built from the payloads alone: later events carry their alert's working context."""
    working: dict[int, dict[str, Any]] = {}
    out: list[tuple[Any, ...]] = []
    for name, payload in sent:
        if name == "working":
            working[payload["id"]] = payload
        w = working.get(payload["id"], {})
        data = SignalData(
            alert_id=payload["id"],
            strategy=w.get("durationStrategy"),
            market=w.get("instrument"),
            entry=w.get("start"),
            target=w.get("target"),
            stop=w.get("stop"),
            exit=payload.get("exit"),
            gain=payload.get("gain"),
            token=payload["token"],
            token_state=payload.get("tokenState"),
            started_at=w.get("startedAt"),
            closed_at=payload.get("closedAt"),
        )
        time = payload.get("startedAt") or payload.get("closedAt")
        out.append(
            (SIGNAL_TYPES[name], f"{NAME}:{payload['id']}:{name}", w.get("ticker"), time, data)
        )
    return out


def observed(events: list[Event]) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for e in events:
        assert (e.source, e.provider, e.account, e.seq) == (NAME, "tpalerts", None, 0)
        time = None if e.time == e.received else e.time
        out.append((event_type(e), e.id, e.symbol, time, e.data))
    return out


async def test_whole_lifecycles_arrive_with_exact_fields(
    sim: TpAlertsSimulator, collector: Collector
) -> None:
    """Each scripted event arrives once and exact; later ones carry their working context."""
    async with running(sim, collector):
        await collector.wait_for(n_signals(10))
    sent = list(sim.sent)
    assert [name for name, _ in sent] == [
        "working", "onGoing", "closed", "working", "onGoing",
        "closed", "working", "working", "aborted", "onGoing",
    ]  # fmt: skip
    assert observed(signals(collector)) == expected(sent)
    # Alert 35444 went through a whole lifecycle; its close knows its ticker and entry.
    closed = next(e for e in signals(collector) if e.id == "alerts:35444:closed")
    assert closed.symbol == "GBP/USD"
    assert closed.time == "2026-01-05T08:00:18.873Z"
    assert closed.data == SignalData(
        alert_id=35444,
        strategy="medium",
        market="FOREX",
        entry=1.26036,
        target=1.24582,
        stop=1.26424,
        exit=1.24649,
        gain=0.01387,
        token="5a921187-19c7-4df4-8f4f-f31e78de5857",
        token_state="CONSUMED",
        started_at="2026-01-05T08:00:14.666Z",
        closed_at="2026-01-05T08:00:18.873Z",
    )
    assert collector.types()[0] == "status.connected"
    assert sim.attempts == 1


async def test_pings_keep_the_connection_alive(
    sim: TpAlertsSimulator, collector: Collector
) -> None:
    """Pings (even written ``ping,`` as the doc does) keep one connection up past the timeout."""
    sim.events = 0
    sim.ping_comma = True
    async with running(sim, collector) as adapter:
        await collector.wait_count("status.connected", 1)
        # 30 pings at 0.1 s: three liveness windows of 1 s without a single event.
        await until(lambda: adapter.ctx.counters["pings"] >= 30)
        assert collector.types() == ["status.connected"]
        assert sim.attempts == 1
        assert not [k for k in adapter.ctx.counters if k.startswith(("unknown.", "bad."))]


async def test_stall_times_out_as_ping_timeout_and_reconnects(
    sim: TpAlertsSimulator, collector: Collector
) -> None:
    """A silent but open stream ends after missed_pings x ping_interval, then a reconnect."""
    async with running(sim, collector):
        await collector.wait_for(n_signals(10))
        loop = asyncio.get_running_loop()
        sim.stall()
        stalled_at = loop.time()
        await collector.wait_count("status.disconnected", 1)
        waited = loop.time() - stalled_at
        await collector.wait_count("status.connected", 2)
    (gone,) = collector.of_type("status.disconnected")
    assert isinstance(gone.data, StatusData)
    assert gone.data.reason == "ping_timeout"
    assert 0.9 <= waited < 5.0
    assert sim.attempts == 2
    assert len(signals(collector)) == 10


async def test_401_is_auth_failed_with_a_slow_retry(
    sim: TpAlertsSimulator, collector: Collector
) -> None:
    """A rejected token gives status.auth_failed per attempt, attempts auth_retry apart."""
    sim.unauthorized = True
    async with running(sim, collector):
        await collector.wait_count("status.auth_failed", 4)
        sim.unauthorized = False
        await collector.wait_for(n_signals(10))
    failed = collector.of_type("status.auth_failed")
    for event in failed[:4]:
        assert isinstance(event.data, StatusData)
        assert (event.data.reason, event.data.code) == ("unauthorized", "401")
        assert event.data.retry_in is not None
        assert 0.15 <= event.data.retry_in <= 0.3
    # Backoff.delay with Kind.AUTH never goes below half of auth_retry: no hot loop.
    gaps = [b - a for a, b in itertools.pairwise(sim.attempt_times[:5])]
    assert all(gap >= 0.14 for gap in gaps), gaps
    assert sim.attempts == len(failed) + 1
    assert collector.of_type("status.connected")


async def test_503_backs_off_honours_retry_after_and_recovers(
    sim: TpAlertsSimulator, collector: Collector
) -> None:
    """503s give status.error and jittered retries; Retry-After is a floor; then it recovers."""
    sim.fail_next(503, count=2)
    sim.fail_next(503, count=1, retry_after="1")
    async with running(sim, collector):
        await collector.wait_for(n_signals(10))
    errors = collector.of_type("status.error")
    assert len(errors) == 3
    codes = [(e.data.reason, e.data.code) for e in errors if isinstance(e.data, StatusData)]
    assert codes == [("server_error", "503")] * 3
    last = errors[-1].data
    assert isinstance(last, StatusData)
    assert last.retry_in is not None
    assert last.retry_in >= 1.0
    assert sim.attempt_times[3] - sim.attempt_times[2] >= 0.99  # timer granularity
    assert sim.attempts == 4
    assert collector.types()[:4] == ["status.error"] * 3 + ["status.connected"]


async def test_sse_retry_field_is_a_floor_for_the_reconnect_delay(
    sim: TpAlertsSimulator, collector: Collector
) -> None:
    """A ``retry:`` the stream sent holds the next reconnect back at least that long."""
    sim.inject(b"retry: 700\n\n")
    sim.cut_after(2)
    async with running(sim, collector):
        await collector.wait_count("status.connected", 2)
        await collector.wait_for(n_signals(10))
    (gone,) = collector.of_type("status.disconnected")
    assert isinstance(gone.data, StatusData)
    assert gone.data.retry_in is not None
    assert gone.data.retry_in >= 0.7
    assert sim.attempt_times[1] - sim.attempt_times[0] >= 0.69  # timer granularity


async def test_cut_mid_frame_drops_the_partial_event_only(
    sim: TpAlertsSimulator, collector: Collector
) -> None:
    """A frame cut in half is never emitted; the events before and after it are, once each."""
    sim.cut_mid_frame(after=3)
    async with running(sim, collector):
        await collector.wait_for(n_signals(9))
        await collector.wait_count("status.connected", 2)
    ((lost_name, lost),) = sim.lost
    assert (lost_name, lost["id"]) == ("working", 35444)
    got = [e.id for e in signals(collector)]
    assert "alerts:35444:working" not in got
    # Its later events still arrive, without the context only the lost frame had.
    closed = next(e for e in signals(collector) if e.id == "alerts:35444:closed")
    assert closed.symbol is None
    assert isinstance(closed.data, SignalData)
    assert closed.data.entry is None
    assert got == [f"{NAME}:{p['id']}:{name}" for name, p in sim.sent]
    assert len(got) == 9
    assert collector.of_type("status.disconnected")


async def test_reconnect_repeats_are_dropped_by_event_id(
    sim: TpAlertsSimulator, collector: Collector
) -> None:
    """Events a reconnect repeats are counted as duplicates and published once."""
    sim.cut_after(5)
    sim.replay_on_reconnect = 3
    async with running(sim, collector) as adapter:
        await collector.wait_for(n_signals(10))
        await until(lambda: adapter.ctx.counters["duplicates"] >= 3)
    ids = [e.id for e in signals(collector)]
    assert len(ids) == len(set(ids)) == 10
    assert adapter.ctx.counters["duplicates"] == 3
    assert sim.attempts == 2


async def test_last_event_id_is_sent_when_the_feed_gives_ids(
    sim: TpAlertsSimulator, collector: Collector
) -> None:
    """If frames carry ``id:``, the reconnect sends the last one and the server resumes there."""
    sim.send_ids = True
    sim.cut_after(4)
    async with running(sim, collector) as adapter:
        await collector.wait_for(n_signals(10))
    assert sim.last_event_ids == [None, "4"]
    assert len({e.id for e in signals(collector)}) == 10
    assert adapter.ctx.counters["duplicates"] == 0


def _malformed(sim: TpAlertsSimulator) -> None:
    sim.inject_malformed_json()


def _unknown(sim: TpAlertsSimulator) -> None:
    sim.inject_unknown_event("promoted")


def _huge(sim: TpAlertsSimulator) -> None:
    sim.inject_huge_line()


@pytest.mark.parametrize(
    ("fault", "counter"),
    [
        (_malformed, "bad.malformed"),
        (_unknown, "unknown.promoted"),
        (_huge, "bad.oversized_line"),
    ],
    ids=["malformed_json", "unknown_event", "10mb_line"],
)
async def test_bad_frames_are_counted_and_good_events_still_flow(
    sim: TpAlertsSimulator,
    collector: Collector,
    fault: Callable[[TpAlertsSimulator], None],
    counter: str,
) -> None:
    """A bad frame before the scripted events is counted once; all good events still arrive."""
    fault(sim)
    async with running(sim, collector) as adapter:
        await collector.wait_for(n_signals(10))
    assert adapter.ctx.counters[counter] == 1
    assert observed(signals(collector)) == expected(list(sim.sent))
    assert sim.attempts == 1


async def test_non_sse_content_type_is_counted_and_retried(
    sim: TpAlertsSimulator, collector: Collector
) -> None:
    """A 200 that is not an event stream is bad input and a retry; the feed recovers after."""
    sim.content_type = "application/json"
    async with running(sim, collector) as adapter:
        await collector.wait_count("status.error", 2)
        sim.content_type = "text/event-stream"
        await collector.wait_for(n_signals(10))
    first = collector.of_type("status.error")[0]
    assert isinstance(first.data, StatusData)
    assert first.data.reason == "content_type"
    assert adapter.ctx.counters["bad.content_type"] == len(collector.of_type("status.error"))


async def test_accept_and_never_send_times_out_and_recovers(
    sim: TpAlertsSimulator, collector: Collector
) -> None:
    """A server that takes the request and never answers is counted, retried, then recovered."""
    sim.never_send = True
    async with running(sim, collector) as adapter:
        await collector.wait_count("status.error", 1)
        sim.never_send = False
        await collector.wait_for(n_signals(10))
    first = collector.of_type("status.error")[0]
    assert isinstance(first.data, StatusData)
    assert first.data.reason == "no_response"
    assert adapter.ctx.counters["bad.no_response"] >= 1


def test_the_script_is_deterministic_and_plays_whole_lifecycles() -> None:
    """One seed gives one feed; every alert opens with working and ends at most once, gain exact."""
    first = list(itertools.islice(AlertScript(7), 300))
    assert first == list(itertools.islice(AlertScript(7), 300))
    assert first != list(itertools.islice(AlertScript(8), 300))
    states: dict[int, str] = {}
    workings: dict[int, dict[str, Any]] = {}
    for name, payload in first:
        alert = payload["id"]
        previous = states.get(alert)
        allowed = {"working": None, "onGoing": "working", "aborted": "working", "closed": "onGoing"}
        assert previous == allowed[name], (alert, previous, name)
        states[alert] = name
        if name == "working":
            assert alert == FIRST_ALERT_ID + len(workings)
            workings[alert] = payload
        if name == "closed":
            w = workings[alert]
            decimals = next(d for _, t, _, d in MARKETS if t == w["ticker"])
            long = w["target"] > w["start"]
            move = payload["exit"] - w["start"]
            assert payload["gain"] == round(move if long else -move, decimals)
            assert payload["closedAt"] > w["startedAt"]


HOSTILE: list[bytes] = [
    b"event: working\ndata: " + hostile.nested() + b"\n\n",
    b"event: working\ndata: " + hostile.nested_objects() + b"\n\n",
    hostile.envelope(
        b'event: working\ndata: {"id":7,"ticker":"BTC/USD","x":@}\n\n', hostile.nested()
    ),
    hostile.envelope(b'event: promoted\ndata: {"id":7,"x":@}\n\n', hostile.nested()),
    b'event: working\ndata: {"id":7,"start":NaN}\n\n',
    b'event: closed\ndata: {"id":7,"exit":Infinity}\n\n',
    b'event: closed\ndata: {"id":7,"gain":-1e999}\n\n',
    b'event: working\ndata: {"id":"seven"}\n\n',
    b'event: aborted\ndata: {"id":[7]}\n\n',
    b'event: onGoing\ndata: {"id":7,"token":{"a":1}}\n\n',
    # Over their bounds (tradebus.adapters.bounds): a part of an id, a symbol, a time.
    b'event: onGoing\ndata: {"id":7,"token":"' + b"t" * 257 + b'"}\n\n',
    b'event: working\ndata: {"id":7,"ticker":"' + b"T" * 65 + b'"}\n\n',
    b'event: closed\ndata: {"id":7,"closedAt":"' + b"9" * 65 + b'"}\n\n',
]


async def test_hostile_payloads_are_bad_input_and_every_valid_event_follows(
    sim: TpAlertsSimulator, collector: Collector
) -> None:
    """Deep nesting, NaN/Infinity, wrong types: each counted, no crash, all good events arrive."""
    for payload in HOSTILE:
        sim.inject(payload)
    async with running(sim, collector) as adapter:
        await collector.wait_for(n_signals(10))
    assert adapter.ctx.counters["bad.malformed"] == len(HOSTILE) - 1
    assert adapter.ctx.counters["unknown.promoted"] == 1
    assert observed(signals(collector)) == expected(list(sim.sent))
    assert sim.attempts == 1


async def test_the_simulator_survives_hostile_clients(
    sim: TpAlertsSimulator, collector: Collector
) -> None:
    """Last-Event-IDs no server sent (5,000 digits, other scripts) get a stream, never a server
    error; a real client is served after them."""
    sim.send_ids = True
    async with aiohttp.ClientSession() as http:
        for last in ["9" * 5000, "\u0663", "-1"]:
            headers = {"Authorization": f"Bearer {TOKEN}", "Last-Event-ID": last}
            async with http.get(sim.url, headers=headers) as response:
                assert response.status == 200, last[:10]
    # The script's events went to those clients; a ping shows the next one is still served.
    async with running(sim, collector) as adapter:
        await until(lambda: adapter.ctx.counters["pings"] >= 1)
    assert collector.types() == ["status.connected"]


async def test_a_restart_says_status_gap_for_the_time_away_and_keeps_the_tickers(
    sim: TpAlertsSimulator, collector: Collector
) -> None:
    """No replay upstream: the first connect after a restart gives one status.gap from the
    journal's last write to now; a closed after the restart still carries its ticker."""
    # The doc's payloads with an alert id the simulator's own script never uses.
    working = (REPO_DATA / "working.sse").read_bytes().replace(b"35443", b"99001")
    closed = (REPO_DATA / "closed.sse").read_bytes().replace(b"35443", b"99001")
    async with running(sim, collector):
        await collector.wait_count("status.connected", 1)
        sim.inject(working)
        await collector.wait_for(lambda c: any(e.id.endswith(":99001:working") for e in c.events))
    stopped_at = time.time() - 60
    after = Collector()
    async with running(sim, after, history=collector.events, stopped_at=stopped_at):
        await after.wait_count("status.connected", 1)
        await until(lambda: len(sim._conns) == 1)  # the first run's stream has gone
        sim.inject(working)  # a repeat of what the journal holds: dropped
        sim.inject(closed)
        await after.wait_for(lambda c: any(e.id.endswith(":99001:closed") for e in c.events))
    gaps = after.of_type("status.gap")
    assert len(gaps) == 1
    data = gaps[0].data
    assert isinstance(data, GapData)
    assert data.reason == "daemon_restart"
    assert data.since == times.from_epoch(stopped_at)
    assert data.until is not None
    assert data.until > data.since
    assert [e.symbol for e in after.events if e.id.endswith(":99001:closed")] == ["BTC/USD"]
    assert not any(e.id.endswith(":99001:working") for e in after.events)
