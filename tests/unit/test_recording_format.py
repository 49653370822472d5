"""The recording format: records in frames round-trip under any chunking; damage is local."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tradebus.recording import format as fmt

CONNS = st.integers(min_value=0, max_value=50)
TIMES = st.floats(min_value=0, max_value=4e9, allow_nan=False, allow_infinity=False)
TEXT = st.text(max_size=40)


@st.composite
def data_fields(draw: st.DrawFn) -> dict[str, object]:
    raw = draw(st.binary(max_size=300))
    text, b64 = fmt.text_or_b64(raw, binary=draw(st.booleans()))
    return {"text": text, "b64": b64}


RECORDS: st.SearchStrategy[fmt.Record] = st.one_of(
    st.builds(fmt.Recv, t=TIMES, conn=CONNS, text=st.none(), b64=st.binary(max_size=64)),
    st.builds(lambda t, c, d: fmt.Recv(t=t, conn=c, **d), TIMES, CONNS, data_fields()),
    st.builds(lambda t, c, d: fmt.Send(t=t, conn=c, **d), TIMES, CONNS, data_fields()),
    st.builds(
        fmt.Open,
        t=TIMES,
        conn=CONNS,
        method=st.sampled_from(["GET", "POST", "WS"]),
        url=TEXT,
        headers=st.dictionaries(TEXT, TEXT, max_size=3),
    ),
    st.builds(fmt.Response, t=TIMES, conn=CONNS, status=st.integers(100, 599), text=TEXT),
    st.builds(fmt.Error, t=TIMES, conn=CONNS, error=TEXT, message=TEXT),
    st.builds(fmt.Control, t=TIMES, conn=CONNS, op=TEXT, code=st.none() | st.integers(0, 5000)),
    st.builds(fmt.Timeout, t=TIMES, conn=CONNS),
    st.builds(fmt.Close, t=TIMES, conn=CONNS, by=st.sampled_from(["upstream", "us"])),
    st.builds(fmt.Wake, t=TIMES, label=TEXT),
    st.builds(fmt.End, t=TIMES),
)


def file_of(frames: Sequence[Sequence[fmt.Record]], level: int = 1) -> tuple[bytes, list[int]]:
    """The bytes of a file holding ``frames`` and each frame's offset."""
    compress = fmt.compressor(level)
    out, offsets = b"", []
    for records in frames:
        offsets.append(len(out))
        out += fmt.frame(fmt.encode_lines(records), compress)
    return out, offsets


def read(data: bytes, cuts: list[int]) -> list[fmt.Item]:
    """``data`` fed in pieces split at ``cuts``, then closed."""
    reader = fmt.Reader()
    items: list[fmt.Item] = []
    last = 0
    for cut in sorted({c % (len(data) + 1) for c in cuts}):
        items += reader.feed(data[last:cut])
        last = cut
    items += reader.feed(data[last:])
    return items + reader.close()


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(
    frames=st.lists(st.lists(RECORDS, min_size=1, max_size=6), min_size=1, max_size=5),
    cuts=st.lists(st.integers(min_value=0), max_size=12),
)
def test_any_records_in_any_frames_read_back_under_any_chunking(
    frames: list[list[fmt.Record]], cuts: list[int]
) -> None:
    """Whatever the records, however they are framed and fed, the same sequence comes back."""
    data, _ = file_of(frames)
    items = read(data, cuts)
    assert [i for i in items if isinstance(i, fmt.Damage)] == []
    assert fmt.records(items) == [r for f in frames for r in f]


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(
    frames=st.lists(st.lists(RECORDS, min_size=1, max_size=4), min_size=1, max_size=5),
    where=st.integers(min_value=0),
    cuts=st.lists(st.integers(min_value=0), max_size=6),
)
def test_a_file_cut_at_any_byte_keeps_every_whole_frame_before_the_cut(
    frames: list[list[fmt.Record]], where: int, cuts: list[int]
) -> None:
    """SIGKILL mid-write: every frame wholly before the cut reads back; the cut one is
    reported once, at its offset; nothing after it is invented."""
    data, offsets = file_of(frames)
    cut = where % (len(data) + 1)
    items = read(data[:cut], cuts)
    whole = [i for i, start in enumerate(offsets) if start + len(file_of([frames[i]])[0]) <= cut]
    assert fmt.records(items) == [r for i in whole for r in frames[i]]
    damage = [i for i in items if isinstance(i, fmt.Damage)]
    inside = [start for start in offsets if start < cut] if cut not in offsets else []
    if inside and len(whole) < len(inside):
        assert [d.offset for d in damage] == [inside[-1]]
    else:
        assert damage == []


def test_a_damaged_frame_is_reported_and_the_next_frames_read() -> None:
    """Bytes flipped inside the middle frame: that frame is damage at its offset, the others
    read, whatever the chunking."""
    frames: list[list[fmt.Record]] = [
        [fmt.Wake(t=float(i), label=f"f{i}-{j}") for j in range(20)] for i in range(3)
    ]
    data, offsets = file_of(frames)
    broken = bytearray(data)
    middle = (offsets[1] + offsets[2]) // 2
    broken[middle : middle + 4] = b"\x00\xff\x00\xff"
    for step in (1, 7, len(broken)):
        items = read(bytes(broken), list(range(0, len(broken), step)))
        assert fmt.records(items) == frames[0] + frames[2]
        damage = [i for i in items if isinstance(i, fmt.Damage)]
        assert [d.offset for d in damage] == [offsets[1]]


