"""sd_notify: tell systemd (``Type=notify``) when the daemon is ready and when it is stopping.

The protocol is one datagram of ``KEY=VALUE`` lines to the AF_UNIX socket named by
``$NOTIFY_SOCKET`` (an ``@`` prefix means the abstract namespace). Without that variable, or if
the send fails, nothing happens: notification must never stop the daemon.

With ``WatchdogSec=`` in the unit, systemd sets ``$WATCHDOG_USEC`` and restarts the service when
``WATCHDOG=1`` stops arriving; ``keepalive`` sends it from a task on the event loop, so a loop
that is stuck (a blocking call, a busy loop) stops the pings and gets the restart.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable, Mapping

from tradebus import log


def notify(state: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send ``state`` (e.g. ``"READY=1"``) to the service manager; True if it was sent."""
    path = (environ if environ is not None else os.environ).get("NOTIFY_SOCKET")
    if not path:
        return False
    address = "\0" + path[1:] if path.startswith("@") else path
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as exc:
        log.get().warning("sd_notify_failed", state=state, error=str(exc))
        return False
    return True


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between ``WATCHDOG=1`` pings (half of ``$WATCHDOG_USEC``), or None if unwatched."""
    env = os.environ if environ is None else environ
    usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID")
    # sd_watchdog_enabled(3): a WATCHDOG_PID naming another process means the ping is not ours.
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2_000_000


async def keepalive(
    status: Callable[[], str],
    *,
    environ: Mapping[str, str] | None = None,
    status_every: float = 5.0,
) -> None:
    """Until cancelled: ``WATCHDOG=1`` at half the watchdog period, ``STATUS=`` every
    ``status_every`` seconds (a ping may come more often than needed, never less)."""
    loop = asyncio.get_running_loop()
    interval = watchdog_interval(environ)
    tick = status_every if interval is None else min(interval, status_every)
    next_status = loop.time() + status_every
    while True:
        await asyncio.sleep(tick)
        lines = [] if interval is None else ["WATCHDOG=1"]
        if loop.time() >= next_status - tick / 10:
            next_status = loop.time() + status_every
            lines.append(f"STATUS={status()}")
        if lines:
            notify("\n".join(lines), environ)
