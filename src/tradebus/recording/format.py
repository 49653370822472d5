"""The recording format, sans-I/O: records, frames of records, and a reader that finds them.

A recording file is a sequence of independent zstd frames (RFC 8878); each frame holds whole
JSON lines, one record a line, so ``zstd -dc FILE | jq`` reads it. The first line of a file is a
``Header`` (format version, source, type, tradebus version). A file cut anywhere (SIGKILL, power
loss) loses at most the frame that was being written: the reader walks each frame's block
headers to find where it ends, so it never needs more than the frame in hand, decompresses
whole frames only, and reports a frame that is cut, damaged or not zstd at all once, by its
offset, then looks for the next frame's magic number and goes on.

Every record carries ``t``, the wall-clock time (Unix seconds) the adapter saw the event, and
most a connection number ``conn`` (1, 2, … per adapter run). Payloads are bytes as the socket
gave them: ``text`` when they are UTF-8, else ``b64`` (and always ``b64`` for a binary
WebSocket message, whose type the replay must give back).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias

import msgspec
import zstandard

FORMAT_VERSION: Final = 1
# RFC 8878 3.1.1: "Magic_Number: 4 Bytes, little-endian format. Value: 0xFD2FB528."
MAGIC: Final = b"\x28\xb5\x2f\xfd"
# RFC 8878 3.1.2: skippable frames, "0x184D2A5?" (little-endian), then a 4-byte size.
_SKIPPABLE_LOW: Final = 0x184D2A50
# A frame (compressed) or its content past these is taken for damage, never allocated.
MAX_FRAME: Final = 256 << 20
MAX_CONTENT: Final = 1 << 30
# RFC 8878 3.1.1.2: "Block_Maximum_Size is the smallest of Window_Size and 128 KiB."
_BLOCK_MAX: Final = 128 << 10


class _Record(msgspec.Struct, tag_field="k", kw_only=True, omit_defaults=True):
    t: float


class Header(_Record, tag="header"):
    """The first line of every file: what made it, and what the replay needs to start."""

    format: int
    source: str
    type: str
    tradebus: str
    run: str  # the run's boot stamp (ms, hex): status ids of that run carry it
    part: int  # the n-th file of the run, from 1
    seed: int  # the run's random seed: backoff jitter comes from it
    config: dict[str, Any]  # the source's [[sources]] table, secrets redacted


class Start(_Record, tag="start"):
    """The adapter started (``history``: what the journal held of the source then)."""

    stopped_at: float | None = None
    history: list[msgspec.Raw] = msgspec.field(default_factory=list)


class Open(_Record, tag="open"):
    """A request sent: an SSE GET, a REST call, a WebSocket handshake (``method`` "WS")."""

    conn: int
    method: str
    url: str
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    text: str | None = None
    b64: bytes | None = None


class Response(_Record, tag="response"):
    """The answer's status line and headers (a REST call's body too)."""

    conn: int
    status: int
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    text: str | None = None
    b64: bytes | None = None


class Error(_Record, tag="error"):
    """The connection failed or broke: the exception's class name, its scrubbed message, and
    for a refused WebSocket handshake the status and headers."""

    conn: int
    error: str
    message: str = ""
    status: int | None = None
    headers: dict[str, str] | None = None


class Recv(_Record, tag="recv"):
    """Bytes read from the socket (SSE: one read) or one WebSocket message."""

    conn: int
    text: str | None = None
    b64: bytes | None = None


class Send(_Record, tag="send"):
    """A WebSocket message or control frame tradebus sent (``op``: ping, pong; none: data)."""

    conn: int
    op: str | None = None
    text: str | None = None
    b64: bytes | None = None
    error: str | None = None  # the send failed: the exception's class name


class Control(_Record, tag="control"):
    """A WebSocket control event received: ping, pong, close (``code``, ``text`` the reason),
    or closing / closed / error / too_big (the connection is gone)."""

    conn: int
    op: str
    code: int | None = None
    text: str | None = None
    b64: bytes | None = None  # a ping's or pong's payload
    error: str | None = None


class Timeout(_Record, tag="timeout"):
    """A read on ``conn`` waited its whole timeout."""

    conn: int


class Close(_Record, tag="close"):
    """The connection ended: ``by`` "upstream" (the stream ended) or "us" (we closed it)."""

    conn: int
    by: Literal["upstream", "us"]


class Wake(_Record, tag="wake"):
    """A timer of the adapter's fired (``label`` says which: backoff, watchdog, heartbeat…)."""

    label: str


