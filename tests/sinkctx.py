"""What a test gives a sink at open: a ``SinkContext`` that records dead letters and reads a
real journal in a temp dir (or none)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from tradebus.journal.store import event_id_at
from tradebus.sinks.base import SinkContext


def context(
    state_dir: Path | None = None, told: list[str] | None = None, *, journal: Path | None = None
) -> SinkContext:
    """Dead letters go to ``told``; ``event_id_at`` reads the journal in ``journal`` (a state
    dir), or finds nothing without one."""
    said = told if told is not None else []
    return SinkContext(
        state_dir=state_dir,
        dead_letter=said.append,
        event_id_at=partial(event_id_at, journal) if journal is not None else lambda _s: None,
    )
