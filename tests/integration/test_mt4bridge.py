"""MT4 bridge adapter against the simulator over 127.0.0.1: session, stream, faults, reconcile."""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import re
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp
import pytest

from tests import hostile
from tests.conftest import Collector
from tradebus import config, log
from tradebus.adapters.base import SourceContext
from tradebus.adapters.mt4bridge.adapter import Mt4BridgeAdapter
from tradebus.config import Mt4BridgeSource
from tradebus.schemas.events import (
    AccountData,
    AccountUpdated,
    Event,
    PositionClosed,
    PositionData,
    PositionOpened,
    StatusAuthFailed,
    StatusConnected,
    StatusDisconnected,
    event_type,
)
from tradebus.simulators.mt4bridge import Mt4BridgeSimulator, Recorded

REQUEST_ID = re.compile(r"^tb-[0-9a-f]{32}$")


@pytest.fixture
async def sim() -> AsyncIterator[Mt4BridgeSimulator]:
    simulator = Mt4BridgeSimulator(rate=40.0, seed=7, trade_interval=None)
    await simulator.start()
    yield simulator
    await simulator.stop()


def _config(sim: Mt4BridgeSimulator, **overrides: Any) -> Mt4BridgeSource:
    table = sim.source_table("mt4")
    table.update(
        heartbeat_interval=10.0,
        reconcile_interval=60.0,
        reconnect_min=0.01,
        reconnect_max=0.1,
        auth_retry=0.3,
        breaker_threshold=3,
        breaker_reset=0.5,
        request_timeout=5.0,
        idle_timeout=5.0,
    )
    table.update(overrides)
    parsed = config.parse({"sources": [table], "sinks": [{"type": "stdout", "name": "o"}]}, env={})
    source = parsed.sources[0]
    assert isinstance(source, Mt4BridgeSource)
    return source


@contextlib.asynccontextmanager
async def _running(
    cfg: Mt4BridgeSource, collector: Collector, history: Sequence[Event] = ()
) -> AsyncIterator[SourceContext]:
    ctx = SourceContext("mt4", "mt4bridge", collector.publish, history=history)
    task = asyncio.create_task(Mt4BridgeAdapter(cfg, ctx).run())
    try:
        yield ctx
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _count(collector: Collector, type_: str, reason: str | None = None) -> int:
    return len(_of(collector, type_, reason))


def _of(collector: Collector, type_: str, reason: str | None = None) -> list[Any]:
    return [
        e
        for e in collector.of_type(type_)
        if reason is None or getattr(e.data, "reason", None) == reason
    ]


def _with_id(collector: Collector, event_id: str) -> list[Event]:
    return [e for e in collector.events if e.id == event_id]


def _opens(sim: Mt4BridgeSimulator) -> list[Recorded]:
    return sim.of("POST", "/session/open")


def _session_of_heartbeat(record: Recorded) -> str:
    match = re.fullmatch(r"/session/([^/]+)/heartbeat", record.path)
    assert match is not None
    return match[1]


async def test_session_open_then_session_id_on_every_call(
    sim: Mt4BridgeSimulator, collector: Collector
) -> None:
    """The adapter opens one session with the API key, then sends its id on every call."""
    async with _running(_config(sim, heartbeat_interval=0.1, reconcile_interval=0.2), collector):
        await collector.wait_count("status.connected", 1)
        await sim.wait_for(lambda s: len(s.of("POST", "/heartbeat")) >= 2)
        await sim.wait_for(lambda s: len(s.of("GET", "/account")) >= 2)
    connected = collector.of_type("status.connected")[0]
    assert isinstance(connected, StatusConnected)
    assert connected.account == "demo-mt4-01"
    first, *rest = sim.requests
    assert (first.method, first.path, first.session_id, first.status) == (
        "POST",
        "/session/open",
        None,
        200,
    )
    sid = _session_of_heartbeat(sim.of("POST", "/heartbeat")[0])
    assert sid.startswith("sess_mt4_")
    assert all(r.authorized for r in sim.requests)
    assert {(r.session_id, r.status) for r in rest if r.method != "DELETE"} == {
        (sid, 200),
        (sid, 101),
    }
    assert [r.path for r in rest[:3]] == ["/events", "/account", "/positions"]
    assert len(_opens(sim)) == 1


