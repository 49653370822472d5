"""sd_notify and the watchdog over a real AF_UNIX datagram socket, the test playing systemd."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from tradebus import config
from tradebus.daemon import systemd
from tradebus.daemon.app import serve


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


def test_watchdog_interval_is_half_of_watchdog_usec() -> None:
    """WATCHDOG_USEC=30 s gives a ping every 15 s; another process's WATCHDOG_PID gives none."""
    assert systemd.watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    pid = str(os.getpid())
    assert systemd.watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": pid}) == 15.0
    assert systemd.watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert systemd.watchdog_interval({}) is None
    assert systemd.watchdog_interval({"WATCHDOG_USEC": "0"}) is None


async def _datagrams(sock: socket.socket, until: Callable[[list[str]], bool]) -> list[str]:
    loop = asyncio.get_running_loop()
    got: list[str] = []
    while not until(got):
        got.append((await asyncio.wait_for(loop.sock_recv(sock, 4096), 10)).decode())
    return got


async def test_keepalive_pings_and_refreshes_the_status(tmp_path: Path) -> None:
    """Pings come at half the watchdog period; STATUS= is refreshed on its own period."""
    path = str(tmp_path / "notify")
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "40000"}
    calls = iter(range(1, 1000))
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        server.setblocking(False)
        task = asyncio.create_task(
            systemd.keepalive(lambda: f"n={next(calls)}", environ=env, status_every=0.1)
        )
        try:
            got = await _datagrams(server, lambda g: sum("STATUS=" in d for d in g) >= 2)
        finally:
            task.cancel()
    assert all(d.startswith("WATCHDOG=1") for d in got)
    statuses = [d.split("STATUS=")[1] for d in got if "STATUS=" in d]
    assert statuses == ["n=1", "n=2"]
    assert len(got) >= 6  # 0.02 s pings between 0.1 s status refreshes


async def test_the_daemon_speaks_to_systemd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Playing systemd: READY=1 with a STATUS summary, periodic WATCHDOG=1, then STOPPING=1."""
    path = str(tmp_path / "notify")
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "50000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    cfg = config.parse(
        {
            "sources": [
                # Nothing listens there: the source stays disconnected, the daemon runs on.
                {"name": "t", "type": "ttmt", "url": "http://127.0.0.1:1/s", "api_key": "k"}
            ],
            "sinks": [{"name": "f", "type": "file", "path": str(tmp_path / "out.jsonl")}],
            # Not the default /var/lib/tradebus, which a user other than root cannot write.
            "daemon": {"state_dir": str(tmp_path / "state")},
        },
        env={},
    )
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        server.setblocking(False)
        running = asyncio.create_task(serve(cfg))
        got = await _datagrams(server, lambda g: sum(d == "WATCHDOG=1" for d in g) >= 3)
        os.kill(os.getpid(), signal.SIGTERM)
        got += await _datagrams(server, lambda g: any("STOPPING=1" in d for d in g))
        assert await asyncio.wait_for(running, 10) == 0
    ready = got[0].split("\n")
    assert ready[0] == "READY=1"
    assert ready[1] == "STATUS=0/1 sources connected, 1 sinks, 0 ev/s"
    assert ready[2] == f"MAINPID={os.getpid()}"
    assert got[-1] == "STOPPING=1\nSTATUS=draining sinks"
