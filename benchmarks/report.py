"""The table: one line per row, every rate also as a % of the floor measured in the same run."""

from __future__ import annotations

import os
import platform
import time
from importlib import metadata
from pathlib import Path

from benchmarks.result import Row

PACKAGES = ("tradebus", "msgspec", "aiohttp", "uvloop", "websockets", "structlog")


def environment() -> list[str]:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    versions = []
    for name in PACKAGES:
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name} -")
    return [
        f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"cpu: {cpu} ({os.cpu_count()} cores)",
        f"python: {platform.python_implementation()} {platform.python_version()}",
        "packages: " + ", ".join(versions),
    ]


def table(rows: list[Row], floor: Row | None, extra: dict[str, str]) -> str:
    head = ["row", "events/s", "min-max", "% floor", "CPU µs/ev", "CPU %", "peak RSS MB", "notes"]
    lines = [head]
    base = floor.rate if floor is not None and floor.runs else 0.0
    for row in rows:
        note = " ".join(x for x in (row.note, extra.get(row.name, "")) if x)
        if row.na is not None:
            lines.append([row.name, f"n/a ({row.na})", "", "", "", "", "", note])
            continue
        low = min(r.rate for r in row.runs)
        high = max(r.rate for r in row.runs)
        pct = f"{row.rate / base:.0%}" if base and row.relative else "-"
        share = row.rate * row.cpu_us / 1e6 if row.cpu_share is None else row.cpu_share
        lines.append(
            [
                row.name,
                f"{row.rate:,.0f}",
                f"{low:,.0f}-{high:,.0f}",
                pct,
                f"{row.cpu_us:.2f}",
                # Below ~90% the process waited for its sender: the row measured the sender.
                f"{share:.0%}",
                f"{row.rss_mb:.1f}",
                note,
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(head) - 1)]
    out = []
    for n, line in enumerate(lines):
        cells = [c.ljust(w) for c, w in zip(line, widths, strict=False)] + [line[-1]]
        out.append("| " + " | ".join(cells) + " |")
        if n == 0:
            out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|---|")
    return "\n".join(out)
