"""Row 4's references, on the same Trader WS sender: the WebSocket floor and the bare reader.

Both log in, subscribe to the quotes of the given symbols and read text messages with aiohttp's
``ws_connect`` for ``SECONDS`` from the first one; then write a ``RunResult`` (their own rate,
CPU per message and peak RSS) to ``OUT`` and exit.

- With ``SINK_FILE``, the floor (row 4's reference, the WebSocket twin of row 1): each quote is
  decoded into a small Struct, an output Struct shaped like the canonical event is built,
  ``encode_into`` one bytearray, written to ``SINK_FILE`` every 64 KiB: the work no
  implementation can skip.
- Without, the bare reader: it only counts, so a ratio against it has a ceiling below any
  target; the table prints it as a note.

Run as ``python -m benchmarks.wsref BASE_URL USERNAME PASSWORD SYMBOLS SECONDS OUT [SINK_FILE]``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import aiohttp
import msgspec

from benchmarks.floor import FLUSH_AT
from benchmarks.floormix import Envelope
from benchmarks.harness import ROTATE_BYTES
from benchmarks.procs import self_cpu_seconds, self_peak_rss_mb, write_atomic
from benchmarks.result import RunResult
from benchmarks.sender import run_uvloop

SOURCE = "trader-floor"


class InQuote(msgspec.Struct):
    symbol: str
    bid: float | None = None
    ask: float | None = None
    ts: str | None = None


class In(msgspec.Struct, tag_field="type", tag="quoteEvent"):
    payload: InQuote


class OutQuote(msgspec.Struct, omit_defaults=True):
    bid: float | None = None
    ask: float | None = None


class QuoteUpdated(Envelope, tag="quote.updated"):
    data: OutQuote


class Writer:
    """The floor's work per message; the sink file starts afresh every ``ROTATE_BYTES`` as the
    daemon's file sink does in row 4 (see ``benchmarks.harness``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.decoder = msgspec.json.Decoder(In)
        self.encoder = msgspec.json.Encoder()
        self.buf = bytearray()
        self.seq = 0
        self.size = 0
        self.f = open(path, "wb")  # noqa: SIM115 - closed by close()

    def take(self, text: str) -> None:
        try:
            q = self.decoder.decode(text).payload
        except msgspec.ValidationError:  # not a quote (the subscription's acknowledgement)
            return
        self.seq += 1
        ts = q.ts or "2026-06-09T14:32:01.500Z"
        event = QuoteUpdated(
            f"{SOURCE}:quote:{q.symbol}:{ts}",
            self.seq,
            SOURCE,
            "traderws",
            ts,
            "2026-06-09T14:32:01.500Z",
            None,
            q.symbol,
            None,
            OutQuote(q.bid, q.ask),
        )
        buf = self.buf
        self.encoder.encode_into(event, buf, -1)
        buf.append(10)
        if len(buf) >= FLUSH_AT:
            self.f.write(buf)
            self.size += len(buf)
            buf.clear()
            if self.size >= ROTATE_BYTES:
                self.f.close()
                os.unlink(self.path)
                self.f = open(self.path, "wb")  # noqa: SIM115 - as the floor does
                self.size = 0

    def close(self) -> None:
        self.f.write(self.buf)
        self.f.close()
        self.path.unlink(missing_ok=True)


async def count(
    base: str,
    user: str,
    password: str,
    symbols: list[str],
    seconds: float,
    *,
    writer: Writer | None = None,
) -> RunResult:
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{base}/api/v1/login", json={"username": user, "password": password}
        ) as resp:
            resp.raise_for_status()
            token = (await resp.json())["token"]
        async with session.ws_connect(f"{base}/api/v1/ws", params={"token": token}) as ws:
            subscribe = {"symbols": symbols, "events": ["quoteEvent"]}
            await ws.send_str(
                msgspec.json.encode({"type": "subscribe", "payload": subscribe}).decode()
            )
            n = 0
            t0 = cpu0 = 0.0
            take = writer.take if writer is not None else None
            async for msg in ws:
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    break
                if take is not None:
                    take(msg.data)
                n += 1
                if n == 1:
                    t0, cpu0 = time.perf_counter(), self_cpu_seconds()
                elif n % 256 == 0 and time.perf_counter() - t0 >= seconds:
                    break
            wall, cpu = time.perf_counter() - t0, self_cpu_seconds() - cpu0
    return RunResult(n / wall, cpu / n * 1e6, self_peak_rss_mb(), n)


async def main(argv: list[str]) -> int:
    base, user, password, symbols, seconds, out = argv[:6]
    writer = Writer(Path(argv[6])) if len(argv) > 6 else None
    try:
        result = await count(
            base, user, password, symbols.split(","), float(seconds), writer=writer
        )
    finally:
        if writer is not None:
            writer.close()
    write_atomic(Path(out), msgspec.json.encode(result))
    return 0


if __name__ == "__main__":
    sys.exit(run_uvloop(main(sys.argv[1:])))
