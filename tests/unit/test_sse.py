"""The SSE decoder against the WHATWG "interpreting an event stream" rules, chunked every way."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradebus.sse import SSEDecoder, SSEMessage


def decode(*chunks: bytes, max_line: int = 1 << 20) -> tuple[list[SSEMessage], SSEDecoder]:
    """Feed ``chunks`` then close; the messages in order and the decoder for its final state."""
    decoder = SSEDecoder(max_line)
    out: list[SSEMessage] = []
    for chunk in chunks:
        out.extend(decoder.feed(chunk))
    out.extend(decoder.close())
    return out, decoder


def msg(
    data: str, event: str = "message", id_: str | None = None, retry: int | None = None
) -> SSEMessage:
    return SSEMessage(event=event, data=data, id=id_, retry=retry)


# --- a slow, obviously correct reference: one byte and one line at a time ----------------------


class Reference:
    """The spec's algorithm transcribed literally, with the oversized-line rule added."""

    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self.messages: list[SSEMessage] = []
        self.last_event_id = ""
        self.retry: int | None = None
        self.oversized_lines = 0
        self.last_oversized_excerpt = b""
        self.data = ""
        self.event_type = ""
        self.id_buffer = ""
        self.poisoned = False

    def run(self, stream: bytes) -> Reference:
        if stream.startswith(b"\xef\xbb\xbf"):
            stream = stream[3:]
        line = bytearray()
        i = 0
        while i < len(stream):
            byte = stream[i]
            if byte in b"\r\n":
                self.line(bytes(line))
                line.clear()
                if stream[i : i + 2] == b"\r\n":
                    i += 1
            else:
                line.append(byte)
            i += 1
        if len(line) > self.max_line:  # an unterminated line is still seen as oversized
            self.too_long(bytes(line))
        return self

    def too_long(self, raw: bytes) -> None:
        self.oversized_lines += 1
        self.last_oversized_excerpt = raw[:200]
        self.poisoned = True

    def line(self, raw: bytes) -> None:
        if len(raw) > self.max_line:
            self.too_long(raw)
            return
        text = raw.decode("utf-8", "replace")
        if text == "":
            self.dispatch()
        elif text.startswith(":"):
            pass
        elif ":" in text:
            field, value = text.split(":", 1)
            if value.startswith(" "):
                value = value[1:]
            self.field(field, value)
        else:
            self.field(text, "")

    def field(self, name: str, value: str) -> None:
        if name == "event":
            self.event_type = value
        elif name == "data":
            self.data += value + "\n"
        elif name == "id":
            if "\x00" not in value:
                self.id_buffer = value
        elif name == "retry" and value and all(c in "0123456789" for c in value):
            self.retry = int(value)

    def dispatch(self) -> None:
        self.last_event_id = self.id_buffer
        if self.data and not self.poisoned:
            data = self.data[:-1] if self.data.endswith("\n") else self.data
            event = self.event_type or "message"
            self.messages.append(SSEMessage(event, data, self.last_event_id or None, self.retry))
        self.data = ""
        self.event_type = ""
        self.poisoned = False


# --- stream grammar -----------------------------------------------------------------------------