async def test_heartbeats_keep_the_session_alive_on_cadence(
    sim: Mt4BridgeSimulator, collector: Collector
) -> None:
    """Heartbeats go out every heartbeat_interval and keep a short-TTL session alive."""
    sim.session_ttl = 0.5
    async with _running(_config(sim, heartbeat_interval=0.15), collector):
        await sim.wait_for(lambda s: len(s.of("POST", "/heartbeat")) >= 6)
    beats = sim.of("POST", "/heartbeat")[:6]
    gaps = [b.at - a.at for a, b in itertools.pairwise(beats)]
    assert all(gap >= 0.14 for gap in gaps), gaps
    assert all(b.status == 200 for b in beats)
    assert len({b.request_id for b in beats}) == 6
    assert len(_opens(sim)) == 1
    assert _count(collector, "status.disconnected") == 0


async def test_expired_session_is_reopened_once(
    sim: Mt4BridgeSimulator, collector: Collector
) -> None:
    """A session that lapsed (401) is replaced by exactly one new session, at once."""
    async with _running(_config(sim, reconcile_interval=0.1), collector):
        await collector.wait_count("status.connected", 1)
        await sim.expire_sessions()
        await collector.wait_count("status.connected", 2)
        await sim.wait_for(lambda s: len(s.of("GET", "/account")) >= 4)
    assert _count(collector, "status.auth_failed") == 0
    rejected = _of(collector, "status.disconnected", "session_rejected")
    assert len(rejected) <= 1  # the WS cut may be noticed first; either way one reopen
    opens = _opens(sim)
    assert [o.status for o in opens] == [200, 200]
    before = {r.session_id for r in sim.requests if r.at < opens[1].at and r.session_id}
    after = {r.session_id for r in sim.requests if r.at > opens[1].at and r.session_id}
    assert len(before) == 1
    assert len(after) == 1
    assert before != after


async def test_two_401s_give_auth_failed_and_a_slow_retry(
    sim: Mt4BridgeSimulator, collector: Collector
) -> None:
    """401 → one immediate reopen; a 401 on that too → status.auth_failed and a slow retry."""
    async with _running(_config(sim, heartbeat_interval=0.1, auth_retry=0.4), collector):
        await collector.wait_count("status.connected", 1)
        sim.fail_auth(2)
        await collector.wait_count("status.connected", 2)
    assert _count(collector, "status.disconnected", "session_rejected") == 1
    (failed,) = collector.of_type("status.auth_failed")
    assert isinstance(failed, StatusAuthFailed)
    assert (failed.data.reason, failed.data.code) == ("auth_failed", "401")
    assert failed.data.retry_in is not None
    assert 0.2 <= failed.data.retry_in <= 0.4
    opens = _opens(sim)
    assert [o.status for o in opens] == [200, 401, 200]
    assert opens[2].at - opens[1].at >= 0.2


async def test_session_rejected_again_after_reopen_backs_off_slowly(
    sim: Mt4BridgeSimulator, collector: Collector
) -> None:
    """New sessions that are rejected at once are reopened only once quickly, then slowly."""
    async with _running(_config(sim, auth_retry=0.3), collector):
        await collector.wait_count("status.connected", 1)
        sim.fail_auth(None, match="/events")
        await sim.cut_ws()
        await collector.wait_count("status.auth_failed", 3)
        opens = list(_opens(sim))
        sim.clear_faults()
        await collector.wait_count("status.connected", 2)
    assert _count(collector, "status.disconnected", "session_rejected") == 1
    assert {e.data.reason for e in _of(collector, "status.auth_failed")} == {"session_rejected"}
    # The first open, one immediate reopen, then one per slow retry.
    assert len(opens) == 1 + 1 + 2
    assert all(o.status == 200 for o in opens)
    gaps = [b.at - a.at for a, b in itertools.pairwise(opens[1:])]
    assert all(gap >= 0.15 for gap in gaps), gaps


