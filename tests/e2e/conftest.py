"""Fixtures of the process-level tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tradebus.cli import _simulator_modules
from tradebus.simulators.base import Simulator


@pytest.fixture
async def simulators() -> AsyncIterator[list[Simulator]]:
    sims = []
    for kind, module in _simulator_modules().items():
        if kind in ("ttmt", "tpalerts"):
            sim = module.for_demo(7)
            await sim.start()
            sims.append(sim)
    yield sims
    for sim in sims:
        await sim.stop()
