"""The sink side of the bus: a ``Batch`` of encoded events, the ``Sink`` protocol, the registry."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from tradebus.schemas.events import Event


class Batch:
    """Events in bus order, with their JSON lines encoded once and shared by every sink.

    ``data`` is JSONL: one ``\\n``-terminated line per event. msgspec escapes newlines inside
    strings, so a line never spans two.
    """

    __slots__ = ("data", "events")

    def __init__(self, events: Sequence[Event], data: bytes) -> None:
        self.events = events
        self.data = data

    def __len__(self) -> int:
        return len(self.events)

    def subset(self, keep: Sequence[bool]) -> Batch:
        """The events whose ``keep`` flag is set, reusing their encoded lines."""
        lines = self.data.split(b"\n")
        events = [e for e, k in zip(self.events, keep, strict=True) if k]
        data = b"".join(line + b"\n" for line, k in zip(lines, keep, strict=False) if k)
        return Batch(events, data)

    @staticmethod
    def merge(batches: Sequence[Batch]) -> Batch:
        if len(batches) == 1:
            return batches[0]
        events: list[Event] = []
        for b in batches:
            events.extend(b.events)
        return Batch(events, b"".join(b.data for b in batches))


class Sink(Protocol):
    """Where events go. ``write`` takes a whole batch and returns once it is handed over.

    ``write`` raises ``RetryableSinkError`` to have the same batch retried after a backoff, or
    ``FatalSinkError`` when the sink cannot work as configured.
    """

    name: str

    async def open(self) -> None: ...

    async def write(self, batch: Batch) -> None: ...

    async def close(self) -> None: ...

    def reopen(self) -> None:
        """Re-open files after log rotation (SIGHUP); a no-op for sinks without files."""
        ...


SinkFactory = Callable[[Any], Sink]
_registry: dict[str, SinkFactory] = {}


def register(type_: str) -> Callable[[SinkFactory], SinkFactory]:
    def deco(factory: SinkFactory) -> SinkFactory:
        _registry[type_] = factory
        return factory

    return deco


def factory_for(type_: str) -> SinkFactory:
    import tradebus.sinks.file
    import tradebus.sinks.stdout  # noqa: F401

    return _registry[type_]
