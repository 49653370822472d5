"""No configured secret reaches the daemon's output, whatever fails; `run`'s log flags; the
warning for a config file that others may read and that holds a secret."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.e2e.delivery_rig import free_port
from tests.e2e.process import start_daemon
from tradebus.cli import _simulator_modules
from tradebus.config import SECRET_FIELDS
from tradebus.simulators.base import Simulator

# A wrong credential for each kind of source: the upstream rejects it (status.auth_failed).
WRONG = {
    "ttmt": {"api_key": "ttmt_live_wrong_5c1d8e2f"},
    "tpalerts": {"token": "tp_wrong_token_77a1"},
    "traderws": {"password": "wrong-password-3b9"},
    "mt4bridge": {"api_key": "mt4-wrong-key-41f0"},
}


def toml_table(table: dict[str, Any]) -> str:
    return "\n[[sources]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in table.items())


WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"e2e-webhook-signing-key-32bytes!").decode()
HEADER_SECRET = "hdr-api-key-0c9b8a7f"
URL_PASSWORD = "url-pass-4e5f6a7b"


def encodings(value: str) -> set[bytes]:
    """The value, and its base64 (standard and URL-safe, padded or not) as a header or a
    serialiser might carry it."""
    raw = value.encode()
    encoded = {base64.b64encode(raw), base64.urlsafe_b64encode(raw)}
    return {raw} | encoded | {e.rstrip(b"=") for e in encoded}


def secret_config(
    tmp_path: Path, sims: dict[str, Simulator], hook_port: int, daemon: str = ""
) -> tuple[Path, set[str]]:
    """A config with every source twice, with good credentials and with wrong ones (a key in
    a URL query too), a file, a stdout and a webhook sink (signing secret, an API key header,
    a password in its URL); ``daemon``: more [daemon]. Returns it and its secret values."""
    tables = []
    for kind, sim in sims.items():
        good = sim.source_table(f"good-{kind}")
        bad = {**good, **WRONG[kind], "name": f"bad-{kind}"}
        if kind == "ttmt":
            bad["url"] += "?api_key=" + WRONG[kind]["api_key"]
        tables += [good, bad]
    secrets = {v for t in tables for k, v in t.items() if k in SECRET_FIELDS}
    assert len(secrets) >= 10
    secrets |= {WEBHOOK_SECRET, WEBHOOK_SECRET.removeprefix("whsec_"), HEADER_SECRET, URL_PASSWORD}
    # The URL's credentials travel as basic auth: base64 of this.
    secrets.add(f"tradebus:{URL_PASSWORD}")
    hook = f"http://tradebus:{URL_PASSWORD}@127.0.0.1:{hook_port}/hook"
    path = tmp_path / "tradebus.toml"
    path.write_text(
        '[daemon]\nlog_format = "console"\nlog_level = "error"\n'
        + f'state_dir = "{tmp_path / "state"}"\n'
        + daemon
        + "".join(map(toml_table, tables))
        + f'\n[[sinks]]\nname = "archive"\ntype = "file"\npath = "{tmp_path / "out.jsonl"}"\n'
        + '\n[[sinks]]\nname = "console"\ntype = "stdout"\n'
        + f'\n[[sinks]]\nname = "hook"\ntype = "webhook"\nurl = "{hook}"\n'
        + f'secret = "{WEBHOOK_SECRET}"\nheaders = {{ X-Api-Key = "{HEADER_SECRET}" }}\n'
    )
    return path, secrets


class Echoing:
    """A receiver that refuses every request (401) and echoes what it got back in the error
    body: the credentials of the request included, as a careless upstream might."""

    def __init__(self) -> None:
        self.got = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def hook(self, request: web.Request) -> web.Response:
        self.got.set()
        # The credentials first: a receiver's error is cut short where it is shown.
        headers = sorted(request.headers.items(), key=lambda kv: kv[0] != "Authorization")
        echoed = " ".join(f"{k}={v}" for k, v in headers)
        return web.Response(status=401, text=f"unauthorized: {echoed} url={request.url}")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.hook)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self.runner.addresses[0][1])

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
async def echoing() -> Any:
    receiver = Echoing()
    await receiver.start()
    yield receiver
    await receiver.stop()


@pytest.fixture
async def every_simulator() -> Any:
    sims: dict[str, Simulator] = {}
    for kind, module in _simulator_modules().items():
        sims[kind] = module.for_demo(11)
        await sims[kind].start()
    yield sims
    for sim in sims.values():
        await sim.stop()


async def test_no_secret_in_any_output_also_on_auth_failures(
    tmp_path: Path, every_simulator: dict[str, Simulator], echoing: Echoing
) -> None:
    """Every source, with good credentials and with wrong ones (a key in a URL query too), and
    a webhook sink whose receiver refuses it and echoes its credentials back: no configured
    secret, login token or session id is in stdout, stderr, the file sink or the dead letters.
    The flags override [daemon]: JSON at debug level where the file says console and error."""
    path, secrets = secret_config(tmp_path, every_simulator, echoing.port)
    daemon = await start_daemon(path, args=["--log-format", "json", "--log-level", "debug"])
    assert daemon.proc.stdout is not None
    assert daemon.proc.stderr is not None
    stderr = asyncio.create_task(daemon.proc.stderr.read())  # never let a full pipe stall it
    out = bytearray()
    want = {f"good-{k}": "status.connected" for k in WRONG} | {
        f"bad-{k}": "status.auth_failed" for k in WRONG
    }
    async with asyncio.timeout(30):
        while want:
            line = await daemon.proc.stdout.readline()
            assert line, "the daemon exited"
            out += line
            event = json.loads(line)
            if want.get(event["source"]) == event["type"]:
                del want[event["source"]]
    await asyncio.wait_for(echoing.got.wait(), 20)
    daemon.proc.send_signal(signal.SIGTERM)
    async with asyncio.timeout(20):
        out += await daemon.proc.stdout.read()
        err = await stderr
        await daemon.proc.wait()
    assert daemon.proc.returncode == 0
    lines = [json.loads(line) for line in err.splitlines()]  # --log-format json won
    assert {"daemon_started", "daemon_stopped"} <= {e["event"] for e in lines}  # info shown
    tokens = set(every_simulator["traderws"].tokens)  # type: ignore[attr-defined]
    sessions = set(every_simulator["mt4bridge"]._sessions)  # type: ignore[attr-defined]
    assert tokens
    assert sessions
    dead = b"".join(p.read_bytes() for p in (tmp_path / "state").glob("dead-letter-*"))
    assert dead, "the refused webhook request was not dead-lettered"
    assert b"webhook_dead_letter" in err
    everything = bytes(out) + err + (tmp_path / "out.jsonl").read_bytes() + dead
    assert b"auth_failed" in everything
    assert b"HTTP 401" in err  # the receiver's echo was logged, scrubbed
    for value in secrets | tokens | sessions:
        for form in encodings(value):
            assert form not in everything, (value, form)


async def test_log_flags_and_the_readable_secret_warning(tmp_path: Path) -> None:
    """A config readable by others with a literal key: one warning naming file and key, never
    the value; --log-format console and --log-level warning override the file's json/info."""
    key = "ttmt_live_literal_9d2e4a"
    path = tmp_path / "tradebus.toml"
    path.write_text(
        '[daemon]\nlog_format = "json"\nlog_level = "info"\n'
        + f'state_dir = "{tmp_path / "state"}"\n'
        + toml_table({"name": "lit", "type": "ttmt", "url": "http://127.0.0.1:9/s", "api_key": key})
        + toml_table(
            {"name": "env", "type": "tpalerts", "url": "http://127.0.0.1:9/a", "token": "${T}"}
        )
        + '\n[[sinks]]\nname = "console"\ntype = "stdout"\n'
    )
    os.chmod(path, 0o644)
    daemon = await start_daemon(
        path, {"T": "tp_from_env_6e1f"}, ["--log-format", "console", "--log-level", "warning"]
    )
    assert daemon.proc.stderr is not None
    first = await asyncio.wait_for(daemon.proc.stderr.readline(), 20)
    daemon.proc.send_signal(signal.SIGTERM)
    _, rest = await asyncio.wait_for(daemon.proc.communicate(), 20)
    err = (first + rest).decode()
    warnings = [line for line in err.splitlines() if "config_secrets_readable" in line]
    assert len(warnings) == 1, err
    assert str(path) in warnings[0]
    assert "sources[0].api_key" in warnings[0]
    assert "sources[1]" not in warnings[0]  # ${T} is not in the file
    assert key not in err
    assert "tp_from_env_6e1f" not in err
    assert not err.lstrip().startswith("{")  # the console renderer, not JSON
    assert "daemon_started" not in err  # info is below --log-level warning


