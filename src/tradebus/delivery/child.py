"""The delivery process: ``python -m tradebus.delivery.child FD``, started by the daemon.

It reads its instructions from the socket ``FD`` (see ``wire.py``) and runs every sink as a
follower of the journal. Signals are the daemon's to act on: SIGTERM or SIGINT sent to the
whole group (systemd's ``KillMode=control-group``, a Ctrl-C) is left for the daemon, which
drains delivery after its sources stopped. If the daemon dies, the socket closes: this process
writes what the journal already holds for at most ``ORPHAN_DRAIN`` seconds and exits, so no
orphan outlives it by more than a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import Any

from tradebus import log
from tradebus.delivery.core import Delivery, build_sinks
from tradebus.delivery.wire import (
    SNAPSHOT_EVERY,
    Advance,
    Channel,
    DeadLetter,
    Drain,
    Hello,
    Reconfigure,
    Reconfigured,
    Reopen,
    Snapshot,
    ToChild,
    decode_sinks,
)

ORPHAN_DRAIN = 0.4
ORPHAN_EXIT = 0.95  # a hard stop after the daemon is gone, whatever a sink is stuck in


async def serve(fd: int) -> int:
    sock = socket.socket(fileno=fd)
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    channel = Channel(reader, writer, ToChild)
    try:
        hello = await channel.receive()
        first = await channel.receive()
    except (asyncio.IncompleteReadError, ConnectionError):
        return 0  # the daemon went before it said anything
    if not isinstance(hello, Hello) or not isinstance(first, Advance):
        raise TypeError("the daemon's first messages were not Hello and Advance")
    log.configure(hello.log_level, fmt=hello.log_format)
    logger: Any = log.get(component="delivery")
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, lambda: None)  # the daemon decides (see the docstring)
    configs = decode_sinks(hello.sinks)
    delivery = Delivery(
        Path(hello.state_dir),
        build_sinks(configs),
        configs,
        durable=hello.durable,
        dead_letter=lambda sink, message: channel.send(DeadLetter(sink, message)),
    )
    delivery.start(first.mark)
    pid = os.getpid()

    async def report() -> None:
        while True:
            await asyncio.sleep(SNAPSHOT_EVERY)
            channel.send(Snapshot(pid, delivery.snapshot()))

    reporter = asyncio.create_task(report())
    reloads: set[asyncio.Task[None]] = set()
    try:
        while True:
            try:
                message = await channel.receive()
            except (asyncio.IncompleteReadError, ConnectionError):
                _exit_soon()
                left = await delivery.drain(ORPHAN_DRAIN)
                logger.warning("delivery_orphaned", left=left, note="the daemon is gone")
                return 0
            if isinstance(message, Advance):
                delivery.advance(message.mark)
            elif isinstance(message, Reopen):
                delivery.reopen()
            elif isinstance(message, Reconfigure):
                # A task: watermarks go on to the kept sinks while new ones open.
                task = asyncio.create_task(_reconfigure(delivery, channel, message, hello))
                reloads.add(task)
                task.add_done_callback(reloads.discard)
            elif isinstance(message, Drain):
                if reloads:
                    await asyncio.wait(reloads, timeout=message.timeout / 2)
                await delivery.drain(message.timeout)
                channel.send(Snapshot(pid, delivery.snapshot(), final=True))
                with contextlib.suppress(ConnectionError):
                    await channel.flush()
                return 0
    finally:
        reporter.cancel()
        channel.close()


async def _reconfigure(
    delivery: Delivery, channel: Channel, message: Reconfigure, hello: Hello
) -> None:
    log.configure(message.log_level, fmt=hello.log_format)
    try:
        problems = await delivery.reconfigure(decode_sinks(message.sinks), message.drain_timeout)
    except Exception as exc:  # noqa: BLE001 - reported, not swallowed
        # A bug: logged with its traceback; the daemon hears of it rather than wait.
        log.get(component="delivery").exception("reload_failed")
        problems = {"delivery": f"the reload failed: {type(exc).__name__}"}
    channel.send(Reconfigured(message.id, problems))


def _exit_soon() -> None:
    timer = threading.Timer(ORPHAN_EXIT, os._exit, (0,))
    timer.daemon = True
    timer.start()


def main(argv: list[str]) -> int:
    fd = int(argv[1])
    try:
        import uvloop
    except ImportError:
        return asyncio.run(serve(fd))
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(serve(fd))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
