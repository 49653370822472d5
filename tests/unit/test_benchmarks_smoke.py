"""The benchmark harness runs end to end in its tiny mode (numbers are printed, never checked)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_tiny_benchmark_prints_every_row() -> None:
    """`python -m benchmarks --tiny` exits 0 and prints a table with every row, run or n/a."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--tiny"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        # 40-90 s on a quiet host (more rows, two processes per daemon); the machine may be shared.
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    names = [line.split("|")[1].strip() for line in rows[1:]]
    assert [n.split()[0] for n in names] == [
        "1",
        "2",
        "2r",
        "3",
        "1b",
        "2b",
        "3b",
        "4",
        "4",
        "4",
        "5",
        "5",
        "5",
        "5",
        "5",
        "5",
        "6",
        "6b",
        "7",
        "7",
        "9",
        "9",
        "10",
        "11",
        "12",
        "12",
    ]
    assert "n/a (failed" not in done.stdout
    # Row 12 prints both stretches and their ratio as it runs, and holds its client throughout.
    (line,) = [x for x in done.stdout.splitlines() if x.startswith("  12 at ")]
    assert "no stream client (" in line
    assert "one /api/v1/events client that stops reading (" in line
    assert "stalled over none: file " in line
    assert line.endswith("the client was held, not dropped")