async def test_rejected_credentials_never_hot_loop(
    sim: Mt4BridgeSimulator, collector: Collector
) -> None:
    """While the bridge refuses the credentials, session opens are paced by auth_retry."""
    sim.reject_credentials = True
    async with _running(_config(sim, auth_retry=0.2), collector):
        await collector.wait_count("status.auth_failed", 4)
        opens = list(_opens(sim))
        sim.reject_credentials = False
        await collector.wait_count("status.connected", 1)
    assert len(opens) == 4
    gaps = [b.at - a.at for a, b in itertools.pairwise(opens)]
    assert all(gap >= 0.1 for gap in gaps), gaps
    assert all(o.status == 401 for o in opens)
    assert all(e.data.retry_in >= 0.1 for e in _of(collector, "status.auth_failed"))


async def test_a_403_is_refused_credentials_as_for_every_upstream(
    sim: Mt4BridgeSimulator, collector: Collector
) -> None:
    """One HTTP classifier (backoff's): a 403 on a call is status.auth_failed, paced by
    auth_retry, and not a session to reopen (that is a 401's meaning alone)."""
    async with _running(_config(sim, reconcile_interval=0.1, auth_retry=0.2), collector):
        await collector.wait_count("status.connected", 1)
        sim.fail(403, None, match="/account")
        await collector.wait_count("status.auth_failed", 2)
        sim.clear_faults()
        await collector.wait_count("status.connected", 2)
    failed = _of(collector, "status.auth_failed")
    assert {(e.data.reason, e.data.code) for e in failed} == {("account_failed", "Error")}
    assert all(e.data.retry_in is not None and e.data.retry_in >= 0.1 for e in failed)
    assert _count(collector, "status.disconnected", "session_rejected") == 0
    assert _count(collector, "status.error") == 0


async def test_429_retry_after_is_honoured_with_the_same_request_id(
    sim: Mt4BridgeSimulator, collector: Collector
) -> None:
    """A 429 with Retry-After: 1 is retried in place after ≥ 1 s, re-sending the same id."""
    async with _running(_config(sim, heartbeat_interval=0.1), collector):
        await collector.wait_count("status.connected", 1)
        sim.rate_limit(1, retry_after=1)
        await sim.wait_for(
            lambda s: (
                any(r.status == 429 for r in s.requests)
                and s.requests[-1].status == 200
                and s.requests[-1].at - next(r for r in s.requests if r.status == 429).at > 0
            )
        )
    limited_at = next(i for i, r in enumerate(sim.requests) if r.status == 429)
    limited, retry = sim.requests[limited_at], sim.requests[limited_at + 1]
    assert limited.path == retry.path
    assert limited.path.endswith("/heartbeat")
    assert retry.status == 200
    assert retry.request_id == limited.request_id
    assert limited.request_id is not None
    assert REQUEST_ID.match(limited.request_id)
    assert retry.at - limited.at >= 1.0
    assert _count(collector, "status.disconnected") == 0


async def test_502_opens_the_breaker_then_half_open_probe_recovers(
    sim: Mt4BridgeSimulator, collector: Collector
) -> None:
    """Three 502s open the breaker (status.disconnected); probes wait breaker_reset; recovery."""
    async with _running(_config(sim, heartbeat_interval=0.1), collector):
        await collector.wait_count("status.connected", 1)
        start = len(sim.requests)
        sim.bridge_down()
        await collector.wait_for(lambda c: _count(c, "status.disconnected") >= 1)
        await sim.wait_for(lambda s: sum(r.status == 502 for r in s.requests) >= 5)
        sim.bridge_up()
        await collector.wait_count("status.connected", 2)
    down = [r for r in sim.requests[start:] if r.status == 502]
    first_three = down[:3]
    assert [r.path.endswith("/heartbeat") for r in first_three] == [True, True, True]
    assert len({r.request_id for r in first_three}) == 1  # retries re-send the same id
    probes = down[2:5]
    gaps = [b.at - a.at for a, b in itertools.pairwise(probes)]
    assert all(gap >= 0.45 for gap in gaps), gaps
    disconnected = collector.of_type("status.disconnected")[0]
    assert isinstance(disconnected, StatusDisconnected)
    assert (disconnected.data.reason, disconnected.data.code) == (
        "bridge_unavailable",
        "BridgeUnavailable",
    )
    assert disconnected.data.message == (
        "The bridge lost connectivity to the terminal or broker server."
    )
    assert disconnected.data.retry_in is not None
    assert disconnected.data.retry_in >= 0.45
    assert _count(collector, "status.auth_failed") == 0


