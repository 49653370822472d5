"""Pre-built upstream frames: the same bytes for the floor, the senders and the naive reader.

A TTMT frame is a single-delta ``position_update`` shaped like the upstream doc's example, with
a unique ``eventId`` (the adapter dedupes on it) and prices that move a little. ``stamp`` puts a
sender clock reading (``time.monotonic_ns()``, one clock for every process of the machine) in
``positionId``, which reaches the canonical event unchanged as ``data.position_id``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

_TTMT = (
    b'id: %d\ndata: {"type":"position_update","eventId":%d,'
    b'"timestamp":"2026-06-09T14:32:01.%03dZ","userId":"8d2f6c1e-uuid",'
    b'"data":{"positionId":"%s","symbol":"XAUUSD","unrealizedProfit":%d.%02d,'
    b'"currentPrice":3312.%02d,"accountId":"a1b2c3d4-uuid",'
    b'"signal":{"signal_id":"f3c1a2b4-uuid","telegram_message_id":12345}}}\n\n'
)
STAMP_PREFIX = "lat-"


def ttmt_frame(event_id: int, position: bytes | None = None) -> bytes:
    """One SSE frame; ``position`` defaults to one of 50 position ids."""
    if position is None:
        position = b"pos-%d" % (event_id % 50)
    cents = event_id % 100
    return _TTMT % (event_id, event_id, event_id % 1000, position, 40 + cents % 7, cents, cents)


def ttmt_stamped(event_id: int, stamp_ns: int) -> bytes:
    return ttmt_frame(event_id, b"%s%d" % (STAMP_PREFIX.encode(), stamp_ns))


def ttmt_chunks(first: int, count: int, chunk_bytes: int = 256 * 1024) -> Iterator[bytes]:
    """Frames ``first`` … ``first + count - 1`` joined into chunks of about ``chunk_bytes``."""
    parts: list[bytes] = []
    size = 0
    for event_id in range(first, first + count):
        frame = ttmt_frame(event_id)
        parts.append(frame)
        size += len(frame)
        if size >= chunk_bytes:
            yield b"".join(parts)
            parts = []
            size = 0
    if parts:
        yield b"".join(parts)


def stamp_of(position_id: str) -> int | None:
    """The sender's ``monotonic_ns`` stamp in a ``position_id``, if it carries one."""
    if position_id.startswith(STAMP_PREFIX):
        return int(position_id[len(STAMP_PREFIX) :])
    return None


class Mix:
    """The TTMT simulator's own mix (its ``EventScript``: batch and single position updates,
    fills, closes, trades, tp hits, breakevens), pre-built once for rows 1b, 2b, 3b and 6b.

    ``frames`` are whole SSE frames with ids from 1; ``events[i]`` is how many canonical events
    frame ``i`` gives (a batch ``position_update`` gives one per position).
    """

    def __init__(self, count: int, seed: int = 0) -> None:
        import msgspec

        from tradebus.simulators.ttmt import EventScript, iso_ms

        script = EventScript(seed, ("8d2f6c1e-acct-a", "8d2f6c1e-acct-b"))
        encoder = msgspec.json.Encoder()
        self.frames: list[bytes] = []
        self.events: list[int] = []
        for event_id in range(1, count + 1):
            type_, data = script.next()
            envelope = {
                "type": type_,
                "eventId": event_id,
                "timestamp": iso_ms(script.clock),
                "userId": "8d2f6c1e-uuid",
                "data": data,
            }
            self.frames.append(b"id: %d\ndata: %s\n\n" % (event_id, encoder.encode(envelope)))
            positions = data.get("positions")
            self.events.append(len(positions) if positions is not None else 1)

    def write(self, path: Path, frames: int | None = None) -> int:
        """The first ``frames`` frames (all by default) to ``path``; the events they give."""
        n = len(self.frames) if frames is None else frames
        path.write_bytes(b"".join(self.frames[:n]))
        return sum(self.events[:n])


def aligned_chunks(data: bytes, chunk_bytes: int) -> list[bytes]:
    """``data`` (whole SSE frames) cut at the first frame end past every ``chunk_bytes``."""
    chunks = []
    start = 0
    while start < len(data):
        end = data.find(b"\n\n", start + chunk_bytes)
        end = len(data) if end < 0 else end + 2
        chunks.append(data[start:end])
        start = end
    return chunks
