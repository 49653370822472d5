"""What one run measures, and a row of runs as the table prints it."""

from __future__ import annotations

import statistics

import msgspec


class RunResult(msgspec.Struct, array_like=True):
    """One run: events/s, CPU µs per event, peak RSS in MB, and how many events it counted."""

    rate: float
    cpu_us: float
    rss_mb: float
    events: int


class Row(msgspec.Struct, kw_only=True):
    """A table row: its runs, or why it could not run (``na``), plus free-form extra columns."""

    name: str
    runs: list[RunResult] = msgspec.field(default_factory=list)
    na: str | None = None
    note: str = ""
    # False where the rate is set by the row itself (a paced sender): no % of the floor then.
    relative: bool = True
    # CPU seconds per second of the run, where events/s times CPU µs/ev does not give it (the
    # CPU spans more than the rate's window, or two processes).
    cpu_share: float | None = None

    @property
    def rate(self) -> float:
        return statistics.median(r.rate for r in self.runs) if self.runs else 0.0

    @property
    def cpu_us(self) -> float:
        return statistics.median(r.cpu_us for r in self.runs) if self.runs else 0.0

    @property
    def rss_mb(self) -> float:
        return max(r.rss_mb for r in self.runs) if self.runs else 0.0
