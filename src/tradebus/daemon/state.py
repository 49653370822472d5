"""The daemon's state for people and probes: per source, per sink, and whether it is ready.

Everything here is read at the moment someone asks (a probe, a scrape, the systemd STATUS
line) from counters the sources and sink workers already keep: nothing on the event path.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tradebus.adapters.base import SourceContext
from tradebus.bus import SinkWorker

# A source down for a planned reconnect (a TTMT recycle) stays ready this long: it is back in
# well under a second when the upstream is healthy, and a probe must not flap on every recycle.
RECONNECT_GRACE = 3.0


def source_state(ctx: SourceContext, *, required: bool, now: float) -> dict[str, Any]:
    """One source's row: its connection and what it published."""
    in_grace = ctx.planned_reconnect and now - ctx.since < RECONNECT_GRACE
    return {
        "connected": ctx.connected,
        "since": round(ctx.since, 3),
        "last_event_age": None if ctx.last_event is None else round(now - ctx.last_event, 3),
        "events": ctx.published.total(),
        "reconnects": ctx.reconnects,
        "gaps": ctx.gaps,
        "last_error": ctx.last_error,
        "required": required,
        "ready": ctx.connected or in_grace or not required,
        # Where this source's raw traffic is being recorded (``record = true``), and how much.
        "recording": ctx.transport.path,
        "recorded_bytes": ctx.transport.recorded_bytes,
    }


def dead_letters(worker: SinkWorker) -> int:
    """Events the sink gave up on and set aside, for a sink that keeps such a count."""
    count: int = getattr(worker.sink, "dead_letters", 0)
    return count


def sink_state(worker: SinkWorker) -> dict[str, Any]:
    """One sink's row. The backlog is what it has not acknowledged: in its window or, when it
    fell behind, still only in the journal (``live`` is False while it reads from there)."""
    return {
        "written": worker.written,
        "failed": worker.failed,
        "retries": worker.retries,
        "backlog": worker.backlog,
        "cursor": worker.cursor,
        "live": worker.live,
        "gaps": worker.gaps,
        "dead_letters": dead_letters(worker),
        "last_error": worker.last_error,
        "ready": not worker.failed and worker.last_error is None,
    }


def snapshot(
    contexts: Mapping[str, SourceContext],
    required: Mapping[str, bool],
    workers: Iterable[SinkWorker],
    *,
    now: float,
) -> dict[str, Any]:
    """The body of ``/readyz``: ready only when every required source and every sink is."""
    sources = {
        name: source_state(ctx, required=required.get(name, True), now=now)
        for name, ctx in contexts.items()
    }
    sinks = {w.name: sink_state(w) for w in workers}
    ready = all(s["ready"] for s in sources.values()) and all(s["ready"] for s in sinks.values())
    return {"ready": ready, "sources": sources, "sinks": sinks}


def summary(state: Mapping[str, Any], rate: float) -> str:
    """The one-line STATUS for systemd: ``4/4 sources connected, 2 sinks, 1,234 ev/s``."""
    sources = state["sources"].values()
    up = sum(1 for s in sources if s["connected"])
    sinks = state["sinks"].values()
    failed = sum(1 for s in sinks if not s["ready"])
    line = f"{up}/{len(sources)} sources connected, {len(sinks)} sinks"
    if failed:
        line += f" ({failed} failing)"
    return f"{line}, {rate:,.0f} ev/s"
