"""Fixtures shared by every test: a collecting publisher the adapters hand their events to."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Sequence

import pytest

from tradebus import log
from tradebus.schemas.events import Event, event_type

# tests.tools: what a test that needs a missing system tool does (skip, or fail under CI).
pytest_plugins = ["tests.tools", "pytester"]


class Collector:
    """Stands where the bus stands: records every published batch, lets a test await a state."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.batches = 0
        self._changed = asyncio.Condition()

    async def publish(self, events: Sequence[Event]) -> None:
        async with self._changed:
            self.events.extend(events)
            self.batches += 1
            self._changed.notify_all()

    @classmethod
    def of(cls, events: Sequence[Event]) -> Collector:
        collector = cls()
        collector.events = list(events)
        return collector

    def of_type(self, *types: str) -> list[Event]:
        return [e for e in self.events if event_type(e) in types]

    def types(self) -> list[str]:
        return [event_type(e) for e in self.events]

    async def wait_for(self, predicate: Callable[[Collector], bool], timeout: float = 10.0) -> None:
        """Wait until ``predicate(self)`` holds; fail with what was seen if it never does."""
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: predicate(self)), timeout)
            except TimeoutError:
                pytest.fail(f"condition not met in {timeout}s; saw types {self.types()[-30:]}")

    async def wait_count(self, type_: str, n: int, timeout: float = 10.0) -> None:
        await self.wait_for(lambda c: len(c.of_type(type_)) >= n, timeout)


@pytest.fixture
def collector() -> Collector:
    return Collector()


@pytest.fixture(autouse=True, scope="session")
def _logging() -> None:
    log.configure("debug")


@pytest.fixture(autouse=True)
def _garbage_collected_before_ast(request: pytest.FixtureRequest) -> None:
    """Tests that parse source with ``ast``: collect first. A task an earlier test left with
    an unretrieved exception is logged when collected, and in CPython 3.11 formatting that
    traceback parses too (the caret anchors); if the collection falls inside another
    ``ast.parse``, the two share the AST module's recursion counter and the outer one raises
    "AST constructor recursion depth mismatch": a failure of the wrong test, by chance."""
    if "ast" in vars(request.module):
        gc.collect()
