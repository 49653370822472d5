"""Recording files read back: their headers, their records, and what in them was unreadable.

Files are grouped into runs (one daemon start of one source: the header's ``run``) and each
run's files put in order of their ``part``; a run is read file by file, frame by frame, so a
recording of any size replays in the memory of one frame.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tradebus.errors import TradebusError
from tradebus.recording import format as fmt

CHUNK = 1 << 20


class RecordingError(TradebusError):
    """A file cannot be replayed at all (not a recording, a format this version cannot read)."""


@dataclass(slots=True)
class Part:
    path: Path
    header: fmt.Header


@dataclass(slots=True)
class Run:
    """One daemon run of one source: its files, in order."""

    source: str
    type: str
    run: str
    parts: list[Part] = field(default_factory=list)

    @property
    def header(self) -> fmt.Header:
        return self.parts[0].header


def items(path: Path) -> Iterator[fmt.Item]:
    """Every record and damage report of one file, read in chunks."""
    reader = fmt.Reader()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            yield from reader.feed(chunk)
    yield from reader.close()


def header(path: Path) -> fmt.Header:
    """The file's header line, or ``RecordingError`` saying why there is none to trust."""
    try:
        first = next(items(path), None)
    except OSError as exc:
        raise RecordingError(f"{path}: cannot read: {exc.strerror}") from None
    if not isinstance(first, fmt.Line) or not isinstance(first.record, fmt.Header):
        raise RecordingError(
            f"{path}: no recording header at its start (is it a tradebus recording?)"
        )
    found = first.record
    if found.format != fmt.FORMAT_VERSION:
        raise RecordingError(
            f"{path}: recording format {found.format} is not one this tradebus reads "
            f"(it reads format {fmt.FORMAT_VERSION}; it was written by tradebus {found.tradebus})"
        )
    return found


def runs(paths: Sequence[Path]) -> list[Run]:
    """The runs ``paths`` hold, oldest first; each run's parts in order."""
    found: dict[tuple[str, str], Run] = {}
    for path in paths:
        head = header(path)
        key = (head.source, head.run)
        run = found.setdefault(key, Run(head.source, head.type, head.run))
        if run.type != head.type:
            raise RecordingError(
                f"{path}: a {head.type} recording of {head.source!r}, where another file of the "
                f"same run is a {run.type} one"
            )
        run.parts.append(Part(path, head))
    for run in found.values():
        run.parts.sort(key=lambda p: p.header.part)
    return sorted(found.values(), key=lambda r: (r.header.t, r.source))


def records(run: Run, damage: Callable[[Path, fmt.Damage], None]) -> Iterator[fmt.Record]:
    """The run's records (headers of later parts left out); damage goes to ``damage``."""
    for part in run.parts:
        for item in items(part.path):
            if isinstance(item, fmt.Damage):
                damage(part.path, item)
            elif not isinstance(item.record, fmt.Header):
                yield item.record
