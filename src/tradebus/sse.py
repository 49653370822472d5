"""Sans-I/O Server-Sent Events decoder: bytes in, messages out.

It implements the WHATWG HTML Living Standard, section 9.2.6 "Interpreting an event stream"
(https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation);
the spec's sentences are quoted at the lines that implement them.

Work is done on whole buffers, never byte by byte: each ``feed()`` finds the last line end in the
chunk, decodes every complete line in one call and splits them with ``str.split`` (or a regex
when a CR is present). Only the incomplete last line is kept, as bytes, so a multi-byte
character split across chunks is decoded once its line is whole. Text with LF line ends takes
a fast path: each event of the common shape (``id``, ``event``, one ``data`` line) is one
anchored regex match; any other event goes through the same line-by-line steps.

Deviations from a browser, both deliberate:

- A line longer than ``max_line`` bytes (a broken upstream) is dropped as it arrives and the
  event it belongs to dispatches nothing, so one bad line cannot eat the process's memory.
- A ``retry`` value whose digits exceed Python's int parsing limit (4300 digits after leading
  zeros) is ignored: no server means a reconnection time that long.

``close()`` ends one stream and readies the decoder for the next connection's stream:
``last_event_id`` and ``retry`` carry over, as the spec keeps them on the EventSource.
"""

from __future__ import annotations

import re
from typing import Final

import msgspec

__all__ = ["SSEDecoder", "SSEMessage"]

_BOM: Final = b"\xef\xbb\xbf"
_EXCERPT: Final = 200
# The longest digit string int() parses (sys.int_info.default_max_str_digits).
_MAX_DIGITS: Final = 4300
_CR: Final = 0x0D
_LF: Final = 0x0A
# "a U+000D CARRIAGE RETURN U+000A LINE FEED (CRLF) character pair, a single U+000A LINE FEED
# (LF) character not preceded by a U+000D CARRIAGE RETURN (CR) character, and a single U+000D
# CARRIAGE RETURN (CR) character not followed by a U+000A LINE FEED (LF) character being the
# ways in which a line can end." Nothing else ends a line: str.splitlines() is never used.
_LINE_END_STR: Final = re.compile(r"\r\n|\r|\n")
_LINE_END_BYTES: Final = re.compile(rb"\r\n|\r|\n")
_ANY_EOL: Final = re.compile(rb"[\r\n]")
# One whole event of the common shape: [id line] [event line] data line, then the blank line.
# "If value starts with a U+0020 SPACE character, remove it from value": the optional space.
_FRAME: Final = re.compile(r"(?:id: ?([^\n]*)\n)?(?:event: ?([^\n]*)\n)?data: ?([^\n]*)\n\n")


class SSEMessage(msgspec.Struct, frozen=True, gc=False):
    """One dispatched event.

    ``id`` is the last event ID string in effect at dispatch (``None`` while it is empty);
    ``retry`` the reconnection time in milliseconds in effect at dispatch, if a server set one.
    """

    event: str
    data: str
    id: str | None
    retry: int | None