OPS_TOKEN = "ops-token-page-8f3a1c6e2b"


async def test_no_secret_in_any_page_or_stream(
    tmp_path: Path, every_simulator: dict[str, Simulator], echoing: Echoing
) -> None:
    """With sources failing their logins and a webhook receiver echoing its credentials back,
    no secret (nor its base64) is in /, the status snapshots, the event stream from the
    earliest event, /readyz or /metrics; the errors that could carry one are shown."""
    port = free_port()
    path, secrets = secret_config(
        tmp_path,
        every_simulator,
        echoing.port,
        daemon=f'http = "127.0.0.1:{port}"\nhttp_token = "{OPS_TOKEN}"\n',
    )
    secrets.add(OPS_TOKEN)
    daemon = (await start_daemon(path, quiet=True)).proc
    base = f"http://127.0.0.1:{port}"
    shown: dict[str, bytes] = {}
    try:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {OPS_TOKEN}"}) as http:

            async def readyz() -> dict[str, Any]:
                async with http.get(f"{base}/readyz") as resp:
                    body: dict[str, Any] = await resp.json()
                    return body

            async def failed() -> bool:
                try:
                    state = await readyz()
                except aiohttp.ClientError:
                    return False  # not listening yet
                bad = [state["sources"][f"bad-{k}"]["last_error"] for k in WRONG]
                return all(bad) and bool(state["sinks"]["hook"]["last_error"])

            # Another process's state, polled: every error that could carry a secret is in.
            async with asyncio.timeout(30):
                while True:
                    if await failed():
                        break
                    await asyncio.sleep(0.1)
            # A reload refused for a bad webhook URL: its problem is shown, the URL's password not.
            text = path.read_text()
            path.write_text(text.replace('url = "http://tradebus:', 'url = "htp://tradebus:'))
            async with http.post(f"{base}/-/reload") as resp:
                assert resp.status == 422
                shown["/-/reload"] = await resp.read()
            for page in ("/", "/readyz", "/metrics"):
                async with http.get(base + page) as resp:
                    # Not ready: the sources with wrong credentials are required ones.
                    assert resp.status == (503 if page == "/readyz" else 200), page
                    shown[page] = await resp.read()
            async with http.get(f"{base}/api/v1/status/stream") as resp:
                frames = [await resp.content.readuntil(b"\n\n") for _ in range(3)]
            shown["/api/v1/status/stream"] = b"".join(frames)
            last = json.loads(frames[-1].removeprefix(b"data: "))["journal"]["last_seq"]
            lines: list[bytes] = []
            async with (
                asyncio.timeout(20),
                http.get(f"{base}/api/v1/events?from=earliest") as resp,
            ):
                seq = 0
                while seq < last:
                    line = await resp.content.readline()
                    assert line, "the stream ended"
                    lines.append(line)
                    if line.startswith(b"id: "):
                        seq = int(line[4:])
            shown["/api/v1/events"] = b"".join(lines)
    finally:
        daemon.send_signal(signal.SIGTERM)
        await asyncio.wait_for(daemon.wait(), 20)
    assert b'id="sources"' in shown["/"]
    assert b'"bad-traderws"' in shown["/api/v1/status/stream"]
    assert b"status.auth_failed" in shown["/api/v1/events"]
    assert b"sinks[2].url: expected an http/https URL" in shown["/readyz"]
    assert b'tradebus_sink_retries_total{sink="hook"}' in shown["/metrics"]
    tokens = set(every_simulator["traderws"].tokens)  # type: ignore[attr-defined]
    sessions = set(every_simulator["mt4bridge"]._sessions)  # type: ignore[attr-defined]
    assert tokens
    assert sessions
    for where, body in shown.items():
        for value in secrets | tokens | sessions:
            for form in encodings(value):
                assert form not in body, (where, value, form)
