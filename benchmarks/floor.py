"""Row 1, the floor: the parts tradebus is made of, with no tradebus code between them.

Split a buffer of TTMT SSE frames on blank lines, decode each ``data`` payload into a small
Struct, build an output Struct, ``encode_into`` one bytearray, write it to a file every 64 KiB.
Run as ``python -m benchmarks.floor EVENTS RUNS OUT_FILE``: prints one JSON result per run.
With RUNS 0 it runs once per line read on stdin, until EOF: the harness keeps it waiting between
its runs and alternates them with row 2's, so each pair sees the host in the same state.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec

from benchmarks.frames import ttmt_chunks
from benchmarks.procs import self_cpu_seconds, self_peak_rss_mb
from benchmarks.result import RunResult

FLUSH_AT = 64 * 1024
# One pass over the chunks, writing to the file; the number of events it wrote.
OnePass = Callable[[list[bytes], Path], int]


class InData(msgspec.Struct, rename="camel"):
    position_id: str
    symbol: str
    unrealized_profit: float
    current_price: float
    account_id: str


class In(msgspec.Struct, rename="camel"):
    type: str
    event_id: int
    timestamp: str
    data: InData


class OutData(msgspec.Struct):
    position_id: str
    current_price: float
    unrealized_profit: float


class Out(msgspec.Struct):
    id: str
    seq: int
    source: str
    provider: str
    type: str
    time: str
    received: str
    account: str
    symbol: str
    data: OutData


def one_pass(chunks: list[bytes], out: Path) -> int:
    """Decode, rebuild, encode and write every frame of ``chunks``; the number of events."""
    decoder = msgspec.json.Decoder(In)
    encoder = msgspec.json.Encoder()
    buf = bytearray()
    received = "2026-06-09T14:32:01.500Z"
    count = 0
    with open(out, "wb") as f:
        for frame in frames(chunks):
            msg = decoder.decode(frame[frame.index(b"data: ") + 6 :])
            d = msg.data
            event = Out(
                f"ttmt-bench:{msg.event_id}",
                count + 1,
                "ttmt-bench",
                "ttmt",
                "position.updated",
                msg.timestamp,
                received,
                d.account_id,
                d.symbol,
                OutData(d.position_id, d.current_price, d.unrealized_profit),
            )
            encoder.encode_into(event, buf, -1)
            buf.append(10)
            count += 1
            if len(buf) >= FLUSH_AT:
                f.write(buf)
                buf.clear()
        f.write(buf)
    return count


def frames(chunks: list[bytes]) -> Iterator[bytes]:
    # Split chunk by chunk, as reads arrive: one split of the whole buffer would build a
    # million objects at once and measure the allocator, not the parts.
    for chunk in chunks:
        yield from chunk.split(b"\n\n")[:-1]


def main(argv: list[str]) -> int:
    events, runs, out = int(argv[0]), int(argv[1]), Path(argv[2])
    return serve(list(ttmt_chunks(1, events, 64 * 1024)), one_pass, runs, out)


def serve(chunks: list[bytes], one: OnePass, runs: int, out: Path) -> int:
    """``runs`` measured passes of ``one`` (with 0, one per line read on stdin, until EOF)."""
    # A first pass faults in the allocator's arenas and the file's pages: warm-up, not measured.
    one(chunks[: max(len(chunks) // 10, 1)], out)
    if runs:
        for _ in range(runs):
            _measure(chunks, one, out)
    else:
        while sys.stdin.buffer.readline():
            _measure(chunks, one, out)
    return 0


def _measure(chunks: list[bytes], one: OnePass, out: Path) -> None:
    cpu0, t0 = self_cpu_seconds(), time.perf_counter()
    count = one(chunks, out)
    wall, cpu = time.perf_counter() - t0, self_cpu_seconds() - cpu0
    os.unlink(out)
    result = RunResult(count / wall, cpu / count * 1e6, self_peak_rss_mb(), count)
    sys.stdout.buffer.write(msgspec.json.encode(result) + b"\n")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
