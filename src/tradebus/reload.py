"""A reload's plan: what a newly loaded config changes against the running one (pure).

The daemon re-reads the file it was started with, checks it as ``check-config`` does (secrets
resolved, so a rotated key file is a change), and compares it with the config it runs, by the
name of each source and sink: an unchanged one is kept untouched, a changed one restarted, a
new one added, a missing (or disabled) one removed. Keys that only a restart can change are
refused by name, and then nothing changes. The plan travels as JSON to ``tradebus reload``.
What a reload did (``Outcome``) and the tally of them (``Reloads``) live here too, so that what
reads them (the ops endpoint) needs nothing of the daemon that runs them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from tradebus import config
from tradebus.config import Config, DaemonConfig, SinkConfig, SourceBase, SourceConfig
from tradebus.errors import ConfigError

# [daemon] keys only a restart applies: the state dir's lock and journal, the delivery
# process (or its absence), the ops endpoint's listening socket, the log renderer, and what
# "durable" means for the journal and the cursors on either side of the socket pair.
RESTART_ONLY: dict[str, str] = {
    "state_dir": "the journal and the cursors live there",
    "delivery": "the delivery mode",
    "http": "the ops endpoint's address",
    # The endpoint checks the token it was built with; a reload that swapped it would report
    # "applied" while the old token still opened the endpoint.
    "http_token": "the ops endpoint's token",
    "http_token_all": "which ops paths ask for the token",
    "log_format": "the log format",
    "fsync": "the journal's durability",
}


class Changes(msgspec.Struct, kw_only=True):
    """Names of sources (or sinks) by what a reload does to them."""

    kept: list[str] = msgspec.field(default_factory=list)
    restarted: list[str] = msgspec.field(default_factory=list)
    added: list[str] = msgspec.field(default_factory=list)
    removed: list[str] = msgspec.field(default_factory=list)

    @property
    def touched(self) -> bool:
        return bool(self.restarted or self.added or self.removed)


class Plan(msgspec.Struct, kw_only=True):
    """What a reload does: per source, per sink, and the [daemon] keys it applies."""

    sources: Changes
    sinks: Changes
    daemon: list[str] = msgspec.field(default_factory=list)

    @property
    def changes(self) -> bool:
        return self.sources.touched or self.sinks.touched or bool(self.daemon)

    def lines(self) -> list[str]:
        """The plan for a person: one line per kind of change, ``no changes`` if none."""
        out = []
        for what, changes in (("source", self.sources), ("sink", self.sinks)):
            for verb in ("restarted", "added", "removed", "kept"):
                names = getattr(changes, verb)
                if names:
                    out.append(f"{what}s {verb}: {', '.join(names)}")
        if self.daemon:
            out.append(f"daemon keys applied: {', '.join(self.daemon)}")
        return out if self.changes else ["no changes", *out]


class Refused(msgspec.Struct, kw_only=True):
    """Why a reload changes nothing: each problem one line, with its field path."""

    problems: list[str]


def _enabled(items: Sequence[SourceConfig | SinkConfig]) -> dict[str, SourceConfig | SinkConfig]:
    # Sources can be switched off (``enabled = false``); every sink table is one that runs.
    return {i.name: i for i in items if not isinstance(i, SourceBase) or i.enabled}


def _diff(
    old: Sequence[SourceConfig | SinkConfig], new: Sequence[SourceConfig | SinkConfig]
) -> Changes:
    before, after = _enabled(old), _enabled(new)
    changes = Changes()
    for name, item in after.items():
        if name not in before:
            changes.added.append(name)
        elif before[name] == item:  # secrets compare by value: a rotated key is a change
            changes.kept.append(name)
        else:
            changes.restarted.append(name)
    changes.removed = [name for name in before if name not in after]
    return changes


def restart_only(old: DaemonConfig, new: DaemonConfig) -> list[str]:
    """``daemon.<key>: …`` for each restart-only key whose value differs."""
    return [
        f"daemon.{key}: {why} changes only with a restart (running {getattr(old, key)!r},"
        f" the file says {getattr(new, key)!r})"
        for key, why in RESTART_ONLY.items()
        if getattr(old, key) != getattr(new, key)
    ]


def plan(old: Config, new: Config) -> Plan | Refused:
    """What reloading ``new`` over the running ``old`` does, or why it is refused."""
    refused = restart_only(old.daemon, new.daemon)
    if refused:
        return Refused(problems=refused)
    daemon = [
        f.name
        for f in msgspec.structs.fields(DaemonConfig)
        if f.name not in RESTART_ONLY and getattr(old.daemon, f.name) != getattr(new.daemon, f.name)
    ]
    return Plan(
        sources=_diff(old.sources, new.sources),
        sinks=_diff(old.sinks, new.sinks),
        daemon=daemon,
    )


def plan_file(
    old: Config, path: str | Path, env: dict[str, str] | None = None
) -> tuple[Config | None, Plan | Refused]:
    """Load ``path`` as ``check-config`` does and plan it over ``old``: the new config (None
    when it was refused for its own problems) and the plan or the refusal."""
    try:
        new = config.load(path, env)
    except ConfigError as exc:
        return None, Refused(problems=list(exc.problems))
    return new, plan(old, new)


class Outcome(msgspec.Struct, kw_only=True):
    """What a reload did: ``applied``, ``partial`` (what could not be, in ``problems``),
    ``refused`` (nothing changed) or ``dry_run`` (the plan alone)."""

    result: str
    plan: Plan | None = None
    problems: list[str] = msgspec.field(default_factory=list)
    generation: int = 0
    failed_sinks: dict[str, str] = msgspec.field(default_factory=dict)  # why, by sink


class Reloads:
    """The reloads so far: a generation per applied (or partial) one, counts by result."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.generation = 1
        self.counts = {"applied": 0, "refused": 0, "partial": 0}
        self.last_success: float | None = None
        self.last: Outcome | None = None
        self.last_time: float | None = None
        # The sinks the last reload applied could not open (theirs, or none): a refused
        # reload since changed nothing, so they stay named until one is applied.
        self.failed_sinks: dict[str, str] = {}

    def note(self, outcome: Outcome) -> None:
        self.counts[outcome.result] += 1
        now = time.time()
        if outcome.result != "refused":
            self.generation += 1
            self.last_success = now
            self.failed_sinks = dict(outcome.failed_sinks)
        outcome.generation = self.generation
        self.last, self.last_time = outcome, now

    def state(self) -> dict[str, Any]:
        last = self.last
        return {
            "generation": self.generation,
            "last_result": None if last is None else last.result,
            "last_time": self.last_time,
            "last_problems": [] if last is None else last.problems,
            "failed_sinks": self.failed_sinks,
        }
