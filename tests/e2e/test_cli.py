"""The daemon as a process: CLI sub-commands, signals, drain on stop, SIGHUP reopen."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
import sys
from pathlib import Path

import pytest

from tests.e2e.process import decode_lines, run_cli, start_daemon, write_config
from tests.unit.test_config import installed
from tradebus.cli import DEMO_NAMES, _simulator_modules, build_parser
from tradebus.schemas.events import EVENT_TYPES
from tradebus.simulators.base import Simulator


async def test_schema_prints_the_event_json_schema() -> None:
    """`tradebus schema` prints a JSON Schema naming every canonical event type."""
    code, out, _ = await run_cli("schema")
    assert code == 0
    schema = json.loads(out)
    tags = {
        d["properties"]["type"]["enum"][0]
        for d in schema["$defs"].values()
        if "type" in d.get("properties", {}) and "enum" in d["properties"]["type"]
    }
    assert tags == set(EVENT_TYPES)


async def test_check_config_accepts_the_shipped_demo_config() -> None:
    """check-config exits 0 on a valid file."""
    repo = Path(__file__).resolve().parents[2]
    code, out, _ = await run_cli("check-config", "-c", str(repo / "config" / "demo.toml"))
    assert code == 0
    assert b"ok (4 sources, 2 sinks)" in out


async def test_check_config_reports_field_paths_and_exits_2(tmp_path: Path) -> None:
    """check-config exits 2 and prints the field path of each problem on stderr."""
    path = tmp_path / "bad.toml"
    path.write_text(
        '[[sources]]\nname = "a"\ntype = "ttmt"\nurl = ""\napi_key = "k"\n'
        '[[sinks]]\nname = "c"\ntype = "stdout"\n'
    )
    code, out, err = await run_cli("check-config", "-c", str(path))
    assert code == 2
    assert out == b""
    assert (
        err.decode().strip() == "config error: sources[0].url: expected an http/https URL, got ''"
    )


async def test_run_loads_neither_the_simulators_nor_a_web_server(tmp_path: Path) -> None:
    """`tradebus run` parses its command line without importing the simulators (nor, through
    them, aiohttp's server): a daemon would otherwise carry them for its whole life. `simulate`
    still offers every simulator's options."""
    bad = tmp_path / "bad.toml"
    bad.write_text('[daemon]\nlog_level = "loud"\n')
    probe = (
        "import sys\n"
        "from tradebus.cli import main\n"
        "code = main(['run', '-c', sys.argv[1]])\n"
        "import tradebus.daemon.app\n"  # what a valid config would go on to load
        "from tradebus.plugin import sink_factory, source_factory\n"
        "source_factory('ttmt'); sink_factory('file')\n"
        "heavy = ('tradebus.simulators', 'aiohttp.web')\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(heavy))\n"
        "print(code, loaded)\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", probe, str(bad), stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert out.decode().split() == ["2", "[]"]
    code, out, _ = await run_cli("simulate", "ttmt", "--help")
    assert code == 0
    assert b"--rate" in out


async def test_demo_streams_canonical_events_and_stops_by_itself() -> None:
    """`tradebus demo --duration` streams JSONL from every simulator to stdout and exits 0."""
    code, out, err = await run_cli("demo", "--duration", "4")
    assert code == 0, err.decode()[-2000:]
    events = decode_lines(out)  # every stdout line is an Event: logs went to stderr
    assert {e.provider for e in events} >= set(_simulator_modules())
    assert {e.source for e in events} >= {DEMO_NAMES[k] for k in _simulator_modules()}
    seqs = [e.seq for e in events]
    assert seqs == list(range(1, len(seqs) + 1))
    assert b"daemon_stopped" in err
    # The demo's own credentials are scrubbed from its logs, and no ordinary word is taken
    # for one: every source is logged under its name.
    for name in (DEMO_NAMES[k] for k in _simulator_modules()):
        assert f"source={name}".encode() in err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_stop_signal_drains_every_received_event_to_every_sink(
    tmp_path: Path, simulators: list[Simulator], sig: signal.Signals
) -> None:
    """On SIGTERM/SIGINT every event the bus received is in every sink, and the exit code is 0."""
    daemon = await start_daemon(write_config(tmp_path, simulators))
    first = await daemon.read_events(5)
    daemon.proc.send_signal(sig)
    stopped = await daemon.wait_log("daemon_stopped")
    rest, _ = await asyncio.wait_for(daemon.proc.communicate(), 20)
    assert daemon.proc.returncode == 0
    published = stopped["published"]
    assert stopped["drained"] is True
    assert stopped["written"] == {"archive": published, "console": published}
    stdout_events = first + decode_lines(rest)
    file_events = decode_lines((tmp_path / "events.jsonl").read_bytes())
    assert [e.seq for e in file_events] == list(range(1, published + 1))
    assert stdout_events == file_events


async def test_sighup_reopens_the_file_sink(tmp_path: Path, simulators: list[Simulator]) -> None:
    """After logrotate moves the file, SIGHUP makes the daemon write a new one; nothing is lost."""
    daemon = await start_daemon(write_config(tmp_path, simulators))
    await daemon.read_events(3)
    events = tmp_path / "events.jsonl"
    async with asyncio.timeout(20):  # the file sink follows the journal on its own: its file
        while not (events.exists() and events.stat().st_size):  # noqa: ASYNC110 - another process's file
            await asyncio.sleep(0.02)
    events.rename(tmp_path / "events.jsonl.1")
    daemon.proc.send_signal(signal.SIGHUP)
    await daemon.wait_log("file_reopened")
    await daemon.read_events(3)
    daemon.proc.send_signal(signal.SIGTERM)
    stopped = await daemon.wait_log("daemon_stopped")
    await asyncio.wait_for(daemon.proc.communicate(), 20)
    assert daemon.proc.returncode == 0
    old = decode_lines((tmp_path / "events.jsonl.1").read_bytes())
    new = decode_lines((tmp_path / "events.jsonl").read_bytes())
    assert new, "no event reached the reopened file"
    assert [e.seq for e in old + new] == list(range(1, stopped["published"] + 1))


async def test_daemon_tells_systemd_when_ready_and_when_stopping(
    tmp_path: Path, simulators: list[Simulator]
) -> None:
    """Under Type=notify the daemon sends READY=1 once running and STOPPING=1 on SIGTERM."""
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        server.setblocking(False)
        loop = asyncio.get_running_loop()
        daemon = await start_daemon(write_config(tmp_path, simulators), {"NOTIFY_SOCKET": path})
        ready = await asyncio.wait_for(loop.sock_recv(server, 4096), 20)
        assert ready.startswith(b"READY=1\n")
        assert f"MAINPID={daemon.proc.pid}".encode() in ready
        daemon.proc.send_signal(signal.SIGTERM)
        stopping = await asyncio.wait_for(loop.sock_recv(server, 4096), 20)
        assert stopping.startswith(b"STOPPING=1")
        await asyncio.wait_for(daemon.proc.communicate(), 20)
        assert daemon.proc.returncode == 0


async def test_an_ops_port_in_use_is_one_config_error_line_and_exit_2(tmp_path: Path) -> None:
    """`[daemon] http` on a port another program holds: exit 2 and one `config error:` line
    naming the key, the address and the reason; no traceback."""
    holder = socket.create_server(("127.0.0.1", 0))
    port = holder.getsockname()[1]
    config = tmp_path / "c.toml"
    config.write_text(
        f'[daemon]\nstate_dir = "{tmp_path}"\nhttp = "127.0.0.1:{port}"\n'
        '[[sources]]\nname = "s"\ntype = "ttmt"\nurl = "http://127.0.0.1:1/"\napi_key = "k"\n'
        '[[sinks]]\nname = "o"\ntype = "stdout"\n'
    )
    try:
        code, out, err = await run_cli("run", "-c", str(config), "--log-format", "json")
    finally:
        holder.close()
    assert code == 2
    assert out == b""
    problems = [line for line in err.decode().splitlines() if not line.startswith("{")]
    assert problems == [
        f"config error: daemon.http: cannot listen on 127.0.0.1:{port}: address already in use"
    ]


async def test_check_config_reports_what_run_would_fail_on_all_at_once(tmp_path: Path) -> None:
    """A state dir whose parent is missing, a webhook secret that is not whsec_<base64>, an
    unknown sink type and a misspelt key: one check-config run names all four, exit 2."""
    state = tmp_path / "missing" / "state"
    path = tmp_path / "three.toml"
    path.write_text(
        f'[daemon]\nstate_dir = "{state}"\n'
        '[[sources]]\nname = "a"\ntype = "ttmt"\nurl = "http://127.0.0.1:1/"\napi_key = "k"\n'
        '[[sinks]]\nname = "hook"\ntype = "webhook"\nurl = "http://127.0.0.1:1/h"\n'
        'secret = "mysecret1234"\n'
        '[[sinks]]\nname = "q"\ntype = "kafka"\n'
        '[[sinks]]\nname = "f"\ntype = "file"\npath = "/tmp/x.jsonl"\nmax_byte = 1\n'
    )
    code, out, err = await run_cli("check-config", "-c", str(path))
    assert code == 2
    assert out == b""
    assert err.decode().splitlines() == [
        "config error: sinks[0].secret: expected whsec_<base64>, as Standard Webhooks defines it"
        " (e.g. whsec_ and the base64 of 24 to 64 random bytes)",
        "config error: sinks[1].type: unknown type 'kafka'; expected one of: stdout, file,"
        f" webhook, nats{installed('sinks')}",
        "config error: sinks[2].max_byte: unknown field (check its spelling and section)",
        f"config error: state_dir {state}: parent directory {state.parent} does not exist",
    ]
    assert "mysecret1234" not in err.decode()


async def test_check_config_passes_a_state_dir_run_would_create(tmp_path: Path) -> None:
    """A state dir not there yet, in a writable parent, is fine (run creates it) and
    check-config creates nothing."""
    state = tmp_path / "state"
    path = tmp_path / "ok.toml"
    path.write_text(
        f'[daemon]\nstate_dir = "{state}"\n'
        '[[sources]]\nname = "a"\ntype = "ttmt"\nurl = "http://127.0.0.1:1/"\napi_key = "k"\n'
        '[[sinks]]\nname = "c"\ntype = "stdout"\n'
    )
    code, out, err = await run_cli("check-config", "-c", str(path))
    assert (code, err) == (0, b"")
    assert out.decode() == f"{path}: ok (1 sources, 1 sinks)\n"
    assert not state.exists()


async def test_help_says_what_tradebus_is_and_lists_every_command() -> None:
    """`tradebus --help` opens with what tradebus does (no raw markup), and names every
    command the parser has, `journal` included, each with its help line."""
    code, out, _ = await run_cli("--help")
    assert code == 0
    text = out.decode()
    assert "``" not in text
    assert "into one stream of canonical events" in " ".join(text.split())
    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    commands = set(sub.choices)
    assert "journal" in commands
    listed = {line.split()[0] for line in text.splitlines() if line.startswith("    ")}
    assert commands <= listed
