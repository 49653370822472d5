"""Rows compared with each other are measured round by round, and the floor answers on demand."""

from __future__ import annotations

from collections.abc import Callable

from benchmarks import harness, rows
from benchmarks.result import Row, RunResult


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
