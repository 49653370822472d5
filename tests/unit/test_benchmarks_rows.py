"""Rows compared with each other are measured round by round, and the floor answers on demand."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import msgspec
from benchmarks import floormix, harness, rows, wsref
from benchmarks.frames import Mix, aligned_chunks
from benchmarks.result import Row, RunResult

from tradebus.schemas.events import Event


def _run(log: list[str], name: str, rate: float = 100.0) -> Callable[[], RunResult]:
    def once() -> RunResult:
        log.append(name)
        return RunResult(rate, 1.0, 10.0, 1)

    return once


def test_rows_alternate_round_by_round() -> None:
    log: list[str] = []
    a, b = Row(name="a"), Row(name="b")
    rows.alternate([(a, _run(log, "a")), (b, _run(log, "b"))], 3)
    assert log == ["a", "b", "a", "b", "a", "b"]
    assert len(a.runs) == len(b.runs) == 3


def test_a_failing_row_is_na_and_the_other_goes_on() -> None:
    log: list[str] = []
    calls = 0

    def flaky() -> RunResult:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise TimeoutError("no result")
        return RunResult(1.0, 1.0, 1.0, 1)

    a, b = Row(name="a"), Row(name="b")
    rows.alternate([(a, flaky), (b, _run(log, "b"))], 3)
    assert a.na == "failed: no result"
    assert a.runs == []
    assert calls == 2  # not asked again once it failed
    assert log == ["b", "b", "b"]


def test_a_row_already_na_is_not_run() -> None:
    log: list[str] = []
    a = Row(name="a", na="no adapter yet")
    rows.alternate([(a, _run(log, "a"))], 2)
    assert log == []
    assert a.na == "no adapter yet"


def test_paired_gives_the_spread_of_run_by_run_ratios() -> None:
    row = Row(name="r", runs=[RunResult(r, 1, 1, 1) for r in (50.0, 60.0, 45.0)])
    base = Row(name="b", runs=[RunResult(r, 1, 1, 1) for r in (100.0, 100.0, 100.0)])
    assert rows.paired(row, base) == "run by run 45%-60%"
    # Unpaired runs (a failed side, or one run) give no spread rather than a wrong one.
    assert rows.paired(row, Row(name="b", runs=base.runs[:2])) == ""
    assert rows.paired(Row(name="r", runs=row.runs[:1]), Row(name="b", runs=base.runs[:1])) == ""


def test_the_floor_runs_a_pass_each_time_it_is_asked() -> None:
    with harness.workdir() as work:
        with rows.Floor(work, rows.TINY) as floor:
            first = floor.once()
            second = floor.once()
        assert first.events == second.events == rows.TINY.floor_events
        assert first.rate > 0
        assert second.rate > 0
        assert floor._proc.returncode == 0  # EOF on its stdin ended it


def test_ratio_is_the_median_of_paired_runs_else_the_ratio_of_medians() -> None:
    row = Row(name="r", runs=[RunResult(r, 1, 1, 1) for r in (50.0, 60.0, 45.0)])
    base = Row(name="b", runs=[RunResult(r, 1, 1, 1) for r in (100.0, 200.0, 90.0)])
    assert rows.ratio(row, base, "the floor") == "50% of the floor (run by run 30%-50%)"
    assert rows.ratio(row, Row(name="b", runs=base.runs[:2]), "x") == "33% of x"
    assert rows.ratio(row, Row(name="none"), "x") == ""


def test_the_mix_floor_writes_lines_that_are_canonical_events(tmp_path: Path) -> None:
    """Row 1b's output is shaped as tradebus's: every line decodes as an Event, one per
    canonical event of the mix (a batch position update gives several)."""
    mix = Mix(300)
    frames = tmp_path / "mix.sse"
    events = mix.write(frames)
    assert events > 300  # the mix has batch updates
    data = frames.read_bytes()
    chunks = aligned_chunks(data, 4096)
    assert b"".join(chunks) == data
    assert all(c.endswith(b"\n\n") for c in chunks)
    out = tmp_path / "out.jsonl"
    assert floormix.one_pass(chunks, out) == events
    decoded = [msgspec.json.decode(line, type=Event) for line in out.read_bytes().splitlines()]
    assert len(decoded) == events
    assert {type(e).__name__ for e in decoded} >= {"PositionUpdated", "OrderFilled", "TradeOpened"}


def test_the_websocket_floor_writes_canonical_quote_events(tmp_path: Path) -> None:
    writer = wsref.Writer(tmp_path / "out.jsonl")
    writer.take('{"type":"subscribed","payload":{"symbols":["EURUSD"]}}')  # not a quote: skipped
    writer.take(
        '{"type":"quoteEvent","payload":{"symbol":"EURUSD","bid":1.1,"ask":1.2,'
        '"ts":"2026-06-09T14:32:01.123Z"}}'
    )
    lines = bytes(writer.buf).splitlines()
    writer.close()
    assert len(lines) == 1
    event = msgspec.json.decode(lines[0], type=Event)
    assert event.symbol == "EURUSD"
    assert event.time == "2026-06-09T14:32:01.123Z"
