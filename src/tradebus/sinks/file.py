"""The file sink: JSONL appended to a file, flushed per batch, rotated by size, reopened on SIGHUP.

Rotation renames ``path`` → ``path.1`` → … → ``path.N`` (N = ``backups``) before a batch would push
the file past ``max_bytes``; a batch is never split across files, so every file holds whole lines.
``reopen()`` (SIGHUP) closes and re-opens ``path`` so an external logrotate with ``create`` works.

Every step that touches the disk runs on the sink's own thread (``sinks/writer.py``): open, the
writes and their fsync, rotation, re-open, close. A disk that stalls (an NFS mount gone away,
a FIFO whose reader stopped reading) stalls this sink, never the event loop. Open and rotation
are waited for ``OPEN_TIMEOUT`` seconds at most (then retried, the sink's error says why),
close for ``CLOSE_TIMEOUT``: what the thread is still blocked in finishes on its own, and all
state is changed on the thread, in order, so a step the loop stopped waiting for leaves nothing
half-done behind. A write is waited for as long as it takes (a write cut off and retried would
put its lines in the file twice); a stop past ``drain_timeout`` cancels the wait.

Exactly once across restarts: on open the sink reads the last complete line of its file (cutting
a partial one a crash left) to learn the last ``seq`` it holds, and skips what a replay from the
journal gives it again, but only what this journal wrote: the first time a replay reaches back
to that seq, the sink asks the journal for its event there (``event_id_at``). If it is not the
line's event (the state dir was lost or replaced, and a new journal numbers from 1 again), the
file holds an earlier journal's events: the sink says so once and appends everything, rather
than skip new events whose seqs the old ones happened to use. One tradebus writes a path at a
time: the sink holds an exclusive ``flock`` on ``.<name>.lock`` beside the file while open,
and a second daemon given the same path fails (``FatalSinkError`` naming the file) instead of
interleaving its lines with the first's and skipping by its seqs.

The file a rotation drops (``path.N``, or ``path`` itself with no backups) is renamed aside and
deleted on a worker thread: freeing a big file's pages takes the kernel milliseconds, and
neither the event loop nor this sink's next write should wait for it. A file left aside by a
crash is deleted at the next open.
"""

from __future__ import annotations

import asyncio
import fcntl
import glob
import itertools
import os
import stat
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import BinaryIO, TypeVar

import msgspec

from tradebus import log
from tradebus.config import FileSinkConfig
from tradebus.errors import FatalSinkError, RetryableSinkError
from tradebus.plugin import SinkPlugin
from tradebus.sinks.base import Batch, Sink, SinkContext
from tradebus.sinks.writer import WriterThread

_TAIL_BLOCK = 64 * 1024
# How long the loop waits for an open or a rotation on the sink's thread, and for close.
OPEN_TIMEOUT = 5.0
CLOSE_TIMEOUT = 2.0
T = TypeVar("T")


class _Tail(msgspec.Struct):
    seq: int = 0
    id: str = ""


_tail_of = msgspec.json.Decoder(_Tail).decode


def line_tail(line: bytes) -> tuple[int, str]:
    """The ``seq`` and ``id`` of one written line (0 and "" if it is not an event)."""
    try:
        tail = _tail_of(line)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return 0, ""
    return tail.seq, tail.id


def line_seq(line: bytes) -> int:
    """The ``seq`` of one written line (0 if it has none or is not an event)."""
    return line_tail(line)[0]


def last_line(path: Path) -> bytes | None:
    """The last complete line of ``path``; a partial line after it (a write cut by a crash) is
    cut off the file first. None when there is no complete line."""
    try:
        f = open(path, "r+b")  # noqa: SIM115 - closed below, after a possible truncate
    except FileNotFoundError:
        return None
    with f:
        end = f.seek(0, os.SEEK_END)
        tail = b""
        pos = end
        while pos > 0:
            step = min(_TAIL_BLOCK, pos)
            pos -= step
            f.seek(pos)
            tail = f.read(step) + tail
            cut = tail.rfind(b"\n")
            if cut < 0:
                continue
            if cut != len(tail) - 1:  # bytes after the last newline: a torn line
                f.truncate(pos + cut + 1)
                tail = tail[: cut + 1]
            start = tail.rfind(b"\n", 0, len(tail) - 1)
            if start >= 0 or pos == 0:
                return tail[start + 1 : -1]
        if end:
            f.truncate(0)  # one partial line and nothing else
        return None


def _drop(path: Path) -> None:
    path.unlink(missing_ok=True)


def _no_journal(_seq: int) -> str | None:
    return None


