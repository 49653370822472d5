"""The SQLite sink plugin: rows keyed by event id, one transaction per batch, a locked database
retried, and a real daemon delivering to it through its entry point."""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import sqlite3
import sys
import urllib.request
from pathlib import Path

import msgspec
import pytest

from tradebus import config
from tradebus.errors import ConfigError
from tradebus.plugin import SINKS, Batch, RetryableSinkError, SinkContext
from tradebus.simulators.ttmt import TtmtSimulator
from tradebus_sink_sqlite import SqliteSink, SqliteSinkConfig


def ctx() -> SinkContext:
    return SinkContext(state_dir=None, dead_letter=lambda _m: None, event_id_at=lambda _s: None)


def batch(first: int, last: int) -> Batch:
    """Events ``first``..``last`` as the journal's JSON lines."""
    lines = b"".join(
        msgspec.json.encode(
            {
                "id": f"feed:{seq}",
                "seq": seq,
                "source": "feed",
                "provider": "ttmt",
                "type": "status.connected",
                "time": "2026-01-01T00:00:00.000Z",
                "received": "2026-01-01T00:00:00.000Z",
                "account": None,
                "symbol": None,
                "origin": None,
                "data": {},
            }
        )
        + b"\n"
        for seq in range(first, last + 1)
    )
    return Batch(lines, last - first + 1, first_seq=first, last_seq=last)


def rows(path: Path, table: str = "events") -> list[tuple[str, int]]:
    with sqlite3.connect(path) as db:
        return list(db.execute(f"SELECT id, seq FROM {table} ORDER BY seq"))  # noqa: S608


@pytest.fixture
def sink(tmp_path: Path) -> SqliteSink:
    return SqliteSink(SqliteSinkConfig(name="db", path=str(tmp_path / "e.db"), busy_timeout=0.1))


async def test_a_batch_becomes_rows_and_a_replay_adds_none(
    sink: SqliteSink, tmp_path: Path
) -> None:
    """Each event is a row under its id; the same batch written again (a restart's replay)
    leaves the table as it was and counts the rows it ignored."""
    await sink.open(ctx())
    await sink.write(batch(1, 3))
    await sink.write(batch(2, 4))
    await sink.close()
    assert rows(tmp_path / "e.db") == [(f"feed:{n}", n) for n in range(1, 5)]
    assert sink.metrics() == {"rows_inserted": 4, "rows_ignored": 2}


async def test_a_locked_database_is_retried_and_the_batch_is_whole(
    sink: SqliteSink, tmp_path: Path
) -> None:
    """While another connection holds the write lock a write raises RetryableSinkError and
    stores nothing of its batch; written again once the lock is gone, all of it is there."""
    await sink.open(ctx())
    other = sqlite3.connect(tmp_path / "e.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    with pytest.raises(RetryableSinkError, match="locked"):
        await sink.write(batch(1, 5))
    assert sink.errors()[0] is not None
    other.execute("ROLLBACK")
    other.close()
    assert rows(tmp_path / "e.db") == []
    await sink.write(batch(1, 5))
    assert len(rows(tmp_path / "e.db")) == 5
    assert sink.errors() == (None, sink.errors()[1])
    await sink.close()


def test_the_config_is_checked_like_a_built_ins() -> None:
    """The sink is found by its entry point, and its keys are checked with field paths."""
    assert SINKS.get("sqlite").config is SqliteSinkConfig
    assert SINKS.package("sqlite") == "tradebus-sink-sqlite"
    source = {"name": "a", "type": "ttmt", "url": "http://127.0.0.1:1/", "api_key": "k"}
    with pytest.raises(ConfigError) as caught:
        config.parse(
            {"sources": [source], "sinks": [{"name": "db", "type": "sqlite", "table": "no-t"}]},
            env={},
        )
    assert caught.value.problems == [
        "sinks[0].table: expected `str` matching regex '^[A-Za-z_][A-Za-z0-9_]{0,62}$'",
        "sinks[0].path: required, not given",
    ]


async def _scrape(port: int) -> str:
    def get() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            return str(r.read().decode())

    return await asyncio.to_thread(get)


def _inserted(metrics: str) -> float:
    """The plugin's own counter of the sink ``db`` in a /metrics text (-1 while absent)."""
    for line in metrics.splitlines():
        if line.startswith('tradebus_sink_plugin_rows_inserted{sink="db"} '):
            return float(line.split()[-1])
    return -1


@pytest.mark.parametrize("delivery", ["process", "inline"])
async def test_a_daemon_delivers_to_the_plugin(tmp_path: Path, delivery: str) -> None:
    """`tradebus run` with a ``type = "sqlite"`` sink stores what its file sink stores, row
    for line, and exports the plugin's counters as tradebus_sink_plugin_*."""
    sim = TtmtSimulator(seed=7, rate=200.0)
    await sim.start()
    try:
        source = "".join(f"{k} = {json.dumps(v)}\n" for k, v in sim.source_table("feed").items())
        path = tmp_path / "tradebus.toml"
        db, out = tmp_path / "events.db", tmp_path / "events.jsonl"
        path.write_text(
            f'[daemon]\nlog_format = "json"\nstate_dir = "{tmp_path / "state"}"\n'
            f'delivery = "{delivery}"\nhttp = "127.0.0.1:0"\n'
            f"[[sources]]\n{source}"
            f'[[sinks]]\nname = "db"\ntype = "sqlite"\npath = "{db}"\nstart = "earliest"\n'
            f'[[sinks]]\nname = "file"\ntype = "file"\npath = "{out}"\nstart = "earliest"\n'
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tradebus",
            "run",
            "-c",
            str(path),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stderr is not None
        async with asyncio.timeout(30):
            while True:
                entry = json.loads(await proc.stderr.readline())
                if entry.get("event") == "ops_endpoint_listening":
                    port = int(entry["port"])
                    break
            # Another process's counter: polled (the daemon hears of its sinks a few times a
            # second), within the timeout above.
            for _ in itertools.count():
                if (inserted := _inserted(await _scrape(port))) >= 50:
                    break
                await asyncio.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0
    finally:
        await sim.stop()
    lines = [json.loads(line) for line in out.read_bytes().splitlines()]
    assert rows(db) == [(e["id"], e["seq"]) for e in lines]
    with sqlite3.connect(db) as conn:
        stored = [json.loads(e) for (e,) in conn.execute("SELECT event FROM events ORDER BY seq")]
    assert stored == lines
    assert inserted <= len(lines)
