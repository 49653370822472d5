"""Every upstream, live against its simulator with ``record = true`` through its faults: the
replay of the recording writes the lines the live run wrote, twice alike, and no secret the
simulator was configured with or issued is anywhere in the recording."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec

from tests.recorded import (
    Lines,
    first_difference,
    leaked,
    live,
    recordings,
    renumbered,
    replayed,
    upstream_gone,
)
from tradebus.recording import files
from tradebus.recording.redact import REDACTED
from tradebus.simulators.mt4bridge import Mt4BridgeSimulator
from tradebus.simulators.tpalerts import TpAlertsSimulator
from tradebus.simulators.traderws import TraderWsSimulator
from tradebus.simulators.ttmt import TtmtSimulator

FAST = {"reconnect_min": 0.01, "reconnect_max": 0.05, "auth_retry": 0.2}


def reasons(lines: Lines, type_: str) -> list[str]:
    out = []
    for line in lines.lines:
        event = msgspec.json.decode(line)
        if event["type"] == type_:
            out.append(event["data"].get("reason"))
    return out


async def check(tmp_path: Path, source: str, lines: Lines, secrets: list[str]) -> list[bytes]:
    """Replay equals live (seq aside), two replays are identical, no secret was recorded."""
    paths = recordings(tmp_path, source)
    assert paths, "nothing was recorded"
    # A replay runs a loop of its own, as `tradebus replay` does: on a thread of its own here.
    got, stats = await asyncio.to_thread(replayed, paths)
    assert (stats.damage, stats.divergences, stats.crashed) == (0, 0, None)
    expected = renumbered(lines.lines)
    assert got == expected, first_difference(expected, got)
    again, _ = await asyncio.to_thread(replayed, paths)
    assert again == got
    assert leaked(paths, secrets) == []
    header = files.header(paths[0])
    assert header.source == source
    assert all(
        header.config[k] == REDACTED
        for k in ("api_key", "token", "password", "username")
        if k in header.config
    )
    return got


async def test_ttmt_recycles_cuts_and_a_revoked_key_replay_as_they_ran(tmp_path: Path) -> None:
    """Recycles, a cut, a frame cut in half, auth_revoked then 401s, a 503 with Retry-After."""
    key = "ttmt_live_rec_5e2a77"
    sim = TtmtSimulator(seed=3, rate=60.0, api_keys=(key,), lifetime=0.4, auth_check_interval=0.1)
    await sim.start()
    table: dict[str, Any] = {**sim.source_table("ttmt-rec"), **FAST, "read_timeout": 5.0}
    try:
        async with live(tmp_path, table) as (_, lines):
            await lines.wait_for(lambda s: "recycle" in reasons(s, "status.disconnected"))
            sim.cut_after(3)
            await lines.wait_count("status.connected", 3)
            sim.cut_mid_frame()
            await lines.wait_count("status.connected", 4)
            sim.revoke(key)
            await lines.wait_count("status.auth_failed", 1)
            sim.restore(key)
            await lines.wait_count("status.connected", 5)
            sim.unavailable, sim.retry_after = True, "0"
            sim.disconnect_all()
            await lines.wait_count("status.error", 1)
            sim.unavailable = False
            await lines.wait_count("status.connected", 6)
            await upstream_gone(sim, lines)
    finally:
        await sim.stop()
    await check(tmp_path, "ttmt-rec", lines, [key])
    assert reasons(lines, "status.auth_revoked") == ["key_revoked"]
    assert "connection_error" in reasons(lines, "status.disconnected")


async def test_tpalerts_cuts_503s_401s_and_a_ping_timeout_replay_as_they_ran(
    tmp_path: Path,
) -> None:
    """A cut, 503s with Retry-After, 401s, a stalled stream (pings stop): the same lines."""
    token = "tp_rec_token_93ab1f"
    sim = TpAlertsSimulator(seed=5, rate=40.0, token=token, ping_interval=0.1)
    await sim.start()
    table: dict[str, Any] = {**sim.source_table("alerts-rec"), **FAST, "missed_pings": 3}
    try:
        async with live(tmp_path, table) as (_, lines):
            await lines.wait_for(lambda s: sum(t.startswith("signal.") for t in s.types()) >= 3)
            sim.fail_next(503, 2, retry_after="0")
            sim.cut_after(1)
            await lines.wait_count("status.connected", 2)
            sim.unauthorized = True
            sim.cut_after(1)
            await lines.wait_count("status.auth_failed", 2)
            sim.unauthorized = False
            await lines.wait_count("status.connected", 3)
            sim.stall()
            await lines.wait_for(lambda s: "ping_timeout" in reasons(s, "status.disconnected"))
            await upstream_gone(sim, lines)
    finally:
        await sim.stop()
    await check(tmp_path, "alerts-rec", lines, [token])
    assert reasons(lines, "status.error")[:2] == ["server_error", "server_error"]


async def test_traderws_cut_backfill_token_rejected_and_ping_timeout_replay_as_they_ran(
    tmp_path: Path,
) -> None:
    """Login, subscriptions, a cut with fills back-filled, revoked tokens (4001) and a fresh
    login, a server that stops answering pings: the same lines; no credential nor JWT kept."""
    user, password = "rec-trader-7", "pw-Rec-93-never-recorded"
    sim = TraderWsSimulator(username=user, password=password, rate=40.0, seed=7, auto_fills=False)
    await sim.start()
    table: dict[str, Any] = {
        **sim.source_table("tws-rec"),
        **FAST,
        "ping_interval": 0.2,
        "ping_timeout": 0.5,
        "idle_timeout": 5.0,
        "subscribe_timeout": 2.0,
        "connect_timeout": 2.0,
    }
    try:
        async with live(tmp_path, table) as (_, lines):
            await lines.wait_count("status.connected", 1)
            await sim.make_fill(symbol="EURUSD")
            await sim.fills_while_away(1, symbol="GBPUSD", partial=True)
            await lines.wait_count("status.connected", 2)
            await lines.wait_for(lambda s: sum(t.startswith("order.") for t in s.types()) >= 5)
            await sim.expire_tokens()
            await lines.wait_count("status.connected", 3)
            sim.stall()
            await lines.wait_for(lambda s: "ping_timeout" in reasons(s, "status.disconnected"))
            await lines.wait_count("status.connected", 4)
            await upstream_gone(sim, lines)
    finally:
        await sim.stop()
    assert len(sim.tokens) >= 2
    await check(tmp_path, "tws-rec", lines, [user, password, *sim.tokens])
    assert "token_rejected" in reasons(lines, "status.auth_failed")
    assert "quotes_not_backfilled" in reasons(lines, "status.gap")


async def test_mt4bridge_reconnect_reconciliation_and_a_revoked_session_replay_as_they_ran(
    tmp_path: Path,
) -> None:
    """Heartbeats and reconciliation on their timers, a WS cut with positions opened and closed
    meanwhile, revoked sessions (401, a new session): the same lines; no key, password or
    session id kept."""
    sim = Mt4BridgeSimulator(
        rate=40.0, seed=7, trade_interval=None, api_key="mt4-rec-key-51", password="mt4-rec-pw-7"
    )
    await sim.start()
    table: dict[str, Any] = {
        **sim.source_table("mt4-rec"),
        "heartbeat_interval": 0.3,
        "reconcile_interval": 0.5,
        "reconnect_min": 0.01,
        "reconnect_max": 0.1,
        "auth_retry": 0.3,
        "breaker_reset": 0.5,
        "idle_timeout": 5.0,
    }
    try:
        before = await sim.open_position("EURUSD", "BUY", 0.2, silent=True)
        async with live(tmp_path, table) as (_, lines):
            await lines.wait_count("status.connected", 1)
            await sim.open_position("GBPUSD", "SELL", 0.1)
            await lines.wait_count("position.opened", 2)
            sim.refuse_ws = True
            await sim.cut_ws()
            await lines.wait_count("status.disconnected", 1)
            await sim.open_position("XAUUSD", "BUY", 0.01, silent=True)
            await sim.close_position(before, silent=True)
            sim.refuse_ws = False
            await lines.wait_count("status.connected", 2)
            await sim.revoke_sessions()
            await lines.wait_count("status.connected", 3)
            await lines.wait_count("account.updated", 3)
            await upstream_gone(sim, lines)
    finally:
        await sim.stop()
    sessions = {r.session_id for r in sim.requests if r.session_id}
    assert len(sessions) >= 2
    await check(tmp_path, "mt4-rec", lines, ["mt4-rec-key-51", "mt4-rec-pw-7", *sessions])
    assert reasons(lines, "position.closed") == ["reconciled"]
    assert reasons(lines, "status.gap") == ["stream_interrupted"] * 2


async def test_the_recorder_flushes_while_the_source_runs(tmp_path: Path) -> None:
    """Frames reach the file while the daemon runs (at least every second), not at its end:
    the path and the bytes written show in the source's state, and what the file holds by
    then replays."""
    sim = TtmtSimulator(seed=1, rate=40.0, api_keys=("k-flush-test",))
    await sim.start()
    try:
        async with live(tmp_path, sim.source_table("flush")) as (daemon, lines):
            await lines.wait_count("status.connected", 1)
            await lines.wait_for(lambda s: len(s.lines) >= 5)
            clock = asyncio.get_running_loop()
            started = clock.time()
            state = daemon.state()["sources"]["flush"]
            header_only = state["recorded_bytes"]
            while state["recorded_bytes"] == header_only and clock.time() - started < 3:
                await asyncio.sleep(0.05)  # the recorder's thread: no event to await
                state = daemon.state()["sources"]["flush"]
            assert clock.time() - started <= 1.2
            path = Path(state["recording"])
            assert path.parent == tmp_path / "state" / "recordings" / "flush"
            assert path.stat().st_size >= state["recorded_bytes"] > header_only
            got, _ = await asyncio.to_thread(replayed, [path])
            assert got, "a recording still being written replays what it holds"
            assert got[0].startswith(b'{"type":"status.connected"')
    finally:
        await sim.stop()


async def test_a_restart_replays_from_the_history_the_journal_gave(tmp_path: Path) -> None:
    """Two daemon runs on one state dir: the second resumes from the journal (TTMT's
    Last-Event-ID, TradingPartners' restart gap). Replayed together, the two runs give both
    runs' lines: each run's adapter starts from the history recorded with it."""
    ttmt = TtmtSimulator(seed=8, rate=40.0, api_keys=("k-restart-1",), paused=True)
    # Four alerts, then only pings, far apart: each run ends with nothing left unread.
    alerts = TpAlertsSimulator(seed=9, rate=30.0, events=4, token="t-restart-2", ping_interval=20)
    for sim in (ttmt, alerts):
        await sim.start()
    runs: dict[str, list[bytes]] = {"ttmt-r": [], "alerts-r": []}
    try:
        for produced in (5, 7):
            async with live(tmp_path, {**ttmt.source_table("ttmt-r"), **FAST}) as (_, lines):
                await lines.wait_count("status.connected", 1)
                ttmt.produce(produced)
                await lines.wait_for(lambda s: len(s.lines) > produced)  # noqa: B023
            runs["ttmt-r"] += lines.lines
            async with live(tmp_path, {**alerts.source_table("alerts-r"), **FAST}) as (_, lines):
                await lines.wait_count("status.connected", 1)
                if produced == 5:  # the first run: the four alerts
                    await lines.wait_for(
                        lambda s: sum(t.startswith("signal.") for t in s.types()) >= 4
                    )
                else:  # the second: the time it was down, said as a gap on connect
                    await lines.wait_count("status.gap", 1)
            runs["alerts-r"] += lines.lines
    finally:
        for sim in (ttmt, alerts):
            await sim.stop()
    assert "status.gap" in [msgspec.json.decode(line)["type"] for line in runs["alerts-r"]]
    for name, both in runs.items():
        paths = recordings(tmp_path, name)
        assert len({files.header(p).run for p in paths}) == 2
        got, stats = await asyncio.to_thread(replayed, paths)
        assert stats.crashed is None
        expected = renumbered(both)
        assert got == expected, first_difference(expected, got)