class Lost(_Record, tag="lost"):
    """The writer fell behind and dropped ``records`` records here: the replay will diverge."""

    records: int


class End(_Record, tag="end"):
    """The adapter was stopped (the daemon's shutdown)."""


Record: TypeAlias = (
    (Header | Start | Open | Response | Error | Recv | Send | Control | Timeout | Close | Wake)
    | Lost
    | End
)
_decoder: Final = msgspec.json.Decoder(Record)
_encoder: Final = msgspec.json.Encoder()


def payload(record: Open | Response | Recv | Send) -> bytes:
    """The bytes a record carries (``text`` encoded back, or ``b64`` decoded)."""
    if record.b64 is not None:
        return bytes(record.b64)
    return (record.text or "").encode("utf-8")


def text_or_b64(data: bytes, *, binary: bool = False) -> tuple[str | None, bytes | None]:
    """``data`` as the record's ``text`` when it is UTF-8 (and not a binary message), else
    its ``b64``: a chunk cut inside a multi-byte character is kept byte for byte."""
    if not binary:
        try:
            return data.decode("utf-8"), None
        except UnicodeDecodeError:
            pass
    return None, data


# A read is decoded and escaped this much at a time: pieces a process's heap reuses, where a
# whole 128 KiB read would be a fresh mapping (and its page faults) every time.
_PIECE = 16 << 10


