"""The daemon's side of delivery: inline in its own loop, or a supervised process of its own.

Both say the same to the daemon: ``advance`` (where the journal ends now), ``reopen``
(SIGHUP), ``sinks`` (each sink's latest state), ``close`` (drain and stop; what each sink had
left). The process link restarts a delivery process that died (a crash, a segfault in a client
library, an OOM kill) after a backoff; the sources never notice, the journal holds everything,
and the sinks resume from their cursors.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import msgspec

from tradebus import log
from tradebus.backoff import Backoff, Failure, Kind
from tradebus.config import SinkConfig
from tradebus.delivery.core import Delivery
from tradebus.delivery.wire import (
    Advance,
    Channel,
    DeadLetter,
    Drain,
    Hello,
    Reconfigure,
    Reconfigured,
    Reopen,
    SinkSnapshot,
    Snapshot,
    ToParent,
    Watermark,
    encode_sinks,
)
from tradebus.journal import cursors

DeadLetterHook = Callable[[str, str], None]
# How long a reload waits for the delivery process to open its new sinks (each within
# ``Delivery.reconfigure``'s open timeout, twice for a replaced one).
RELOAD_TIMEOUT = 30.0


class DeliveryLink(Protocol):
    mode: str
    restarts: int

    @property
    def pid(self) -> int | None: ...

    @property
    def running(self) -> bool: ...

    def start(self, mark: Watermark) -> None: ...

    def advance(self, mark: Watermark) -> None: ...

    def reopen(self) -> None: ...

    async def reconfigure(
        self, configs: Sequence[SinkConfig], drain_timeout: float, log_level: str
    ) -> dict[str, str]: ...

    def sinks(self) -> list[SinkSnapshot]: ...

    async def close(self, mark: Watermark, timeout: float) -> dict[str, int]: ...


class InlineDelivery:
    """Delivery in the daemon's own loop: for embedding, and for a host with one core."""

    mode = "inline"
    restarts = 0

    def __init__(self, delivery: Delivery) -> None:
        self.delivery = delivery

    @property
    def pid(self) -> int | None:
        return os.getpid()

    @property
    def running(self) -> bool:
        return True

    def start(self, mark: Watermark) -> None:
        self.delivery.start(mark)

    def advance(self, mark: Watermark) -> None:
        self.delivery.advance(mark)

    def reopen(self) -> None:
        self.delivery.reopen()

    async def reconfigure(
        self, configs: Sequence[SinkConfig], drain_timeout: float, log_level: str
    ) -> dict[str, str]:
        del log_level  # the daemon's own, set by the daemon
        return await self.delivery.reconfigure(configs, drain_timeout)

    def sinks(self) -> list[SinkSnapshot]:
        return self.delivery.snapshot()

    async def close(self, mark: Watermark, timeout: float) -> dict[str, int]:
        self.delivery.advance(mark)
        return await self.delivery.drain(timeout)


