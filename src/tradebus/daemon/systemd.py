"""sd_notify: tell systemd (``Type=notify``) when the daemon is ready and when it is stopping.

The protocol is one datagram of ``KEY=VALUE`` lines to the AF_UNIX socket named by
``$NOTIFY_SOCKET`` (an ``@`` prefix means the abstract namespace). Without that variable, or if
the send fails, nothing happens: notification must never stop the daemon.
"""

from __future__ import annotations

import os
import socket

from tradebus import log


def notify(state: str, environ: dict[str, str] | None = None) -> bool:
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
