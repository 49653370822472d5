"""MT4 bridge: the known-positions book (dedupe of WS vs REST) and the circuit breaker."""

from __future__ import annotations

import pytest

from tradebus.adapters.mt4bridge import wire
from tradebus.adapters.mt4bridge.reconcile import Breaker, PositionBook, State, merge


def _pos(ticket: int, **fields: object) -> wire.Position:
    return wire.Position(ticket=ticket, symbol="EURUSD", type="BUY", **fields)  # type: ignore[arg-type]


def _state(breaker: Breaker) -> State:
    return breaker.state


def test_snapshot_diff_reports_appeared_and_vanished_and_keeps_unchanged() -> None:
    """A snapshot reports what appeared and what vanished; what stayed gives nothing."""
    book = PositionBook()
    first = book.reconcile([_pos(1), _pos(2)], requested_at=1.0)
    assert [p.ticket for p in first.opened] == [1, 2]
    assert first.closed == []
    second = book.reconcile([_pos(2, profit=5.0), _pos(3)], requested_at=2.0)
    assert [p.ticket for p in second.opened] == [3]
    assert [p.ticket for p in second.closed] == [1]
    assert book.get(2) == _pos(2, profit=5.0)
    third = book.reconcile([_pos(2, profit=5.0), _pos(3)], requested_at=3.0)
    assert third.opened == []
    assert third.closed == []
    assert len(book) == 2


def test_ws_open_is_not_reported_again_by_reconciliation() -> None:
    """A position the WS reported opened is not re-opened by the next snapshot."""
    book = PositionBook()
    assert book.opened(_pos(7), now=1.0) is True
    assert book.opened(_pos(7), now=1.5) is False
    diff = book.reconcile([_pos(7)], requested_at=2.0)
    assert diff.opened == []
    assert diff.closed == []


def test_ws_close_is_not_reported_again_and_stale_snapshot_cannot_reopen() -> None:
    """After a WS close, neither a repeat close nor a stale snapshot listing it reports again."""
    book = PositionBook()
    book.reconcile([_pos(7, open_price=1.1)], requested_at=1.0)
    closed = book.closed(_pos(7, current_price=1.2, profit=3.0))
    assert closed == _pos(7, open_price=1.1, current_price=1.2, profit=3.0)
    assert book.closed(_pos(7)) is None
    stale = book.reconcile([_pos(7)], requested_at=0.5)
    assert stale.opened == []
    assert 7 not in book
    assert book.opened(_pos(7), now=3.0) is False


def test_snapshot_older_than_a_ws_open_does_not_close_it() -> None:
    """A snapshot requested before the WS reported an open cannot report that position closed."""
    book = PositionBook()
    book.reconcile([], requested_at=1.0)
    assert book.opened(_pos(9), now=2.5)
    diff = book.reconcile([], requested_at=2.0)
    assert diff.closed == []
    assert 9 in book
    later = book.reconcile([], requested_at=3.0)
    assert [p.ticket for p in later.closed] == [9]


def test_ws_close_of_an_unknown_ticket_is_reported_once() -> None:
    """A close for a ticket never seen open (opened and closed during a cut) is news, once."""
    book = PositionBook()
    assert book.closed(_pos(11, profit=1.0)) == _pos(11, profit=1.0)
    assert book.closed(_pos(11)) is None


def test_profit_update_refreshes_known_position() -> None:
    """Profit updates refresh the last known price and profit used by a later close."""
    book = PositionBook()
    book.opened(_pos(4, open_price=1.0), now=1.0)
    book.update(4, current_price=1.5, profit=None)
    book.update(99, current_price=2.0)
    assert book.get(4) == _pos(4, open_price=1.0, current_price=1.5)
    assert book.get(99) is None


def test_merge_fills_only_missing_fields() -> None:
    """merge keeps the new values and fills only the gaps from the old position."""
    old = _pos(1, volume=0.2, open_price=1.0, profit=1.0)
    new = wire.Position(ticket=1, profit=2.0)
    assert merge(old, new) == _pos(1, volume=0.2, open_price=1.0, profit=2.0)


def test_breaker_opens_after_threshold_consecutive_failures() -> None:
    """Closed until `threshold` failures in a row; a success in between resets the count."""
    breaker = Breaker(threshold=3, reset=10.0)
    assert breaker.failure(0.0) is False
    assert breaker.failure(0.1) is False
    assert breaker.success() is False
    assert breaker.failures == 0
    assert [breaker.failure(t) for t in (1.0, 1.1, 1.2)] == [False, False, True]
    assert _state(breaker) is State.OPEN
    assert breaker.allow(5.0) is False
    assert breaker.retry_in(5.0) == pytest.approx(6.2)


def test_breaker_half_open_allows_one_probe_then_closes_on_success() -> None:
    """After `reset`, one probe goes out; its success closes the breaker (recovered)."""
    breaker = Breaker(threshold=1, reset=2.0)
    assert breaker.failure(0.0) is True
    assert breaker.allow(1.9) is False
    assert breaker.allow(2.0) is True
    assert _state(breaker) is State.HALF_OPEN
    assert breaker.allow(2.0) is False
    assert breaker.success() is True
    assert _state(breaker) is State.CLOSED
    assert breaker.allow(2.1) is True
    assert breaker.retry_in(2.1) == 0.0


def test_breaker_half_open_failure_reopens_for_a_full_reset() -> None:
    """A failed probe reopens at once (no threshold), for another full `reset`."""
    breaker = Breaker(threshold=5, reset=2.0)
    for t in range(5):
        breaker.failure(float(t))
    assert _state(breaker) is State.OPEN
    assert breaker.allow(6.0) is True
    assert breaker.failure(6.0) is True
    assert _state(breaker) is State.OPEN
    assert breaker.allow(7.9) is False
    assert breaker.allow(8.0) is True
    breaker.abort(8.5)
    assert _state(breaker) is State.OPEN
    assert breaker.allow(10.4) is False
    assert breaker.allow(10.5) is True


def test_breaker_lost_probe_does_not_wedge_half_open() -> None:
    """A probe that never reports back is replaced by another one after `reset`."""
    breaker = Breaker(threshold=1, reset=2.0)
    breaker.failure(0.0)
    assert breaker.allow(2.0) is True
    assert breaker.allow(3.9) is False
    assert breaker.allow(4.0) is True
    assert _state(breaker) is State.HALF_OPEN