async def test_reconciliation_reports_opens_and_closes_missed_during_a_ws_cut(
    sim: Mt4BridgeSimulator, collector: Collector
) -> None:
    """Positions opened/closed while the WS was down appear once; WS-seen ones never twice."""
    before = await sim.open_position("EURUSD", "BUY", 0.2, silent=True)
    async with _running(_config(sim), collector):
        await collector.wait_for(lambda c: bool(_with_id(c, f"mt4:pos:{before}:opened")))
        seen = await sim.open_position("GBPUSD", "SELL", 0.1)
        await collector.wait_for(lambda c: bool(_with_id(c, f"mt4:pos:{seen}:opened")))
        sim.refuse_ws = True
        await sim.cut_ws()
        await collector.wait_count("status.disconnected", 1)
        during = await sim.open_position("XAUUSD", "BUY", 0.01, silent=True)
        await sim.close_position(before, silent=True)
        sim.refuse_ws = False
        await collector.wait_count("status.connected", 2)
        await sim.cut_ws()
        await collector.wait_count("status.connected", 3)
    opened = _with_id(collector, f"mt4:pos:{before}:opened")
    assert len(opened) == 1
    assert isinstance(opened[0], PositionOpened)
    assert opened[0].symbol == "EURUSD"
    assert opened[0].data.position_id == str(before)
    assert (opened[0].data.side, opened[0].data.volume, opened[0].data.reason) == (
        "buy",
        0.2,
        "reconciled",
    )
    assert len(_with_id(collector, f"mt4:pos:{seen}:opened")) == 1
    assert len(_with_id(collector, f"mt4:pos:{seen}:closed")) == 0
    (missed_open,) = _with_id(collector, f"mt4:pos:{during}:opened")
    assert isinstance(missed_open, PositionOpened)
    assert (missed_open.symbol, missed_open.data.side, missed_open.data.volume) == (
        "XAUUSD",
        "buy",
        0.01,
    )
    (missed_close,) = _with_id(collector, f"mt4:pos:{before}:closed")
    assert isinstance(missed_close, PositionClosed)
    assert missed_close.data.position_id == str(before)
    assert missed_close.data.reason == "reconciled"
    assert missed_close.data.close_price is not None
    assert collector.of_type("status.gap")
    assert len(collector.of_type("position.opened")) == 3
    assert len(collector.of_type("position.closed")) == 1


async def test_a_restart_reports_only_what_changed_while_away(
    sim: Mt4BridgeSimulator, collector: Collector
) -> None:
    """After a restart, positions the journal holds are not reported opened again; one closed
    while the daemon was down is reported closed once; one opened meanwhile, opened once."""
    kept = await sim.open_position("EURUSD", "BUY", 0.2, silent=True)
    gone = await sim.open_position("GBPUSD", "SELL", 0.1, silent=True)
    async with _running(_config(sim), collector):
        await collector.wait_for(
            lambda c: (
                bool(_with_id(c, f"mt4:pos:{kept}:opened"))
                and bool(_with_id(c, f"mt4:pos:{gone}:opened"))
            )
        )
    await sim.close_position(gone, silent=True)
    new = await sim.open_position("XAUUSD", "BUY", 0.01, silent=True)
    after = Collector()
    async with _running(_config(sim), after, history=collector.events):
        await after.wait_for(
            lambda c: (
                bool(_with_id(c, f"mt4:pos:{new}:opened"))
                and bool(_with_id(c, f"mt4:pos:{gone}:closed"))
            )
        )
    assert [e.id for e in after.of_type("position.opened")] == [f"mt4:pos:{new}:opened"]
    (closed,) = after.of_type("position.closed")
    assert isinstance(closed, PositionClosed)
    assert (closed.id, closed.symbol) == (f"mt4:pos:{gone}:closed", "GBPUSD")


