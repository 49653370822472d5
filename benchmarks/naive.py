"""Row 6, naive: what a user would write instead of tradebus, for the same TTMT stream.

aiohttp reads the stream line by line, ``json.loads`` gives a dict, a dict of the same shape as
tradebus's event is built and ``json.dumps``-ed, and each event is written on its own (a
line-buffered file: one ``write`` per event, so a reader sees it at once, as with tradebus).
Run as ``python -m benchmarks.naive URL OUT_FILE API_KEY [--mix]``; it reads until killed. With
``--mix`` it maps every type of the real mix (row 6b), by a table of renamed fields.
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

# The real mix (row 6b): what a user mapping every TTMT type by hand would write.
TYPES = {
    "position_update": "position.updated",
    "order_fill": "order.filled",
    "position_closed": "position.closed",
    "trade_executed": "trade.opened",
    "trade_finalized": "trade.closed",
    "tp_hit": "trade.tp_hit",
    "breakeven_set": "position.breakeven_set",
    "breakeven_failed": "position.breakeven_failed",
}
FIELDS = {
    "positionId": "position_id",
    "id": "position_id",
    "orderId": "order_id",
    "tradeId": "trade_id",
    "currentPrice": "current_price",
    "unrealizedProfit": "unrealized_profit",
    "volume": "volume",
    "fillPrice": "price",
    "layer": "layer",
    "reason": "reason",
    "channelName": "channel",
    "positionsCount": "positions_count",
    "ordersCount": "orders_count",
    "status": "status",
    "profitLoss": "profit_loss",
    "tpLevel": "tp_level",
    "newSL": "new_stop_loss",
}


def mix_events(msg: dict[str, Any], source: str) -> list[dict[str, Any]]:
    data = msg["data"]
    items = data.get("positions") or [data]
    events = []
    for n, item in enumerate(items, 1):
        suffix = f"#{n}" if "positions" in data else ""
        events.append(
            {
                "id": f"{source}:{msg['eventId']}{suffix}",
                "seq": 0,
                "source": source,
                "provider": "ttmt",
                "type": TYPES[msg["type"]],
                "time": msg["timestamp"],
                "received": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "account": data.get("accountId"),
                "symbol": item.get("symbol"),
                "origin": data.get("signal"),
                "data": {FIELDS[k]: v for k, v in item.items() if k in FIELDS},
            }
        )
    return events


def position_event(msg: dict[str, Any], source: str) -> list[dict[str, Any]]:
    data = msg["data"]
    return [
        {
            "id": f"{source}:{msg['eventId']}",
            "seq": 0,
            "source": source,
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
    ]


async def follow(url: str, out: str, api_key: str, *, mix: bool = False) -> int:
    seq = 0
    size = 0
    source = "ttmt-naive"
    build = mix_events if mix else position_event
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
                for event in build(msg, source):
                    seq += 1
                    event["seq"] = seq
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
    mix = sys.argv[4:] == ["--mix"]
    sys.exit(run_uvloop(follow(sys.argv[1], sys.argv[2], sys.argv[3], mix=mix)))
