"""The recorder: one source's transport events into ``<state_dir>/recordings/<source>/``.

The event loop only appends what happened, raw, to a queue (one ``deque.append`` per event);
a thread of the recorder's own takes the queue at least every ``FLUSH_EVERY`` seconds (sooner
when ``FLUSH_BYTES`` wait), redacts each record (``redact``), encodes the lines, compresses
them into one independent zstd frame and appends it to the current file, synced at most every
``SYNC_EVERY`` seconds. A SIGKILL loses what the thread had not written yet (under a second)
and, at worst, one frame cut mid-write, which the reader reports and steps over.

Files are named ``<UTC start>-<run>-<part>.jsonl.zst`` (sorted by name is sorted by time); a
new one starts when the current one would pass ``max_bytes`` or is an hour old, and begins
with its own header line. Whole files go oldest first once the directory holds more than
``retention_bytes``, or when older than ``retention_age``; the file being written never does.

If the thread falls behind (a stalled disk), the queue is bounded: past ``MAX_PENDING`` bytes
new events are dropped and counted, and a ``lost`` record says where. The source never waits.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import msgspec

from tradebus import __version__, log, secret
from tradebus.recording import format as fmt
from tradebus.recording import redact
from tradebus.secret import Secret

if TYPE_CHECKING:
    from tradebus.config import SourceConfig
    from tradebus.schemas.events import Event

FLUSH_EVERY: Final = 0.5
# A busy source is flushed this much at a time: what the thread holds between flushes (the
# reads, their lines, the frame) is the memory a recording adds (benchmarks/README.md).
FLUSH_BYTES: Final = 1 << 20
# Frames are synced at most this often: a power loss costs at most the last second.
SYNC_EVERY: Final = 1.0
MAX_PENDING: Final = 64 << 20
ROTATE_AGE: Final = 3600.0
SUFFIX: Final = ".jsonl.zst"  # also in recording.command, which must not import this
# zstd level 1: the recording must cost the source little, and level 3 costs more CPU for
# barely smaller files (benchmarks/README.md).
LEVEL: Final = 1
_history_encoder = msgspec.json.Encoder()


def directory(state_dir: Path | str, source: str) -> Path:
    return Path(state_dir) / "recordings" / source


def config_table(config: SourceConfig) -> dict[str, Any]:
    """The source's table as recorded: every secret replaced, the URL redacted."""

    def hook(value: Any) -> Any:
        if isinstance(value, Secret):
            return redact.REDACTED
        raise NotImplementedError

    table: dict[str, Any] = msgspec.to_builtins(config, enc_hook=hook)
    table["url"] = redact.url(table["url"], redact.secrets_bytes(secret.known()))
    return table


