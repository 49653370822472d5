"""A daemon as a process with TTMT simulators, a file sink, a webhook receiver and its ops port:
what the delivery tests start, kill and read."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import web

from tradebus.simulators.ttmt import TtmtSimulator

TRADEBUS = [sys.executable, "-m", "tradebus"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Receiver:
    """A webhook receiver on 127.0.0.1: ``mode`` "ok" takes every request (after ``delay``),
    "hang" never answers, "refuse" answers 400. Keeps the ids it took, in order."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.delay = 0.0
        self.ids: list[str] = []
        self.requests = 0
        self.release = asyncio.Event()
        self.port = -1
        self._runner: web.AppRunner | None = None

    async def _hook(self, request: web.Request) -> web.Response:
        self.requests += 1
        body = await request.read()
        if self.mode == "hang":
            await self.release.wait()
            return web.Response(status=503)  # its sender is long gone: never taken
        if self.mode == "refuse":
            return web.Response(status=400, text="no")
        if self.delay:
            await asyncio.sleep(self.delay)
        lines = body.splitlines() if b"\n" in body.rstrip(b"\n") else [body]
        self.ids.extend(msgspec.json.decode(line)["id"] for line in lines if line.strip())
        return web.Response(status=204)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"


def toml_table(table: dict[str, Any]) -> str:
    return "".join(f"{k} = {json.dumps(v)}\n" for k, v in table.items())


class Rig:
    """Paths, simulators and the config of one daemon under test."""

    def __init__(self, tmp: Path, sims: list[TtmtSimulator], receiver: Receiver) -> None:
        self.tmp = tmp
        self.sims = sims
        self.receiver = receiver
        self.out = tmp / "events.jsonl"
        self.state = tmp / "state"
        self.http = free_port()
        self.config = tmp / "tradebus.toml"
        self.started: list[asyncio.subprocess.Process] = []

    def write(self, *, delivery: str = "process", daemon: str = "", sinks: str = "") -> Path:
        sources = "".join(
            "\n[[sources]]\n"
            + toml_table(sim.source_table(f"feed{i}"))
            + "reconnect_min = 0.05\nreconnect_max = 0.2\n"
            for i, sim in enumerate(self.sims)
        )
        self.config.write_text(
            f'[daemon]\nlog_format = "json"\nstate_dir = "{self.state}"\n'
            f'delivery = "{delivery}"\nhttp = "127.0.0.1:{self.http}"\n{daemon}\n{sources}'
            f'\n[[sinks]]\nname = "archive"\ntype = "file"\npath = "{self.out}"\n{sinks}'
        )
        return self.config

    def hook(self, fmt: str = "jsonl", extra: str = "") -> str:
        return (
            f'\n[[sinks]]\nname = "hook"\ntype = "webhook"\nformat = "{fmt}"\n'
            f'url = "{self.receiver.url}"\nretry_base = 0.05\nretry_cap = 0.2\n{extra}'
        )

    async def start(self, **kw: Any) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            *TRADEBUS,
            "run",
            "-c",
            str(self.config),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=kw.pop("stdout", asyncio.subprocess.DEVNULL),
            stderr=kw.pop("stderr", asyncio.subprocess.DEVNULL),
        )
        self.started.append(proc)
        return proc

    async def kill_all(self) -> None:
        """What a failed test left running: SIGKILL (its delivery process follows within 1 s)."""
        for proc in self.started:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    async def readyz(self) -> tuple[int, dict[str, Any]]:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{self.http}/readyz") as r,
        ):
            return r.status, await r.json()

    async def metric(self, name: str) -> float:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{self.http}/metrics") as r,
        ):
            text = await r.text()
        for line in text.splitlines():
            if line.startswith((name + " ", name + "{")):
                return float(line.rsplit(" ", 1)[1])
        raise AssertionError(f"{name} not in /metrics")

    async def until_ready(self, cond: Callable[[dict[str, Any]], bool], timeout: float) -> None:
        """Poll /readyz (another process's state: nothing here can signal it) until ``cond``."""

        async def poll() -> None:
            while True:
                try:
                    _, body = await self.readyz()
                    if cond(body):
                        return
                except aiohttp.ClientError:
                    pass  # not listening yet
                await asyncio.sleep(0.05)

        await asyncio.wait_for(poll(), timeout)

    async def delivery_pid(self, other_than: int | None = None, timeout: float = 20) -> int:
        """The pid of a running delivery process (a new one when ``other_than`` is given)."""
        found: list[int] = []

        def running(body: dict[str, Any]) -> bool:
            d = body.get("delivery", {})
            if d.get("running") and d.get("pid") not in (None, other_than):
                found.append(d["pid"])
                return True
            return False

        await self.until_ready(running, timeout)
        return found[-1]

    def lines(self) -> list[dict[str, Any]]:
        data = self.out.read_bytes() if self.out.exists() else b""
        return [msgspec.json.decode(line) for line in data.splitlines()]

    def ttmt_ids(self) -> dict[str, list[int]]:
        """Per source, the TTMT eventIds in the file, in order (several events of one id once)."""
        out: dict[str, list[int]] = {}
        for line in self.lines():
            if line["provider"] == "ttmt" and not line["type"].startswith("status"):
                n = int(line["id"].split(":")[1].split("#")[0])
                ids = out.setdefault(line["source"], [])
                if not ids or ids[-1] != n:
                    ids.append(n)
        return out

    def lost(self, source: str) -> set[int]:
        """The eventIds of ``source`` that a status.gap in the file says could not be had."""
        out: set[int] = set()
        for line in self.lines():
            if line["type"] == "status.gap" and line["source"] == source:
                data = line["data"]
                if data.get("first_missing") is not None and data.get("last_missing") is not None:
                    out.update(range(data["first_missing"], data["last_missing"] + 1))
        return out

    def assert_nothing_lost(self, source: str, upto: int) -> None:
        """From the first eventId the daemon saw through ``upto``, each is in the file or
        named by a status.gap: never silence."""
        ids = self.ttmt_ids()[source]
        expected = set(range(ids[0], upto + 1))
        missing = expected - set(ids) - self.lost(source)
        assert not missing, f"{source}: lost without a gap: {sorted(missing)[:20]}"

    async def connected_target(self, source: str, sim: TtmtSimulator, ahead: int = 20) -> int:
        """Once ``source`` is connected: an eventId the simulator will produce after that."""
        await self.until_ready(lambda b: b["sources"][source]["connected"], 20)
        return sim.last_event_id + ahead

    def holds(self, source: str, event_id: int) -> bool:
        return event_id in self.ttmt_ids().get(source, [])


async def wait_for(
    cond: Callable[[], bool], timeout: float, why: Callable[[], object] = lambda: ""
) -> None:
    """Poll what another process writes: nothing in this process can signal it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            pytest.fail(f"not reached in {timeout}s {why()}")
        await asyncio.sleep(0.05)


def gone(pid: int) -> bool:
    """The process has exited (a zombie waiting for its reaper counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in (b"Z", b"X")


def kill(pid: int, sig: signal.Signals) -> None:
    os.kill(pid, sig)


@asynccontextmanager
async def rig(tmp: Path, feeds: int = 2, rate: float = 150.0) -> AsyncIterator[Rig]:
    sims = [TtmtSimulator(seed=11 + i, rate=rate) for i in range(feeds)]
    receiver = Receiver()
    for sim in sims:
        await sim.start()
    await receiver.start()
    running = Rig(tmp, sims, receiver)
    try:
        yield running
    finally:
        await running.kill_all()
        await receiver.stop()
        for sim in sims:
            await sim.stop()
