"""The sink side of the bus: a ``Batch`` of encoded events, the ``Sink`` protocol, the registry."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from tradebus.schemas.events import Event


class Batch:
    """Events in bus order, with their JSON lines encoded once and shared by every sink.

    ``data`` is JSONL: one ``\\n``-terminated line per event. msgspec escapes newlines inside
    strings, so a line never spans two. A merged batch keeps its parts' bytes as ``chunks`` (a
    writer takes them as they are, ``writelines``); ``data`` joins them only when asked.
    """

    __slots__ = ("chunks", "events")

    def __init__(
        self, events: Sequence[Event], data: bytes = b"", *, chunks: Sequence[bytes] = ()
    ) -> None:
        self.events = events
        self.chunks: Sequence[bytes] = chunks or (data,)

    def __len__(self) -> int:
        return len(self.events)

    @property
    def data(self) -> bytes:
        """All the lines as one buffer (joined once, on first use)."""
        if len(self.chunks) != 1:
            self.chunks = (b"".join(self.chunks),)
        return self.chunks[0]

    @property
    def size(self) -> int:
        """Bytes in the lines."""
        return sum(map(len, self.chunks))

    def subset(self, keep: Sequence[bool]) -> Batch:
        """The events whose ``keep`` flag is set, reusing their encoded lines."""
        lines = self.data.split(b"\n")
        events = [e for e, k in zip(self.events, keep, strict=True) if k]
        data = b"".join(line + b"\n" for line, k in zip(lines, keep, strict=False) if k)
        return Batch(events, data)

    @staticmethod
    def merge(batches: Sequence[Batch]) -> Batch:
        """One batch of ``batches`` in order; their bytes are not copied (a join would copy up
        to half a megabyte per write)."""
        if len(batches) == 1:
            return batches[0]
        events: list[Event] = []
        chunks: list[bytes] = []
        for b in batches:
            events.extend(b.events)
            chunks.extend(b.chunks)
        return Batch(events, chunks=chunks)


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
