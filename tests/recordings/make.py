"""Make the recordings of ``tests/recordings/`` again: ``python -m tests.recordings.make``.

Each case runs a daemon with ``record = true`` on one simulator through a fault, checks that
the replay of what it recorded gives the lines the live run gave, and keeps the recording as
``<case>.jsonl.zst`` beside those lines as ``<case>.jsonl``. A recording from the field is
added by hand the same way (CONTRIBUTING.md, "A recording as a test").
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from tests.recorded import (
    Lines,
    first_difference,
    live,
    recordings,
    renumbered,
    replayed,
    upstream_gone,
)
from tradebus.simulators.mt4bridge import Mt4BridgeSimulator
from tradebus.simulators.tpalerts import TpAlertsSimulator
from tradebus.simulators.traderws import TraderWsSimulator
from tradebus.simulators.ttmt import TtmtSimulator

HERE = Path(__file__).parent
FAST = {"reconnect_min": 0.01, "reconnect_max": 0.05, "auth_retry": 0.2}
Case = Callable[[Path], Coroutine[Any, Any, tuple[str, Lines]]]


async def ttmt_recycle(tmp: Path) -> tuple[str, Lines]:
    """The TTMT stream recycled by the server, resumed with Last-Event-ID each time."""
    sim = TtmtSimulator(seed=11, rate=12.0, api_keys=("ttmt-fixture-key",), lifetime=0.5)
    await sim.start()
    try:
        async with live(tmp, {**sim.source_table("ttmt-main"), **FAST}) as (_, lines):
            await lines.wait_count("status.connected", 3)
            await upstream_gone(sim, lines)
    finally:
        await sim.stop()
    return "ttmt-main", lines


async def tpalerts_cut(tmp: Path) -> tuple[str, Lines]:
    """TradingPartners alerts cut mid-stream, then a 503 with Retry-After before the reconnect."""
    sim = TpAlertsSimulator(seed=4, rate=15.0, token="tp-fixture-token", ping_interval=0.2)
    await sim.start()
    try:
        async with live(tmp, {**sim.source_table("alerts"), **FAST}) as (_, lines):
            await lines.wait_for(lambda s: sum(t.startswith("signal.") for t in s.types()) >= 3)
            sim.fail_next(503, 1, retry_after="0")
            sim.cut_after(1)
            await lines.wait_count("status.connected", 2)
            await lines.wait_for(lambda s: sum(t.startswith("signal.") for t in s.types()) >= 6)
            await upstream_gone(sim, lines)
    finally:
        await sim.stop()
    return "alerts", lines


async def traderws_backfill(tmp: Path) -> tuple[str, Lines]:
    """A Trader WS cut while fills happen; the reconnect back-fills them from the history."""
    sim = TraderWsSimulator(
        username="fixture-user", password="fixture-pass", rate=5.0, seed=7, auto_fills=False
    )
    await sim.start()
    table = {**sim.source_table("trader"), **FAST, "ping_interval": 1.0, "ping_timeout": 1.0}
    try:
        async with live(tmp, table) as (_, lines):
            await lines.wait_count("status.connected", 1)
            await sim.make_fill(symbol="EURUSD")
            await sim.fills_while_away(1, symbol="GBPUSD", partial=True)
            await lines.wait_count("status.connected", 2)
            await lines.wait_for(lambda s: sum(t.startswith("order.") for t in s.types()) >= 5)
            await upstream_gone(sim, lines)
    finally:
        await sim.stop()
    return "trader", lines


async def mt4_reconcile(tmp: Path) -> tuple[str, Lines]:
    """The MT4 bridge's WS cut while a position opens and another closes: the reconnect's
    reconciliation reports both, once."""
    sim = Mt4BridgeSimulator(rate=4.0, seed=7, trade_interval=None, api_key="mt4-fixture-key")
    await sim.start()
    table = {
        **sim.source_table("mt4"),
        **FAST,
        "heartbeat_interval": 0.5,
        "reconcile_interval": 5.0,
    }
    try:
        before = await sim.open_position("EURUSD", "BUY", 0.2, silent=True)
        async with live(tmp, table) as (_, lines):
            await lines.wait_count("status.connected", 1)
            sim.refuse_ws = True
            await sim.cut_ws()
            await lines.wait_count("status.disconnected", 1)
            await sim.open_position("XAUUSD", "BUY", 0.01, silent=True)
            await sim.close_position(before, silent=True)
            sim.refuse_ws = False
            await lines.wait_count("status.connected", 2)
            await lines.wait_count("position.closed", 1)
            await upstream_gone(sim, lines)
    finally:
        await sim.stop()
    return "mt4", lines


CASES: dict[str, Case] = {
    "ttmt-recycle": ttmt_recycle,
    "tpalerts-cut": tpalerts_cut,
    "traderws-backfill": traderws_backfill,
    "mt4-reconcile": mt4_reconcile,
}


def make(name: str, case: Case) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        source, lines = asyncio.run(case(tmp))
        (path,) = recordings(tmp, source)
        expected = renumbered(lines.lines)
        got, stats = replayed([path])
        if got != expected or stats.damage or stats.divergences:
            sys.exit(
                f"{name}: the replay differs from the live run: {first_difference(expected, got)}"
            )
        shutil.copyfile(path, HERE / f"{name}.jsonl.zst")
        (HERE / f"{name}.jsonl").write_bytes(b"".join(line + b"\n" for line in expected))
        print(f"{name}: {len(expected)} lines, {path.stat().st_size:,} bytes recorded")


def main(names: list[str]) -> int:
    for name in names or CASES:
        make(name, CASES[name])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
