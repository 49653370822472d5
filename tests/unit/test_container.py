"""The Dockerfile and docker-compose.yml, checked without a Docker engine: parsed, and their
command lines run outside a container."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tradebus import config
from tradebus.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
COMPOSE_TOML = REPO / "config" / "compose.toml"
TRADEBUS = "/opt/tradebus/bin/tradebus"
ANY = "0.0.0.0"  # noqa: S104 - inside a container, so a published port reaches it


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return data


def healthcheck_argv() -> list[str]:
    """The Dockerfile HEALTHCHECK's command, after CMD."""
    argv: list[str] = json.loads(dockerfile_instruction("HEALTHCHECK").partition(" CMD ")[2])
    return argv


def dockerfile_instruction(name: str) -> str:
    """The last ``name`` instruction of the runtime stage, continuation lines joined."""
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    found = [line.split(None, 1)[1] for line in text.splitlines() if line.startswith(name + " ")]
    assert found, f"no {name} in the Dockerfile"
    return found[-1]


def test_dockerfile_healthcheck_runs_tradebus_health() -> None:
    """HEALTHCHECK execs `tradebus health` (no curl in the slim image), with a bounded timeout."""
    check = dockerfile_instruction("HEALTHCHECK")
    assert "--timeout=" in check.partition(" CMD ")[0]
    argv = healthcheck_argv()
    assert argv[:2] == [TRADEBUS, "health"]
    args = build_parser(simulators=False).parse_args(argv[1:])
    assert args.url == "http://127.0.0.1:9464"
    assert args.timeout < 5  # under Docker's own --timeout=5s, so the probe reports why


def test_dockerfile_runs_as_a_user_with_the_ops_endpoint_and_volumes() -> None:
    """Non-root, unbuffered, SIGTERM, the ops endpoint beyond the container's loopback."""
    assert dockerfile_instruction("USER") == "tradebus"
    assert dockerfile_instruction("STOPSIGNAL") == "SIGTERM"
    env = dict(shlex.split(dockerfile_instruction("ENV"))[i].split("=", 1) for i in range(2))
    assert env == {"PYTHONUNBUFFERED": "1", "TRADEBUS_HTTP": "0.0.0.0:9464"}
    assert json.loads(dockerfile_instruction("VOLUME")) == [
        "/var/lib/tradebus",
        "/var/log/tradebus",
    ]
    assert json.loads(dockerfile_instruction("ENTRYPOINT")) == [TRADEBUS]
    assert json.loads(dockerfile_instruction("CMD")) == ["run", "-c", "/etc/tradebus/tradebus.toml"]


def test_compose_has_the_daemon_one_simulator_each_and_the_volumes() -> None:
    """One service per simulator, NATS, the daemon with its config, state and events volumes."""
    data = compose()
    services = data["services"]
    assert set(services) == {"tradebus", "ttmt", "tpalerts", "traderws", "mt4bridge", "nats"}
    daemon = services["tradebus"]
    assert daemon["command"] == ["run", "-c", "/etc/tradebus/tradebus.toml"]
    assert set(daemon["volumes"]) == {
        "./config/compose.toml:/etc/tradebus/tradebus.toml:ro",
        "state:/var/lib/tradebus",
        "events:/var/log/tradebus",
    }
    assert set(data["volumes"]) == {"state", "events", "nats"}
    assert daemon["ports"] == ["127.0.0.1:9464:9464"]  # the host's loopback only
    assert daemon["healthcheck"]["test"][:3] == ["CMD", TRADEBUS, "health"]
    assert set(daemon["depends_on"]) == {"ttmt", "tpalerts", "traderws", "mt4bridge", "nats"}
    for kind in ("ttmt", "tpalerts", "traderws", "mt4bridge"):
        assert services[kind]["command"][:2] == ["simulate", kind]
        assert services[kind]["healthcheck"] == {"disable": True}  # no ops endpoint there


def test_compose_daemon_config_points_at_the_simulator_services() -> None:
    """The mounted compose.toml, with the service's environment, validates and reaches each
    simulator service on the port its command line gives it; the sinks write to the volumes."""
    daemon = compose()["services"]["tradebus"]
    env = {k: str(v) for k, v in daemon["environment"].items()}
    result = subprocess.run(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "tradebus", "check-config", "-c", str(COMPOSE_TOML)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    cfg = config.load(COMPOSE_TOML, env=env)
    services = compose()["services"]
    for source in cfg.sources:
        host_port = source.url.split("/")[2]
        command = services[config.kind(source)]["command"]
        assert host_port == f"{config.kind(source)}:{command[command.index('--port') + 1]}"
        assert command[command.index("--host") + 1] == ANY
    assert cfg.daemon.http == "0.0.0.0:9464"
    assert cfg.daemon.state_dir == "/var/lib/tradebus"
    files = [s for s in cfg.sinks if isinstance(s, config.FileSinkConfig)]
    assert [f.path for f in files] == ["/var/log/tradebus/events.jsonl"]


def test_compose_nats_service_runs_jetstream_and_the_daemon_publishes_to_it() -> None:
    """The nats service has JetStream on with its store on a volume, unpublished; the daemon's
    config has a NATS sink on that service's host and client port."""
    services = compose()["services"]
    nats = services["nats"]
    command = nats["command"]
    assert "-js" in command
    store = command[command.index("-sd") + 1]
    assert f"nats:{store}" in nats["volumes"]
    assert "ports" not in nats  # clients on the compose network only
    daemon = services["tradebus"]
    env = {k: str(v) for k, v in daemon["environment"].items()}
    cfg = config.load(COMPOSE_TOML, env=env)
    sinks = [s for s in cfg.sinks if isinstance(s, config.NatsSinkConfig)]
    assert len(sinks) == 1
    assert sinks[0].servers == [f"nats://nats:{command[command.index('-p') + 1]}"]
    assert (sinks[0].stream, sinks[0].subject_prefix) == ("TRADEBUS", "tradebus")
    # The same sources as the hand-started demo: compose.toml is demo.toml plus the NATS sink.
    demo = config.load(REPO / "config" / "demo.toml", env=env)
    assert cfg.sources == demo.sources
    assert [s.name for s in cfg.sinks] == [*(s.name for s in demo.sinks), "bus"]
