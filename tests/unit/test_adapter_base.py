"""SourceContext: bad input counted and logged once (bounded), status events, bounded caches."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Sequence

import pytest

from tradebus import log
from tradebus.adapters.base import (
    RECONNECT_GRACE,
    UNKNOWN_NAMES,
    UNKNOWN_OTHER,
    BoundedDict,
    BoundedSet,
    SourceContext,
)
from tradebus.schemas.events import Event, event_type


async def _discard(_events: Sequence[Event]) -> None:
    pass


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    log.configure("debug", stream=stream)
    yield stream
    log.configure("debug")


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_bad_input_is_counted_every_time_and_logged_with_a_bounded_excerpt(
    logs: io.StringIO,
) -> None:
    """Each bad message counts; the log line carries an excerpt of at most ~200 characters."""
    ctx = SourceContext("s", "ttmt", _discard)
    ctx.bad_input("malformed", b"{" + b"x" * 10_000_000, ValueError("boom"))
    assert ctx.counters["bad.malformed"] == 1
    (line,) = _lines(logs)
    assert line["event"] == "bad_input"
    assert line["kind"] == "malformed"
    assert line["source"] == "s"
    excerpt = str(line["excerpt"])
    assert excerpt.startswith("{xxx")
    assert excerpt.endswith("…(+9999801 more)")
    assert len(excerpt) < 300


def test_a_flood_of_bad_input_logs_first_ten_then_powers_of_ten(logs: io.StringIO) -> None:
    """A feed gone bad cannot flood the log: 1000 bad messages give 12 lines, 1000 counted."""
    ctx = SourceContext("s", "ttmt", _discard)
    for _ in range(1000):
        ctx.bad_input("malformed", b"{")
    assert ctx.counters["bad.malformed"] == 1000
    assert [line["count"] for line in _lines(logs)] == [*range(1, 11), 100, 1000]


def test_unknown_type_is_counted_and_logged_once_at_info(logs: io.StringIO) -> None:
    """An unknown event type is not an error: counted per name, one info line per name."""
    ctx = SourceContext("s", "ttmt", _discard)
    for _ in range(3):
        ctx.unknown_type("new_thing")
    assert ctx.counters["unknown.new_thing"] == 3
    (line,) = _lines(logs)
    assert (line["event"], line["level"], line["name"]) == (
        "unknown_event_type",
        "info",
        "new_thing",
    )


def test_unknown_type_names_are_bounded_per_source(logs: io.StringIO) -> None:
    """A feed inventing a type name per message fills UNKNOWN_NAMES counters, then one
    ``unknown.other``; names seen before the bound keep their own count."""
    ctx = SourceContext("s", "ttmt", _discard)
    for i in range(UNKNOWN_NAMES + 50):
        ctx.unknown_type(f"invented_{i}")
    ctx.unknown_type("invented_0")
    ctx.unknown_type("invented_999")
    unknown = {k: n for k, n in ctx.counters.items() if k.startswith("unknown.")}
    assert len(unknown) == UNKNOWN_NAMES + 1
    assert unknown[UNKNOWN_OTHER] == 51
    assert unknown["unknown.invented_0"] == 2
    assert f"unknown.invented_{UNKNOWN_NAMES}" not in unknown
    assert sum(unknown.values()) == UNKNOWN_NAMES + 52
    events = [line["event"] for line in _lines(logs)]
    assert events == ["unknown_event_type"] * UNKNOWN_NAMES + ["unknown_event_types_bounded"]


def test_status_events_have_unique_ids_and_no_secret_in_message() -> None:
    """Status ids never repeat; messages are scrubbed of known secrets and URL queries."""
    ctx = SourceContext("src", "traderws", _discard)
    a = ctx.status("status.error", reason="x", message="at wss://h/ws?token=eyJabc", code=500)
    b = ctx.status("status.error", reason="x")
    assert a.id != b.id
    assert a.id.startswith("src:status.error:")
    assert event_type(a) == "status.error"
    assert a.data.message == "at wss://h/ws?***"  # type: ignore[union-attr]
    assert a.data.code == "500"  # type: ignore[union-attr]
    gap = ctx.gap(first_missing=5, last_missing=9, reason="buffer")
    assert (gap.data.first_missing, gap.data.last_missing) == (5, 9)  # type: ignore[union-attr]


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _row(ctx: SourceContext, now: float) -> tuple[bool, bool, str | None]:
    """What the ops endpoint shows of a source: up, within a planned reconnect's grace, and
    its last error."""
    return ctx.up, ctx.in_grace(now), ctx.last_error


def test_connected_sets_the_state_and_builds_the_status_event_together() -> None:
    """``connected()`` counts the connection, marks the source up and returns its event."""
    clock = Clock()
    ctx = SourceContext("src", "ttmt", _discard, clock=clock)
    assert (ctx.up, ctx.connects) == (False, 0)
    clock.now += 5
    event = ctx.connected(reason="subscribed", account="A1")
    assert event_type(event) == "status.connected"
    assert (event.source, event.provider, event.account) == ("src", "ttmt", "A1")
    assert event.data.reason == "subscribed"  # type: ignore[union-attr]
    assert (ctx.up, ctx.since, ctx.connects, ctx.reconnects) == (True, 1005.0, 1, 0)
    ctx.connected()
    assert (ctx.connects, ctx.reconnects, ctx.since) == (2, 1, 1005.0)  # still up since then


def test_an_unplanned_disconnect_is_an_error_and_ends_readiness_at_once() -> None:
    """Down, no grace, ``last_error`` says what ended it; the event carries all of it."""
    clock = Clock()
    ctx = SourceContext("src", "ttmt", _discard, clock=clock)
    ctx.connected()
    clock.now += 2
    event = ctx.disconnected("read_timeout", planned=False, retry_in=1.23456, code=None)
    assert event_type(event) == "status.disconnected"
    assert (event.data.reason, event.data.retry_in) == ("read_timeout", 1.235)  # type: ignore[union-attr]
    assert _row(ctx, clock.now) == (False, False, "status.disconnected:read_timeout")
    assert ctx.since == 1002.0


def test_a_planned_disconnect_keeps_the_source_ready_for_its_grace_only() -> None:
    """A planned reconnect leaves ``last_error`` alone and is in grace until it runs out;
    the grace is the context's, so an adapter may set its own."""
    clock = Clock()
    ctx = SourceContext("src", "ttmt", _discard, clock=clock)
    ctx.connected()
    event = ctx.disconnected("recycle", planned=True, retry_in=0.0)
    assert event_type(event) == "status.disconnected"
    assert _row(ctx, clock.now) == (False, True, None)
    assert _row(ctx, clock.now + RECONNECT_GRACE - 0.01) == (False, True, None)
    assert _row(ctx, clock.now + RECONNECT_GRACE) == (False, False, None)
    ctx.reconnect_grace = 10.0
    assert ctx.in_grace(clock.now + RECONNECT_GRACE)
    ctx.connected()
    assert _row(ctx, clock.now) == (True, False, None)  # up again: no grace to speak of
    ctx.disconnected("read_timeout", planned=False, retry_in=1.0)
    assert _row(ctx, clock.now) == (False, False, "status.disconnected:read_timeout")


