"""The journal on disk: append-only segment files of checksummed records, one per bus batch.

Layout of ``<state_dir>/journal/``: ``<first seq, 20 digits>.seg`` per segment. A segment's
records hold contiguous seqs, and so do consecutive segments, so only the last segment is
scanned at open (to find its end and cut a torn tail): every other segment's seq range follows
from its name and the next one's. Its age for retention is its mtime, the time of its last append.

The appender writes header + already-encoded lines with one ``os.writev`` from the event loop:
a local append is a copy into the page cache, microseconds, where a thread hop would cost more.
``fsync`` is what can take milliseconds, and it runs on a thread (``Journal.sync``).

Readers (every sink's follower, in the delivery process or inline) read up to a bound the
appender gives them (a ``View``: in another process, the daemon's watermark), so a reader never
sees the half of a record that the appender is writing.
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import fcntl
import itertools
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Final, Literal

import msgspec

from tradebus.errors import ConfigError
from tradebus.journal.records import (
    HEADER_SIZE,
    Corrupt,
    Record,
    RecordScanner,
    encode_header,
)

_SUFFIX = ".seg"
_READ_CHUNK = 1 << 20
FsyncPolicy = Literal["interval", "always", "never"]


class StateDirError(ConfigError):
    """The state dir cannot be used: the daemon must not start (exit status 2)."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__([f"state_dir {path}: {problem}"])


@dataclass(slots=True)
class Segment:
    path: Path
    first_seq: int
    size: int
    mtime: float
    # The seq after the last record; only known (without a scan) once the next segment exists.
    end_seq: int = 0


@dataclass(frozen=True, slots=True)
class Gap:
    """Seqs ``first``..``last`` that the journal cannot give back, and why."""

    first: int
    last: int
    reason: Literal["retention", "corrupt"]


@dataclass(frozen=True, slots=True)
class Dropped:
    """Segments deleted by retention: seqs ``first``..``last``; ``forced`` if a cursor was
    still before ``last`` (a sink loses them)."""

    first: int
    last: int
    forced: bool


@dataclass(slots=True)
class OpenReport:
    """What ``Journal.open`` found, for the caller to log and count."""

    torn_offset: int | None = None
    torn_path: Path | None = None
    corrupt: list[tuple[Path, int, int]] = field(default_factory=list)


def _segment_name(first_seq: int) -> str:
    return f"{first_seq:020d}{_SUFFIX}"


def segment_path(journal_dir: Path, first_seq: int) -> Path:
    """The file of the segment whose first seq is ``first_seq``."""
    return journal_dir / _segment_name(first_seq)


