"""The contract between tradebus and its plugins: what a sink or a source package provides,
and what it is given. Built-in sinks and sources are plugins too, registered the same way.

A package registers under the entry-point groups ``tradebus.sinks`` / ``tradebus.sources`` an
object named after its ``type``::

    [project.entry-points."tradebus.sinks"]
    sqlite = "tradebus_sink_sqlite:PLUGIN"   # a SinkPlugin("sqlite", SqliteConfig, SqliteSink)

Config. ``config`` is a msgspec Struct subclassing ``SinkConfigBase`` (``SourceConfigBase``)
with ``tag=<type>``: its keys are validated by ``tradebus check-config`` with field paths
(``sinks[2].path: …``), like a built-in's; a check in ``__post_init__`` raises ``ValueError``
starting with the field's name (``"path: expected …"``). A field's ``msgspec.Meta(description=
…)`` is what docs/configuration.md shows for it.

Sinks. ``factory(config)`` makes a ``Sink`` (subclass ``Sink`` below to inherit the defaults of
the optional methods). Then, in the delivery process:

- ``open(ctx)`` once, with a ``SinkContext``: its own state dir, a callback to report a dead
  letter, a way to ask the journal for the event id at a seq.
- ``write(batch)`` with a ``Batch``: JSON lines (``batch.chunks`` / ``batch.data``), the
  Event structs too when ``needs_events``, and the seq range ``first_seq..last_seq`` it stands
  for (filters may have left fewer lines than seqs). At most ``max_batch`` events (0: any);
  with ``linger`` seconds, the follower near the tail waits that long for a batch to fill.
- Returning from ``write`` acknowledges the batch: the sink's durable cursor moves to
  ``last_seq`` and it is never given those seqs again. Delivery is at-least-once: after a
  crash the last batch may come again, so a sink keys on the event ``id``.
- ``RetryableSinkError`` from ``open``/``write``: the same batch is written again after a
  backoff, the cursor unmoved. ``FatalSinkError``: the sink is stopped and reported failed
  (it cannot work as configured), the cursor kept for a restart. Any other exception is a bug,
  not a delivery failure: nothing retries it (the sink is reported failed, the exception
  named, and logged as ``sink_crashed``), so translate what may pass into the first.
- ``metrics()``: the sink's own counters, exported by the ops endpoint as
  ``tradebus_sink_plugin_<key>{sink="<name>"}``; ``retries`` and ``dead_letters`` also feed
  the counters every sink has. ``errors()``: the failure in force now and the latest one.
- ``reopen()`` on SIGHUP (files after rotation); ``close()`` at the end, after the last write.

Sources. ``factory(config, ctx)`` makes an ``Adapter`` whose ``run()`` reconnects until
cancelled; ``ctx`` is its ``SourceContext``:

- ``publish(events)``: a batch per read, counted by event type; nothing else is read from it.
- ``connected()`` when the source is up, ``disconnected(reason, planned=…, retry_in=…,
  kind=…)`` when a connection ends or an attempt fails: each sets the state ``/readyz`` shows
  and returns the status event, for the adapter to publish. ``planned=True`` (a reconnect
  nothing failed behind) keeps the source ready for ``ctx.reconnect_grace`` seconds.
- ``error()`` for an error the upstream reported in-band (the connection stays up),
  ``status()`` / ``gap()`` to build other status events, ``bad_input()`` / ``unknown_type()``
  to count what it skips, ``transport`` for its connections and clock, ``history`` to resume
  from.

The plugin's ``type`` is the ``provider`` of its events (``ctx.provider``): lower-case
letters, digits, ``_`` and ``-``, at most 64 (``SourcePlugin`` refuses others).
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tradebus.config import SinkBase as SinkConfigBase
from tradebus.config import SourceBase as SourceConfigBase
from tradebus.errors import FatalSinkError, RetryableSinkError
from tradebus.registry import Registry
from tradebus.schemas.events import PROVIDER_MAX, PROVIDER_PATTERN
from tradebus.sinks.base import Batch, Sink, SinkContext

if TYPE_CHECKING:
    from tradebus.adapters.base import Adapter, SourceContext

__all__ = [
    "SINKS",
    "SOURCES",
    "Adapter",
    "Batch",
    "FatalSinkError",
    "RetryableSinkError",
    "Sink",
    "SinkConfigBase",
    "SinkContext",
    "SinkPlugin",
    "SourceConfigBase",
    "SourceContext",
    "SourcePlugin",
]


@dataclass(frozen=True, slots=True)
class SinkPlugin:
    """What a ``tradebus.sinks`` entry point names."""

    type: str
    config: builtins.type[SinkConfigBase]
    # Takes the config alone (an instance of ``config``); the rest comes with ``open``.
    factory: Callable[[Any], Sink]

    def __post_init__(self) -> None:
        # A sink class that left out a member the follower calls would fail only once its
        # follower starts, in the delivery process: name what is missing when it is loaded.
        if isinstance(self.factory, type):
            missing = [m for m in SINK_MEMBERS if not hasattr(self.factory, m)]
            if missing:
                raise ValueError(
                    f"sink {self.factory.__name__} lacks {', '.join(missing)}:"
                    " subclass tradebus.plugin.Sink, which has their defaults"
                )


# What the follower calls on a sink beyond the attributes its ``__init__`` sets.
SINK_MEMBERS = ("open", "write", "close", "reopen", "metrics", "errors", "linger")


@dataclass(frozen=True, slots=True)
class SourcePlugin:
    """What a ``tradebus.sources`` entry point names."""

    type: str
    config: builtins.type[SourceConfigBase]
    factory: Callable[[Any, SourceContext], Adapter]

    def __post_init__(self) -> None:
        # The type is the ``provider`` of every event the source publishes: refused here, or
        # the daemon would write lines that name their upstream in a way a subject or a label
        # must escape.
        if len(self.type) > PROVIDER_MAX or not re.fullmatch(PROVIDER_PATTERN, self.type):
            raise ValueError(
                f"source type {self.type[:80]!r}: expected lower-case letters, digits, '_' and"
                f" '-', starting with a letter, at most {PROVIDER_MAX} characters"
            )


def __getattr__(name: str) -> Any:
    # The sources' names on first use: the delivery process imports this module for its sinks
    # and has no use for the adapters.
    if name in ("Adapter", "SourceContext"):
        from tradebus.adapters import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


SINKS: Registry[SinkPlugin] = Registry(
    "tradebus.sinks", SinkPlugin, ("stdout", "file", "webhook", "nats")
)
SOURCES: Registry[SourcePlugin] = Registry(
    "tradebus.sources", SourcePlugin, ("ttmt", "tpalerts", "traderws", "mt4bridge")
)


# The factories are looked up here, not in ``sinks.base`` or ``adapters.base``: the bases are
# what plugins import, so they import no registry (which imports the plugins).
def sink_factory(type_: str) -> Callable[[Any], Sink]:
    """The factory of the sink plugin of ``type_`` (built in or installed)."""
    return SINKS.get(type_).factory


def source_factory(type_: str) -> Callable[[Any, SourceContext], Adapter]:
    """The factory of the source plugin of ``type_`` (built in or installed)."""
    return SOURCES.get(type_).factory