async def test_account_updated_only_when_it_changes(
    sim: Mt4BridgeSimulator, collector: Collector
) -> None:
    """GET /account polls give account.updated on the first read and on a change only."""
    async with _running(_config(sim, reconcile_interval=0.05), collector):
        await sim.wait_for(lambda s: len(s.of("GET", "/account")) >= 5)
        assert _count(collector, "account.updated") == 1
        sim.set_account(balance=12345.5)
        await collector.wait_count("account.updated", 2)
        polls = len(sim.of("GET", "/account"))
        await sim.wait_for(lambda s: len(s.of("GET", "/account")) >= polls + 4)
    first, second = collector.of_type("account.updated")
    assert isinstance(first, AccountUpdated)
    assert isinstance(second, AccountUpdated)
    assert first.account == "demo-mt4-01"
    assert first.data == AccountData(
        balance=10000.0,
        equity=10000.0,
        margin=0.0,
        free_margin=10000.0,
        margin_level=None,
        profit=0.0,
        currency="USD",
    )
    assert second.data == AccountData(
        balance=12345.5,
        equity=12345.5,
        margin=0.0,
        free_margin=12345.5,
        margin_level=None,
        profit=0.0,
        currency="USD",
    )
    assert _count(collector, "account.updated") == 2


async def test_shutdown_deletes_the_session_and_write_calls_carry_request_ids(
    sim: Mt4BridgeSimulator, collector: Collector
) -> None:
    """Cancel → DELETE /session/{id}; every write call carries its own x-request-id."""
    async with _running(_config(sim, heartbeat_interval=0.1), collector):
        await sim.wait_for(lambda s: len(s.of("POST", "/heartbeat")) >= 2)
    (delete,) = sim.of("DELETE", "")
    sid = _session_of_heartbeat(sim.of("POST", "/heartbeat")[0])
    assert (delete.path, delete.session_id, delete.status) == (f"/session/{sid}", sid, 204)
    writes = [r for r in sim.requests if r.method in ("POST", "DELETE")]
    assert len(writes) >= 4
    assert all(r.request_id is not None and REQUEST_ID.match(r.request_id) for r in writes)
    assert len({r.request_id for r in writes}) == len(writes)
    await sim.wait_for(lambda s: s.ws_clients == 0)


async def test_order_task_events_flow_through_the_stream(
    sim: Mt4BridgeSimulator, collector: Collector
) -> None:
    """A market task streams accepted → filled → opened; each normalized once, in order."""
    async with _running(_config(sim), collector):
        await collector.wait_count("status.connected", 1)
        ticket = await sim.open_position("EURUSD", "BUY", 0.2)
        await collector.wait_for(lambda c: bool(_with_id(c, f"mt4:pos:{ticket}:opened")))
        await sim.close_position(ticket)
        await collector.wait_for(lambda c: bool(_with_id(c, f"mt4:pos:{ticket}:closed")))
        await collector.wait_count("quote.updated", 1)
    order_events = [
        (event_type(e), e.id)
        for e in collector.events
        if event_type(e).startswith(("order.", "position.opened", "position.closed"))
    ]
    assert order_events == [
        ("order.accepted", "mt4:order:task_000001:accepted"),
        ("order.filled", "mt4:order:task_000001:filled"),
        ("position.opened", f"mt4:pos:{ticket}:opened"),
        ("position.closed", f"mt4:pos:{ticket}:closed"),
    ]
    (closed,) = _with_id(collector, f"mt4:pos:{ticket}:closed")
    assert isinstance(closed, PositionClosed)
    assert isinstance(closed.data, PositionData)
    assert (closed.symbol, closed.data.side, closed.data.volume, closed.data.reason) == (
        "EURUSD",
        "buy",
        0.2,
        "client",
    )
    quote = collector.of_type("quote.updated")[0]
    assert quote.symbol in sim.symbols
    assert quote.id.startswith(f"mt4:quote:{quote.symbol}:{quote.time}:")


