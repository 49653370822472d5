"""Two kinds of writer for one terminal or pipe: ``python -m tests.e2e.writers events|logs N``.

``events N``: the stdout sink writes N merged batches of event lines (and logs between them, as
a daemon running its sinks inline does); ``logs N``: N log lines and nothing else, as the daemon
does while its sinks run in another process.
"""

from __future__ import annotations

import asyncio
import sys

import msgspec

from tests.sinkctx import context
from tradebus import config, log
from tradebus.schemas.events import QuoteData, QuoteUpdated
from tradebus.sinks.base import Batch
from tradebus.sinks.stdout import StdoutSink

T = "2026-06-09T14:32:01.123Z"
LINES_PER_CHUNK = 60
CHUNKS_PER_BATCH = 8  # a merged batch: its parts are written as they are
URL = "ws://127.0.0.1:44569/api/v1/ws"


def chunk(batch: int, part: int) -> bytes:
    encode = msgspec.json.encode
    return b"".join(
        encode(
            QuoteUpdated(
                id=f"w:{batch}.{part}.{n}",
                source="w",
                provider="ttmt",
                time=T,
                received=T,
                symbol="EURUSD",
                data=QuoteData(bid=1.0 + n / 1000, ask=1.1),
            )
        )
        + b"\n"
        for n in range(LINES_PER_CHUNK)
    )


async def events(batches: int) -> None:
    sink = StdoutSink(config.StdoutSinkConfig(name="console"))
    await sink.open(context())
    logger = log.get(writer="events")
    for b in range(batches):
        chunks = [chunk(b, p) for p in range(CHUNKS_PER_BATCH)]
        await sink.write(Batch(b"", LINES_PER_CHUNK * CHUNKS_PER_BATCH, chunks=chunks))
        logger.info("connecting", n=b, url=URL)
    await sink.close()


def logs(count: int) -> None:
    logger = log.get(writer="logs")
    for n in range(count):
        logger.info("connecting", n=n, url=URL)


def main() -> None:
    log.configure("info", fmt="console")
    kind, count = sys.argv[1], int(sys.argv[2])
    if kind == "events":
        asyncio.run(events(count))
    else:
        logs(count)


if __name__ == "__main__":
    main()
