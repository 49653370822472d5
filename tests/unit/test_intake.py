"""Intake: one read normalized message by message, published as one batch, then marked seen."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from tests.unit.deliverykit import quote
from tradebus.adapters.base import SourceContext
from tradebus.adapters.intake import Intake
from tradebus.schemas.events import Event

RECEIVED = "2026-06-09T14:32:01.123Z"


def _quote(n: int) -> Event:
    return quote(n, source="s")


class Bus:
    """Takes batches; ``seen_at_publish`` is what the intake had marked seen at each one."""

    def __init__(self, intake: Intake[int] | None = None) -> None:
        self.batches: list[list[Event]] = []
        self.seen_at_publish: list[set[int]] = []
        self.intake = intake
        self.fail: BaseException | None = None

    async def publish(self, events: Sequence[Event]) -> None:
        if self.intake is not None:
            young, old = self.intake.seen.generations()
            self.seen_at_publish.append(young | old)
        if self.fail is not None:
            raise self.fail
        self.batches.append(list(events))


def _intake(bus: Bus) -> tuple[SourceContext, Intake[int]]:
    ctx = SourceContext("s", "ttmt", bus.publish)
    intake: Intake[int] = Intake(ctx, 100)
    bus.intake = intake
    return ctx, intake


def _handle(n: int, received: str, events: list[Event]) -> None:
    if n < 0:
        raise ValueError(f"no quote {n}")
    assert received == RECEIVED
    events.append(_quote(n))


async def test_one_bad_message_is_its_own_and_the_rest_of_the_read_is_one_batch() -> None:
    bus = Bus()
    ctx, intake = _intake(bus)
    intake.each([1, -2, 3, -4, 5], _handle, RECEIVED, "malformed", str)
    await intake.publish()
    assert [[e.id for e in batch] for batch in bus.batches] == [["s:1", "s:3", "s:5"]]
    assert ctx.counters["bad.malformed"] == 2


async def test_keys_are_marked_seen_only_after_the_bus_took_the_batch() -> None:
    bus = Bus()
    _, intake = _intake(bus)
    intake.events.append(_quote(1))
    intake.fresh.add(1)
    await intake.publish()
    assert bus.seen_at_publish == [set()]
    assert 1 in intake.seen
    # The next read starts empty and dedupes against what was published.
    assert intake.events == []
    assert intake.fresh == set()


async def test_a_batch_the_bus_never_took_leaves_its_keys_unseen() -> None:
    """A cancel while publishing: the upstream's replay of those events is not a duplicate."""
    bus = Bus()
    _, intake = _intake(bus)
    bus.fail = asyncio.CancelledError()
    intake.events.append(_quote(7))
    intake.fresh.add(7)
    with pytest.raises(asyncio.CancelledError):
        await intake.publish()
    assert 7 not in intake.seen
    assert (intake.events, intake.fresh) == ([], set())


async def test_finish_sees_the_batch_and_an_empty_read_publishes_nothing() -> None:
    bus = Bus()
    _, intake = _intake(bus)
    await intake.publish()
    assert bus.batches == []
    intake.events += [_quote(2), _quote(1)]
    await intake.publish(lambda events: sorted(events, key=lambda e: e.id))
    assert [e.id for e in bus.batches[0]] == ["s:1", "s:2"]


def test_take_hands_over_a_read_published_with_other_events() -> None:
    bus = Bus()
    ctx, intake = _intake(bus)
    intake.each([4, -1], _handle, RECEIVED, "positions", str)
    assert [e.id for e in intake.take()] == ["s:4"]
    assert intake.take() == []
    assert ctx.counters["bad.positions"] == 1
    assert bus.batches == []
