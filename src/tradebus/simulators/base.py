"""What every simulator shares: start an aiohttp app on a port (0 = a free one), stop it."""

from __future__ import annotations

import argparse
from typing import Any, Protocol

from aiohttp import web


class Simulator(Protocol):
    """A fake upstream on 127.0.0.1, with fault knobs the tests call directly."""

    @property
    def port(self) -> int: ...

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None: ...

    async def stop(self) -> None: ...

    def source_table(self, name: str) -> dict[str, Any]:
        """A ``[[sources]]`` table (as decoded TOML) that points an adapter at this simulator."""
        ...


class SimulatorModule(Protocol):
    """The module-level hooks ``tradebus simulate KIND`` and ``tradebus demo`` use."""

    def add_cli_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def from_cli(self, args: argparse.Namespace) -> Simulator: ...

    def for_demo(self, seed: int) -> Simulator: ...


def padded(message: str, size: int) -> str:
    """``message`` (a JSON object) grown to ``size`` bytes by an unknown field of filler: one
    well-formed message too large for a client's maximum message size."""
    head = message[:-1] + ',"padding":"'
    return head + "x" * max(0, size - len(head) - 2) + '"}'


def abort(request: web.Request) -> None:
    """Close the socket under a streaming response: the client sees the body end mid-way,
    not a clean end of a chunked body (a cut connection, as a network fault would make)."""
    if request.transport is not None:
        request.transport.close()


class AppServer:
    """An aiohttp application bound to one TCP port; ``port`` is known after ``start``."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        # handler_cancellation: a client that goes away cancels its streaming handler at once.
        self._runner = web.AppRunner(self.app, handle_signals=False, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
