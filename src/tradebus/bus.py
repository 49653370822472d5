"""The bus: one ordered stream. It numbers events, encodes them once and journals them.

``publish`` numbers a batch (``seq``, strictly increasing, never reused across restarts),
encodes it to JSON lines once and appends it to the journal; then it tells delivery how far
the journal may be read (``on_append``, a ``Watermark``). With ``fsync = "always"`` that is
only once the batch is synced. Sources never wait for a sink: the journal is the buffer, and
the only brake is a full disk, where ``publish`` waits until the journal can be written again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import msgspec

from tradebus import log
from tradebus.backoff import Backoff, Failure, Kind
from tradebus.delivery.wire import Watermark
from tradebus.journal.store import Journal
from tradebus.schemas.events import Event

_set_seq = msgspec.structs.force_setattr
# Chores: fsync (policy "interval") at most this often; retention now and then.
SYNC_INTERVAL = 0.1
RETENTION_INTERVAL = 5.0


class Bus:
    """Sequencing, encode-once and the journal append; ``on_append`` hears where it ends."""

    def __init__(
        self,
        journal: Journal,
        *,
        on_append: Callable[[Watermark], None] = lambda _mark: None,
        cursors: Callable[[], dict[str, int]] = dict,
        retention_bytes: int = 1 << 30,
        retention_age: float = 7 * 86400.0,
    ) -> None:
        self.journal = journal
        self.on_append = on_append
        self.cursors = cursors  # every sink's cursor: retention keeps what they have not read
        self.published = 0
        self.retention_bytes = retention_bytes
        self.retention_age = retention_age
        self.append_failures = 0
        self.forced_drops = 0
        self._encoder = msgspec.json.Encoder()
        self._chores: asyncio.Task[None] | None = None
        self._closed = False
        self._stuck = asyncio.Lock()  # held while an append is being retried (disk full)
        self._log: Any = log.get()
        self._last_failure_log = -1e9

    @property
    def last_seq(self) -> int:
        return self.journal.last_seq

    def watermark(self) -> Watermark:
        """Where the journal ends now: what a follower may read."""
        path, size = self.journal.position
        return Watermark(self.journal.next_seq, int(path.stem), size, time.time())

    async def start(self) -> None:
        self._chores = asyncio.create_task(self._keep(self.journal), name="journal")

    async def publish(self, events: Sequence[Event]) -> None:
        """Number ``events``, encode them once, journal them, and tell delivery."""
        if not events or self._closed:
            return
        journal = self.journal
        if self._stuck.locked() or journal.fsync == "always":
            async with self._stuck:
                await self._append_retrying(journal, events)
        else:
            try:
                self._append(journal, events)
            except OSError as exc:
                async with self._stuck:
                    self._note_append_failure(exc)
                    await self._append_retrying(journal, events)
        self.on_append(self.watermark())

    def _append(self, journal: Journal, events: Sequence[Event]) -> None:
        seq = first = journal.next_seq
        for event in events:
            _set_seq(event, "seq", seq)
            seq += 1
        journal.append((self._encoder.encode_lines(events),), seq - first, int(time.time() * 1000))
        self.published += seq - first

    async def _append_retrying(self, journal: Journal, events: Sequence[Event]) -> None:
        """Append, waiting out a full disk: sources wait here (so they stop reading) and go on
        by themselves when space frees. Nothing is dropped."""
        backoff = Backoff(base=0.1, cap=5.0)
        while True:
            try:
                self._append(journal, events)
            except OSError as exc:
                self._note_append_failure(exc)
                await asyncio.sleep(backoff.delay(Failure(Kind.RETRYABLE, "append"), floor=0.05))
                continue
            if journal.fsync == "always":
                await asyncio.get_running_loop().run_in_executor(None, journal.sync)
            return

    def _note_append_failure(self, exc: OSError) -> None:
        self.append_failures += 1
        now = time.monotonic()
        if now - self._last_failure_log >= 60:
            self._last_failure_log = now
            self._log.error(
                "journal_append_failed",
                error=exc.strerror or str(exc),
                failures=self.append_failures,
                note="sources wait until the journal can be written again",
            )

    async def _keep(self, journal: Journal) -> None:
        """fsync (policy "interval") and retention, off the publish path."""
        loop = asyncio.get_running_loop()
        next_retention = loop.time()
        while True:
            await asyncio.sleep(SYNC_INTERVAL)
            try:
                if journal.fsync == "interval" and journal.dirty:
                    await loop.run_in_executor(None, journal.sync)
                if loop.time() >= next_retention:
                    next_retention = loop.time() + RETENTION_INTERVAL
                    self._retain(journal)
            except OSError as exc:
                self._log.warning("journal_chore_failed", error=exc.strerror or str(exc))

    def _retain(self, journal: Journal) -> None:
        cursors = self.cursors()
        low = min(cursors.values(), default=journal.last_seq)
        loop = asyncio.get_running_loop()

        def delete(path: Path) -> None:
            # Freeing a 64 MiB file's pages takes the kernel milliseconds: off the loop.
            loop.run_in_executor(None, partial(path.unlink, missing_ok=True))

        for drop in journal.enforce_retention(
            low, self.retention_bytes, self.retention_age, time.time(), delete=delete
        ):
            if drop.forced:
                self.forced_drops += 1
                self._log.warning(
                    "journal_retention_forced",
                    first=drop.first,
                    last=drop.last,
                    behind=[name for name, seq in cursors.items() if seq < drop.last],
                )

    async def close(self) -> None:
        """No more appends; the chores stop and the journal is synced and closed."""
        self._closed = True
        if self._chores is not None:
            self._chores.cancel()
            await asyncio.gather(self._chores, return_exceptions=True)
        self.journal.close()
