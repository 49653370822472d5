"""Every configured sink as a follower of one journal; the cursors are saved here.

``Delivery`` is the same object in the delivery process and inline in the daemon: the daemon's
watermarks come in through ``advance``, the sinks' state goes out through ``snapshot``, and a
dead letter through the ``dead_letter`` callback it was given.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from tradebus import log
from tradebus.config import SinkConfig, kind
from tradebus.delivery.follower import Follower
from tradebus.delivery.tail import JournalTail
from tradebus.delivery.wire import SinkSnapshot, Watermark
from tradebus.errors import FatalSinkError, RetryableSinkError
from tradebus.journal import cursors
from tradebus.journal.store import event_id_at
from tradebus.plugin import sink_factory
from tradebus.sinks.base import Sink, SinkContext

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
        self._save_lock = threading.Lock()
        self._draining: list[Follower] = []  # removed by a reload, writing what they have
        self._removals: set[asyncio.Task[None]] = set()

    def start(self, mark: Watermark) -> None:
        """Start every follower from its cursor; a sink new to this state dir starts at the
        journal's end (what it is given from now on, not the history of other sinks)."""
        self.tail.advance(mark)
        for sink, config in zip(self.sinks, self.configs, strict=True):
            self._follow(sink, config, self._first_cursor(config, self._saved.get(config.name)))
        # Put where the new sinks begin on record now, or a crash before their first write
        # would have them begin later still.
        self._save()
        self._chores = asyncio.create_task(self._keep(), name="cursors")

    def _first_cursor(self, config: SinkConfig, entry: cursors.CursorEntry | None) -> int:
        """Where a sink begins: its cursor on record, else the journal's end (or, with
        ``start = "earliest"``, just before the first seq the journal still holds)."""
        last = self.tail.end_seq - 1
        if entry is not None:
            return min(entry.seq, last)
        if config.start == "earliest":
            self.tail.refresh()
            segments = self.tail.view().segments
            return segments[0].first_seq - 1 if segments else last
        return last

    def _context(self, name: str) -> SinkContext:
        return SinkContext(
            state_dir=self.state_dir,
            dead_letter=partial(self._report, name),
            event_id_at=partial(event_id_at, self.tail.dir),
        )

    def _follow(self, sink: Sink, config: SinkConfig, cursor: int, *, opened: bool = False) -> None:
        follower = Follower(
            sink,
            config,
            self.tail,
            cursor,
            self._context(config.name),
            opened=opened,
        )
        self.followers.append(follower)
        self._tasks.append(asyncio.create_task(follower.run(), name=f"sink:{config.name}"))

    # --- reload -------------------------------------------------------------------------

    async def reconfigure(
        self, configs: Sequence[SinkConfig], drain_timeout: float, *, open_timeout: float = 5.0
    ) -> dict[str, str]:
        """Follow ``configs`` from now on, by difference; what could not be applied, by sink.

        An unchanged sink is not touched. A new or changed one is built and opened first; a
        changed one then replaces the old, from the old one's cursor. If the new one cannot
        open while the old holds what it needs (a file's lock), the old stops first, and if
        the new still cannot open the old starts again: it keeps running, and the reason is
        returned. A removed sink drains in the background within ``drain_timeout``; its
        cursor stays on record.
        """
        running = {c.name: c for c in self.configs}
        wanted = {c.name: c for c in configs}
        problems: dict[str, str] = {}
        for name in [n for n in running if n not in wanted]:
            self._background(self._remove(name, drain_timeout))
        for name, config in wanted.items():
            old = running.get(name)
            if old == config:
                continue
            problem = await (
                self._add(config, open_timeout)
                if old is None
                else self._replace(old, config, open_timeout)
            )
            if problem is not None:
                problems[name] = problem
                self._log.error("sink_reload_failed", sink=name, error=problem)
        self._save()
        return problems

    async def _open(self, sink: Sink, timeout: float) -> str | None:
        """Open ``sink``; None, or why it cannot."""
        try:
            await asyncio.wait_for(sink.open(self._context(sink.name)), timeout)
        except TimeoutError:
            await self._close(sink, CLOSE_TIMEOUT)
            return f"sink {sink.name}: no answer at open in {timeout:g}s"
        except (RetryableSinkError, FatalSinkError) as exc:
            await self._close(sink, CLOSE_TIMEOUT)
            return str(exc)
        return None

    async def _add(self, config: SinkConfig, open_timeout: float) -> str | None:
        sink = build_sinks([config])[0]
        problem = await self._open(sink, open_timeout)
        cursor = self._first_cursor(config, self._other.pop(config.name, None))
        # Added all the same: it retries its open on its own, and readiness shows it failing.
        self._follow(sink, config, cursor, opened=problem is None)
        self.sinks.append(sink)
        self.configs.append(config)
        return problem

    async def _replace(
        self, old: SinkConfig, config: SinkConfig, open_timeout: float
    ) -> str | None:
        sink = build_sinks([config])[0]
        problem = await self._open(sink, open_timeout)
        cursor = await self._stop(old.name)
        if problem is not None:
            # What the old one holds (a file's lock, a port) may be why: it stops, then retry.
            sink = build_sinks([config])[0]
            problem = await self._open(sink, open_timeout)
        if problem is not None:
            sink, config = build_sinks([old])[0], old
        self._follow(sink, config, cursor, opened=problem is None)
        self.sinks.append(sink)
        self.configs.append(config)
        return problem

    async def _stop(self, name: str, timeout: float = 2.0) -> int:
        """Stop a sink's follower after its write in flight and close the sink; its cursor."""
        i = next(i for i, f in enumerate(self.followers) if f.name == name)
        follower, task = self.followers.pop(i), self._tasks.pop(i)
        sink = self.sinks.pop(i)
        del self.configs[i]
        follower.stop()
        done, _ = await asyncio.wait([task], timeout=timeout)
        if not done:
            task.cancel()  # a write that hangs: it goes again from the cursor (at-least-once)
        await asyncio.gather(task, return_exceptions=True)
        await self._close(sink, CLOSE_TIMEOUT)
        return follower.cursor

    async def _remove(self, name: str, timeout: float) -> None:
        """Drain a removed sink within ``timeout``; its cursor stays on record."""
        i = next(i for i, f in enumerate(self.followers) if f.name == name)
        follower, task = self.followers.pop(i), self._tasks.pop(i)
        sink = self.sinks.pop(i)
        del self.configs[i]
        # On record as it moves, among the sinks not in the config.
        self._draining.append(follower)
        follower.end(self.tail.end_seq)
        close_timeout = min(CLOSE_TIMEOUT, timeout / 4)
        done, _ = await asyncio.wait([task], timeout=timeout - close_timeout)
        if not done:
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await self._close(sink, close_timeout)
        self._draining.remove(follower)
        now = int(time.time() * 1000)
        self._other[name] = cursors.CursorEntry(
            seq=follower.cursor, updated_ms=now, error=follower.error
        )
        self._log.info("sink_removed", sink=name, cursor=follower.cursor)

    def _background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._removals.add(task)
        task.add_done_callback(self._removals.discard)

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
        for f in (*self._draining, *self.followers):
            entries[f.name] = cursors.CursorEntry(seq=f.cursor, updated_ms=now, error=f.error)
        return entries

    def _save(self) -> None:
        # The chore saves on a thread while a reload may save from the loop: one at a time,
        # or one would replace the other's temporary file under it.
        with self._save_lock:
            cursors.save(self.state_dir, self.entries(), durable=self.durable)
        self._on_record = self._current()

    def _current(self) -> dict[str, tuple[int, str | None]]:
        # A new error is saved too, so `tradebus journal` shows why a sink stands still.
        return {f.name: (f.cursor, f.error) for f in (*self._draining, *self.followers)}

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
        if self._removals:  # sinks a reload removed: they had their own drain_timeout
            await asyncio.wait(self._removals, timeout=timeout)
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
    return [sink_factory(kind(c))(c) for c in configs]
