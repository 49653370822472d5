"""The delivery process imports the sinks it runs and nothing of the sources: every module it
loads is memory it holds for as long as the daemon runs."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import msgspec

from tradebus import config
from tradebus.delivery.wire import _LEN, Advance, Drain, Hello, Watermark, encode_sinks

# The child's own entry, run with its module names written down as it exits.
RUN_CHILD = (
    "import atexit, runpy, sys\n"
    "out = sys.argv.pop(1)\n"
    "atexit.register(lambda: open(out, 'w').write('\\n'.join(sys.modules)))\n"
    "runpy.run_module('tradebus.delivery.child', run_name='__main__', alter_sys=True)\n"
)


def child_modules(tmp_path: Path, sinks: list[dict[str, object]]) -> set[str]:
    """Start the delivery process as the daemon does, give it ``sinks``, stop it: the modules
    it had imported."""
    cfg = config.parse(
        {
            "sources": [
                {"type": "ttmt", "name": "a", "url": "http://127.0.0.1:1/", "api_key": "k"}
            ],
            "sinks": sinks,
        }
    )
    out = tmp_path / "modules.txt"
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with ours:
        proc = subprocess.Popen(  # noqa: S603 - our own fixed argv
            [sys.executable, "-c", RUN_CHILD, str(out), str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
        )
        theirs.close()
        encoder = msgspec.msgpack.Encoder()
        for message in (
            Hello(str(tmp_path), encode_sinks(list(cfg.sinks)), "warning", "json"),
            Advance(Watermark(0, 0, 0, 0.0)),
            Drain(1.0),
        ):
            data = encoder.encode(message)
            ours.sendall(_LEN.pack(len(data)) + data)
        assert proc.wait(timeout=30) == 0
    return set(out.read_text().split())


def test_a_file_sink_alone_imports_no_adapter_and_no_other_sink(tmp_path: Path) -> None:
    modules = child_modules(tmp_path, [{"type": "file", "name": "f", "path": str(tmp_path / "o")}])
    assert "tradebus.sinks.file" in modules  # it ran the sink it was given
    libraries = {"aiohttp", "nats", "websockets", "prometheus_client", "tradebus_sink_sqlite"}
    ours = ("tradebus.adapters", "tradebus.simulators", "tradebus.daemon", "tradebus.sinks.nats")
    unwanted = {m for m in modules if m.split(".")[0] in libraries or m.startswith(ours)}
    assert not unwanted


def test_the_sinks_it_runs_are_imported(tmp_path: Path) -> None:
    sinks: list[dict[str, object]] = [
        {"type": "file", "name": "f", "path": str(tmp_path / "o")},
        {"type": "webhook", "name": "h", "url": "http://127.0.0.1:1/"},
    ]
    modules = child_modules(tmp_path, sinks)
    assert {"tradebus.sinks.file", "tradebus.sinks.webhook", "aiohttp"} <= modules
    assert not {m for m in modules if m.startswith(("tradebus.adapters", "nats"))}
