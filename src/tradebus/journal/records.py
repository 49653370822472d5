"""The journal's record format and its sans-I/O scanner: bytes in, records out.

One record per bus batch. Every field is little-endian; the header is 32 bytes::

    offset  size  field
         0     4  MAGIC       b"\\xfftj1": lets a reader resync after garbage (0xFF never
                              occurs in UTF-8, so a JSON payload can never contain MAGIC)
         4     4  crc32       zlib.crc32 of bytes 8..31 of this header, then of the payload
         8     4  length      payload length in bytes (at most MAX_PAYLOAD)
        12     4  count       number of events (lines) in the payload, >= 1
        16     8  first_seq   seq of the first event; the others follow without holes
        24     8  time_ms     unix milliseconds when the batch was appended
        32     n  payload     ``count`` JSON lines, each terminated by b"\\n"

Why this shape: a fixed header lets the appender hand header + already-encoded lines to one
``os.writev`` without copying them; the checksum covers the header fields too, so a flipped seq
is caught; the length comes before the payload, so a record cut short by a power loss is seen as
incomplete (torn) rather than read as garbage; MAGIC lets a reader skip a damaged record and
find the next one.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

MAGIC: Final[bytes] = b"\xfftj1"
_FIELDS: Final = struct.Struct("<IIQq")  # length, count, first_seq, time_ms
_CRC: Final = struct.Struct("<I")
HEADER_SIZE: Final[int] = len(MAGIC) + _CRC.size + _FIELDS.size
# A length past this is damage, not a reason to buffer: a batch is far smaller in practice.
MAX_PAYLOAD: Final[int] = 256 * 2**20


def encode_header(first_seq: int, count: int, time_ms: int, payload: Sequence[bytes]) -> bytes:
    """The 32-byte header for a record whose payload is the concatenation of ``payload``."""
    length = 0
    for chunk in payload:
        length += len(chunk)
    fields = _FIELDS.pack(length, count, first_seq, time_ms)
    crc = zlib.crc32(fields)
    for chunk in payload:  # chained, so the lines are never joined into one copy
        crc = zlib.crc32(chunk, crc)
    return MAGIC + _CRC.pack(crc) + fields


@dataclass(frozen=True, slots=True)
class Record:
    """One valid record found at ``offset`` of its segment."""

    offset: int
    first_seq: int
    count: int
    time_ms: int
    payload: bytes

    @property
    def last_seq(self) -> int:
        return self.first_seq + self.count - 1

    @property
    def size(self) -> int:
        """Bytes the record takes on disk, header included."""
        return HEADER_SIZE + len(self.payload)


@dataclass(frozen=True, slots=True)
class Corrupt:
    """``length`` bytes at ``offset`` skipped because no valid record starts there."""

    offset: int
    length: int


@dataclass(frozen=True, slots=True)
class Torn:
    """The bytes from ``offset`` to the end do not hold a complete valid record."""

    offset: int


def _check(buf: bytes | bytearray, pos: int) -> tuple[str, int]:
    """Classify the record starting at ``pos``: ("ok" | "bad" | "short", its end)."""
    if len(buf) - pos < HEADER_SIZE:
        return "short", 0
    if buf[pos : pos + 4] != MAGIC:
        return "bad", 0
    length, count, first_seq, _ = _FIELDS.unpack_from(buf, pos + 8)
    if length > MAX_PAYLOAD or count < 1 or length < count or first_seq < 1:
        return "bad", 0
    end = pos + HEADER_SIZE + length
    if end > len(buf):
        return "short", end
    (crc,) = _CRC.unpack_from(buf, pos + 4)
    view = memoryview(buf)
    try:
        ok = zlib.crc32(view[pos + 8 : end]) == crc
    finally:
        view.release()
    return ("ok" if ok else "bad"), end


class RecordScanner:
    """Feed it a segment's bytes in any chunks; it yields the same records and damage either way.

    A damaged stretch is reported as ``Corrupt`` only once a valid record after it is found; a
    stretch that runs to the end is the torn tail, reported by ``end()``. Memory is bounded by
    the largest record plus the bytes of one chunk.
    """

    def __init__(self, offset: int = 0) -> None:
        self._buf = bytearray()
        self._base = offset  # segment offset of _buf[0]
        self._bad_from: int | None = None  # segment offset where the pending damage starts
        self._probe = 0  # in _buf: where to look for MAGIC next while a long record waits

    def feed(self, data: bytes) -> list[Record | Corrupt]:
        """Scan ``data`` (appended to what came before) and return what is now certain."""
        self._buf += data
        buf = self._buf
        out: list[Record | Corrupt] = []
        pos = 0
        while True:
            state, end = _check(buf, pos)
            if state == "ok":
                self._emit_bad(pos, out)
                _, count, first_seq, time_ms = _FIELDS.unpack_from(buf, pos + 8)
                out.append(
                    Record(
                        self._base + pos,
                        first_seq,
                        count,
                        time_ms,
                        bytes(buf[pos + HEADER_SIZE : end]),
                    )
                )
                pos = end
                self._probe = 0
                continue
            if state == "short":
                # A record that claims more bytes than we have is either a real one still
                # arriving or a damaged length. A valid record starting inside its claimed span
                # decides for damage: real payloads never contain MAGIC.
                nxt = self._resync_inside(pos) if end else None
                if nxt is None:
                    break
                self._mark_bad(pos)
                pos = nxt
                continue
            self._mark_bad(pos)
            nxt_magic = buf.find(MAGIC, pos + 1)
            if nxt_magic < 0:
                # Keep the last 3 bytes: they may be the start of MAGIC.
                pos = max(pos + 1, len(buf) - (len(MAGIC) - 1))
                break
            pos = nxt_magic
        del buf[:pos]
        self._base += pos
        self._probe = max(0, self._probe - pos)
        return out

    def end(self) -> Torn | None:
        """Call after the last ``feed``: the torn tail, if the bytes did not end on a record."""
        if self._bad_from is not None:
            return Torn(self._bad_from)
        if self._buf:
            return Torn(self._base)
        return None

    def _mark_bad(self, pos: int) -> None:
        if self._bad_from is None:
            self._bad_from = self._base + pos
        self._probe = 0

    def _emit_bad(self, pos: int, out: list[Record | Corrupt]) -> None:
        if self._bad_from is not None:
            out.append(Corrupt(self._bad_from, self._base + pos - self._bad_from))
            self._bad_from = None

    def _resync_inside(self, pos: int) -> int | None:
        """Start of a complete valid record after ``pos`` in the buffer, if there is one."""
        buf = self._buf
        q = max(pos + 1, self._probe)
        while True:
            q = buf.find(MAGIC, q)
            if q < 0:
                self._probe = max(pos + 1, len(buf) - (len(MAGIC) - 1))
                return None
            state, _ = _check(buf, q)
            if state == "ok":
                return q
            if state == "short":
                self._probe = q  # decide once it is complete
                return None
            q += 1
