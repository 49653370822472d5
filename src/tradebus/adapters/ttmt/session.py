"""The TTMT event sequence, sans-I/O: which eventIds are new, where a resume fell short, and
what to resume from.

Reads in, events and notes out; the adapter moves the bytes, publishes, and turns the notes
(bad input, a gap, a control frame) into counters and status events. Per the upstream doc:

- Replayed events already published are dropped by ``eventId``: ``seen`` holds the ids
  published (the adapter marks them once the bus took the batch), and ``read`` drops an id in
  ``seen`` or already in the read.
- "Reconnect ... sending the last received id as Last-Event-ID": ``cursor`` is the first one,
  from the highest id the journal holds (``resume_from``); after that it is the decoder's.
- On the first event after a resume, an id past the highest seen + 1 means the server's
  "buffer of the last 100 events" no longer held what we missed: ``gap`` names the range.
  Within one connection ids are not checked (the stream is the server's to order). With
  ``account_id`` set the ids a client sees skip the other accounts' events, so no gap can be
  told from a filter: ``gap_detection`` is off then.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Literal

from tradebus import times
from tradebus.adapters.base import BoundedSet
from tradebus.adapters.ttmt import wire
from tradebus.adapters.ttmt.normalize import BUILDERS
from tradebus.schemas.events import Event
from tradebus.sse import SSEMessage

# Below every eventId (a counter, never negative): no id seen yet.
NONE_YET: Final = -1


def int_id(value: str | None) -> int | None:
    """An eventId as the SSE ``id:`` field carries it, or None if it is not one."""
    if value is not None and value.isascii() and value.isdigit() and len(value) < 20:
        return int(value)
    return None


class Session:
    """One TTMT source's sequence across its connections."""

    __slots__ = (
        "control",
        "duplicates",
        "gap",
        "gap_detection",
        "highest",
        "problems",
        "resumed",
        "seen",
        "source",
        "start",
        "unknown",
    )

    def __init__(
        self,
        source: str,
        *,
        dedupe_size: int = 100_000,
        gap_detection: bool = True,
        start: Literal["earliest", "latest"] = "earliest",
    ) -> None:
        self.source = source
        self.gap_detection = gap_detection
        self.start = start
        self.seen: BoundedSet[int] = BoundedSet(dedupe_size)
        self.highest = NONE_YET  # the highest eventId seen, across connections
        self.resumed = False  # the next event with an id is the first after a resume
        # Notes of the reads since the adapter last took them.
        self.control: wire.Recycle | wire.AuthRevoked | None = None  # the stream ends
        self.gap: tuple[int, int] | None = None  # first and last id missing
        self.duplicates = 0
        self.problems: list[tuple[str, str, Exception]] = []  # bad input: kind, data, error
        self.unknown: list[str] = []  # event types this version does not know

    def resume_from(self, history: Sequence[Event]) -> int:
        """After a restart: the ids journaled are duplicates and the highest is the first
        Last-Event-ID. Returns how many ids the journal held."""
        ids: set[int] = set()
        skip = len(self.source) + 1
        for event in history:
            event_id = int_id(event.id[skip:].partition("#")[0])
            if event_id is not None:
                ids.add(event_id)
        if ids:
            self.highest = max(ids)
            self.seen.update(ids)
        return len(ids)

    @property
    def cursor(self) -> str:
        """The first Last-Event-ID: the highest id seen; with none, "0" asks for everything the
        upstream still buffers ("earliest"), "" only for what comes next ("latest")."""
        if self.highest != NONE_YET:
            return str(self.highest)
        return "0" if self.start == "earliest" else ""

    def connected(self) -> None:
        self.control = None
        self.resumed = self.highest != NONE_YET

    def read(
        self,
        messages: Sequence[SSEMessage],
        received: str,
        refused: times.Refusals,
        events: list[Event],
        fresh: set[int],
    ) -> None:
        """The events of one read's messages, appended to ``events``; the ids they carry go to
        ``fresh`` (into ``seen`` once published). Bad input, a gap and a control frame are noted.

        The loop is the hot path: one decode, one dedupe lookup and one normalize per message;
        everything rare (a resume, control frames, bad input) leaves it through a method call.
        """
        young, old = self.seen.generations()  # nothing is marked seen until the read is out
        source = self.source
        highest = self.highest
        decode = wire.decode_known
        for message in messages:
            try:
                decoded = decode(message.data)
            except Exception as exc:  # noqa: BLE001 - whatever one message raises is its own fault
                self._undecodable(message.data, exc)
                highest = self._track(int_id(message.id), highest)
                continue
            builder = BUILDERS[type(decoded)]
            if builder is None:
                self.control = decoded  # type: ignore[assignment]
                continue
            # Only control frames may lack an eventId, and they have no builder.
            event_id: int = decoded.event_id  # type: ignore[assignment]
            if self.resumed:
                self._first_after_resume(event_id, highest)
            if event_id > highest:  # noqa: PLR1730 - cheaper than a max() call per event
                highest = event_id
            if event_id in young or event_id in old or event_id in fresh:
                self.duplicates += 1
                continue
            try:
                events += builder(decoded, source, received, refused)
            except Exception as exc:  # noqa: BLE001 - a normalizer's refusal is the message's fault
                self.problems.append(("malformed", message.data, exc))
                continue
            fresh.add(event_id)
        self.highest = highest

    def _undecodable(self, data: str, exc: Exception) -> None:
        name = wire.unknown_type(data, exc)
        if name is not None:
            self.unknown.append(name)
        else:
            self.problems.append(("malformed", data, exc))

    def _track(self, event_id: int | None, highest: int) -> int:
        """The highest id once ``event_id`` (if any) is seen; a gap check if it is the first."""
        if event_id is None:
            return highest
        if self.resumed:
            self._first_after_resume(event_id, highest)
        return max(event_id, highest)

    def _first_after_resume(self, event_id: int, highest: int) -> None:
        """An id past the highest seen + 1: the replay buffer no longer held what we missed."""
        self.resumed = False
        if event_id > highest + 1 and self.gap_detection:
            self.gap = (highest + 1, event_id - 1)