class FileSink(Sink):
    needs_events = False
    max_batch = 0

    def __init__(self, config: FileSinkConfig) -> None:
        self.name = config.name
        self.path = Path(config.path)
        self.max_bytes = config.max_bytes
        self.backups = config.backups
        self.fsync = config.fsync
        # Owned by the sink's thread: only calls running there change them.
        self._file: BinaryIO | None = None
        self._size = 0
        self._rotates = True  # a regular file; a FIFO or a device is never renamed
        # Held while open: one tradebus writes this path (the target itself is renamed by a
        # rotation, so the lock is a file beside it that never moves).
        self.lock_path = self.path.with_name(f".{self.path.name}.lock")
        self._lock_fd: int | None = None
        self._drops = itertools.count(1)
        self._log = log.get(sink=config.name)
        self._dropping: set[asyncio.Future[None]] = set()
        self._writer = WriterThread(f"sink:{config.name}")
        self._reopen = False  # SIGHUP came: re-open before the next write, not during one
        self.have = 0  # the last seq already in the file (a replay skips up to it)
        self._have_id = ""  # the id of the event on that last line
        self._checked = False  # whether the journal was asked if that line is its own
        self._event_id_at: Callable[[int], str | None] = _no_journal

    async def open(self, ctx: SinkContext) -> None:
        self._event_id_at = ctx.event_id_at
        await self._step(self._start, f"open {self.path}", OPEN_TIMEOUT)
        if self.have:
            self._log.info("file_resumed", path=str(self.path), last_seq=self.have)

    async def _step(self, fn: Callable[[], T], doing: str, timeout: float | None) -> T:
        """``fn`` on the sink's thread; a failure or a timeout as a ``RetryableSinkError``
        (``doing``: "open <path>", what the message says could not be done)."""
        try:
            return await self._writer.call(fn, timeout)
        except TimeoutError:
            raise RetryableSinkError(
                f"sink {self.name}: cannot {doing}: no answer in {timeout:g}s "
                "(a stalled disk, or a FIFO nobody reads)"
            ) from None
        except OSError as exc:
            raise RetryableSinkError(f"sink {self.name}: cannot {doing}: {exc.strerror}") from exc

    # --- on the sink's thread -----------------------------------------------------------

    def _start(self) -> None:
        """Clean up, learn the file's last line and open it (a no-op if an earlier open that
        the loop stopped waiting for got there in the end)."""
        if self._file is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock()
        for left in self.path.parent.glob(f".{glob.escape(self.path.name)}.*.dropped"):
            _drop(left)
        self.have, self._have_id = self._last_written()
        self._checked = False
        self._open()

    def _lock(self) -> None:
        """Take ``lock_path`` (an exclusive flock, kept across a failed open and its retry).

        Two daemons writing one file would interleave their lines, and each would skip events
        by the other's seqs: the second is refused, with an error that names the file."""
        if self._lock_fd is not None:
            return
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise FatalSinkError(
                f"sink {self.name}: {self.path} is being written by another tradebus process "
                f"(it holds {self.lock_path.name}); give each daemon a file of its own"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        self._lock_fd = fd

    def _last_written(self) -> tuple[int, str]:
        """(seq, id) of the file's last line, or of its first backup's when it is empty."""
        for path in (self.path, self.path.with_name(f"{self.path.name}.1")):
            try:
                if not stat.S_ISREG(path.stat().st_mode):
                    # A FIFO holds nothing to read back, and opening one to look would be
                    # taken by the process waiting on its other end for a reader.
                    return 0, ""
                line = last_line(path)
            except FileNotFoundError:
                continue
            except OSError:
                return 0, ""
            if line is not None:
                return line_tail(line)
        return 0, ""

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)  # gone since (a re-open)
        self._file = open(self.path, "ab")  # noqa: SIM115 - held open across batches
        st = os.fstat(self._file.fileno())
        self._rotates = stat.S_ISREG(st.st_mode)
        self._size = st.st_size  # not tell(): a FIFO cannot seek

    def _close(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            file.close()

    def _ready(self, size: int) -> list[Path]:
        """Re-open after SIGHUP, open after a failure, rotate before ``size`` more bytes would
        pass ``max_bytes``; the files a rotation dropped, for the loop to delete."""
        if self._reopen:
            self._reopen = False
            self._close()
            self._log.info("file_reopened", path=str(self.path))
        if self._file is None:
            self._open()
        if self._rotates and self.max_bytes and self._size and self._size + size > self.max_bytes:
            return self._rotate()
        return []

    def _needs_ready(self, size: int) -> bool:
        """Whether ``_ready`` has work (read on the loop: the thread checks again)."""
        full = self.max_bytes and self._size and self._size + size > self.max_bytes
        return self._reopen or self._file is None or bool(self._rotates and full)

    def _put(self, chunks: Sequence[bytes], size: int) -> list[Path]:
        try:
            dropped = self._ready(size)
            file = self._file
            assert file is not None
            for chunk in chunks:
                file.write(chunk)
            file.flush()
            if self.fsync:
                os.fsync(file.fileno())
        except OSError:
            self._close_quietly()  # start clean on retry: the next write re-opens and re-measures
            raise
        self._size += size
        return dropped

    def _close_quietly(self) -> None:
        try:
            self._close()
        except OSError:
            self._file = None  # what its buffer held is lost; the retry writes it again

    def _rotate(self) -> list[Path]:
        self._close()
        if self.backups == 0:
            dropped = self._set_aside(self.path)
        else:
            # The oldest goes aside first, so no rename below replaces (and frees) a file.
            dropped = self._set_aside(self.path.with_name(f"{self.path.name}.{self.backups}"))
            for n in range(self.backups - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{n}")
                if older.exists():
                    older.replace(self.path.with_name(f"{self.path.name}.{n + 1}"))
            self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        self._log.info("file_rotated", path=str(self.path))
        self._open()
        return dropped

    def _set_aside(self, path: Path) -> list[Path]:
        aside = path.with_name(f".{self.path.name}.{next(self._drops)}.dropped")
        try:
            path.rename(aside)
        except FileNotFoundError:
            return []
        return [aside]

    def _finish(self) -> None:
        self._close_quietly()
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.close(fd)  # the lock goes with it

    # --- on the loop --------------------------------------------------------------------

    async def _check_origin(self) -> None:
        """Keep ``have`` only if this journal wrote the file's last line (same id at its seq).

        Asked once, when a replay first reaches back to that seq: a journal that has since
        dropped the seq (retention) is never asked, since nothing before it comes again."""
        seq, want = self.have, self._have_id
        held = await self._step(
            partial(self._event_id_at, seq), f"read the journal at seq {seq}", OPEN_TIMEOUT
        )
        self._checked = True
        if held is None or held != want:
            self.have = 0
            self._log.warning(
                "file_holds_other_journal",
                path=str(self.path),
                last_seq=seq,
                note="its lines came from an earlier journal (a lost or replaced state dir): "
                "every event is appended",
            )

    async def write(self, batch: Batch) -> None:
        chunks = batch.chunks  # a merged batch's parts, never joined
        if self.have and batch.first_seq and batch.first_seq <= self.have and not self._checked:
            await self._check_origin()
        if self.have and batch.first_seq and batch.first_seq <= self.have:
            if batch.last_seq <= self.have:
                return  # all of it is in the file already (a replay after a crash)
            chunks = self._unwritten(batch)
        size = sum(map(len, chunks))
        if self._needs_ready(size):
            ready = partial(self._ready, size)
            self._drop_later(await self._step(ready, f"open {self.path}", OPEN_TIMEOUT))
        put = partial(self._put, chunks, size)
        self._drop_later(await self._step(put, f"write to {self.path}", None))

    def _unwritten(self, batch: Batch) -> list[bytes]:
        lines = batch.data.split(b"\n")[:-1]
        return [line + b"\n" for line in lines if line_seq(line) > self.have]

    def _drop_later(self, paths: list[Path]) -> None:
        """Delete what a rotation set aside on a worker thread, neither here nor on the sink's."""
        loop = asyncio.get_running_loop()
        for path in paths:
            done = loop.run_in_executor(None, _drop, path)
            self._dropping.add(done)
            done.add_done_callback(self._dropped)

    def _dropped(self, done: asyncio.Future[None]) -> None:
        self._dropping.discard(done)
        if not done.cancelled() and (exc := done.exception()) is not None:
            self._log.warning("file_drop_failed", error=str(exc))

    async def close(self) -> None:
        """Close the file on the sink's thread; at most ``CLOSE_TIMEOUT`` seconds in all."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CLOSE_TIMEOUT
        if not await self._writer.close(self._finish, CLOSE_TIMEOUT):
            # A write is still blocked: the thread closes the file once it returns.
            self._log.warning("file_close_timed_out", path=str(self.path), after=CLOSE_TIMEOUT)
        if self._dropping:
            await asyncio.wait(self._dropping, timeout=max(0.0, deadline - loop.time()))

    def reopen(self) -> None:
        self._reopen = True


PLUGIN = SinkPlugin("file", FileSinkConfig, FileSink)