async def test_credentials_never_reach_the_logs(
    sim: Mt4BridgeSimulator, collector: Collector
) -> None:
    """Password, API key and session id stay out of every log line, failures included."""
    stream = io.StringIO()
    log.configure("debug", stream=stream)
    try:
        async with _running(_config(sim, heartbeat_interval=0.1), collector):
            await collector.wait_count("status.connected", 1)
            sim.fail_auth(2)
            await collector.wait_count("status.connected", 2)
            sim.bridge_down(3)
            await collector.wait_count("status.connected", 3)
    finally:
        log.configure("debug")
    text = stream.getvalue()
    assert "session_opened" in text
    assert "auth_failed" in text
    assert "circuit_open" in text
    assert "session_released" in text
    sids = {r.session_id for r in sim.requests if r.session_id}
    for value in (sim.password, sim.api_key, *sids):
        assert value not in text


async def test_a_frame_over_max_message_bytes_is_bad_input_then_reconnect_and_reconcile(
    sim: Mt4BridgeSimulator, collector: Collector
) -> None:
    """One frame past ``max_message_bytes``: closed with 1009, counted, reconnected, and the
    positions reconciled again; a frame of exactly the bound is taken."""
    bound = 64 * 1024
    async with _running(_config(sim, max_message_bytes=bound), collector) as ctx:
        await collector.wait_count("status.connected", 1)
        await sim.inject_huge(bound)
        # The simulator's own quotes are near 1.08: a bid of 1.5 is the padded one.
        await collector.wait_for(
            lambda c: any(getattr(e.data, "bid", None) == 1.5 for e in c.events)
        )
        await sim.inject_huge(bound + 1)
        await collector.wait_count("status.connected", 2)
        counters = dict(ctx.counters)
    assert counters["bad.oversized_message"] == 1
    assert sum(v for k, v in counters.items() if k.startswith("bad.")) == 1
    down = [e.data for e in collector.of_type("status.disconnected")]
    assert [(d.reason, d.code) for d in down] == [("message_too_big", "1009")]  # type: ignore[union-attr]
    assert len(sim.of("GET", "/positions")) == 2


def test_max_message_bytes_defaults_to_sixteen_mebibytes(sim: Mt4BridgeSimulator) -> None:
    """The documented default."""
    assert _config(sim).max_message_bytes == 16 * 1024 * 1024


HOSTILE: list[bytes] = [
    hostile.nested(),
    hostile.nested_objects(),
    hostile.envelope(b'{"type":"quote","symbol":"EURUSD","x":@}', hostile.nested()),
    hostile.envelope(b'{"type":"news","x":@}', hostile.nested()),
    hostile.envelope(b'{"x":@,"type":"news"}', hostile.nested_objects()),
    b'{"type":"quote","symbol":"EURUSD","bid":NaN}',
    b'{"type":"quote","symbol":"EURUSD","ask":Infinity}',
    b'{"type":"quote","symbol":"EURUSD","ask":-1e999}',
    b'{"type":"quote","symbol":["EURUSD"]}',
    b'{"type":"profit","ticket":"one"}',
    b'{"type":"profit","ticket":123456789012345678901234567890}',
    b'{"type":"order","event":"filled","ticket":1.5}',
    # Over their bounds (tradebus.adapters.bounds): a symbol, a time, an id, free text.
    b'{"type":"quote","symbol":"' + b"E" * 65 + b'","bid":1.5}',
    b'{"type":"quote","symbol":"EURUSD","time":"' + b"9" * 65 + b'"}',
    b'{"type":"order","event":"filled","taskId":"' + b"t" * 257 + b'"}',
    b'{"type":"order","event":"rejected","reason":"' + b"r" * 4097 + b'"}',
]