def check_state_dir(path: Path, *, create: bool = True) -> None:
    """Raise ``StateDirError`` naming ``path`` unless it is (or can be made) a writable dir.

    ``create=False`` only checks what does not depend on who runs it (``tradebus
    check-config``, often run by another user than the service): not a directory, or a parent
    that does not exist. A missing dir in an existing parent passes: the daemon creates it."""
    if path.exists() and not path.is_dir():
        raise StateDirError(path, "exists and is not a directory")
    if not path.exists() and not path.parent.is_dir():
        raise StateDirError(path, f"parent directory {path.parent} does not exist")
    if not create:
        return
    if not path.exists():
        try:
            path.mkdir(mode=0o750)
        except OSError as exc:
            raise StateDirError(path, f"cannot create: {exc.strerror}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise StateDirError(path, "is not writable by this user")


class Journal:
    """The segments of one state dir. Open with ``Journal.open``; single writer per state dir
    (an exclusive ``flock`` on ``<state_dir>/lock``)."""

    def __init__(
        self,
        directory: Path,
        segments: list[Segment],
        next_seq: int,
        *,
        segment_bytes: int,
        fsync: FsyncPolicy,
        lock_fd: int | None,
        readonly: bool,
    ) -> None:
        self.dir = directory
        self.segments = segments
        self.next_seq = next_seq
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self._lock_fd = lock_fd
        self._fd: int | None = None
        self.dirty = False  # appended since the last fsync
        if not readonly:
            self._open_active()

    # --- opening ----------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        state_dir: Path,
        *,
        segment_bytes: int = 64 * 2**20,
        fsync: FsyncPolicy = "interval",
        min_next_seq: int = 1,
        readonly: bool = False,
    ) -> tuple[Journal, OpenReport]:
        """Lock the state dir, scan the last segment, cut a torn tail.

        ``min_next_seq`` keeps seqs from being reused when the journal is empty but cursors
        say higher seqs were delivered (the journal dir was deleted by hand).
        """
        if not readonly:
            check_state_dir(state_dir)
        lock_fd = None if readonly else _lock(state_dir)
        try:
            directory = state_dir / "journal"
            if not readonly:
                directory.mkdir(exist_ok=True)
            report = OpenReport()
            segments = list_segments(directory)
            next_seq = max(min_next_seq, 1)
            if segments:
                last = segments[-1]
                end_offset, end_seq = _scan_end(last, report)
                if end_offset < last.size:
                    report.torn_offset, report.torn_path = end_offset, last.path
                    if not readonly:
                        with open(last.path, "r+b") as f:
                            f.truncate(end_offset)
                            os.fsync(f.fileno())
                    last.size = end_offset
                last.end_seq = end_seq
                next_seq = max(next_seq, end_seq)
            journal = cls(
                directory,
                segments,
                next_seq,
                segment_bytes=segment_bytes,
                fsync=fsync,
                lock_fd=lock_fd,
                readonly=readonly,
            )
        except BaseException:
            if lock_fd is not None:
                os.close(lock_fd)
            raise
        return journal, report

    def _open_active(self) -> None:
        last = self.segments[-1] if self.segments else None
        if last is not None and last.end_seq == self.next_seq:
            self._fd = os.open(last.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        else:
            self._new_segment()

    def _new_segment(self) -> None:
        if self._fd is not None:
            if self.fsync != "never":
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
        if self.segments:
            self.segments[-1].end_seq = self.next_seq
            if self.segments[-1].size == 0:  # never written: replaced by the new one
                with contextlib.suppress(FileNotFoundError):
                    self.segments.pop().path.unlink()
        path = self.dir / _segment_name(self.next_seq)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        if self.fsync != "never":
            _fsync_dir(self.dir)
        self.segments.append(Segment(path, self.next_seq, 0, time.time(), self.next_seq))

    # --- appending --------------------------------------------------------------------------

    @property
    def last_seq(self) -> int:
        return self.next_seq - 1

    @property
    def first_seq(self) -> int:
        """The oldest seq still held (``next_seq`` when nothing is)."""
        return self.segments[0].first_seq if self.segments else self.next_seq

    @property
    def total_bytes(self) -> int:
        return sum(s.size for s in self.segments)

    def append(self, chunks: Sequence[bytes], count: int, time_ms: int) -> int:
        """Write one record of ``count`` lines; its first seq is returned. On ``OSError`` (disk
        full) nothing is kept: the partial record is cut off again and the seq is not used."""
        assert self._fd is not None, "append on a read-only journal"
        active = self.segments[-1]
        if active.size >= self.segment_bytes:
            self._new_segment()
            active = self.segments[-1]
        first = self.next_seq
        header = encode_header(first, count, time_ms, chunks)
        want = HEADER_SIZE
        for chunk in chunks:
            want += len(chunk)
        try:
            written = os.writev(self._fd, [header, *chunks])
        except OSError:
            self._cut_back(active.size)
            raise
        if written != want:  # the disk filled up in the middle of the record
            self._cut_back(active.size)
            raise OSError(errno.ENOSPC, "No space left on device (short write)")
        active.size += want
        active.mtime = time_ms / 1000
        self.next_seq = first + count
        active.end_seq = self.next_seq
        self.dirty = True
        return first

    def _cut_back(self, size: int) -> None:
        assert self._fd is not None
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, size)

    def sync(self) -> None:
        """fsync the active segment (from a thread: it can take milliseconds)."""
        fd = self._fd
        if fd is not None:
            self.dirty = False
            os.fsync(fd)

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                if self.fsync != "never":
                    os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # --- reading ----------------------------------------------------------------------------

    def view(self) -> View:
        """What a reader may read right now (taken on the loop, read on a thread)."""
        return View(
            tuple(SegmentView(s.path, s.first_seq, s.size) for s in self.segments), self.next_seq
        )

    def reader(self, from_seq: int, at: tuple[Path, int] | None = None) -> Reader:
        """A reader from ``from_seq``; ``at`` (``position`` when ``from_seq`` was next) lets it
        start there instead of scanning its segment from the top."""
        return Reader(from_seq, at)

    @property
    def position(self) -> tuple[Path, int]:
        """Where the next record will be written: its segment and offset."""
        active = self.segments[-1]
        return active.path, active.size

    # --- retention --------------------------------------------------------------------------

    def enforce_retention(
        self,
        min_cursor: int,
        retention_bytes: int,
        retention_age: float,
        now: float,
        *,
        delete: Callable[[Path], None] | None = None,
    ) -> list[Dropped]:
        """Delete old segments: those every cursor (``min_cursor``) has passed, and those past
        ``retention_bytes`` or ``retention_age`` whatever the cursors. The active one stays."""
        dropped: list[Dropped] = []
        total = self.total_bytes
        while len(self.segments) > 1:
            seg, nxt = self.segments[0], self.segments[1]
            last = nxt.first_seq - 1
            passed = last <= min_cursor
            forced = total > retention_bytes or now - seg.mtime > retention_age
            if not (passed or forced):
                break
            (delete or _unlink)(seg.path)
            self.segments.pop(0)
            total -= seg.size
            if last >= seg.first_seq:
                dropped.append(Dropped(seg.first_seq, last, not passed))
        return dropped

    def tail(self, max_bytes: int) -> list[Record]:
        """The newest records, about ``max_bytes`` of them, oldest first (for adapter resume)."""
        out: list[Record] = []
        budget = max_bytes
        for seg in reversed(self.segments):
            found, _ = _scan(seg.path, 0, seg.size)
            records = [r for r in found if isinstance(r, Record)]
            for record in reversed(records):
                out.append(record)
                budget -= record.size
                if budget <= 0:
                    break
            if budget <= 0:
                break
        out.reverse()
        return out