def test_garbage_between_frames_is_one_report_then_the_next_frame() -> None:
    """Junk where a frame should start is reported once, by offset, and skipped."""
    data, offsets = file_of([[fmt.Wake(t=1.0, label="a")], [fmt.Wake(t=2.0, label="b")]])
    junk = b"not zstd at all" * 10
    spliced = data[: offsets[1]] + junk + data[offsets[1] :]
    for step in (1, 3, len(spliced)):
        items = read(spliced, list(range(0, len(spliced), step)))
        assert [r.label for r in fmt.records(items)] == ["a", "b"]  # type: ignore[union-attr]
        assert [i.offset for i in items if isinstance(i, fmt.Damage)] == [offsets[1]]


def test_an_unreadable_line_is_damage_by_index_and_the_rest_of_its_frame_reads() -> None:
    """A hand-edited line (bad JSON, an unknown kind) is reported with its frame and line."""
    lines = (
        fmt.encode_lines([fmt.Wake(t=1.0, label="a")])
        + b'{"k":"wake","t":\n'
        + b'{"k":"teleport","t":3}\n'
        + fmt.encode_lines([fmt.Wake(t=4.0, label="d")])
    )
    data = fmt.frame(lines, fmt.compressor())
    items = read(data, [])
    assert [r.label for r in fmt.records(items)] == ["a", "d"]  # type: ignore[union-attr]
    assert [(i.offset, i.index) for i in items if isinstance(i, fmt.Damage)] == [(0, 1), (0, 2)]


def test_skippable_frames_are_stepped_over() -> None:
    """RFC 8878 skippable frames (another tool's metadata) are no damage and no records."""
    skippable = b"\x50\x2a\x4d\x18" + (5).to_bytes(4, "little") + b"hello"
    data, _ = file_of([[fmt.Wake(t=1.0, label="a")]])
    items = read(skippable + data, [3, 9])
    assert items == [fmt.Line(len(skippable), 0, fmt.Wake(t=1.0, label="a"))]


@pytest.mark.parametrize(
    ("raw", "binary", "field"),
    [(b"data: \xc3\xa9\n", False, "text"), (b"\xc3", False, "b64"), (b"{}", True, "b64")],
)
def test_payloads_keep_their_bytes_and_a_binary_message_its_type(
    raw: bytes, binary: bool, field: str
) -> None:
    """UTF-8 is kept readable as text; a chunk cut inside a character, or a binary WebSocket
    message, is base64 and comes back as the same bytes."""
    text, b64 = fmt.text_or_b64(raw, binary=binary)
    record = fmt.Recv(t=1.0, conn=1, text=text, b64=b64)
    back = fmt.decode(fmt.encode_lines([record]).rstrip(b"\n"))
    assert isinstance(back, fmt.Recv)
    assert fmt.payload(back) == raw
    assert getattr(back, field) is not None


def test_the_lines_are_plain_json_for_jq() -> None:
    """`zstd -dc FILE | jq` reads it: the frames are standard zstd, each line one object."""
    data, _ = file_of([[fmt.Recv(t=1.5, conn=2, text="data: {}\n\n")]])
    content = zstandard.ZstdDecompressor().decompressobj().decompress(data)
    assert msgspec.json.decode(content.splitlines()[0]) == {
        "k": "recv",
        "t": 1.5,
        "conn": 2,
        "text": "data: {}\n\n",
    }


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.binary(max_size=3000),
        st.text(max_size=40_000).map(str.encode),  # long, multi-byte characters across pieces
    ),
    st.booleans(),
    TIMES,
)
def test_a_read_written_piece_by_piece_reads_back_as_its_bytes(
    data: bytes, binary: bool, t: float
) -> None:
    """The recorder's hot path (a read escaped in pieces into a reused buffer) gives a line
    that decodes to the same record as the plain encoder's, whatever the bytes."""
    lines = fmt.LineBuffer()
    lines.record(fmt.Wake(t=0.0, label="before"))
    lines.recv(t, 3, data, binary=binary)
    (_, record) = [fmt.decode(line) for line in bytes(lines.view()).splitlines()]
    assert isinstance(record, fmt.Recv)
    assert (record.t, record.conn, fmt.payload(record)) == (t, 3, data)
    text, b64 = fmt.text_or_b64(data, binary=binary)
    assert record == fmt.Recv(t=t, conn=3, text=text, b64=b64)
    lines.clear()
    lines.record(fmt.Wake(t=1.0, label="again"))
    assert bytes(lines.view()) == fmt.encode_lines([fmt.Wake(t=1.0, label="again")])


def test_a_frame_without_its_content_size_reads_too() -> None:
    """A recording edited by hand and compressed again from a pipe (`zstd > FILE`) has frames
    that do not say their size: they read like any other."""
    lines = fmt.encode_lines([fmt.Wake(t=1.0, label="edited")])
    data = zstandard.ZstdCompressor(write_content_size=False).compress(lines)
    assert zstandard.frame_content_size(data) == -1
    assert fmt.records(read(data, [5])) == [fmt.Wake(t=1.0, label="edited")]
