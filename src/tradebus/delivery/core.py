"""Every configured sink as a follower of one journal; the cursors are saved here.

``Delivery`` is the same object in the delivery process and inline in the daemon: the daemon's
watermarks come in through ``advance``, the sinks' state goes out through ``snapshot``, and a
dead letter through the ``dead_letter`` callback it was given.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from tradebus import log
from tradebus.config import SinkConfig, WebhookSinkConfig, kind
from tradebus.delivery.follower import Follower
from tradebus.delivery.tail import JournalTail
from tradebus.delivery.wire import SinkSnapshot, Watermark
from tradebus.journal import cursors
from tradebus.journal.store import event_id_at
from tradebus.sinks.base import Sink, SinkContext
from tradebus.sinks.base import factory_for as sink_factory_for

# Cursors are saved at most this often (and at the end): a crash replays at most that much,
# which every sink takes (at-least-once; the file sink skips what it has).
SAVE_EVERY = 0.1
# How long one sink's close may take at the end: a stalled disk or a hung peer is abandoned.
CLOSE_TIMEOUT = 2.0


class Delivery:
    """The followers of one state dir's journal, from the cursors saved there."""

    def __init__(
        self,
        state_dir: Path,
        sinks: Sequence[Sink],
        configs: Sequence[SinkConfig],
        *,
        durable: bool = True,
        dead_letter: Callable[[str, str], None] | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.tail = JournalTail(state_dir / "journal")
        self.sinks = list(sinks)
        self.configs = list(configs)
        self.durable = durable
        self.followers: list[Follower] = []
        self._dead_letter = dead_letter
        self._log: Any = log.get()
        saved, problem = cursors.load(state_dir)
        if problem is not None:
            self._log.error("cursors_unreadable", problem=problem)
        self._saved = saved
        names = {c.name for c in configs}
        # Cursors of sinks not in this config stay on record as they are: a sink taken out for
        # a while resumes where it was.
        self._other = {k: v for k, v in saved.items() if k not in names}
        self._tasks: list[asyncio.Task[None]] = []
        self._chores: asyncio.Task[None] | None = None
        self._on_record: dict[str, tuple[int, str | None]] = {}

    def start(self, mark: Watermark) -> None:
        """Start every follower from its cursor; a sink new to this state dir starts at the
        journal's end (what it is given from now on, not the history of other sinks)."""
        self.tail.advance(mark)
        last = mark.end_seq - 1
        journal_dir = self.tail.dir
        for sink, config in zip(self.sinks, self.configs, strict=True):
            entry = self._saved.get(config.name)
            cursor = min(entry.seq, last) if entry is not None else last
            context = SinkContext(
                state_dir=self.state_dir,
                dead_letter=partial(self._report, config.name),
                event_id_at=partial(event_id_at, journal_dir),
            )
            linger = config.batch_linger_ms / 1000 if isinstance(config, WebhookSinkConfig) else 0.0
            follower = Follower(sink, config, self.tail, cursor, context, linger=linger)
            self.followers.append(follower)
            self._tasks.append(asyncio.create_task(follower.run(), name=f"sink:{config.name}"))
        # Put where the new sinks begin on record now, or a crash before their first write
        # would have them begin later still.
        self._save()
        self._chores = asyncio.create_task(self._keep(), name="cursors")

    def advance(self, mark: Watermark) -> None:
        self.tail.advance(mark)

    def reopen(self) -> None:
        for sink in self.sinks:
            sink.reopen()

    def snapshot(self) -> list[SinkSnapshot]:
        return [f.snapshot() for f in self.followers]

    def _report(self, sink: str, message: str) -> None:
        if self._dead_letter is not None:
            self._dead_letter(sink, message)

    # --- cursors ------------------------------------------------------------------------

    def entries(self) -> dict[str, cursors.CursorEntry]:
        now = int(time.time() * 1000)
        entries = dict(self._other)
        for f in self.followers:
            entries[f.name] = cursors.CursorEntry(seq=f.cursor, updated_ms=now, error=f.error)
        return entries

    def _save(self) -> None:
        cursors.save(self.state_dir, self.entries(), durable=self.durable)
        self._on_record = self._current()

    def _current(self) -> dict[str, tuple[int, str | None]]:
        # A new error is saved too, so `tradebus journal` shows why a sink stands still.
        return {f.name: (f.cursor, f.error) for f in self.followers}

    async def _keep(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(SAVE_EVERY)
            self.tail.marks.prune(min((f.cursor for f in self.followers), default=0) + 1)
            if self._current() == self._on_record:
                continue
            try:
                # fsync takes milliseconds: on a thread, so no sink waits for it.
                await loop.run_in_executor(None, self._save)
            except OSError as exc:
                self._log.warning("cursor_save_failed", error=exc.strerror or str(exc))

    # --- the end ------------------------------------------------------------------------

    async def drain(
        self, timeout: float, *, close_timeout: float = CLOSE_TIMEOUT
    ) -> dict[str, int]:
        """Let every sink write what the journal holds, close them and save the cursors, all
        within ``timeout`` (the closes get the last ``close_timeout`` of it, a quarter at
        most). What each sink had left (events not acknowledged) is returned: safe in the
        journal, it goes out after the next start."""
        close_timeout = min(close_timeout, timeout / 4)
        for f in self.followers:
            f.end()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=timeout - close_timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._chores is not None:
            self._chores.cancel()
            await asyncio.gather(self._chores, return_exceptions=True)
        await asyncio.gather(*(self._close(s, close_timeout) for s in self.sinks))
        try:
            self._save()
        except OSError as exc:
            self._log.error("cursor_save_failed", error=exc.strerror or str(exc))
        end = self.tail.end_seq - 1
        return {f.name: max(0, end - f.cursor) for f in self.followers if f.cursor < end}

    async def _close(self, sink: Sink, timeout: float) -> None:
        try:
            await asyncio.wait_for(sink.close(), timeout)
        except TimeoutError:
            self._log.warning("sink_close_timed_out", sink=sink.name, timeout=timeout)
        except Exception as exc:  # noqa: BLE001 - one sink's close must not skip the others'
            with contextlib.suppress(Exception):
                self._log.warning("sink_close_failed", sink=sink.name, error=str(exc))


def build_sinks(configs: Sequence[SinkConfig]) -> list[Sink]:
    """The configured sinks, each made by the factory registered for its ``type``."""
    return [sink_factory_for(kind(c))(c) for c in configs]
