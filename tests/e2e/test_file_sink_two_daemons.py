"""Two daemons (each its own state dir) given one file path: the second refuses the file."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import msgspec

from tests.e2e.process import Daemon, start_daemon
from tests.e2e.test_restart import wait_for


def config(tmp_path: Path, name: str, archive: Path) -> Path:
    """A daemon whose one source is down (it reports so, in events) and whose file sink writes
    ``archive``."""
    path = tmp_path / f"{name}.toml"
    path.write_text(
        f'[daemon]\nlog_format = "json"\nstate_dir = "{tmp_path / name}"\n'
        f'drain_timeout = 2.0\n\n[[sources]]\nname = "{name}"\ntype = "ttmt"\n'
        'url = "http://127.0.0.1:1/"\napi_key = "k"\nreconnect_min = 0.05\n'
        'reconnect_max = 0.2\n\n[[sinks]]\nname = "archive"\ntype = "file"\n'
        f'path = "{archive}"\n'
    )
    return path


def sources(archive: Path) -> list[str]:
    lines = archive.read_bytes().splitlines() if archive.exists() else []
    return [msgspec.json.decode(line)["source"] for line in lines]


async def test_a_second_daemon_on_one_file_path_refuses_it(tmp_path: Path) -> None:
    """The second daemon's file sink fails for good with an error that names the file and
    says another tradebus writes it; it writes no line, and the first goes on writing."""
    archive = tmp_path / "events.jsonl"
    daemons: list[Daemon] = []
    try:
        daemons.append(await start_daemon(config(tmp_path, "a", archive)))
        await wait_for(lambda: "a" in sources(archive), 20)
        daemons.append(await start_daemon(config(tmp_path, "b", archive)))
        failed = await daemons[1].wait_log("sink_failed")
        assert failed["sink"] == "archive"
        assert failed["error"] == (
            f"sink archive: {archive} is being written by another tradebus process "
            "(it holds .events.jsonl.lock); give each daemon a file of its own"
        )
        before = len(sources(archive))
        await wait_for(lambda: len(sources(archive)) > before, 20)
        assert set(sources(archive)) == {"a"}
    finally:
        for d in daemons:
            with contextlib.suppress(ProcessLookupError):
                d.proc.terminate()
        await asyncio.gather(*(d.proc.communicate() for d in daemons))
