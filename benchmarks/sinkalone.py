"""A delivery sink alone, on the daemon core: how fast it takes batches when nothing else runs.

``python -m benchmarks.sinkalone nats|nats-each|hook URL EVENTS OUT`` writes ``EVENTS``
canonical ``quote.updated`` lines in batches of 1,000 (what the bus hands a sink that keeps up)
through tradebus's own ``NatsSink`` (fast-ingest batches, or ``publish = "each"``) or
``WebhookSink`` (jsonl, signed) to the server at ``URL`` and
writes a ``RunResult`` to ``OUT``. Row 5 shows every sink behind when all four sources run flat
out; this row says whether a sink is slow or only starved of the core.
"""

from __future__ import annotations

import base64
import os
import sys
import tempfile
import time
from pathlib import Path

import msgspec
import uvloop

from benchmarks.procs import status_kib, write_atomic
from benchmarks.result import RunResult
from tradebus import config as cfg
from tradebus.schemas.events import QuoteData, QuoteUpdated
from tradebus.sinks.base import Batch, Sink, SinkContext
from tradebus.sinks.nats import NatsSink
from tradebus.sinks.webhook import WebhookSink

BATCH = 1000


def _sink(kind: str, url: str, state: str) -> Sink:
    if kind in ("nats", "nats-each"):
        table = {
            "name": "nats",
            "type": "nats",
            "servers": [url],
            "stream": "ALONE" if kind == "nats" else "ALONEEACH",
            "subject_prefix": "alone" if kind == "nats" else "aloneeach",
            "publish": "auto" if kind == "nats" else "each",
        }
        return NatsSink(msgspec.convert(table, cfg.NatsSinkConfig, dec_hook=cfg.dec_hook))
    secret = "whsec_" + base64.b64encode(b"benchmark-secret-24bytes").decode()
    table = {"name": "hook", "type": "webhook", "url": url, "format": "jsonl", "secret": secret}
    config = msgspec.convert(table, cfg.WebhookSinkConfig, dec_hook=cfg.dec_hook)
    return WebhookSink(config)


def _batches(events: int) -> list[Batch]:
    encode = msgspec.json.Encoder().encode
    out = []
    for first in range(0, events, BATCH):
        data = b"".join(
            encode(
                QuoteUpdated(
                    id=f"ttmt-main:XAUUSD:{n}",
                    seq=n + 1,
                    source="ttmt-main",
                    provider="ttmt",
                    time="2026-06-09T14:32:01.123Z",
                    received="2026-06-09T14:32:01.125Z",
                    symbol="XAUUSD",
                    data=QuoteData(bid=2300.0 + n % 97, ask=2300.5 + n % 97),
                )
            )
            + b"\n"
            for n in range(first, min(first + BATCH, events))
        )
        count = data.count(b"\n")
        out.append(Batch(data, count, chunks=[data], first_seq=first + 1, last_seq=first + count))
    return out


async def _run(kind: str, url: str, events: int) -> RunResult:
    batches = _batches(events + BATCH)
    with tempfile.TemporaryDirectory() as state:
        sink = _sink(kind, url, state)
        # No journal here, and a dead letter would show in the run's own counts.
        await sink.open(SinkContext(Path(state), lambda _m: None, lambda _s: None))
        try:
            await sink.write(batches[0])  # warm-up: connection, stream, first acks
            t0, c0 = time.perf_counter(), time.process_time()
            for batch in batches[1:]:
                await sink.write(batch)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        finally:
            await sink.close()
    counted = sum(b.count for b in batches[1:])
    # VmHWM, not ru_maxrss: Linux keeps the latter across exec, so it would report the
    # harness's own peak from before the fork.
    rss = status_kib(os.getpid(), "VmHWM") / 1024
    return RunResult(counted / wall, cpu / counted * 1e6, rss, counted)


def main(argv: list[str]) -> int:
    if len(argv) != 4 or argv[0] not in ("nats", "nats-each", "hook"):
        print(
            "usage: python -m benchmarks.sinkalone nats|nats-each|hook URL EVENTS OUT",
            file=sys.stderr,
        )
        return 2
    kind, url, events, out = argv[0], argv[1], int(argv[2]), Path(argv[3])
    result = uvloop.run(_run(kind, url, events))
    write_atomic(out, msgspec.json.encode(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
