"""A tradebus sink that writes events into an SQLite table: an example of a sink plugin.

One row per event, keyed by the event ``id``: delivery is at-least-once, so the batch a restart
hands over again is inserted again, and ``INSERT OR IGNORE`` makes that a no-op. A batch is one
transaction: the rows of a write are all there or none, so the cursor (which moves once
``write`` returns) never passes a row that is not stored. sqlite3 blocks, so every call runs on
a thread; the follower never writes two batches at once, so the connection is used by one
thread at a time.
"""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Annotated, Final

import msgspec

from tradebus.plugin import (
    Batch,
    FatalSinkError,
    RetryableSinkError,
    Sink,
    SinkConfigBase,
    SinkContext,
    SinkPlugin,
)


class SqliteSinkConfig(SinkConfigBase, tag="sqlite", frozen=True, kw_only=True):
    path: Annotated[
        str, msgspec.Meta(min_length=1, description="The SQLite database file; created if missing.")
    ]
    table: Annotated[
        str,
        msgspec.Meta(
            pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$",
            description="The table the events go to; created if missing.",
        ),
    ] = "events"
    busy_timeout: Annotated[
        float,
        msgspec.Meta(
            gt=0,
            description="Seconds a write waits for another connection's lock before it is"
            " retried (the same batch, after a backoff).",
        ),
    ] = 5.0


class _Row(msgspec.Struct):
    """The columns a line gives (the rest of the event stays in the line)."""

    id: str
    seq: int
    source: str
    type: str
    time: str


_rows: Final = msgspec.json.Decoder(_Row)


class SqliteSink(Sink):
    needs_events = False  # the lines carry all a row needs
    max_batch = 0  # any size: one transaction per batch

    def __init__(self, config: SqliteSinkConfig) -> None:
        self.name = config.name
        self._config = config
        self._db: sqlite3.Connection | None = None
        self._insert = (
            f"INSERT OR IGNORE INTO {config.table} (id, seq, source, type, time, event)"  # noqa: S608 - the table name is checked by its pattern
            " VALUES (?, ?, ?, ?, ?, ?)"
        )
        self.inserted = 0
        self.ignored = 0
        self._failing: str | None = None
        self._last_error: str | None = None

    async def open(self, ctx: SinkContext) -> None:
        try:
            self._db = await asyncio.to_thread(self._connect)
        except sqlite3.Error as exc:
            raise FatalSinkError(f"{self._config.path}: {exc}") from None

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(
            self._config.path,
            timeout=self._config.busy_timeout,
            check_same_thread=False,  # one thread at a time, never two (module docstring)
            isolation_level=None,  # transactions are ours: BEGIN … COMMIT per batch
        )
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(
            f"CREATE TABLE IF NOT EXISTS {self._config.table} ("
            " id TEXT PRIMARY KEY, seq INTEGER NOT NULL, source TEXT NOT NULL,"
            " type TEXT NOT NULL, time TEXT NOT NULL, event TEXT NOT NULL)"
        )
        return db

    async def write(self, batch: Batch) -> None:
        if not batch.count:
            return  # a stretch the filters emptied: only the cursor moves
        data = batch.data
        rows = [
            (r.id, r.seq, r.source, r.type, r.time, line.decode())
            for r, line in zip(_rows.decode_lines(data), data.splitlines(), strict=True)
        ]
        try:
            added = await asyncio.to_thread(self._write, rows)
        except sqlite3.OperationalError as exc:  # locked, busy, disk full: may pass
            self._failing = self._last_error = str(exc)
            raise RetryableSinkError(f"{self._config.path}: {exc}") from None
        except sqlite3.Error as exc:  # the file is no database, the table is another's
            self._last_error = str(exc)
            raise FatalSinkError(f"{self._config.path}: {exc}") from None
        self._failing = None
        self.inserted += added
        self.ignored += len(rows) - added

    def _write(self, rows: list[tuple[str, int, str, str, str, str]]) -> int:
        db = self._db
        assert db is not None, "write before open"
        db.execute("BEGIN IMMEDIATE")
        try:
            before = db.total_changes
            db.executemany(self._insert, rows)
            added = db.total_changes - before
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return added

    async def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            await asyncio.to_thread(db.close)

    def metrics(self) -> dict[str, float]:
        return {"rows_inserted": self.inserted, "rows_ignored": self.ignored}

    def errors(self) -> tuple[str | None, str | None]:
        return self._failing, self._last_error


PLUGIN = SinkPlugin("sqlite", SqliteSinkConfig, SqliteSink)
