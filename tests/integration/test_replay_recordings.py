"""Every recording kept in tests/recordings/ replays into the canonical lines kept beside it:
a recording is a bug report, and the lines are what tradebus must make of it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.recorded import first_difference, replayed

HERE = Path(__file__).resolve().parents[1] / "recordings"
CASES = sorted(HERE.glob("*.jsonl.zst"))


def test_the_four_upstreams_have_a_recording() -> None:
    """A TTMT recycle, a TradingPartners cut, a Trader WS back-fill, an MT4 reconciliation."""
    assert {p.name.removesuffix(".jsonl.zst") for p in CASES} >= {
        "ttmt-recycle",
        "tpalerts-cut",
        "traderws-backfill",
        "mt4-reconcile",
    }
    assert all(p.stat().st_size < 64 * 1024 for p in CASES)


@pytest.mark.parametrize("path", CASES, ids=[p.name.removesuffix(".jsonl.zst") for p in CASES])
def test_a_kept_recording_gives_its_lines(path: Path) -> None:
    """The replay writes exactly the lines kept with the recording (every byte)."""
    expected = path.with_name(path.name.removesuffix(".zst")).read_bytes().splitlines()
    got, stats = replayed([path])
    assert (stats.damage, stats.divergences, stats.crashed) == (0, 0, None)
    assert got == expected, first_difference(expected, got)
