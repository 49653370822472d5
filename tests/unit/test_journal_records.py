"""The record format and its scanner: any chunking gives the same records, damage and tail."""

from __future__ import annotations

import zlib

from hypothesis import given, settings
from hypothesis import strategies as st

from tradebus.journal.records import (
    HEADER_SIZE,
    MAGIC,
    Corrupt,
    Record,
    RecordScanner,
    Torn,
    encode_header,
)

_line = st.binary(min_size=0, max_size=40).map(
    lambda b: b.replace(b"\xff", b"").replace(b"\n", b"") + b"\n"
)
_batch = st.lists(_line, min_size=1, max_size=4)


def _encode(first_seq: int, lines: list[bytes], time_ms: int = 7) -> bytes:
    return encode_header(first_seq, len(lines), time_ms, lines) + b"".join(lines)


def _scan(data: bytes, cuts: list[int]) -> tuple[list[Record | Corrupt], Torn | None]:
    scanner = RecordScanner()
    out: list[Record | Corrupt] = []
    prev = 0
    for cut in [*sorted(cuts), len(data)]:
        out += scanner.feed(data[prev:cut])
        prev = cut
    return out, scanner.end()


@st.composite
def _streams(draw: st.DrawFn) -> bytes:
    """Records, with garbage (sometimes containing MAGIC) between some, and maybe a cut tail."""
    parts: list[bytes] = []
    seq = 1
    for lines in draw(st.lists(_batch, max_size=6)):
        if draw(st.integers(0, 4)) == 0:
            parts.append(draw(st.binary(max_size=40)) + draw(st.sampled_from([b"", MAGIC])))
        record = bytearray(_encode(seq, lines))
        if draw(st.integers(0, 5)) == 0:  # a flipped byte anywhere in the record
            i = draw(st.integers(0, len(record) - 1))
            record[i] ^= 1 << draw(st.integers(0, 7))
        parts.append(bytes(record))
        seq += len(lines)
    data = b"".join(parts)
    if data and draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return data


def test_header_layout_and_crc_cover_fields_and_payload() -> None:
    """The header is MAGIC, crc32 over the fields then the payload, length, count, seq, time."""
    lines = [b'{"a":1}\n', b'{"b":2}\n']
    header = encode_header(5, 2, 99, lines)
    assert len(header) == HEADER_SIZE == 32
    assert header[:4] == MAGIC
    assert int.from_bytes(header[4:8], "little") == zlib.crc32(header[8:] + b"".join(lines))
    assert int.from_bytes(header[8:12], "little") == 16
    assert int.from_bytes(header[12:16], "little") == 2
    assert int.from_bytes(header[16:24], "little") == 5
    assert int.from_bytes(header[24:32], "little") == 99


def test_clean_stream_gives_every_record() -> None:
    """Back-to-back records come out with their offsets, seqs and payloads, and no tail."""
    a, b = _encode(1, [b"x\n", b"y\n"]), _encode(3, [b"z\n"])
    out, tail = _scan(a + b, [])
    assert out == [Record(0, 1, 2, 7, b"x\ny\n"), Record(len(a), 3, 1, 7, b"z\n")]
    assert out[0].last_seq == 2  # type: ignore[union-attr]
    assert tail is None


def test_cut_record_is_torn_at_its_offset() -> None:
    """A record cut anywhere is reported by end() as the torn tail at its start."""
    a, b = _encode(1, [b"x\n"]), _encode(2, [b"yy\n"])
    for cut in range(len(b)):
        out, tail = _scan(a + b[:cut], [])
        assert out == [Record(0, 1, 1, 7, b"x\n")]
        assert tail == (Torn(len(a)) if cut else None)


def test_flipped_byte_mid_stream_is_corrupt_then_resyncs() -> None:
    """Any flipped byte in a middle record gives Corrupt over it, and the next record is read."""
    a, b, c = _encode(1, [b"x\n"]), _encode(2, [b"yy\n"]), _encode(3, [b"z\n"])
    for i in range(len(b)):
        bad = bytearray(b)
        bad[i] ^= 0x80
        out, tail = _scan(a + bytes(bad) + c, [])
        assert out[0] == Record(0, 1, 1, 7, b"x\n")
        assert out[-1] == Record(len(a) + len(b), 3, 1, 7, b"z\n")
        assert out[1:-1] == [Corrupt(len(a), len(b))], i
        assert tail is None


def test_huge_length_is_corrupt_not_buffered() -> None:
    """A length past the sane maximum is damage: the scanner resyncs instead of waiting."""
    bad = bytearray(_encode(1, [b"x\n"]))
    bad[8:12] = (2**31).to_bytes(4, "little")
    good = _encode(2, [b"y\n"])
    out, tail = _scan(bytes(bad) + good, [])
    assert out == [Corrupt(0, len(bad)), Record(len(bad), 2, 1, 7, b"y\n")]
    assert tail is None


@settings(max_examples=150, deadline=None)
@given(data=_streams(), cuts=st.lists(st.integers(0, 2000), max_size=8))
def test_any_chunking_gives_the_same_result(data: bytes, cuts: list[int]) -> None:
    """Random chunkings and one byte at a time give exactly what one feed of everything gives."""
    whole = _scan(data, [])
    assert _scan(data, [c for c in cuts if c <= len(data)]) == whole
    assert _scan(data, list(range(1, len(data)))) == whole
    records = [r for r in whole[0] if isinstance(r, Record)]
    assert [r.first_seq for r in records] == sorted(r.first_seq for r in records)
