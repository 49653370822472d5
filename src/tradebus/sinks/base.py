"""What a sink deals with: a ``Batch`` of encoded events, the ``Sink`` protocol, what a sink is
given at open (``SinkContext``), the registry."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from tradebus.schemas.events import Event


class Batch:
    """Events in journal order, as the JSON lines the bus encoded once.

    ``data`` is JSONL: one ``\\n``-terminated line per event. msgspec escapes newlines inside
    strings, so a line never spans two. A merged batch keeps its parts' bytes as ``chunks`` (a
    writer takes them as they are, ``writelines``); ``data`` joins them only when asked.

    ``events`` holds the Event structs only for a sink that asks for them (``needs_events``);
    it is empty otherwise: sinks that write the lines never look at them.

    ``first_seq``..``last_seq`` is the stretch of the stream the batch stands for: with a filter
    it holds fewer events than the stretch, and a sink that wrote it has acknowledged the whole
    stretch (its cursor moves to ``last_seq``). A batch of no events moves the cursor alone.
    """

    __slots__ = ("chunks", "count", "events", "first_seq", "last_seq", "t0")

    def __init__(
        self,
        data: bytes,
        count: int,
        events: Sequence[Event] = (),
        *,
        chunks: Sequence[bytes] = (),
        first_seq: int = 0,
        last_seq: int = 0,
    ) -> None:
        self.count = count
        self.events = events
        self.chunks: Sequence[bytes] = chunks or (data,)
        self.first_seq = first_seq
        self.last_seq = last_seq
        # Unix time the daemon journaled it: where its latency starts.
        self.t0 = 0.0

    def __len__(self) -> int:
        return self.count

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
        """The events whose ``keep`` flag is set (one per line), reusing their encoded lines."""
        lines = self.data.split(b"\n")
        data = b"".join(line + b"\n" for line, k in zip(lines, keep, strict=False) if k)
        events = [e for e, k in zip(self.events, keep, strict=True) if k] if self.events else ()
        return Batch(data, sum(keep), events, first_seq=self.first_seq, last_seq=self.last_seq)

    @staticmethod
    def merge(batches: Sequence[Batch]) -> Batch:
        """One batch of ``batches`` in order; their bytes are not copied (a join would copy up
        to half a megabyte per write)."""
        if len(batches) == 1:
            return batches[0]
        events: list[Event] = []
        chunks: list[bytes] = []
        count = 0
        for b in batches:
            events.extend(b.events)
            chunks.extend(b.chunks)
            count += b.count
        return Batch(
            b"",
            count,
            events,
            chunks=chunks,
            first_seq=batches[0].first_seq,
            last_seq=batches[-1].last_seq,
        )


@dataclass(frozen=True, slots=True)
class SinkContext:
    """What a sink is given at open: all it may know of the daemon around it."""

    # Where a sink keeps files of its own (the webhook's dead letters); None: nowhere.
    state_dir: Path | None
    # Told a short, secret-free line per dead letter; the daemon turns it into a status.error.
    dead_letter: Callable[[str], None]
    # The id of this journal's event at a seq, None if the journal does not hold it (the file
    # sink asks whether its last line came from this journal). Blocking disk I/O: call it from
    # a thread.
    event_id_at: Callable[[int], str | None]


class Sink(Protocol):
    """Where events go. ``write`` takes a whole batch and returns once it is handed over.

    ``open`` and ``write`` raise ``RetryableSinkError`` to be called again after a backoff (the
    same batch, for ``write``), or ``FatalSinkError`` when the sink cannot work as configured.
    A factory takes the sink's config alone; the rest comes with ``open``.
    """

    name: str
    # True when ``write`` reads ``batch.events``; its follower decodes the structs for it then.
    needs_events: bool
    # Events per ``write`` at most (0: any number). A write is the unit of acknowledgement:
    # the sink's cursor moves past each one, so a sink that sends one request per event (a
    # webhook's "json") says 1, and a restart never resends what a receiver already took.
    max_batch: int
    # Seconds its follower waits for a batch to fill (up to ``max_batch``) before a write that
    # would be smaller, while the journal's tail is near: fewer, fuller requests. 0: none.
    linger: float = 0.0

    async def open(self, ctx: SinkContext) -> None: ...

    async def write(self, batch: Batch) -> None: ...

    async def close(self) -> None: ...

    def reopen(self) -> None:
        """Re-open files after log rotation (SIGHUP); a no-op for sinks without files."""
        return

    def metrics(self) -> Mapping[str, float]:
        """Counters the sink keeps of its own, by key (``[a-z_]+``): the ops endpoint exports
        them; ``retries`` (writes it tried again itself) and ``dead_letters`` (events it set
        aside) also count in the rows every sink has."""
        return {}

    def errors(self) -> tuple[str | None, str | None]:
        """The failure the sink is fighting inside a write now (None once one succeeded), and
        the latest one it met: shown in ``tradebus status`` and ``/readyz``."""
        return None, None