def test_an_unplanned_disconnect_after_a_planned_one_ends_the_grace() -> None:
    """A failed attempt during a planned reconnect is a failure: not ready any more."""
    clock = Clock()
    ctx = SourceContext("src", "ttmt", _discard, clock=clock)
    ctx.connected()
    ctx.disconnected("recycle", planned=True, retry_in=0.0)
    ctx.disconnected("conflict", planned=False, retry_in=2.0, code=409, kind="status.error")
    assert _row(ctx, clock.now) == (False, False, "status.error:conflict:409")


def test_error_and_auth_endings_carry_retry_in_and_end_the_connection() -> None:
    """A failed attempt (``status.error``) or a refused credential (``status.auth_failed``)
    with its ``retry_in`` ends the connection, as a disconnect does."""
    ctx = SourceContext("src", "traderws", _discard)
    ctx.connected()
    event = ctx.disconnected(
        "adapter_crashed", planned=False, retry_in=0.5, message="KeyError", kind="status.error"
    )
    assert event_type(event) == "status.error"
    assert (event.data.retry_in, event.data.message) == (0.5, "KeyError")  # type: ignore[union-attr]
    assert (ctx.up, ctx.last_error) == (False, "status.error:adapter_crashed")
    ctx.connected()
    event = ctx.disconnected(
        "token_rejected", planned=False, retry_in=60.0, code="4401", kind="status.auth_failed"
    )
    assert event_type(event) == "status.auth_failed"
    assert (ctx.up, ctx.last_error) == (False, "status.auth_failed:token_rejected:4401")


