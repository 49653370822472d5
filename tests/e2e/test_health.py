"""`tradebus health` and `tradebus status` against a real daemon's ops endpoint, and against
nothing at all."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.process import Daemon, run_cli, start_daemon, write_config
from tests.unit.test_container import healthcheck_argv
from tradebus.schemas.events import event_type
from tradebus.simulators.base import Simulator


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port bound but not listening: a connection to it is refused, for as long as it lasts."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


async def ops_url(daemon: Daemon) -> str:
    listening = await daemon.wait_log("ops_endpoint_listening")
    return f"http://127.0.0.1:{listening['port']}"


async def stop(daemon: Daemon) -> None:
    daemon.proc.send_signal(signal.SIGTERM)
    await asyncio.wait_for(daemon.proc.communicate(), 20)
    assert daemon.proc.returncode == 0


async def test_health_is_0_for_a_ready_daemon(tmp_path: Path, simulators: list[Simulator]) -> None:
    """Once every source is connected, both `health` and `health --ready` exit 0."""
    daemon = await start_daemon(write_config(tmp_path, simulators, 'http = "127.0.0.1:0"\n'))
    url = await ops_url(daemon)
    connected: set[str] = set()
    while connected != {"src0", "src1"}:  # stdout is the console sink: it wrote these
        for event in await daemon.read_events(1):
            if event_type(event) == "status.connected":
                connected.add(event.source)
    code, out, err = await run_cli("health", "--ready", "--url", url)
    assert (code, out, err) == (0, b"ok: /readyz answered 200\n", b"")
    code, out, _ = await run_cli("status", "--url", url, "--interval", "0.3")
    assert code == 0
    rows = {line.split()[0]: line.split() for line in out.decode().splitlines()}
    assert rows["src0"][1] == rows["src1"][1] == "connected"
    assert float(rows["src0"][2]) >= 0  # a rate, from two readings
    assert rows["archive"][1] == rows["console"][1] == "writing"
    assert out.decode().splitlines()[-1] == "ready"  # stdout is a pipe: no colour
    # The image's HEALTHCHECK, word for word but for the port this daemon got.
    argv = [url if a == "http://127.0.0.1:9464" else a for a in healthcheck_argv()[1:]]
    assert url in argv
    code, out, _ = await run_cli(*argv)
    assert (code, out) == (0, b"ok: /healthz answered 200\n")
    await stop(daemon)


async def test_health_ready_is_1_while_a_source_is_down(tmp_path: Path, closed_port: int) -> None:
    """A required source that cannot connect: alive (`health` 0) but not ready (`--ready` 1)."""
    path = tmp_path / "tradebus.toml"
    path.write_text(
        f'[daemon]\nhttp = "127.0.0.1:0"\nstate_dir = "{tmp_path / "state"}"\n'
        f'[[sources]]\nname = "down"\ntype = "ttmt"\nurl = "http://127.0.0.1:{closed_port}/s"\n'
        'api_key = "${KEY}"\n[[sinks]]\nname = "out"\ntype = "stdout"\n'
    )
    daemon = await start_daemon(path, {"KEY": "k-live-123456"})
    url = await ops_url(daemon)
    code, out, err = await run_cli("health", "--ready", "--url", url)
    assert (code, out, err) == (1, b"", b"unhealthy: /readyz answered 503\n")
    code, _, _ = await run_cli("health", "--url", url)
    assert code == 0
    code, out, _ = await run_cli("status", "--url", url, "--interval", "0")
    assert code == 1
    rows = {line.split()[0]: line.split() for line in out.decode().splitlines()}
    assert rows["down"][1:3] == ["down", "-"]
    assert out.decode().splitlines()[-1] == "NOT READY"
    await stop(daemon)


async def test_health_is_1_with_a_clear_message_when_nothing_listens(closed_port: int) -> None:
    """A refused connection is exit 1 and one line that says where and why."""
    url = f"http://127.0.0.1:{closed_port}"
    code, out, err = await run_cli("health", "--url", url)
    assert (code, out) == (1, b"")
    assert err.decode() == f"unhealthy: {url}/healthz: Connection refused\n"
    code, out, err = await run_cli("status", "--url", url)
    assert (code, out) == (1, b"")
    assert err.decode() == f"tradebus status: {url}/readyz: Connection refused\n"


async def test_health_times_out_on_a_silent_endpoint() -> None:
    """An endpoint that accepts but never answers fails within --timeout, not Docker's."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        loop = asyncio.get_running_loop()
        started = loop.time()
        code, _, err = await run_cli("health", "--url", url, "--timeout", "0.5")
        elapsed = loop.time() - started
    assert code == 1
    assert err.decode() == f"unhealthy: {url}/healthz: no answer within 0.5 s\n"
    assert elapsed < 5


async def test_health_loads_no_web_framework(closed_port: int) -> None:
    """The probe is standard library only: a HEALTHCHECK every few seconds must start fast."""
    probe = (
        "import sys\n"
        "from tradebus.cli import main\n"
        f"code = main(['health', '--url', 'http://127.0.0.1:{closed_port}'])\n"
        "print(code, sorted(m for m in sys.modules if m.split('.')[0] in "
        "('aiohttp', 'websockets', 'prometheus_client', 'uvloop')))\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", probe, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert out.decode().split() == ["1", "[]"]
