"""A sink's own I/O thread: blocking writes happen there, never on the event loop.

A stdout reader that stops reading, or a disk that stalls, then blocks this thread and the one
sink task awaiting it: every source and every other sink goes on. The thread is a daemon
thread, so a write that never returns (a reader gone for good) cannot hold the process at exit;
the sink's own close bounds how long it waits.

A call given a timeout stops being waited for once it passed, but it still runs (a thread blocked
in a system call cannot be interrupted): a sink whose every change of state happens in calls on
this thread, in order, stays consistent whichever of them the loop stopped waiting for.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
_Job = tuple[Callable[[], Any], asyncio.AbstractEventLoop, "asyncio.Future[Any]"]


class WriterThread:
    def __init__(self, name: str) -> None:
        self._name = name
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def _ensure(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    async def call(self, fn: Callable[[], T], timeout: float | None = None) -> T:
        """Run ``fn`` on the thread, after every call before it; its result or its exception.

        With ``timeout``: ``TimeoutError`` once that many seconds passed (``fn`` still runs,
        later, and what it returns is dropped)."""
        self._ensure()
        loop = asyncio.get_running_loop()
        done: asyncio.Future[T] = loop.create_future()
        self._jobs.put((fn, loop, done))
        if timeout is None:
            return await done
        return await asyncio.wait_for(done, timeout)

    async def close(self, fn: Callable[[], object], timeout: float) -> bool:
        """Run ``fn`` as the last call, then let the thread end. False if it did not run within
        ``timeout``: an earlier call is still blocked, and ``fn`` runs once that one returns."""
        try:
            await self.call(fn, timeout)
        except TimeoutError:
            return False
        finally:
            self.stop()
        return True

    def stop(self) -> None:
        """Let the thread end after the calls already queued."""
        if self._thread is not None:
            self._jobs.put(None)
            self._thread = None

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            fn, loop, done = job
            try:
                result = fn()
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task as is
                _deliver(loop, done, None, exc)
            else:
                _deliver(loop, done, result, None)


def _deliver(
    loop: asyncio.AbstractEventLoop,
    done: asyncio.Future[Any],
    result: Any,
    exc: BaseException | None,
) -> None:
    def settle() -> None:
        if done.cancelled():
            return
        if exc is not None:
            done.set_exception(exc)
        else:
            done.set_result(result)

    with contextlib.suppress(RuntimeError):  # the loop closed while we wrote: nobody waits
        loop.call_soon_threadsafe(settle)