_TRICKY_TEXT = st.text(
    alphabet=st.sampled_from(
        [
            "a",
            "Z",
            "0",
            "7",
            " ",
            ":",
            "\x00",
            "\x0b",
            "\x0c",
            "\x1c",
            "\x85",
            "\u2028",
            "\u2029",
            "é",
            "€",
            "𝄞",
            "\uff11",  # FULLWIDTH DIGIT ONE: isdigit() says yes
            "\u0663",  # ARABIC-INDIC DIGIT THREE
            "\ufeff",
        ]
    ),
    max_size=6,
).map(lambda s: s.encode("utf-8"))
_INVALID = st.sampled_from(
    [b"\xff", b"\xc3", b"\xe2\x82", b"\xf0\x9d\x84", b"\x80", b"\xed\xa0\x80"]
)
_VALUE = st.lists(
    st.one_of(_TRICKY_TEXT, _INVALID, st.sampled_from([b"42", b"1000", b"00"])), max_size=3
).map(b"".join)
_NAME = st.sampled_from(
    [b"data", b"id", b"event", b"retry", b"Data", b"ID", b"foo", b"data ", b"", b" data"]
)
_SEP = st.sampled_from([b":", b": ", b":  ", b""])
_FIELD = st.builds(lambda n, s, v: n + s + v, _NAME, _SEP, _VALUE)
_COMMENT = _VALUE.map(lambda v: b":" + v)
_LINE = st.one_of(_FIELD, _FIELD, _COMMENT, st.just(b""), st.just(b""))
_EOL = st.sampled_from([b"\n", b"\r", b"\r\n"])
_STREAM = st.builds(
    lambda bom, lines, last: bom + b"".join(line + eol for line, eol in lines) + last,
    st.sampled_from([b"", b"", b"\xef\xbb\xbf", b"\xef\xbb"]),
    st.lists(st.tuples(_LINE, _EOL), max_size=25),
    st.one_of(st.just(b""), _LINE),  # an unterminated last line
)


def chunked(stream: bytes, cuts: Iterable[int]) -> list[bytes]:
    points = sorted({c % (len(stream) + 1) for c in cuts})
    return [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]


def state(decoder: SSEDecoder | Reference) -> tuple[str, int | None, int, bytes]:
    return (
        decoder.last_event_id,
        decoder.retry,
        decoder.oversized_lines,
        decoder.last_oversized_excerpt,
    )


@settings(max_examples=300, deadline=None)
@given(stream=_STREAM, cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
def test_any_chunking_gives_the_same_messages_and_state(stream: bytes, cuts: list[int]) -> None:
    """Splitting the same bytes anywhere changes neither the messages nor the final state."""
    whole, whole_decoder = decode(stream)
    parts, parts_decoder = decode(*chunked(stream, cuts))
    assert parts == whole
    assert state(parts_decoder) == state(whole_decoder)


@settings(max_examples=250, deadline=None)
@given(
    stream=_STREAM,
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=8),
    max_line=st.sampled_from([4, 9, 16, 1 << 20]),
)
def test_matches_the_reference_implementation(
    stream: bytes, cuts: list[int], max_line: int
) -> None:
    """On generated streams and chunkings the decoder agrees with a literal reading of the spec."""
    got, decoder = decode(*chunked(stream, cuts), max_line=max_line)
    expected = Reference(max_line).run(stream)
    assert got == expected.messages
    assert state(decoder) == state(expected)


@settings(max_examples=100, deadline=None)
@given(stream=_STREAM)
def test_one_byte_at_a_time_matches_the_reference(stream: bytes) -> None:
    """Feeding one byte per call gives exactly what the reference gives for the whole stream."""
    got, decoder = decode(*(stream[i : i + 1] for i in range(len(stream))), max_line=9)
    expected = Reference(9).run(stream)
    assert got == expected.messages
    assert state(decoder) == state(expected)


def test_one_byte_at_a_time_example() -> None:
    """A realistic stream fed byte by byte yields each message as its blank line arrives."""
    stream = (
        b"\xef\xbb\xbfretry: 3000\r\nid: 7\r\nevent: tp_hit\r\n"
        b'data: {"a":"\xe2\x82\xac"}\r\n\r\n: ping\r\n'
    )
    decoder = SSEDecoder()
    seen: list[tuple[int, SSEMessage]] = []
    for i in range(len(stream)):
        seen.extend((i, m) for m in decoder.feed(stream[i : i + 1]))
    assert seen == [(stream.index(b"\r\n\r\n") + 2, msg('{"a":"€"}', "tp_hit", "7", 3000))]
    assert decoder.close() == []
    assert decoder.last_event_id == "7"


# --- every rule, by example ------------------------------------------------------------------


