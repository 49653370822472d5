"""sd_notify over a real AF_UNIX datagram socket."""

from __future__ import annotations

import socket
from pathlib import Path

from tradebus.daemon import systemd


def test_notify_sends_the_state_to_the_notify_socket(tmp_path: Path) -> None:
    """With $NOTIFY_SOCKET set, the state arrives there as one datagram."""
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        assert systemd.notify("READY=1\nSTATUS=ok", {"NOTIFY_SOCKET": path})
        assert server.recv(4096) == b"READY=1\nSTATUS=ok"


def test_notify_without_socket_is_a_no_op() -> None:
    """Outside systemd nothing is sent and nothing fails."""
    assert not systemd.notify("READY=1", {})


def test_notify_to_a_missing_socket_does_not_raise(tmp_path: Path) -> None:
    """A socket that went away is logged, not raised: notification never stops the daemon."""
    assert not systemd.notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "absent")})