def _valid_quote(n: int) -> str:
    return (
        '{"type":"quote","symbol":"EURUSD","bid":1.5,"ask":1.6,'
        f'"time":"2030-01-01T00:00:00.{n:03d}Z"}}'
    )


async def test_hostile_frames_are_bad_input_and_every_valid_message_follows(
    sim: Mt4BridgeSimulator, collector: Collector
) -> None:
    """Deep nesting, NaN/Infinity, wrong types, over-long strings: each frame counted once, no
    reconnect, and the valid quotes sent after them all arrive."""
    async with _running(_config(sim), collector) as ctx:
        await collector.wait_count("status.connected", 1)
        for payload in HOSTILE:
            await sim.inject(payload.decode())
        await sim.inject('{"type":"quote","symbol":"EURUSD","bid":1.5,"time":1e300}')
        for n in range(5):
            await sim.inject(_valid_quote(n))
        wanted = {f"mt4:quote:EURUSD:2030-01-01T00:00:00.{n:03d}Z:1.5:1.6" for n in range(5)}
        await collector.wait_for(lambda c: wanted <= {e.id for e in c.events})
        counters = dict(ctx.counters)
    assert counters["bad.ws_message"] == len(HOSTILE)
    assert sum(v for k, v in counters.items() if k.startswith("bad.")) == len(HOSTILE)
    # An epoch past year 9999 keeps its quote, stamped with the receipt time, and is counted.
    assert counters["time_fallback"] == 1
    (far,) = [
        e for e in collector.events if getattr(e.data, "bid", None) == 1.5 and e.id not in wanted
    ]
    assert far.time == far.received
    assert len(collector.of_type("status.connected")) == 1
    assert collector.of_type("status.disconnected") == []


HOSTILE_CLIENT: list[bytes] = [
    hostile.nested(),
    hostile.nested_objects(),
    hostile.envelope(b'{"symbol":"EURUSD","type":"BUY","volume":1,"comment":@}', hostile.nested()),
    b'{"symbol":"EURUSD","type":"BUY","volume":"lots"}',
    b'{"symbol":"EURUSD","type":"BUY","volume":1e999}',
    b"\xff\xfe not json",
]

HOSTILE_SUBSCRIBE: list[bytes] = [
    hostile.nested(),
    hostile.nested_objects(),
    hostile.envelope(b'{"action":"subscribe","x":@}', hostile.nested()),
    b'{"action":"subscribe","channels":"quotes"}',
    b'{"action":"unsubscribe"}',
    b"\xff\xfe not json",
]


async def test_the_simulator_survives_hostile_clients(
    sim: Mt4BridgeSimulator, collector: Collector
) -> None:
    """Deep nesting and wrong types in a REST body or a WS message get a 4xx or an ``error``
    frame, never a server error or a dropped connection; a real client is served after them."""
    table = sim.source_table("mt4")
    auth = {"Authorization": f"Bearer {table['api_key']}"}
    base = table["url"]
    async with aiohttp.ClientSession() as http:
        for body in HOSTILE_CLIENT:
            async with http.post(f"{base}/session/open", data=body, headers=auth) as response:
                assert 400 <= response.status < 500
        opening = {
            "accountId": table["account_id"],
            "server": table["server"],
            "login": table["login"],
            "password": table["password"],
        }
        async with http.post(f"{base}/session/open", json=opening, headers=auth) as response:
            headers = {**auth, "x-session-id": (await response.json())["sessionId"]}
        for body in HOSTILE_CLIENT:
            async with http.post(f"{base}/orders", data=body, headers=headers) as response:
                assert 400 <= response.status < 500
        async with http.ws_connect(f"{base}/events", headers=headers) as ws:
            for body in HOSTILE_SUBSCRIBE:
                await ws.send_str(body.decode(errors="replace"))
                assert (await ws.receive_json(timeout=5))["type"] == "error"
            await ws.send_json({"action": "subscribe", "channels": ["quotes"], "symbols": []})
            assert (await ws.receive_json(timeout=5))["type"] == "subscribed"
    async with _running(_config(sim), collector):
        await collector.wait_count("status.connected", 1)
        await collector.wait_count("quote.updated", 3)