def test_simple_frame() -> None:
    """An id and a data line make one "message" carrying that id."""
    assert decode(b"id: 42\ndata: hello\n\n")[0] == [msg("hello", id_="42")]


def test_bom_at_stream_start_is_stripped() -> None:
    """One leading UTF-8 BOM is ignored, so the first field name is still "data"."""
    assert decode(b"\xef\xbb\xbfdata: x\n\n")[0] == [msg("x")]


@pytest.mark.parametrize("cut", [1, 2, 3])
def test_bom_split_across_chunks_is_stripped(cut: int) -> None:
    """A BOM split across the first chunks is still recognised and dropped."""
    stream = b"\xef\xbb\xbfdata: x\n\n"
    assert decode(stream[:cut], stream[cut:])[0] == [msg("x")]


def test_bom_split_into_single_bytes() -> None:
    """A BOM arriving one byte per chunk, then the rest, is dropped."""
    assert decode(b"\xef", b"\xbb", b"\xbf", b"data: x\n\n")[0] == [msg("x")]


def test_only_one_bom_is_stripped() -> None:
    """A second BOM is part of the first line, making its field name unknown."""
    assert decode(b"\xef\xbb\xbf\xef\xbb\xbfdata: x\n\ndata: y\n\n")[0] == [msg("y")]


def test_bom_later_in_stream_is_kept() -> None:
    """A BOM after the stream start is ordinary data."""
    assert decode(b"data: \xef\xbb\xbfx\n\n")[0] == [msg("\ufeffx")]


def test_partial_bom_is_data() -> None:
    """Two BOM bytes followed by something else are not stripped (they decode to U+FFFD)."""
    assert decode(b"\xef\xbb", b"data: x\n\ndata: y\n\n")[0] == [msg("y")]
    assert decode(b"\xef\xbb\n", b"data: y\n\n")[0] == [msg("y")]


@pytest.mark.parametrize("eol", [b"\n", b"\r", b"\r\n"])
def test_each_line_ending(eol: bytes) -> None:
    """CR, LF and CRLF each end a line, and doubled they end an event."""
    stream = b"event: e" + eol + b"data: a" + eol + b"data: b" + eol + eol
    assert decode(stream)[0] == [msg("a\nb", "e")]


def test_mixed_line_endings() -> None:
    """Line endings may change from line to line."""
    assert decode(b"data: a\rdata: b\r\ndata: c\n\r\n")[0] == [msg("a\nb\nc")]


def test_lf_cr_is_two_line_ends() -> None:
    """LF followed by CR is two line ends (a blank line), unlike CR LF."""
    assert decode(b"data: a\n\rdata: b\r\n\n")[0] == [msg("a"), msg("b")]


def test_crlf_split_across_chunks_is_one_line_end() -> None:
    """A CR ending one chunk and an LF opening the next make one line end, not two."""
    assert decode(b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n")[0] == [msg("a\nb")]


def test_cr_at_chunk_end_dispatches_at_once() -> None:
    """A blank line ended by a CR at a chunk's end dispatches in that very feed() call."""
    decoder = SSEDecoder()
    assert decoder.feed(b"id: 1\r\ndata: a\r\n\r") == [msg("a", id_="1")]
    assert decoder.last_event_id == "1"
    assert decoder.feed(b"\n") == []  # the LF completes the CRLF: not another blank line
    assert decoder.feed(b"data: b\n\n") == [msg("b", id_="1")]


def test_lone_cr_then_lf_in_next_chunk_after_blank() -> None:
    """After a CR-ended blank line, an LF opening the next chunk is not another line end."""
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r\r") == [msg("a")]
    assert decoder.feed(b"\ndata: b\r") == []
    assert decoder.feed(b"\r") == [msg("b")]


@pytest.mark.parametrize(
    "char", ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]
)
def test_splitlines_separators_stay_inside_the_line(char: str) -> None:
    """Characters str.splitlines() splits on are ordinary data: only CR and LF end lines."""
    stream = f"data: a{char}b\nevent: x{char}y\n\n".encode()
    assert decode(stream)[0] == [msg(f"a{char}b", f"x{char}y")]


