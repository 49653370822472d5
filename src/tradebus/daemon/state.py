"""The daemon's state for people and probes: per source, per sink, and whether it is ready.

Everything here is read at the moment someone asks (a probe, a scrape, the systemd STATUS
line) from counters the sources keep and the sinks' state delivery last reported: nothing on
the event path.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tradebus.adapters.base import SourceContext
from tradebus.delivery.wire import SinkSnapshot


def source_state(ctx: SourceContext, *, required: bool, now: float) -> dict[str, Any]:
    """One source's row: its connection and what it published."""
    return {
        "connected": ctx.up,
        "since": round(ctx.since, 3),
        "last_event_age": None if ctx.last_event is None else round(now - ctx.last_event, 3),
        "events": ctx.published.total(),
        "reconnects": ctx.reconnects,
        "gaps": ctx.gaps,
        "last_error": ctx.last_error,
        "required": required,
        # Down for a planned reconnect (``SourceContext.disconnected(planned=True)``), it stays
        # ready within its grace.
        "ready": ctx.up or ctx.in_grace(now) or not required,
        # Where this source's raw traffic is being recorded (``record = true``), and how much.
        "recording": ctx.transport.path,
        "recorded_bytes": ctx.transport.recorded_bytes,
    }


def sink_state(snap: SinkSnapshot, *, last_seq: int, lag: float, max_lag: float) -> dict[str, Any]:
    """One sink's row, from what delivery last reported of it. The backlog is what it has not
    acknowledged; the lag, how long ago the oldest of that was journaled. A sink is ready
    while it is not failing (its last write or open was acknowledged, or it has written
    nothing yet) and not past its ``max_lag``."""
    over = bool(max_lag) and lag > max_lag
    return {
        "state": snap.state,
        "written": snap.written,
        "failed": snap.failed,
        "retries": snap.retries,
        "backlog": max(0, last_seq - snap.cursor),
        "cursor": snap.cursor,
        "lag_seconds": round(lag, 3),
        "max_lag": max_lag,
        "gaps": snap.gaps,
        "dead_letters": snap.dead_letters,
        "error": snap.error,
        "last_error": snap.last_error,
        "ready": not snap.failed and snap.error is None and not over,
    }


def snapshot(
    contexts: Mapping[str, SourceContext],
    required: Mapping[str, bool],
    sinks: Mapping[str, dict[str, Any]],
    *,
    now: float,
) -> dict[str, Any]:
    """The body of ``/readyz``: ready only when every required source and every sink is."""
    sources = {
        name: source_state(ctx, required=required.get(name, True), now=now)
        for name, ctx in contexts.items()
    }
    ready = all(s["ready"] for s in sources.values()) and all(s["ready"] for s in sinks.values())
    return {"ready": ready, "sources": sources, "sinks": dict(sinks)}


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