class Recorder:
    """Writes one source's recording; ``add``/``recv``/``start`` are for the event loop."""

    def __init__(
        self,
        path: Path,
        *,
        source: str,
        type_: str,
        config: dict[str, Any],
        secrets: Sequence[str] = (),
        max_bytes: int,
        retention_bytes: int,
        retention_age: float,
        flush_every: float = FLUSH_EVERY,
        level: int = LEVEL,
        max_pending: int = MAX_PENDING,
    ) -> None:
        self.directory = path
        self.source = source
        self.type = type_
        self.config = config
        self.max_bytes = max_bytes
        self.retention_bytes = retention_bytes
        self.retention_age = retention_age
        self.flush_every = flush_every
        self.max_pending = max_pending
        self.bytes_written = 0
        self.path: str | None = None
        self.lost = 0
        self._level = level
        self._queue: deque[Any] = deque()
        self._queued = 0  # bytes queued (written by the loop's thread only)
        self._taken = 0  # bytes taken (written by the recorder's thread only)
        self._lost_said = 0
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._run = ""
        self._seed = 0
        self._part = 0
        self._file: Any = None
        self._file_size = 0
        self._file_started = 0.0
        self._synced = 0.0
        self._lines = fmt.LineBuffer()
        self._log: Any = log.get(source=source)
        # The value net of this source: its config's secrets, and every token or session id
        # its upstream issued (learned from the bodies redacted by name). Streamed data is
        # searched for these alone: each secret more is one more pass over every byte read.
        self._own: set[str] = {s for s in secrets if len(s) >= 4}
        self._own_bytes = redact.secrets_bytes(sorted(self._own))

    # --- the event loop's side ----------------------------------------------------------------

    def open(self, boot: float, seed: int) -> None:
        """Start the run (``boot`` names it) and the thread, which opens the first file."""
        self._run = f"{int(boot * 1000):x}"
        self._seed = seed
        self._thread = threading.Thread(
            target=self._loop, name=f"record:{self.source}", daemon=True
        )
        self._thread.start()

    def _room(self, size: int) -> bool:
        pending = self._queued - self._taken
        if pending + size > self.max_pending:
            self.lost += 1
            return False
        self._queued += size
        if pending + size >= FLUSH_BYTES:
            self._wake.set()
        return True

    def add(self, record: fmt.Record) -> None:
        """A transport event (its fields raw: the thread redacts them)."""
        if self._room(256):
            self._queue.append(record)

    def recv(self, t: float, conn: int, data: bytes | str, *, binary: bool) -> None:
        """Bytes or a message received: the hot path, so a tuple, not a record."""
        if self._room(len(data)):
            self._queue.append((t, conn, data, binary))

    def start(self, t: float, history: Sequence[Event], stopped_at: float | None) -> None:
        if self._room(256 * len(history)):
            self._queue.append(("start", t, list(history), stopped_at))

    def close(self) -> None:
        """Write what is queued, close the file, end the thread (the daemon's shutdown)."""
        thread = self._thread
        if thread is None:
            return
        self._queue.append(fmt.End(t=time.time()))  # past any bound: the place the run ended
        self._stopping = True
        self._wake.set()
        thread.join()
        self._thread = None

    # --- the recorder's thread ----------------------------------------------------------------

    def _loop(self) -> None:
        try:
            self._open_file(time.time())  # the path shows in /readyz from the start
        except OSError as exc:
            self._log.error("recording_write_failed", error=str(exc)[:200])
        while True:
            self._wake.wait(self.flush_every)
            self._wake.clear()
            try:
                self._flush()
            except OSError as exc:
                # A full or failing disk costs the recording, never the source.
                self._log.error("recording_write_failed", error=str(exc)[:200])
                self._queue.clear()
            if self._stopping:
                self._close_file()
                return

    def _flush(self) -> None:
        queue = self._queue
        if not queue and self.lost == self._lost_said:
            return
        lines = self._lines
        lines.clear()
        taken = 0
        while queue:
            taken += self._build(queue.popleft(), lines)
        self._taken += taken
        if self.lost != self._lost_said:
            lines.record(fmt.Lost(t=time.time(), records=self.lost - self._lost_said))
            self._log.warning("recording_fell_behind", lost=self.lost - self._lost_said)
            self._lost_said = self.lost
        self._write(lines.view())

    def _build(self, item: Any, lines: fmt.LineBuffer) -> int:
        """One queued item, redacted, as a line in ``lines``; the bytes it held in the queue."""
        own = self._own_bytes
        if not isinstance(item, tuple):
            # Requests and answers are rare: every secret known anywhere is searched for.
            found: set[str] = set()
            everything = redact.secrets_bytes([*secret.known(), *self._own])
            lines.record(_redacted(item, everything, found))
            if found - self._own:
                self._own |= {s for s in found if len(s) >= 4}
                self._own_bytes = redact.secrets_bytes(sorted(self._own))
            return 256
        if item[0] == "start":
            _, t, history, stopped_at = item
            events = [msgspec.Raw(redact.scrub(_history_encoder.encode(e), own)) for e in history]
            lines.record(fmt.Start(t=t, stopped_at=stopped_at, history=events))
            return 256 * len(history)
        t, conn, data, binary = item
        raw = data.encode() if isinstance(data, str) else data
        lines.recv(t, conn, redact.scrub(raw, own), binary=binary)
        return len(data)

    def _write(self, lines: bytes | memoryview) -> None:
        frame = fmt.frame(lines, self._compressor())
        now = time.time()
        if self._file is not None and (
            self._file_size + len(frame) > self.max_bytes or now - self._file_started > ROTATE_AGE
        ):
            self._close_file()
        if self._file is None:
            self._open_file(now)
        self._file.write(frame)
        if now - self._synced >= SYNC_EVERY:
            os.fdatasync(self._file.fileno())
            self._synced = now
        self._file_size += len(frame)
        self.bytes_written += len(frame)

    def _compressor(self) -> Any:
        compressor = getattr(self, "_zstd", None)
        if compressor is None:
            compressor = self._zstd = fmt.compressor(self._level)
        return compressor

    def _open_file(self, now: float) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._part += 1
        stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%SZ")
        path = self.directory / f"{stamp}-{self._run}-{self._part:04d}{SUFFIX}"
        self._file = open(path, "ab", buffering=0)  # noqa: SIM115 - held open, closed on rotation
        self._file_started = now
        self._file_size = 0
        self.path = str(path)
        header = fmt.Header(
            t=now,
            format=fmt.FORMAT_VERSION,
            source=self.source,
            type=self.type,
            tradebus=__version__,
            run=self._run,
            part=self._part,
            seed=self._seed,
            config=self.config,
        )
        frame = fmt.frame(fmt.encode_lines([header]), self._compressor())
        self._file.write(frame)
        self._file_size = len(frame)
        self.bytes_written += len(frame)
        self._log.info("recording_file_opened", path=str(path))
        self._retain(now)

    def _close_file(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.flush()
                os.fdatasync(self._file.fileno())
            self._file.close()
            self._file = None

    def _retain(self, now: float) -> None:
        """Delete whole files, oldest first, past ``retention_bytes`` or ``retention_age``."""
        files = sorted(p for p in self.directory.glob(f"*{SUFFIX}") if str(p) != self.path)
        sizes = {}
        for p in files:
            with contextlib.suppress(OSError):
                sizes[p] = p.stat()
        total = sum(s.st_size for s in sizes.values()) + self._file_size
        for p, st in sizes.items():
            if total <= self.retention_bytes and now - st.st_mtime <= self.retention_age:
                continue
            with contextlib.suppress(OSError):
                p.unlink()
                total -= st.st_size
                self._log.info("recording_file_deleted", path=str(p))


def _redacted(record: fmt.Record, secrets: Sequence[bytes], found: set[str]) -> fmt.Record:
    """One record with every net of ``redact`` applied to the fields it has; the credential
    values replaced by name go to ``found``."""
    replace = msgspec.structs.replace
    if isinstance(record, fmt.Open):
        data = fmt.payload(record) if (record.text or record.b64) else None
        changes: dict[str, Any] = {
            "url": redact.url(record.url, secrets, found),
            "headers": redact.request_headers(record.headers, secrets),
        }
        if data is not None:
            changes["text"], changes["b64"] = fmt.text_or_b64(redact.body(data, secrets, found))
        return replace(record, **changes)
    if isinstance(record, fmt.Response):
        changes = {"headers": redact.response_headers(record.headers, secrets)}
        if record.text or record.b64:
            changes["text"], changes["b64"] = fmt.text_or_b64(
                redact.body(fmt.payload(record), secrets, found)
            )
        return replace(record, **changes)
    if isinstance(record, fmt.Error):
        headers = record.headers
        return replace(
            record,
            message=redact.scrub_text(record.message, secrets),
            headers=None if headers is None else redact.response_headers(headers, secrets),
        )
    if isinstance(record, fmt.Send):
        if record.text is not None:
            return replace(record, text=redact.scrub_text(record.text, secrets))
        if record.b64 is not None:
            return replace(record, b64=redact.scrub(bytes(record.b64), secrets))
        return record
    if isinstance(record, fmt.Control) and (record.text or record.b64):
        return replace(
            record,
            text=record.text and redact.scrub_text(record.text, secrets),
            b64=None if record.b64 is None else redact.scrub(bytes(record.b64), secrets),
        )
    return record


def for_source(config: SourceConfig, state_dir: Path | str) -> Recorder | None:
    """The recorder of a ``[[sources]]`` table with ``record = true``, else None."""
    if not config.record:
        return None
    return Recorder(
        directory(state_dir, config.name),
        source=config.name,
        type_=str(config.__struct_config__.tag),
        config=config_table(config),
        secrets=[v.reveal() for v in msgspec.structs.astuple(config) if isinstance(v, Secret)],
        max_bytes=config.record_max_bytes,
        retention_bytes=config.record_retention_bytes,
        retention_age=config.record_retention_age,
    )
