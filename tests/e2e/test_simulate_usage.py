"""`tradebus simulate KIND` prints its credentials and command lines that work as printed."""

from __future__ import annotations

import json
import select
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

TIMEOUT = 20.0


def _line(proc: subprocess.Popen[bytes], deadline: float) -> str:
    """The next line ``proc`` writes, within the deadline (its stdout unbuffered: select()
    would not see lines a buffer had already taken)."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
    if not ready:
        pytest.fail("no output in time")
    line = proc.stdout.readline()
    if not line:
        pytest.fail(f"exited ({proc.poll()}) before printing what was expected")
    return line.decode().rstrip("\n")


@contextmanager
def simulator(kind: str, lines: int) -> Iterator[list[str]]:
    """`tradebus simulate KIND --port 0`, and the first ``lines`` lines it prints."""
    proc = subprocess.Popen(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "tradebus", "simulate", kind, "--port", "0"],
        bufsize=0,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + TIMEOUT
        yield [_line(proc, deadline) for _ in range(lines)]
    finally:
        proc.terminate()
        proc.wait(timeout=TIMEOUT)
        assert proc.stdout is not None
        proc.stdout.close()


def _command(line: str, **values: str) -> list[str]:
    """A printed command line as argv, its placeholders (TOKEN, SESSION) filled in."""
    assert line.startswith("  "), line
    text = line.strip()
    for name, value in values.items():
        text = text.replace(name, value)
    return shlex.split(text)


def _run(argv: list[str]) -> bytes:
    return subprocess.run(argv, capture_output=True, check=True, timeout=TIMEOUT).stdout  # noqa: S603


def _first_event_line(argv: list[str]) -> str:
    """Run a streaming curl line; the first ``data:`` line it shows."""
    proc = subprocess.Popen(  # noqa: S603 - the printed command line
        argv, bufsize=0, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + TIMEOUT
        while not (line := _line(proc, deadline)).startswith("data:"):
            pass
        return line
    finally:
        proc.kill()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


@pytest.mark.tool("curl")
@pytest.mark.parametrize(
    ("kind", "credential"),
    [("ttmt", "API key ttmt_live_demo_4b7e2d9a"), ("tpalerts", "token tp_demo_token")],
)
def test_an_sse_simulator_prints_its_key_and_a_curl_that_streams(
    kind: str, credential: str
) -> None:
    """The first line names the stream's URL and its credential; the curl line, run as
    printed, gets events (not `invalid or revoked key`)."""
    with simulator(kind, 2) as (head, curl):
        assert head.endswith(credential)
        data = _first_event_line(_command(curl))
    assert json.loads(data.removeprefix("data:"))


@pytest.mark.tool("curl")
def test_the_trader_ws_simulator_prints_a_login_and_a_client_that_work() -> None:
    """The login curl answers a token; the printed WebSocket client connects with it and, sent
    the printed subscribe message, receives the subscription's answer."""
    with simulator("traderws", 7) as lines:
        assert "username demo-user, password demo-password" in lines[0]
        token = json.loads(_run(_command(lines[2])))["token"]
        client = subprocess.Popen(  # noqa: S603 - the printed command line
            _command(lines[4], TOKEN=token),
            bufsize=0,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            assert client.stdin is not None
            client.stdin.write(lines[6].strip().encode() + b"\n")
            deadline = time.monotonic() + TIMEOUT
            while '"subscribed"' not in (seen := _line(client, deadline)):
                assert "Connection closed" not in seen, seen
        finally:
            client.kill()
            client.wait()
            for pipe in (client.stdin, client.stdout):
                if pipe is not None:
                    pipe.close()


@pytest.mark.tool("curl")
def test_the_mt4_bridge_simulator_prints_a_session_open_and_an_account_call() -> None:
    """The session-open curl answers a session id; the account curl, given it, the account."""
    with simulator("mt4bridge", 5) as lines:
        assert "API key mt4-sim-key" in lines[0]
        session = json.loads(_run(_command(lines[2])))["sessionId"]
        account = json.loads(_run(_command(lines[4], SESSION=session)))
    assert account["accountId"] == "demo-mt4-01"


def test_the_demo_credentials_are_the_command_line_defaults() -> None:
    """What `simulate` prints is what config/demo.toml uses (its ${VAR:-default}s)."""
    text = (Path(__file__).resolve().parents[2] / "config" / "demo.toml").read_text()
    for value in ("ttmt_live_demo_4b7e2d9a", "tp_demo_token", "demo-password", "mt4-sim-key"):
        assert f":-{value}}}" in text
