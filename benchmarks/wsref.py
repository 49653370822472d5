"""Row 4's reference: a bare aiohttp ``ws_connect`` reader of the Trader WS quotes that only counts.

It logs in, subscribes to the quotes of the given symbols, and counts text messages for
``SECONDS`` from the first one; then writes a ``RunResult`` (its own rate, CPU per message and
peak RSS) to ``OUT`` and exits. Run as
``python -m benchmarks.wsref BASE_URL USERNAME PASSWORD SYMBOLS SECONDS OUT``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import aiohttp
import msgspec

from benchmarks.procs import self_cpu_seconds, self_peak_rss_mb, write_atomic
from benchmarks.result import RunResult
from benchmarks.sender import run_uvloop


async def count(
    base: str, user: str, password: str, symbols: list[str], seconds: float
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
            async for msg in ws:
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    break
                n += 1
                if n == 1:
                    t0, cpu0 = time.perf_counter(), self_cpu_seconds()
                elif n % 256 == 0 and time.perf_counter() - t0 >= seconds:
                    break
            wall, cpu = time.perf_counter() - t0, self_cpu_seconds() - cpu0
    return RunResult(n / wall, cpu / n * 1e6, self_peak_rss_mb(), n)


async def main(argv: list[str]) -> int:
    base, user, password, symbols, seconds, out = argv
    result = await count(base, user, password, symbols.split(","), float(seconds))
    write_atomic(Path(out), msgspec.json.encode(result))
    return 0


if __name__ == "__main__":
    sys.exit(run_uvloop(main(sys.argv[1:])))