def test_comment_lines_are_ignored() -> None:
    """Lines starting with a colon are comments, even ones that look like fields."""
    assert decode(b": ping\n:data: x\ndata: y\n:\n\n")[0] == [msg("y")]


def test_comment_only_event_dispatches_nothing() -> None:
    """A heartbeat comment followed by a blank line gives no message."""
    assert decode(b": keep-alive\n\n")[0] == []


def test_field_without_colon_is_a_name_with_empty_value() -> None:
    """A line without a colon is a field name with an empty value: "data" appends an empty line."""
    assert decode(b"data\n\n")[0] == [msg("")]
    assert decode(b"data\ndata\n\n")[0] == [msg("\n")]
    assert decode(b"data: a\ndata\n\n")[0] == [msg("a\n")]


def test_id_without_colon_resets_the_id() -> None:
    """A bare "id" line sets the last event ID to the empty string."""
    messages, decoder = decode(b"id: 5\ndata: a\n\nid\ndata: b\n\n")
    assert messages == [msg("a", id_="5"), msg("b", id_=None)]
    assert decoder.last_event_id == ""


def test_only_one_leading_space_is_stripped() -> None:
    """Exactly one space after the colon is removed; further spaces are part of the value."""
    assert decode(b"data:  two\ndata:x\ndata: \n\n")[0] == [msg(" two\nx\n")]


def test_value_keeps_trailing_space_and_later_colons() -> None:
    """Only the first colon separates; trailing whitespace is kept."""
    assert decode(b"data: a: b :c \n\n")[0] == [msg("a: b :c ")]


def test_field_names_are_case_sensitive_and_exact() -> None:
    """ "Data", "data " and " data" are unknown fields, so nothing is dispatched."""
    assert decode(b"Data: a\ndata : b\n data: c\nEVENT: d\n\n")[0] == []


def test_unknown_fields_are_ignored() -> None:
    """An unknown field does not disturb the event around it."""
    assert decode(b"foo: bar\ndata: a\nbaz\n\n")[0] == [msg("a")]


