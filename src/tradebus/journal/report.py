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

import msgspec

from tradebus.config import DaemonConfig
from tradebus.journal import cursors
from tradebus.journal.records import Record
from tradebus.journal.store import Gap, Journal, StateDirError, iter_records
from tradebus.schemas.filter import EventFilter


def _open(daemon: DaemonConfig) -> Journal:
    state_dir = Path(daemon.state_dir)
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


class _DeadLetter(msgspec.Struct):
    """What the summary shows of a dead letter (the webhook sink writes the whole record)."""

    time: str
    error: str


def _dead_letters(state_dir: Path, sink: str) -> str:
    """``, dead letters: N (last at T: error)`` for a sink that set requests aside, else ``""``.

    The webhook sink appends each request it gave up on to ``dead-letter-<name>.jsonl``: its
    error is the one a receiver refusing everything (a 400 for each request) leaves, while the
    sink itself goes on and so has no error of its own."""
    path = state_dir / f"dead-letter-{sink}.jsonl"
    try:
        count, last_line = _count_and_last_line(path)
    except OSError:
        return ""
    if not count:
        return ""
    try:
        last = msgspec.json.decode(last_line, type=_DeadLetter)
    except msgspec.DecodeError:
        return f", dead letters: {count:,}"
    return f", dead letters: {count:,} (last at {last.time}: {last.error[:200]})"


_BLOCK = 1 << 20
_LAST_LINE_MAX = 16 << 20  # a dead-lettered batch of 500 events is about 200 KB


def _count_and_last_line(path: Path) -> tuple[int, bytes]:
    """Lines in ``path``, and its last line (empty if longer than anyone would read here)."""
    count = 0
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            count += block.count(b"\n")
        end = f.tell()
        start = max(0, end - _LAST_LINE_MAX)
        f.seek(start)
        tail = f.read()
    body = tail.rstrip(b"\n")
    cut = body.rfind(b"\n")
    if cut < 0 and start > 0:
        return count, b""
    return count, body[cut + 1 :]


def status(daemon: DaemonConfig, sinks: Sequence[str], out: TextIO) -> int:
    """The journal's segments and seqs; per sink its cursor, backlog and last error."""
    journal = _open(daemon)
    state_dir = Path(daemon.state_dir)
    try:
        segments = journal.segments
        total = journal.total_bytes
        out.write(f"state dir   {daemon.state_dir}\n")
        out.write(f"segments    {len(segments)} ({total:,} bytes)\n")
        out.write(f"seq         {journal.first_seq} .. {journal.last_seq}\n")
        saved, problem = cursors.load(state_dir)
        if problem:
            out.write(f"cursors     {problem}\n")
        now = time.time()
        names = [*sinks, *sorted(set(saved) - set(sinks))]
        for name in names:
            entry = saved.get(name)
            dead = _dead_letters(state_dir, name)
            if entry is None:
                out.write(f"sink {name}: no cursor yet (starts at the journal's end){dead}\n")
                continue
            behind = max(0, journal.last_seq - entry.seq)
            since = _time_of(journal, entry.seq + 1) if behind else None
            age = f", {now - since:,.1f} s behind" if since is not None else ""
            error = f"last error: {entry.error}" if entry.error else "last error: none"
            gone = "" if name in sinks else " (not in the config)"
            out.write(
                f"sink {name}{gone}: cursor {entry.seq}, backlog {behind:,} events{age},"
                f" {error}{dead}\n"
            )
    finally:
        journal.close()
    return 0


def replay(
    daemon: DaemonConfig,
    from_seq: int | None,
    to_seq: int | None,
    *,
    providers: Sequence[str] = (),
    types: Sequence[str] = (),
    sources: Sequence[str] = (),
    symbols: Sequence[str] = (),
    out: BinaryIO | None = None,
    err: TextIO | None = None,
) -> int:
    """The journaled events from ``from_seq`` (None: the first the journal holds) through
    ``to_seq`` as JSONL, filtered like a sink."""
    out = out or sys.stdout.buffer
    err = err or sys.stderr
    wanted = EventFilter(providers=providers, types=types, sources=sources, symbols=symbols)
    journal = _open(daemon)
    if from_seq is None:
        from_seq = journal.first_seq
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