def test_an_in_band_error_leaves_the_connection_up() -> None:
    """An upstream's error message (no retry) names the last error and changes nothing else,
    whether the context builds its event or a normalizer did."""
    ctx = SourceContext("src", "mt4bridge", _discard)
    ctx.connected()
    since = ctx.since
    event = ctx.error("upstream_error", code="E42", message="symbol unknown", account="7")
    assert event_type(event) == "status.error"
    assert event.data.retry_in is None  # type: ignore[union-attr]
    assert (ctx.up, ctx.since, ctx.last_error) == (True, since, "status.error:upstream_error:E42")
    ctx.reported("subscribe", None)
    assert (ctx.up, ctx.last_error) == (True, "status.error:subscribe")


async def test_publish_counts_events_and_leaves_the_state_to_the_adapter() -> None:
    """A status event published as it is (not made by ``connected()`` / ``disconnected()``)
    is counted like any other and changes no state."""
    seen: list[Sequence[Event]] = []

    async def keep(events: Sequence[Event]) -> None:
        seen.append(events)

    ctx = SourceContext("src", "ttmt", keep)
    await ctx.publish([ctx.connected()])
    await ctx.publish([ctx.status("status.disconnected", reason="read_timeout")])
    await ctx.publish([ctx.gap(reason="replay_buffer_exceeded")])
    assert (ctx.up, ctx.last_error, ctx.gaps, ctx.published.total()) == (True, None, 1, 3)
    assert [event_type(b[0]) for b in seen] == [
        "status.connected",
        "status.disconnected",
        "status.gap",
    ]


def test_bounded_set_remembers_the_newest_maxsize_and_forgets_the_oldest() -> None:
    """BoundedSet always holds its newest maxsize members and never more than twice that."""
    seen: BoundedSet[int] = BoundedSet(3)
    for n in range(7):
        seen.add(n)
        assert all(m in seen for m in range(max(0, n - 2), n + 1))
        assert len(seen) <= 6
    assert [n in seen for n in range(7)] == [False, False, False, True, True, True, True]


def test_bounded_set_update_adds_a_batch() -> None:
    """update() adds every member of a batch, and a batch past maxsize is still remembered."""
    seen: BoundedSet[int] = BoundedSet(4)
    seen.update(range(10))
    assert all(n in seen for n in range(10))
    seen.update([10, 11])
    assert all(n in seen for n in range(12))
    seen.update(range(12, 16))
    assert 0 not in seen
    assert all(n in seen for n in range(10, 16))


def test_bounded_dict_evicts_least_recently_set() -> None:
    """BoundedDict evicts the least recently set key; re-setting refreshes a key."""
    cache: BoundedDict[str, int] = BoundedDict(2)
    cache.set("a", 1)
    cache.set("b", 2)
    cache.set("a", 3)
    cache.set("c", 4)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (3, None, 4)
    assert cache.pop("a") == 3
    assert len(cache) == 1
