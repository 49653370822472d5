"""Row 6, naive: what a user would write instead of tradebus, for the same TTMT stream.

aiohttp reads the stream line by line, ``json.loads`` gives a dict, a dict of the same shape as
tradebus's event is built and ``json.dumps``-ed, and each event is written on its own (a
line-buffered file: one ``write`` per event, so a reader sees it at once, as with tradebus).
Run as ``python -m benchmarks.naive URL OUT_FILE API_KEY``; it reads until killed.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from typing import Any

import aiohttp

from benchmarks.harness import ROTATE_BYTES
from benchmarks.sender import run_uvloop


async def follow(url: str, out: str, api_key: str) -> int:
    seq = 0
    size = 0
    headers = {"Authorization": f"Bearer {api_key}", "Accept": "text/event-stream"}
    timeout = aiohttp.ClientTimeout(total=None)
    f = open(out, "a", buffering=1)  # noqa: ASYNC230, SIM115 - the naive design, on purpose
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url, headers=headers) as resp,
        ):
            async for line in resp.content:
                if not line.startswith(b"data:"):
                    continue
                msg: dict[str, Any] = json.loads(line[5:])
                data = msg["data"]
                seq += 1
                event = {
                    "id": f"ttmt-naive:{msg['eventId']}",
                    "seq": seq,
                    "source": "ttmt-naive",
                    "provider": "ttmt",
                    "type": "position.updated",
                    "time": msg["timestamp"],
                    "received": datetime.now(UTC).isoformat(timespec="milliseconds"),
                    "account": data.get("accountId"),
                    "symbol": data.get("symbol"),
                    "origin": data.get("signal"),
                    "data": {
                        "position_id": data["positionId"],
                        "current_price": data.get("currentPrice"),
                        "unrealized_profit": data.get("unrealizedProfit"),
                    },
                }
                line_out = json.dumps(event) + "\n"  # ASCII: as many bytes as characters
                f.write(line_out)
                size += len(line_out)
                if size >= ROTATE_BYTES:  # as the file sink rotates in every row
                    size = 0
                    f.close()
                    os.unlink(out)
                    f = open(out, "a", buffering=1)  # noqa: ASYNC230, SIM115
    finally:
        f.close()
    return 0


if __name__ == "__main__":
    sys.exit(run_uvloop(follow(sys.argv[1], sys.argv[2], sys.argv[3])))
