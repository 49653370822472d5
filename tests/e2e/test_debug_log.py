"""`--log-level debug` says how each source connects, resumes and reconnects, and batch sizes."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

from tests.e2e.process import Daemon, start_daemon, write_config
from tradebus.simulators.traderws import DEMO_PASSWORD, DEMO_USERNAME, TraderWsSimulator
from tradebus.simulators.ttmt import DEMO_KEY, TtmtSimulator


async def _stop(daemon: Daemon) -> list[dict[str, Any]]:
    """SIGTERM, then every log line the daemon wrote."""
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.stderr is not None
    rest = await asyncio.wait_for(daemon.proc.stderr.read(), 30)
    await asyncio.wait_for(daemon.proc.wait(), 30)
    return daemon.logs + [json.loads(line) for line in rest.splitlines()]


async def _saw(daemon: Daemon, event: str) -> None:
    """Return once the daemon logged ``event`` (now or already: lines are read in order)."""
    if not any(e["event"] == event for e in daemon.logs):
        await daemon.wait_log(event)


def _debug(logs: list[dict[str, Any]], event: str, source: str) -> list[dict[str, Any]]:
    wanted = (event, source, "debug")
    return [e for e in logs if (e["event"], e.get("source"), e["level"]) == wanted]


async def test_debug_shows_connections_resume_decisions_batches_and_reconnect_reasons(
    tmp_path: Path,
) -> None:
    """At debug: each source's connection details and resume decision, the size of each
    batch published, and why a cut connection is retried; no credential in any of it."""
    ttmt = TtmtSimulator(seed=3, rate=20.0)
    trader = TraderWsSimulator(username=DEMO_USERNAME, password=DEMO_PASSWORD, rate=5.0, seed=3)
    await ttmt.start()
    await trader.start()
    try:
        config = write_config(tmp_path, [ttmt, trader])
        daemon = await start_daemon(config, args=["--log-level", "debug"])
        await _saw(daemon, "stream_open")
        await _saw(daemon, "batch_published")
        ttmt.disconnect_all()
        await _saw(daemon, "reconnect_planned")
        await _saw(daemon, "sent")
        logs = await _stop(daemon)
    finally:
        await trader.stop()
        await ttmt.stop()

    (decision,) = _debug(logs, "resume_decision", "src0")
    assert decision["last_event_id"] == "0"
    assert decision["why"] == "nothing journaled, start=earliest"
    first = _debug(logs, "connecting", "src0")[0]
    assert first["url"] == ttmt.url
    assert (first["last_event_id"], first["attempt"]) == ("0", 1)
    (cut,) = _debug(logs, "reconnect_planned", "src0")
    assert cut["reason"] == "connection_error"  # cut mid-stream, no control frame
    assert cut["kind"] == "retryable"
    assert int(cut["last_event_id"]) >= 1  # the second connect resumes from there
    assert all(b["events"] >= 1 for b in _debug(logs, "batch_published", "src0"))
    sent = [e["message"] for e in _debug(logs, "sent", "src1")]
    assert "subscribe" in sent
    assert _debug(logs, "resume_decision", "src1")[0]["why"].startswith("nothing journaled")
    text = json.dumps(logs)
    assert DEMO_KEY not in text
    assert DEMO_PASSWORD not in text


async def test_info_has_no_debug_line(tmp_path: Path) -> None:
    """Without --log-level debug the same run writes no debug line."""
    ttmt = TtmtSimulator(seed=3, rate=20.0)
    await ttmt.start()
    try:
        daemon = await start_daemon(write_config(tmp_path, [ttmt]))
        await daemon.read_events(3)
        logs = await _stop(daemon)
    finally:
        await ttmt.stop()
    assert logs
    assert [e for e in logs if e["level"] == "debug"] == []
