"""``tradebus journal``: the journal's state, and its events replayed as JSONL.

Read-only and lock-free, so it works beside a running daemon: it reads up to the end the daemon
had appended when it started, and never cuts a torn tail (the daemon does that at its start).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO, TextIO

from tradebus.config import Config
from tradebus.journal import cursors
from tradebus.journal.records import Record
from tradebus.journal.store import Gap, Journal, StateDirError, iter_records
from tradebus.schemas.filter import EventFilter


def _open(config: Config) -> Journal:
    state_dir = Path(config.daemon.state_dir)
    if not (state_dir / "journal").is_dir():
        raise StateDirError(state_dir, "holds no journal (has the daemon run with it?)")
    journal, _ = Journal.open(state_dir, readonly=True)
    return journal


def _time_of(journal: Journal, seq: int) -> float | None:
    """Unix time of the record holding ``seq`` (None past the end or when it is gone)."""
    reader = journal.reader(seq)
    for item in reader.read(journal.view(), 1):
        if isinstance(item, Record):
            return item.time_ms / 1000
    return None


def status(config: Config, out: TextIO) -> int:
    journal = _open(config)
    try:
        segments = journal.segments
        total = journal.total_bytes
        out.write(f"state dir   {config.daemon.state_dir}\n")
        out.write(f"segments    {len(segments)} ({total:,} bytes)\n")
        out.write(f"seq         {journal.first_seq} .. {journal.last_seq}\n")
        saved, problem = cursors.load(Path(config.daemon.state_dir))
        if problem:
            out.write(f"cursors     {problem}\n")
        now = time.time()
        names = [s.name for s in config.sinks] + sorted(set(saved) - {s.name for s in config.sinks})
        for name in names:
            entry = saved.get(name)
            if entry is None:
                out.write(f"sink {name}: no cursor yet (starts at the journal's end)\n")
                continue
            behind = max(0, journal.last_seq - entry.seq)
            since = _time_of(journal, entry.seq + 1) if behind else None
            age = f", {now - since:,.1f} s behind" if since is not None else ""
            error = f", last error: {entry.error}" if entry.error else ""
            gone = "" if name in {s.name for s in config.sinks} else " (not in the config)"
            out.write(
                f"sink {name}{gone}: cursor {entry.seq}, backlog {behind:,} events{age}{error}\n"
            )
    finally:
        journal.close()
    return 0


def replay(
    config: Config,
    from_seq: int,
    to_seq: int | None,
    *,
    providers: Sequence[str] = (),
    types: Sequence[str] = (),
    sources: Sequence[str] = (),
    symbols: Sequence[str] = (),
    out: BinaryIO | None = None,
    err: TextIO | None = None,
) -> int:
    """The journaled events from ``from_seq`` through ``to_seq`` as JSONL, filtered like a sink."""
    out = out or sys.stdout.buffer
    err = err or sys.stderr
    wanted = EventFilter(providers=providers, types=types, sources=sources, symbols=symbols)
    journal = _open(config)
    try:
        for item in iter_records(journal, from_seq, to_seq):
            if isinstance(item, Gap):
                err.write(f"seq {item.first}..{item.last}: not in the journal ({item.reason})\n")
                continue
            for n, line in enumerate(item.payload.splitlines()):
                seq = item.first_seq + n
                if seq < from_seq or (to_seq is not None and seq > to_seq):
                    continue
                if wanted and not wanted.line(line):
                    continue
                out.write(line + b"\n")
        out.flush()
    finally:
        journal.close()
    return 0