class SSEDecoder:
    """Turns the bytes of one ``text/event-stream`` response into ``SSEMessage``s."""

    __slots__ = (
        "_bom_head",
        "_bom_pending",
        "_data",
        "_discarding",
        "_event",
        "_id_buffer",
        "_poisoned",
        "_skip_lf",
        "_tail",
        "last_event_id",
        "last_oversized_excerpt",
        "max_line",
        "oversized_lines",
        "retry",
    )

    def __init__(self, max_line: int = 1 << 20, *, last_event_id: str = "") -> None:
        if max_line < 1:
            raise ValueError("max_line must be at least 1 byte")
        self.max_line = max_line
        # "the last event ID string of the event source": what a reconnect sends as
        # Last-Event-ID. It changes only at blank lines.
        self.last_event_id = last_event_id
        # "the event stream's reconnection time", in milliseconds, once a server set it.
        self.retry: int | None = None
        self.oversized_lines = 0
        self.last_oversized_excerpt = b""
        self._reset_stream()

    def _reset_stream(self) -> None:
        """Per-stream state: "a data buffer, an event type buffer, and a last event ID buffer"."""
        self._data: list[str] = []  # the data buffer, as its lines: joined with LF at dispatch
        self._event = ""
        self._id_buffer = self.last_event_id
        self._poisoned = False  # the current event held an oversized line
        self._tail = bytearray()  # the incomplete last line, still undecoded
        self._skip_lf = False  # the previous chunk ended with CR: an LF next is the same line end
        self._discarding = False  # inside an oversized line: drop bytes up to its line end
        self._bom_pending = True
        self._bom_head = b""

    @property
    def buffered(self) -> int:
        """Bytes held between calls for the incomplete line (bounded by ``max_line``)."""
        return len(self._tail) + len(self._bom_head)

    def feed(self, chunk: bytes) -> list[SSEMessage]:
        """Decode ``chunk``; return the messages whose blank line it completed."""
        out: list[SSEMessage] = []
        if self._bom_pending:
            chunk = self._strip_bom(chunk)
            if self._bom_pending:
                return out
        if self._skip_lf and chunk:
            self._skip_lf = False
            if chunk[0] == _LF:
                chunk = chunk[1:]
        if self._discarding:
            chunk = self._skip_oversized(chunk)
            if self._discarding:
                return out
        cut = max(chunk.rfind(b"\n"), chunk.rfind(b"\r"))
        if cut < 0:
            self._tail += chunk
            self._check_tail()
            return out
        if self._tail:
            self._tail += chunk[: cut + 1]
            block: bytes | bytearray | memoryview = self._tail
            self._tail = bytearray(chunk[cut + 1 :])
        else:
            # A view, not a slice: a read can be 256 KiB, and a copy of it is one more large
            # buffer per read for the allocator to find and give back.
            block = memoryview(chunk)[: cut + 1]
            self._tail = bytearray(chunk[cut + 1 :])
        # A CR ends its line at once; only an LF opening the next chunk may belong to it.
        self._skip_lf = cut == len(chunk) - 1 and chunk[cut] == _CR
        if len(block) <= self.max_line:
            text = str(block, "utf-8", "replace")
            if "\r" in text or "\n\n" not in text:
                self._lines(_split(text), out)
            else:
                self._frames(text, out)
        else:
            self._long_block(block, out)
        self._check_tail()
        return out

    def close(self) -> list[SSEMessage]:
        """End of stream; the decoder is then ready for the next connection's stream.

        "Once the end of the file is reached, any pending data must be discarded. (If the file
        ends in the middle of an event, before the final empty line, the incomplete event is not
        dispatched.)" So this never dispatches; an uncommitted ``id`` is dropped with the rest.
        """
        self._reset_stream()
        return []

    # --- framing ---------------------------------------------------------------------------

    def _strip_bom(self, chunk: bytes) -> bytes:
        """The UTF-8 decode algorithm ignores one leading BOM, even split across chunks."""
        head = self._bom_head + chunk
        if len(head) < len(_BOM) and _BOM.startswith(head):
            self._bom_head = head
            return b""
        self._bom_pending = False
        self._bom_head = b""
        return head[3:] if head.startswith(_BOM) else head

    def _skip_oversized(self, chunk: bytes) -> bytes:
        """Drop the rest of an oversized line; return what follows its line end."""
        match = _ANY_EOL.search(chunk)
        dropped = len(chunk) if match is None else match.start()
        if len(self.last_oversized_excerpt) < _EXCERPT:
            # A limit below the excerpt size: the excerpt still gets the line's first bytes.
            self.last_oversized_excerpt += chunk[: min(dropped, _EXCERPT)]
            self.last_oversized_excerpt = self.last_oversized_excerpt[:_EXCERPT]
        if match is None:
            return b""
        self._discarding = False
        end = match.end()
        if chunk[end - 1] == _CR:
            if end == len(chunk):
                self._skip_lf = True
            elif chunk[end] == _LF:
                end += 1
        return chunk[end:]

    def _check_tail(self) -> None:
        if len(self._tail) > self.max_line:
            self._oversized(self._tail)
            self._tail = bytearray()
            self._discarding = True

    def _oversized(self, line: bytes | bytearray) -> None:
        self.oversized_lines += 1
        self.last_oversized_excerpt = bytes(line[:_EXCERPT])
        self._poisoned = True

    def _long_block(self, block: bytes | bytearray | memoryview, out: list[SSEMessage]) -> None:
        """A block big enough to hold an oversized line: split in bytes and weed those out."""
        good: list[str] = []
        for line in _LINE_END_BYTES.split(block)[:-1]:
            if len(line) > self.max_line:
                self._lines(good, out)
                good = []
                self._oversized(line)
            else:
                good.append(line.decode("utf-8", "replace"))
        self._lines(good, out)

    # --- interpretation ----------------------------------------------------------------------

    def _frames(self, text: str, out: list[SSEMessage]) -> None:
        """The fast path for LF-only text that holds a blank line: one anchored match per event.

        An event of the common shape (an optional ``id``, an optional ``event``, one ``data``
        line, in that order, then the blank line) is dispatched straight from the match.
        Anything else (comments, ``retry``, several ``data`` lines, an ``id`` with NUL, extra
        blank lines, an event still open) goes through ``_lines``, the spec's own steps, up to
        the next blank line, so every event is handled in stream order by one path or the other.
        """
        pos = 0
        end = len(text)
        if self._data or self._event or self._poisoned:
            # The text begins by completing an event an earlier chunk began.
            cut = text.find("\n\n")
            self._lines([*text[:cut].split("\n"), ""], out)
            pos = cut + 2
        id_buffer = self._id_buffer
        retry = self.retry
        match = _FRAME.match
        append = out.append
        while pos < end:
            m = match(text, pos)
            if m is not None:
                # One groups() call: each m[i] is a call of its own, and they added up to about
                # 70 ns of a 600 ns frame.
                frame_id, event, data = m.groups()
                if frame_id is None or "\x00" not in frame_id:
                    if frame_id is not None:
                        id_buffer = frame_id
                    append(SSEMessage(event or "message", data, id_buffer or None, retry))
                    # Dispatch step 1: "Set the last event ID string ... to the ... buffer."
                    self.last_event_id = id_buffer
                    pos = m.end()
                    continue
            self._id_buffer = id_buffer
            cut = text.find("\n\n", pos)
            if cut < 0:
                # An event still open: its lines, each ended by an LF, wait for their blank line.
                self._lines(text[pos:].split("\n")[:-1], out)
                return
            self._lines([*text[pos:cut].split("\n"), ""], out)
            id_buffer = self._id_buffer
            retry = self.retry
            pos = cut + 2
        self._id_buffer = id_buffer

    def _lines(self, lines: list[str], out: list[SSEMessage]) -> None:
        """ "Lines must be processed, in the order they are received, as follows"."""
        data = self._data
        event = self._event
        id_buffer = self._id_buffer
        poisoned = self._poisoned
        for line in lines:
            if not line:
                # "If the line is empty (a blank line): Dispatch the event".
                # Dispatch step 1: "Set the last event ID string of the event source to the
                # value of the last event ID buffer." This happens even if nothing dispatches.
                self.last_event_id = id_buffer
                # Step 2: "If the data buffer is an empty string, set the data buffer and the
                # event type buffer to the empty string and return."
                if data and not poisoned:
                    # Step 3 drops the data buffer's trailing LF: joining lines never adds it.
                    # Steps 5-6: the type is "message" unless the event type buffer is set.
                    out.append(
                        SSEMessage(
                            event or "message", "\n".join(data), id_buffer or None, self.retry
                        )
                    )
                # Step 7: "Set the data buffer and the event type buffer to the empty string."
                data = []
                event = ""
                poisoned = False
                continue
            colon = line.find(":")
            if colon == 0:
                # "If the line starts with a U+003A COLON character (:): Ignore the line."
                continue
            if colon < 0:
                # "Otherwise, the string is not empty but does not contain a U+003A COLON
                # character (:): Process the field ... using the whole line as the field name,
                # and the empty string as the field value."
                field = line
                value = ""
            else:
                # "Collect the characters on the line before the first U+003A COLON character
                # (:), and let field be that string. Collect the characters on the line after
                # the first U+003A COLON character (:), and let value be that string. If value
                # starts with a U+0020 SPACE character, remove it from value."
                field = line[:colon]
                value = line[colon + 2 :] if line.startswith(" ", colon + 1) else line[colon + 1 :]
            # "Field names must be compared literally, with no case folding performed."
            if field == "data":
                # "Append the field value to the data buffer, then append a single U+000A LINE
                # FEED (LF) character to the data buffer."
                data.append(value)
            elif field == "id":
                # "If the field value does not contain U+0000 NULL, then set the last event ID
                # buffer to the field value. Otherwise, ignore the field."
                if "\x00" not in value:
                    id_buffer = value
            elif field == "event":
                # "Set the event type buffer to field value."
                event = value
            elif field == "retry":
                self._set_retry(value)
            # "Otherwise: The field is ignored."
        self._data = data
        self._event = event
        self._id_buffer = id_buffer
        self._poisoned = poisoned

    def _set_retry(self, value: str) -> None:
        """ "If the field value consists of only ASCII digits, then interpret the field value as
        an integer in base ten, and set the event stream's reconnection time to that integer.
        Otherwise, ignore the field."

        ``str.isdigit()`` alone accepts Arabic-Indic and fullwidth digits; ``isascii()`` first
        rules them out. An empty value has no digit to interpret, so it is ignored too.
        """
        if value.isascii() and value.isdigit():
            digits = value.lstrip("0") or "0"
            if len(digits) <= _MAX_DIGITS:
                self.retry = int(digits)


def _split(text: str) -> list[str]:
    """The complete lines of ``text``, which ends with a line end."""
    if "\r" in text:
        return _LINE_END_STR.split(text)[:-1]
    return text.split("\n")[:-1]