@dataclass(frozen=True, slots=True)
class SegmentView:
    path: Path
    first_seq: int
    size: int


@dataclass(frozen=True, slots=True)
class View:
    """The segments and the end of the journal at one moment: a reader's bound."""

    segments: tuple[SegmentView, ...]
    end_seq: int


class Reader:
    """Reads records from ``from_seq`` on, in the bounds of a ``View``, on a thread. What it
    cannot give back (deleted by retention, damaged) comes out as a ``Gap``, never skipped
    silently; ``corrupt`` counts the damaged stretches it stepped over."""

    def __init__(
        self, from_seq: int, at: tuple[Path, int] | None = None, *, keep_open: bool = False
    ) -> None:
        self.next_seq = from_seq
        self.corrupt = 0
        self._path: Path | None = None  # segment of the last read, and where it stopped
        self._offset = 0
        if at is not None:
            self._path, self._offset = at
        # ``keep_open``: the segment being read stays open between reads (until ``close``): a
        # follower at the tail reads a little at a time, and an open per read cost more than
        # the read.
        self.keep_open = keep_open
        self._file: BinaryIO | None = None
        self._file_path: Path | None = None

    def _open(self, path: Path) -> BinaryIO:
        if self._file_path != path or self._file is None:
            self.close()
            self._file = open(path, "rb")  # noqa: SIM115 - held across reads, closed by close()
            self._file_path = path
        return self._file

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            self._file_path = None

    @property
    def position(self) -> tuple[Path, int] | None:
        """Where the next read starts (None until it knows)."""
        return None if self._path is None else (self._path, self._offset)

    def read(self, view: View, max_bytes: int) -> list[Record | Gap]:
        """Records and gaps from ``next_seq``, about ``max_bytes``; empty at the view's end."""
        out: list[Record | Gap] = []
        segs = view.segments
        if self.next_seq >= view.end_seq:
            return out
        oldest = segs[0].first_seq if segs else view.end_seq
        if self.next_seq < oldest:
            out.append(Gap(self.next_seq, oldest - 1, "retention"))
            self.next_seq, self._path = oldest, None
        i = self._find(segs)
        budget = max_bytes
        while i < len(segs) and budget > 0 and self.next_seq < view.end_seq:
            seg = segs[i]
            try:
                file = self._open(seg.path) if self.keep_open else None
                found, complete = _scan(seg.path, self._offset, seg.size, limit=budget, file=file)
            except FileNotFoundError:
                self._path = None  # deleted by retention since the view: the next read says so
                break
            self._path = seg.path
            for item in found:
                if isinstance(item, Corrupt):
                    self.corrupt += 1
                    continue
                self._offset = item.offset + item.size
                if item.last_seq < self.next_seq:
                    continue
                if item.first_seq > self.next_seq:
                    out.append(Gap(self.next_seq, item.first_seq - 1, "corrupt"))
                out.append(item)
                budget -= item.size
                self.next_seq = item.last_seq + 1
            if not complete:
                break
            # The whole segment was read: what it should have held and did not is damaged.
            end = segs[i + 1].first_seq if i + 1 < len(segs) else view.end_seq
            if self.next_seq < end:
                out.append(Gap(self.next_seq, end - 1, "corrupt"))
                self.next_seq = end
            if i + 1 == len(segs):
                break
            i += 1
            self._path, self._offset = segs[i].path, 0
        return out

    def _find(self, segs: tuple[SegmentView, ...]) -> int:
        """Index of the segment to read next; resets the offset when it is not the last one."""
        for i, seg in enumerate(segs):
            if seg.path == self._path:
                return i
        firsts = [s.first_seq for s in segs]
        self._offset = 0
        i = max(0, bisect.bisect_right(firsts, self.next_seq) - 1)
        self._path = segs[i].path if segs else None
        return i


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)