def test_id_containing_null_is_ignored() -> None:
    """An id value with U+0000 is ignored: the previous id stays in effect."""
    messages, decoder = decode(b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n")
    assert messages == [msg("a", id_="1"), msg("b", id_="1")]
    assert decoder.last_event_id == "1"


def test_id_commits_at_blank_line_even_without_data() -> None:
    """A blank line commits the id buffer even when the data buffer is empty (no dispatch)."""
    decoder = SSEDecoder()
    assert decoder.feed(b"id: 9\n") == []
    assert decoder.last_event_id == ""  # not yet: only a blank line commits it
    assert decoder.feed(b"\n") == []
    assert decoder.last_event_id == "9"
    assert decoder.feed(b"data: x\n\n") == [msg("x", id_="9")]


def test_id_persists_until_the_server_sets_it_again() -> None:
    """The last event ID carries over to later events that have no id line."""
    assert decode(b"id: 3\ndata: a\n\ndata: b\n\n")[0] == [msg("a", id_="3"), msg("b", id_="3")]


def test_id_set_after_data_applies_to_that_event() -> None:
    """An id line anywhere inside an event applies to the event it ends up in."""
    assert decode(b"data: a\nid: 4\n\n")[0] == [msg("a", id_="4")]


def test_initial_last_event_id_is_empty() -> None:
    """A fresh decoder has no last event ID and no reconnection time."""
    decoder = SSEDecoder()
    assert decoder.last_event_id == ""
    assert decoder.retry is None
    assert decoder.oversized_lines == 0
    assert decoder.last_oversized_excerpt == b""


def test_retry_sets_reconnection_time() -> None:
    """An all-ASCII-digit retry sets the reconnection time carried by later messages."""
    messages, decoder = decode(b"data: a\n\nretry: 2500\n\ndata: b\n\n")
    assert messages == [msg("a"), msg("b", retry=2500)]
    assert decoder.retry == 2500


def test_retry_applies_without_blank_line() -> None:
    """Retry takes effect at its own line, not at dispatch, even if the event never completes."""
    decoder = SSEDecoder()
    decoder.feed(b"retry: 10\ndata: x\n")
    assert decoder.retry == 10
    assert decoder.close() == []
    assert decoder.retry == 10


@pytest.mark.parametrize(
    "value",
    [
        "\uff11\uff12",
        "\u0663",
        "12\u0663",
        "²",
        "1.5",
        "-1",
        "+1",
        " 1",
        "1 ",
        "",
        "1e3",
        "0x10",
        "1_000",
    ],
)
def test_retry_ignores_anything_but_ascii_digits(value: str) -> None:
    """Non-ASCII digits (isdigit() and int() take them), signs, spaces, empty values: ignored."""
    stream = b"retry: 7\n" + b"retry: " + value.encode() + b"\ndata: x\n\n"
    messages, decoder = decode(stream)
    assert messages == [msg("x", retry=7)]
    assert decoder.retry == 7


def test_retry_with_leading_zeros_and_huge_values() -> None:
    """Leading zeros are fine; a value beyond int parsing limits is ignored instead of raising."""
    assert decode(b"retry: 000" + b"0" * 5000 + b"15\n")[1].retry == 15
    assert decode(b"retry: 0\n")[1].retry == 0
    assert decode(b"retry: 5\nretry: " + b"9" * 5000 + b"\n")[1].retry == 5


def test_event_type_resets_after_dispatch() -> None:
    """The event type applies to one event only; the next defaults to "message"."""
    assert decode(b"event: a\ndata: 1\n\ndata: 2\n\n")[0] == [msg("1", "a"), msg("2")]


def test_event_type_resets_even_when_nothing_dispatches() -> None:
    """An event type on an event without data is dropped at its blank line."""
    assert decode(b"event: a\n\ndata: 2\n\n")[0] == [msg("2")]


def test_empty_event_type_means_message() -> None:
    """An empty event field leaves the type "message"; the last event line wins."""
    assert decode(b"event:\ndata: 1\n\nevent: a\nevent: b\ndata: 2\n\n")[0] == [
        msg("1"),
        msg("2", "b"),
    ]


def test_data_lines_joined_with_lf_trailing_lf_removed() -> None:
    """Data lines join with LF and only the final LF is removed."""
    assert decode(b"data: a\ndata:\ndata: b\ndata\n\n")[0] == [msg("a\n\nb\n")]


def test_empty_data_buffer_dispatches_nothing() -> None:
    """Blank lines with no data line between them dispatch nothing."""
    assert decode(b"\n\n\r\n\revent: x\nid: 1\n\n")[0] == []


def test_incomplete_event_at_eof_is_discarded() -> None:
    """An event whose blank line never arrives is not dispatched, and its id is not committed."""
    messages, decoder = decode(b"data: a\n\nid: 2\ndata: b\n")
    assert messages == [msg("a")]
    assert decoder.last_event_id == ""


def test_unterminated_last_line_is_discarded() -> None:
    """A last line without a line end is dropped at close()."""
    assert decode(b"data: a\n\ndata: b")[0] == [msg("a")]


def test_close_readies_the_decoder_for_a_new_stream() -> None:
    """After close() a new stream (with its own BOM) decodes; last_event_id and retry carry over."""
    decoder = SSEDecoder()
    decoder.feed(b"retry: 100\nid: 5\ndata: a\n\nid: 6\ndata: partial")
    assert decoder.close() == []
    assert decoder.last_event_id == "5"
    assert decoder.feed(b"\xef\xbb\xbfdata: b\n\n") == [msg("b", id_="5", retry=100)]


def test_seeded_last_event_id() -> None:
    """A decoder built with a stored last event ID reports it until the server sets another."""
    decoder = SSEDecoder(last_event_id="41")
    assert decoder.feed(b"data: a\n\n") == [msg("a", id_="41")]
    assert decoder.last_event_id == "41"


def test_invalid_utf8_is_replaced() -> None:
    """Invalid UTF-8 becomes U+FFFD in field values and names."""
    assert decode(b"data: a\xffb\xc3\n\xe2\x82\n\n")[0] == [msg("a\ufffdb\ufffd")]
    assert decode(b"data: \xed\xa0\x80\n\n")[0] == [msg("\ufffd\ufffd\ufffd")]


@pytest.mark.parametrize("char", ["é", "€", "𝄞"])
def test_multibyte_character_split_across_chunks(char: str) -> None:
    """A character split at any byte across chunks decodes whole, not as U+FFFD."""
    stream = f"data: {char}\n\n".encode()
    start = len(b"data: ")
    for cut in range(start + 1, start + len(char.encode())):
        assert decode(stream[:cut], stream[cut:])[0] == [msg(char)]


def test_multibyte_character_in_id_split_across_chunks() -> None:
    """An id with a multi-byte character split across three chunks is kept intact."""
    stream = "id: €1\ndata: x\n\n".encode()
    messages, decoder = decode(stream[:5], stream[5:6], stream[6:])
    assert messages == [msg("x", id_="€1")]
    assert decoder.last_event_id == "€1"


def test_messages_in_one_chunk_come_in_order() -> None:
    """Several events in one chunk come out in stream order with their own ids."""
    stream = b"".join(f"id: {i}\ndata: {i}\n\n".encode() for i in range(50))
    assert decode(stream)[0] == [msg(str(i), id_=str(i)) for i in range(50)]


def test_message_is_immutable() -> None:
    """SSEMessage is frozen: a consumer cannot change what another consumer sees."""
    message = msg("x")
    with pytest.raises(AttributeError):
        message.data = "y"  # type: ignore[misc]


def test_max_line_must_be_positive() -> None:
    """A non-positive line limit is a programming error caught at construction."""
    with pytest.raises(ValueError, match="max_line"):
        SSEDecoder(0)


# --- oversized lines --------------------------------------------------------------------------


def test_line_at_the_limit_is_kept_one_over_is_dropped() -> None:
    """A line of exactly max_line bytes is decoded; one byte more and its event is poisoned."""
    line = b"data: " + b"x" * 10  # 16 bytes
    assert decode(line + b"\n\n", max_line=16)[0] == [msg("x" * 10)]
    messages, decoder = decode(line + b"\n\n", max_line=15)
    assert messages == []
    assert decoder.oversized_lines == 1
    assert decoder.last_oversized_excerpt == line


def test_oversized_line_poisons_its_event_but_commits_the_id() -> None:
    """An oversized line's event dispatches nothing, its id still commits, the next one is fine."""
    stream = b"id: 1\ndata: ok\ndata: " + b"y" * 50 + b"\ndata: more\n\nid: 2\ndata: next\n\n"
    for chunks in ([stream], [stream[i : i + 7] for i in range(0, len(stream), 7)]):
        decoder = SSEDecoder(32)
        got: list[SSEMessage] = []
        for chunk in chunks:
            got.extend(decoder.feed(chunk))
        assert got == [msg("next", id_="2")]
        assert decoder.oversized_lines == 1
        assert decoder.last_oversized_excerpt == b"data: " + b"y" * 50


def test_oversized_line_id_commit_is_observable() -> None:
    """After a poisoned event's blank line, last_event_id is that event's id."""
    decoder = SSEDecoder(20)
    assert decoder.feed(b"id: 8\ndata: " + b"z" * 40 + b"\n\n") == []
    assert decoder.last_event_id == "8"


def test_oversized_excerpt_is_the_first_200_bytes() -> None:
    """The excerpt keeps the first 200 bytes of the latest oversized line; the count accumulates."""
    first = b"data: " + bytes(range(48, 58)) * 100
    second = b"event: " + b"q" * 1000
    _, decoder = decode(first + b"\n\n" + second + b"\r\n", max_line=300)
    assert decoder.oversized_lines == 2
    assert decoder.last_oversized_excerpt == second[:200]


def test_oversized_unterminated_line_at_eof_is_counted() -> None:
    """A long line that never ends is counted as it grows and dropped at close()."""
    messages, decoder = decode(b"data: " + b"a" * 100, max_line=50)
    assert messages == []
    assert decoder.oversized_lines == 1


def test_oversized_line_ended_by_cr_split_from_lf() -> None:
    """An oversized line ended by a CR at a chunk end skips the LF that opens the next chunk."""
    decoder = SSEDecoder(10)
    assert decoder.feed(b"data: " + b"a" * 20) == []
    assert decoder.feed(b"a" * 20 + b"\r") == []
    assert decoder.feed(b"\ndata: b\n\n") == []  # LF was part of CRLF: no blank line, poisoned
    assert decoder.feed(b"data: c\n\n") == [msg("c")]


def test_ten_megabyte_line_in_64k_chunks_stays_bounded() -> None:
    """A 10 MB line in 64 KiB chunks is dropped without being buffered; the next event decodes."""
    chunk_size = 64 * 1024
    max_line = 1 << 20
    stream = (
        b"id: 1\ndata: before\n\n"
        + b"id: 2\ndata: "
        + b"A" * (10 * 1024 * 1024)
        + b"\n\nid: 3\ndata: after\n\n"
    )
    chunks = [stream[i : i + chunk_size] for i in range(0, len(stream), chunk_size)]
    decoder = SSEDecoder(max_line)
    got: list[SSEMessage] = []
    tracemalloc.start()
    try:
        for chunk in chunks:
            got.extend(decoder.feed(chunk))
            assert decoder.buffered <= max_line
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3 * max_line + 2 * chunk_size
    assert got == [msg("before", id_="1"), msg("after", id_="3")]
    assert decoder.last_event_id == "3"
    assert decoder.oversized_lines == 1
    assert decoder.last_oversized_excerpt == b"data: " + b"A" * 194


def test_ten_megabyte_line_in_one_chunk_is_dropped() -> None:
    """A whole oversized line inside a single chunk is weeded out while its neighbours decode."""
    stream = b"data: a\n\ndata: " + b"B" * (3 << 20) + b"\n\ndata: c\n\n"
    messages, decoder = decode(stream)
    assert messages == [msg("a"), msg("c")]
    assert decoder.oversized_lines == 1


# LF-only streams take the decoder's fast path (one regex match per event of the common
# shape); mixing such frames with arbitrary lines makes both paths meet inside one chunk.
_FAST_FRAME = st.builds(
    lambda i, e, d: i + e + b"data:" + d + b"\n\n",
    st.one_of(st.just(b""), _VALUE.map(lambda v: b"id: " + v + b"\n")),
    st.one_of(st.just(b""), _VALUE.map(lambda v: b"event: " + v + b"\n")),
    st.one_of(_VALUE, _VALUE.map(lambda v: b" " + v)),
)
_LF_STREAM = st.lists(
    st.one_of(_FAST_FRAME, _FAST_FRAME, _LINE.map(lambda line: line + b"\n")), max_size=30
).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(stream=_LF_STREAM, cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=8))
def test_fast_path_frames_match_the_reference(stream: bytes, cuts: list[int]) -> None:
    """LF-only streams of common-shape frames mixed with other lines decode as the spec says."""
    got, decoder = decode(*chunked(stream, cuts))
    expected = Reference(1 << 20).run(stream)
    assert got == expected.messages
    assert state(decoder) == state(expected)
