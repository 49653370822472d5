"""Durable per-sink cursors: the last seq each sink wrote and had acknowledged.

One small JSON file, replaced atomically (write a temp file, fsync, rename, fsync the dir): a
SIGKILL at any byte leaves either the old file or the new one, never a mix. The file is small
(one entry per sink), so rewriting it whole every 100 ms costs less than keeping a log of it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import msgspec

CURSORS_FILE = "cursors.json"


class CursorEntry(msgspec.Struct, kw_only=True):
    seq: int
    updated_ms: int = 0
    error: str | None = None


class CursorFile(msgspec.Struct, kw_only=True):
    version: int = 1
    sinks: dict[str, CursorEntry] = msgspec.field(default_factory=dict)


def load(state_dir: Path) -> tuple[dict[str, CursorEntry], str | None]:
    """The cursors saved in ``state_dir``, and a problem to log if the file was unreadable (the
    sinks then start from the journal's beginning: at-least-once, never a loss)."""
    path = state_dir / CURSORS_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}, None
    except OSError as exc:
        return {}, f"cannot read {path}: {exc.strerror}"
    try:
        return msgspec.json.decode(data, type=CursorFile).sinks, None
    except msgspec.DecodeError as exc:
        return {}, f"{path} is damaged ({exc}); sinks replay the journal from its start"


def save(state_dir: Path, cursors: dict[str, CursorEntry], *, durable: bool = True) -> None:
    """Replace the cursor file (from a thread: it may fsync)."""
    path = state_dir / CURSORS_FILE
    tmp = path.with_name(f".{CURSORS_FILE}.tmp")
    data = msgspec.json.encode(CursorFile(sinks=cursors))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640)
    try:
        os.write(fd, data)
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if durable:
        dfd = os.open(state_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            with contextlib.suppress(OSError):
                os.fsync(dfd)
        finally:
            os.close(dfd)
