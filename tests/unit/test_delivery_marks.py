"""Append times from the watermarks (``Marks``): what lag and latency are measured from."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tradebus.delivery.tail import Marks


def test_a_seq_is_dated_by_the_first_watermark_that_covered_it() -> None:
    """time_of(seq) is when the first watermark past seq was sent; later seqs are not known."""
    marks = Marks()
    marks.add(1, 100.0)  # where knowledge begins: nothing journaled before
    marks.add(4, 101.0)  # seqs 1-3
    marks.add(9, 102.5)  # seqs 4-8
    assert [marks.time_of(s) for s in (1, 3, 4, 8)] == [101.0, 101.0, 102.5, 102.5]
    assert marks.time_of(9) is None


def test_seqs_from_before_the_start_are_dated_by_the_stop_if_known() -> None:
    """A sink behind since before a restart lags at least since the journal's last append."""
    assert Marks(before=50.0).time_of(0) is None  # nothing marked yet: start is 0
    marks = Marks(before=50.0)
    marks.add(10, 100.0)
    assert marks.time_of(3) == 50.0
    assert Marks().time_of(3) is None


def test_pruning_forgets_what_every_follower_passed() -> None:
    marks = Marks()
    marks.add(1, 0.0)
    for n in range(2, 12):
        marks.add(n, float(n))
    marks.prune(6)
    assert marks.time_of(6) == 7.0
    assert marks.time_of(10) == 11.0


@given(st.lists(st.integers(1, 50), min_size=1, max_size=400), st.integers(2, 16))
def test_past_its_cap_it_coarsens_but_never_dates_a_seq_later_than_it_was(
    steps: list[int], cap: int
) -> None:
    """Bounded memory; a merged mark keeps the earlier time, so lag is never understated."""
    marks = Marks(cap=cap)
    marks.add(1, 0.0)
    end = 1
    exact: dict[int, float] = {}
    for t, step in enumerate(steps, start=1):
        for seq in range(end, end + step):
            exact[seq] = float(t)
        end += step
        marks.add(end, float(t))
    assert len(marks._ends) <= cap
    for seq, when in exact.items():
        got = marks.time_of(seq)
        assert got is not None
        assert got <= when