class ProcessDelivery:
    """A delivery process, supervised: started, told where the journal ends, restarted with
    backoff when it dies, drained and stopped at the end."""

    mode = "process"

    def __init__(
        self,
        state_dir: Path,
        configs: Sequence[SinkConfig],
        *,
        log_level: str,
        log_format: str | None,
        durable: bool,
        dead_letter: DeadLetterHook,
    ) -> None:
        self.state_dir = state_dir
        self.configs = list(configs)
        self.restarts = 0
        self._hello = Hello(
            state_dir=str(state_dir),
            sinks=encode_sinks(self.configs),
            log_level=log_level,
            log_format=log_format,
            durable=durable,
        )
        self._dead_letter = dead_letter
        self._log: Any = log.get(component="delivery")
        self._mark = Watermark(0, 0, 0, 0.0)
        self._sent = self._mark
        self._proc: asyncio.subprocess.Process | None = None
        self._channel: Channel | None = None
        self._sending = False
        self._closing = False
        self._supervisor: asyncio.Task[None] | None = None
        self._final = asyncio.Event()
        self._up = asyncio.Event()  # set while a delivery process takes messages
        self._latest: dict[str, SinkSnapshot] = {}
        self._reload_id = 0
        self._replies: dict[int, asyncio.Future[dict[str, str]]] = {}
        self.backoff = Backoff(base=0.5, cap=30.0, stable_after=30.0)

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def running(self) -> bool:
        return self._channel is not None

    @property
    def closing(self) -> bool:
        return self._closing

    def start(self, mark: Watermark) -> None:
        self._mark = mark
        saved, _ = cursors.load(self.state_dir)
        last = mark.end_seq - 1
        for c in self.configs:
            entry = saved.get(c.name)
            cursor = min(entry.seq, last) if entry is not None else last
            self._latest[c.name] = SinkSnapshot(name=c.name, state="starting", cursor=cursor)
        if any(c.name not in saved and c.start == "latest" for c in self.configs):
            # A sink new to this state dir begins at the journal's end as the daemon starts,
            # not as its delivery process does: on record before either appends or starts.
            now = int(time.time() * 1000)
            for c in self.configs:
                if c.start == "latest":  # "earliest" is where the journal begins, whenever
                    saved.setdefault(c.name, cursors.CursorEntry(seq=last, updated_ms=now))
            cursors.save(self.state_dir, saved, durable=self._hello.durable)
        self._supervisor = asyncio.create_task(self._supervise(), name="delivery")

    def advance(self, mark: Watermark) -> None:
        """Note where the journal ends; it goes out once per turn of the loop, however many
        batches were appended in it."""
        self._mark = mark
        channel = self._channel
        if channel is None:
            return
        if not self._sending:
            # The first of a turn goes at once (latency); what follows in the same turn goes
            # as one message at its end (a busy turn appends many batches).
            channel.send(Advance(mark))
            self._sent = mark
            self._sending = True
            asyncio.get_running_loop().call_soon(self._send_mark)

    def _send_mark(self) -> None:
        self._sending = False
        if self._channel is not None and self._mark is not self._sent:
            self._channel.send(Advance(self._mark))
            self._sent = self._mark

    def reopen(self) -> None:
        if self._channel is not None:
            self._channel.send(Reopen())

    def sinks(self) -> list[SinkSnapshot]:
        return list(self._latest.values())

    async def reconfigure(
        self, configs: Sequence[SinkConfig], drain_timeout: float, log_level: str
    ) -> dict[str, str]:
        """Send the reloaded sinks and wait for what could not be applied. The ``Hello`` of a
        delivery process started later (after a crash) carries them too."""
        self.configs = list(configs)
        self._hello = msgspec.structs.replace(
            self._hello, sinks=encode_sinks(self.configs), log_level=log_level
        )
        for c in self.configs:
            if c.name not in self._latest:
                cursor = self._mark.end_seq - 1
                self._latest[c.name] = SinkSnapshot(name=c.name, state="starting", cursor=cursor)
        problems: dict[str, str] = {}
        channel = self._channel
        if channel is not None:
            self._reload_id += 1
            waiter = asyncio.get_running_loop().create_future()
            self._replies[self._reload_id] = waiter
            channel.send(Reconfigure(self._reload_id, self._hello.sinks, drain_timeout, log_level))
            try:
                # New sinks open within seconds (``Delivery.reconfigure``); a process that died
                # meanwhile starts again with the new Hello.
                problems = await asyncio.wait_for(waiter, RELOAD_TIMEOUT)
            except TimeoutError:
                problems = {
                    "delivery": f"no answer from the delivery process in {RELOAD_TIMEOUT:g}s"
                }
            finally:
                self._replies.pop(self._reload_id, None)
        names = {c.name for c in self.configs}
        for name in [n for n in self._latest if n not in names]:
            del self._latest[name]
        return problems

    # --- supervision --------------------------------------------------------------------

    async def _supervise(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self.backoff.connected(loop.time())
            code = await self._run_once()
            if self.closing:
                return
            self.backoff.disconnected(loop.time())
            self.restarts += 1
            delay = self.backoff.delay(Failure(Kind.RETRYABLE, "delivery_died"), floor=0.2)
            self._log.error(
                "delivery_died",
                exit=_describe(code),
                restarts=self.restarts,
                retry_in=round(delay, 3),
                note="sources go on; the journal holds every event; sinks resume from cursors",
            )
            for name, snap in self._latest.items():
                self._latest[name] = SinkSnapshot(
                    name=name, state="restarting", cursor=snap.cursor, written=snap.written
                )
            await asyncio.sleep(delay)

    async def _run_once(self) -> int | None:
        """Start a delivery process and serve it until it exits; its exit status."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tradebus.delivery.child",
                str(theirs.fileno()),
                pass_fds=(theirs.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
            )
        except OSError as exc:
            ours.close()
            self._log.error("delivery_start_failed", error=exc.strerror or str(exc))
            return None
        finally:
            theirs.close()
        self._proc = proc
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        channel = Channel(reader, writer, ToParent)
        channel.send(self._hello)
        channel.send(Advance(self._mark))
        self._channel = channel
        self._up.set()
        self._log.info("delivery_started", pid=proc.pid, sinks=[c.name for c in self.configs])
        listener = asyncio.create_task(self._listen(channel))
        try:
            return await proc.wait()
        finally:
            self._up.clear()
            self._channel = None
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
            channel.close()

    async def _listen(self, channel: Channel) -> None:
        while True:
            try:
                message = await channel.receive()
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            if isinstance(message, Snapshot):
                for snap in message.sinks:
                    self._latest[snap.name] = snap
                if message.final:
                    self._final.set()
            elif isinstance(message, DeadLetter):
                self._dead_letter(message.sink, message.message)
            elif isinstance(message, Reconfigured):
                waiter = self._replies.get(message.id)
                if waiter is not None and not waiter.done():
                    waiter.set_result(message.problems)

    # --- the end ------------------------------------------------------------------------

    async def close(self, mark: Watermark, timeout: float) -> dict[str, int]:
        """Drain up to ``timeout`` and stop; what each sink had left (from its last report)."""
        self._closing = True
        self._mark = mark
        if self._supervisor is not None and not self._supervisor.done():
            # A delivery process still starting (or due again after a backoff) is waited for:
            # a stop right after the start still delivers what was journaled.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._up.wait(), timeout)
        proc, channel = self._proc, self._channel
        if proc is not None and channel is not None:
            channel.send(Advance(mark))
            channel.send(Drain(timeout))
            with contextlib.suppress(ConnectionError):
                await channel.flush()
            # Its own bound is ``timeout``, closes included: past that (and its exit) it is stuck.
            limit = timeout + 1.0
            try:
                await asyncio.wait_for(proc.wait(), limit)
            except TimeoutError:
                self._log.error("delivery_stop_timed_out", pid=proc.pid, waited=limit)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
        end = mark.end_seq - 1
        return {s.name: end - s.cursor for s in self._latest.values() if s.cursor < end}


def _describe(code: int | None) -> str:
    if code is None:
        return "not started"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit status {code}"


def now_mark(end_seq: int, segment: int, size: int) -> Watermark:
    return Watermark(end_seq, segment, size, time.time())