class LineBuffer:
    """JSON lines appended into one buffer that is reused, never shrunk: a busy recorder
    allocates no fresh memory per flush (on a host that backs memory lazily, fresh pages cost
    more than the encoding)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.size = 0

    def append(self, data: bytes | memoryview) -> None:
        end = self.size + len(data)
        self._buf[self.size : end] = data
        self.size = end

    def record(self, record: Record) -> None:
        self.append(_encoder.encode(record))
        self.append(b"\n")

    def recv(self, t: float, conn: int, data: bytes, *, binary: bool) -> None:
        """A ``Recv`` line for ``data``, its text escaped piece by piece (or ``b64``)."""
        if binary or not _utf8(data):
            self.record(Recv(t=t, conn=conn, b64=data))
            return
        self.append(b'{"k":"recv","conn":%d,"text":"' % conn)
        view, start, size = memoryview(data), 0, len(data)
        while start < size:
            end = min(start + _PIECE, size)
            while end < size and (data[end] & 0xC0) == 0x80:
                end -= 1  # never cut inside a character: the next piece starts on one
            escaped = _encoder.encode(str(view[start:end], "utf-8"))
            self.append(memoryview(escaped)[1:-1])
            start = end
        self.append(b'","t":')
        self.append(_encoder.encode(t))
        self.append(b"}\n")

    def view(self) -> memoryview:
        return memoryview(self._buf)[: self.size]

    def clear(self) -> None:
        self.size = 0


def _utf8(data: bytes) -> bool:
    if data.isascii():
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def encode_lines(records: Iterable[Record]) -> bytes:
    """Records as JSON lines (each ends with a newline)."""
    return _encoder.encode_lines(list(records))


def compressor(level: int = 3) -> zstandard.ZstdCompressor:
    """One compressor per writer (it is not thread-safe); every frame carries its content size
    and a checksum, so the reader can check each frame whole."""
    return zstandard.ZstdCompressor(level=level, write_checksum=True, write_content_size=True)


def frame(lines: bytes | memoryview, compress: zstandard.ZstdCompressor) -> bytes:
    """One independent zstd frame holding ``lines`` (whole lines only)."""
    return compress.compress(lines)


# --- reading ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Line:
    """A record read back: ``offset`` of its frame in the file, ``index`` its line there."""

    offset: int
    index: int
    record: Record


@dataclass(frozen=True, slots=True)
class Damage:
    """Something unreadable at ``offset`` (a frame, or line ``index`` of the frame there)."""

    offset: int
    what: str
    index: int | None = None


Item: TypeAlias = Line | Damage


def frame_size(data: bytes | bytearray | memoryview, start: int = 0) -> int | str | None:
    """The size of the zstd frame at ``data[start:]`` from its headers alone: an int; None if
    ``data`` ends before the frame does; a string saying why it is no frame."""
    view = memoryview(data)[start:]
    if len(view) < 4:
        return None
    magic = struct.unpack_from("<I", view)[0]
    if magic & 0xFFFFFFF0 == _SKIPPABLE_LOW:
        # "Frame_Size: ... the size, in bytes, of the following User_Data" (3.1.2).
        if len(view) < 8:
            return None
        total = 8 + int(struct.unpack_from("<I", view, 4)[0])
        return total if len(view) >= total else None
    if bytes(view[:4]) != MAGIC:
        return "no zstd magic number"
    if len(view) < 5:
        return None
    descriptor = view[4]
    # 3.1.1.1.1: bits 7-6 Frame_Content_Size_Flag, 5 Single_Segment_Flag, 3 reserved (0),
    # 2 Content_Checksum_Flag, 1-0 Dictionary_ID_Flag.
    if descriptor & 0x08:
        return "reserved bit set in the frame header"
    single = bool(descriptor & 0x20)
    fcs = (1 if single else 0, 2, 4, 8)[descriptor >> 6]
    did = (0, 1, 2, 4)[descriptor & 0x03]
    pos = 5 + (0 if single else 1) + did + fcs
    checksum = 4 if descriptor & 0x04 else 0
    while True:
        if len(view) < pos + 3:
            return None
        # 3.1.1.2: "Last_Block" bit 0, "Block_Type" bits 1-2, "Block_Size" bits 3-23.
        header = view[pos] | view[pos + 1] << 8 | view[pos + 2] << 16
        last, kind, size = header & 1, (header >> 1) & 3, header >> 3
        if kind == 3:
            return "reserved block type"
        if kind != 1 and size > _BLOCK_MAX:
            return "block larger than the format allows"
        pos += 3 + (1 if kind == 1 else size)  # an RLE block carries one byte
        if pos > MAX_FRAME:
            return "frame larger than this reader takes"
        if last:
            total = pos + checksum
            return total if len(view) >= total else None


class Reader:
    """Bytes of a recording in (any chunking), records and damage reports out.

    ``feed`` returns what the bytes so far completed; ``close`` what is left at the end of the
    file: a frame cut short is reported there, once, and any whole frame after damage is read.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._offset = 0  # file offset of _buf[0]
        self._decompress = zstandard.ZstdDecompressor()
        self._skipping = False  # inside damage, looking for the next frame

    def feed(self, data: bytes) -> list[Item]:
        self._buf += data
        return self._parse(final=False)

    def close(self) -> list[Item]:
        return self._parse(final=True)

    def _parse(self, *, final: bool) -> list[Item]:
        out: list[Item] = []
        buf = self._buf
        pos = 0
        while pos < len(buf):
            if self._skipping:
                # After damage the next frame starts at the next magic number, if any.
                found = buf.find(MAGIC, pos)
                if found < 0:
                    # Keep the last bytes: they may begin a magic number the next feed ends.
                    pos = len(buf) if final else max(pos, len(buf) - 3)
                    break
                pos, self._skipping = found, False
            size = frame_size(buf, pos)
            if size is None and not final:
                break
            if isinstance(size, int):
                out.extend(self._frame(bytes(buf[pos : pos + size]), self._offset + pos))
                pos += size
                continue
            why = "frame cut short (the file ends inside it)" if size is None else size
            out.append(Damage(self._offset + pos, why))
            self._skipping = True
            pos += 1
        del buf[:pos]
        self._offset += pos
        return out

    def _frame(self, data: bytes, offset: int) -> list[Item]:
        if data[:4] != MAGIC:
            return []  # a skippable frame: nothing of ours
        try:
            size = zstandard.frame_content_size(data)
            if size > MAX_CONTENT:
                return [Damage(offset, "frame larger than this reader takes")]
            # A frame another tool wrote (`zstd` from a pipe) may not say its size.
            content = self._decompress.decompress(data, max_output_size=MAX_CONTENT)
        except zstandard.ZstdError as exc:
            return [Damage(offset, f"frame does not decompress: {str(exc)[:120]}")]
        return list(lines(content, offset))


def lines(content: bytes, offset: int) -> Iterable[Item]:
    """The records of one frame's content; a line that is no record is damage, by index."""
    for index, line in enumerate(content.split(b"\n")):
        if not line:
            continue
        try:
            record = _decoder.decode(line)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            yield Damage(offset, f"unreadable line: {str(exc)[:120]}", index)
            continue
        yield Line(offset, index, record)


def decode(line: bytes) -> Record:
    """One record (``msgspec.DecodeError`` if the line is none)."""
    return _decoder.decode(line)


def records(items: Sequence[Item]) -> list[Record]:
    return [item.record for item in items if isinstance(item, Line)]