def _lock(state_dir: Path) -> int:
    path = state_dir / "lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
    except OSError as exc:
        raise StateDirError(state_dir, f"cannot open {path.name}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise StateDirError(state_dir, "is in use by another tradebus (its lock is held)") from None
    return fd


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _segment_paths(directory: Path) -> list[tuple[int, Path]]:
    """(first seq, path) of every segment file in ``directory``, oldest first."""
    found: list[tuple[int, Path]] = []
    if not directory.is_dir():
        return found
    for path in directory.iterdir():
        stem = path.name[: -len(_SUFFIX)]
        if path.name.endswith(_SUFFIX) and stem.isdigit():
            found.append((int(stem), path))
    found.sort()
    return found


def list_segments(directory: Path) -> list[Segment]:
    segments: list[Segment] = []
    for first, path in _segment_paths(directory):
        try:
            st = path.stat()
        except FileNotFoundError:
            # Retention deletes off the loop (and from the daemon while the delivery process
            # lists): a segment gone since the directory was read is simply not there.
            continue
        segments.append(Segment(path, first, st.st_size, st.st_mtime))
    for seg, nxt in itertools.pairwise(segments):
        seg.end_seq = nxt.first_seq
    return segments


def _scan(
    path: Path, start: int, stop: int, *, limit: int | None = None, file: BinaryIO | None = None
) -> tuple[list[Record | Corrupt], bool]:
    """The records (and damage) between byte ``start`` and ``stop`` of a segment file, and
    whether it got to ``stop`` (it stops after about ``limit`` bytes of records). ``file``:
    the segment already open."""
    if file is not None:
        return _scan_fd(file.fileno(), start, stop, limit)
    with open(path, "rb") as f:
        return _scan_fd(f.fileno(), start, stop, limit)


def _scan_fd(
    fd: int, start: int, stop: int, limit: int | None
) -> tuple[list[Record | Corrupt], bool]:
    out: list[Record | Corrupt] = []
    scanner = RecordScanner(start)
    got = 0
    pos = start
    while pos < stop:
        data = os.pread(
            fd, min(_READ_CHUNK if limit is None else limit, _READ_CHUNK, stop - pos), pos
        )
        if not data:
            break
        pos += len(data)
        for item in scanner.feed(data):
            out.append(item)
            if isinstance(item, Record):
                got += item.size
        if limit is not None and got >= limit and pos < stop:
            return out, False
    return out, True


def _scan_end(seg: Segment, report: OpenReport) -> tuple[int, int]:
    """(offset after the last valid record, seq after it) of the last segment; records damaged
    in its middle are counted in ``report``."""
    scanner = RecordScanner()
    end_offset, end_seq = 0, seg.first_seq
    with open(seg.path, "rb") as f:
        while data := f.read(_READ_CHUNK):
            for item in scanner.feed(data):
                if isinstance(item, Record):
                    end_offset = item.offset + item.size
                    end_seq = max(end_seq, item.last_seq + 1)
                else:
                    report.corrupt.append((seg.path, item.offset, item.length))
    return end_offset, end_seq


def iter_records(
    journal: Journal, from_seq: int, to_seq: int | None = None
) -> Iterator[Record | Gap]:
    """Records and gaps from ``from_seq`` through ``to_seq`` (the CLI's replay)."""
    reader = journal.reader(from_seq)
    view = journal.view()
    while items := reader.read(view, _READ_CHUNK):
        for item in items:
            first = item.first_seq if isinstance(item, Record) else item.first
            if to_seq is not None and first > to_seq:
                return
            yield item


class _EventId(msgspec.Struct):
    id: str


_event_id: Final = msgspec.json.Decoder(_EventId).decode


def event_id_at(state_dir_or_journal_dir: Path, seq: int) -> str | None:
    """The ``id`` of the event this journal holds at ``seq``; None if it holds none there
    (past its end, before its oldest segment, in a damaged record, or not an event).

    Blocking disk I/O, from any process: it lists the segment files itself, with no lock and
    no ``Journal``, and reads only up to the record holding ``seq``. A file sink asks it, once
    at start, whether the last line of its file was written from this journal.
    """
    directory = state_dir_or_journal_dir / "journal"
    if not directory.is_dir():
        directory = state_dir_or_journal_dir
    found = _segment_paths(directory)
    i = bisect.bisect_right([first for first, _ in found], seq) - 1
    if seq < 1 or i < 0:
        return None
    try:
        line = _line_at(found[i][1], seq)
    except FileNotFoundError:  # deleted by retention since the listing
        return None
    if line is None:
        return None
    try:
        return _event_id(line).id
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def _line_at(path: Path, seq: int) -> bytes | None:
    """The line of ``seq`` in the segment at ``path``, scanning its records from the top."""
    scanner = RecordScanner()
    with open(path, "rb") as f:
        while data := f.read(_READ_CHUNK):
            for item in scanner.feed(data):
                if not isinstance(item, Record) or item.last_seq < seq:
                    continue
                if item.first_seq > seq:
                    return None  # its record was damaged and skipped
                n = seq - item.first_seq
                return item.payload.split(b"\n", n + 1)[n]
    return None
