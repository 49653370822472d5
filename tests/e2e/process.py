"""The daemon as a child process: start it on a config, read its log lines and its events."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tradebus.schemas.events import Event
from tradebus.simulators.base import Simulator

TRADEBUS = [sys.executable, "-m", "tradebus"]


async def run_cli(
    *args: str, timeout: float = 60, env: dict[str, str] | None = None
) -> tuple[int, bytes, bytes]:
    proc = await asyncio.create_subprocess_exec(
        *TRADEBUS, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out, err


def decode_lines(data: bytes) -> list[Event]:
    return [msgspec.json.decode(line, type=Event) for line in data.splitlines()]


class Daemon:
    """A `tradebus run` process whose stderr log lines are read as they come."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.logs: list[dict[str, Any]] = []

    async def wait_log(self, event: str, timeout: float = 20) -> dict[str, Any]:
        assert self.proc.stderr is not None
        async with asyncio.timeout(timeout):
            while True:
                line = await self.proc.stderr.readline()
                if not line:
                    pytest.fail(f"daemon exited before logging {event}; saw {self.logs[-5:]}")
                entry: dict[str, Any] = json.loads(line)
                self.logs.append(entry)
                if entry.get("event") == event:
                    return entry

    async def read_events(self, n: int, timeout: float = 20) -> list[Event]:
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            return [
                msgspec.json.decode(await self.proc.stdout.readline(), type=Event) for _ in range(n)
            ]


def write_config(tmp_path: Path, sims: list[Simulator], daemon: str = "") -> Path:
    """A config with ``sims`` as sources, a file and a stdout sink; ``daemon``: more [daemon]."""
    sources = "".join(
        "\n[[sources]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in table.items())
        for table in (sim.source_table(f"src{i}") for i, sim in enumerate(sims))
    )
    path = tmp_path / "tradebus.toml"
    path.write_text(
        f'[daemon]\nlog_format = "json"\nstate_dir = "{tmp_path / "state"}"\n'
        + daemon
        + sources
        + f'\n[[sinks]]\nname = "archive"\ntype = "file"\npath = "{tmp_path / "events.jsonl"}"\n'
        + '\n[[sinks]]\nname = "console"\ntype = "stdout"\n'
    )
    return path


async def start_daemon(
    config: Path,
    env: dict[str, str] | None = None,
    args: Sequence[str] = (),
    *,
    quiet: bool = False,
) -> Daemon:
    """`tradebus run -c config *args`, its stdout and stderr piped to the test (``quiet``: to
    nowhere, for a test that reads neither)."""
    out = asyncio.subprocess.DEVNULL if quiet else asyncio.subprocess.PIPE
    proc = await asyncio.create_subprocess_exec(
        *TRADEBUS,
        "run",
        "-c",
        str(config),
        *args,
        stdout=out,
        stderr=out,
        env={**os.environ, **(env or {})},
    )
    return Daemon(proc)
