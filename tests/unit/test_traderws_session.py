"""Trader WS session state machine: subscriptions, resubscribe, token expiry, back-fill order."""

from __future__ import annotations

import msgspec
import pytest

from tradebus.adapters.traderws import session as s
from tradebus.adapters.traderws import wire
from tradebus.adapters.traderws.adapter import endpoints
from tradebus.schemas.events import Event, event_type

T0 = 1_780_315_200.0  # 2026-06-01T12:00:00Z
PLAN = s.Plan(
    symbols=("EURUSD", "GBPUSD"),
    events=("quoteEvent", "executionEvent"),
    depth=("EURUSD",),
    depth_levels=5,
    metrics_accounts=("acc_123",),
    history_account="acc_123",
)


def msg(type_: str, **payload: object) -> wire.ServerMessage:
    return wire.decode(msgspec.json.encode({"type": type_, "payload": payload}))


def phase(sess: s.Session) -> s.Phase:
    return sess.phase


def as_json(messages: list[wire.ClientMessage]) -> list[object]:
    return [msgspec.json.decode(wire.encode(m)) for m in messages]


def acks() -> list[wire.ServerMessage]:
    return [
        msg("subscribed", symbols=["EURUSD", "GBPUSD"], events=["quoteEvent", "executionEvent"]),
        msg("subscribed", symbol="EURUSD", depth=5),
        msg("subscribed", accountId="acc_123"),
    ]


def execution(n: int, status: str = "FILLED", ts: str = "2026-06-01T12:00:01Z") -> object:
    return {
        "executionId": f"ex-{n}",
        "orderId": f"ord-{n}",
        "accountId": "acc_123",
        "symbol": "EURUSD",
        "status": status,
        "ts": ts,
    }


def quote(ts: str) -> wire.ServerMessage:
    return msg("quoteEvent", symbol="EURUSD", bid=1.1, ask=1.2, ts=ts)


def feed(sess: s.Session, messages: list[wire.ServerMessage], now: float) -> list[Event]:
    out: list[Event] = []
    for m in messages:
        out.extend(sess.receive(m, "2026-06-01T12:00:00.000Z", now))
    return out


def connect(sess: s.Session, now: float) -> list[Event]:
    sess.open(now)
    return feed(sess, acks(), now)


EXPECTED_REQUESTS = [
    {
        "type": "subscribe",
        "payload": {"symbols": ["EURUSD", "GBPUSD"], "events": ["quoteEvent", "executionEvent"]},
    },
    {"type": "depthSubscribe", "payload": {"symbol": "EURUSD", "depth": 5}},
    {"type": "metricsSubscribe", "payload": {"accountId": "acc_123"}},
]


def test_open_sends_configured_subscription_set() -> None:
    """A connection subscribes to the configured symbols/kinds, each depth symbol, each account."""
    sess = s.Session("tws", PLAN)
    assert as_json(sess.open(T0)) == EXPECTED_REQUESTS
    assert phase(sess) is s.Phase.SUBSCRIBING
    assert sess.deadline() == T0 + 10.0


def test_depth_without_levels_omits_depth_field() -> None:
    """depthSubscribe leaves out ``depth`` when no depth_levels is configured."""
    sess = s.Session("tws", s.Plan(depth=("GBPUSD",)))
    assert as_json(sess.open(T0)) == [{"type": "depthSubscribe", "payload": {"symbol": "GBPUSD"}}]


def test_acks_complete_subscription_and_first_connection_goes_live() -> None:
    """All acks in → Connected, live at once on a first connection (no history asked)."""
    sess = s.Session("tws", PLAN)
    sess.open(T0)
    assert feed(sess, acks()[:2], T0) == []
    assert phase(sess) is s.Phase.SUBSCRIBING
    feed(sess, acks()[2:], T0 + 1)
    assert sess.take_actions() == [s.Connected()]
    assert phase(sess) is s.Phase.LIVE
    assert sess.deadline() is None
    [event] = feed(sess, [quote("2026-06-01T12:00:02Z")], T0 + 2)
    assert event_type(event) == "quote.updated"


def test_subscribe_timeout_names_reason() -> None:
    """Acks not all in by the deadline → the overdue reason is subscribe_timeout."""
    sess = s.Session("tws", PLAN, subscribe_timeout=3.0)
    sess.open(T0)
    feed(sess, acks()[:1], T0)
    assert (sess.deadline(), sess.overdue()) == (T0 + 3.0, "subscribe_timeout")


def test_resubscribe_after_reconnect_is_exactly_the_same_set() -> None:
    """Every reconnect sends exactly the first connection's subscription requests."""
    sess = s.Session("tws", PLAN)
    first = as_json(sess.open(T0))
    feed(sess, acks(), T0)
    sess.closed()
    second = as_json(sess.open(T0 + 5))
    sess.closed()
    third = as_json(sess.open(T0 + 9))
    assert first == second == third == EXPECTED_REQUESTS


def test_token_expiry_requires_login_again() -> None:
    """No token → login; a token is good until its lifetime less a margin; dropped → login."""
    sess = s.Session("tws", PLAN)
    assert sess.token_needed(T0)
    sess.token_obtained("jwt-1", 100.0, T0)
    assert sess.token == "jwt-1"
    assert not sess.token_needed(T0 + 89.9)
    assert sess.token_needed(T0 + 90.0)  # 10 % margin of a 100 s lifetime
    assert sess.token_expired(T0 + 95.0)
    sess.token_obtained("jwt-2", None, T0)
    assert not sess.token_needed(T0 + 10**6)
    assert not sess.token_expired(T0 + 10**6)
    sess.drop_token()
    assert sess.token_needed(T0)


def test_reconnect_backfills_missed_executions_once_before_live() -> None:
    """After a cut: gap for quotes, history asked for the away window, missed fills first, once."""
    sess = s.Session("tws", PLAN)
    connect(sess, T0)
    live = feed(sess, [msg("executionEvent", **execution(1))], T0 + 1)  # type: ignore[arg-type]
    assert [e.id for e in live] == ["tws:exec:ex-1"]
    sess.take_actions()
    sess.closed()

    sess.open(T0 + 10)
    feed(sess, acks(), T0 + 10)
    actions = sess.take_actions()
    assert actions[:2] == [
        s.Connected(),
        s.Gap("quotes_not_backfilled", "2026-06-01T12:00:01.000Z", "2026-06-01T12:00:10.000Z"),
    ]
    sent = as_json([a.message for a in actions[2:] if isinstance(a, s.Send)])
    assert sent == [
        {
            "type": kind,
            "payload": {
                "requestId": f"{kind}-2-{n}",
                "accountId": "acc_123",
                "from": "2026-06-01T11:59:56.000Z",
                "to": "2026-06-01T12:00:15.000Z",
            },
        }
        for n, kind in ((1, "dealHistory"), (2, "orderHistory"))
    ]
    assert phase(sess) is s.Phase.BACKFILLING
    assert sess.overdue() == "history_timeout"

    # Live messages while the history is pending are held back.
    ex4 = execution(4, ts="2026-06-01T12:00:11Z")
    held = [quote("2026-06-01T12:00:11Z"), msg("executionEvent", **ex4)]  # type: ignore[arg-type]
    assert feed(sess, held, T0 + 11) == []
    deals = msg(
        "dealHistory",
        requestId="dealHistory-2-1",
        deals=[execution(3, ts="2026-06-01T12:00:05Z"), execution(1), ex4],
    )
    assert feed(sess, [deals], T0 + 12) == []
    orders = msg(
        "orderHistory",
        requestId="orderHistory-2-2",
        orders=[execution(2, "NEW", ts="2026-06-01T12:00:04Z")],
    )
    out = feed(sess, [orders], T0 + 12)
    assert [e.id for e in out] == [
        "tws:exec:ex-2",
        "tws:exec:ex-3",
        "tws:exec:ex-4",
        "tws:quote:EURUSD:2026-06-01T12:00:11Z:1.1:1.2",
    ]
    assert [event_type(e) for e in out[:3]] == ["order.accepted", "order.filled", "order.filled"]
    assert phase(sess) is s.Phase.LIVE
    # The same executions arriving again are dropped.
    assert feed(sess, [msg("executionEvent", **execution(3))], T0 + 13) == []  # type: ignore[arg-type]


def test_cut_while_backfilling_loses_nothing() -> None:
    """Executions held back when the connection drops are delivered by the next reconnect."""
    sess = s.Session("tws", PLAN)
    connect(sess, T0)
    feed(sess, [quote("2026-06-01T12:00:01Z")], T0 + 1)
    sess.closed()
    sess.open(T0 + 5)
    feed(sess, acks(), T0 + 5)
    assert feed(sess, [msg("executionEvent", **execution(7))], T0 + 6) == []  # type: ignore[arg-type]
    sess.closed()
    sess.open(T0 + 8)
    feed(sess, acks(), T0 + 8)
    sess.take_actions()
    feed(sess, [msg("orderHistory", requestId="orderHistory-3-4", orders=[])], T0 + 9)
    out = feed(
        sess, [msg("dealHistory", requestId="dealHistory-3-3", deals=[execution(7)])], T0 + 9
    )
    assert [e.id for e in out] == ["tws:exec:ex-7"]


def test_history_error_reports_gap_and_goes_live() -> None:
    """An error answering a history request → status.error, a history_unavailable gap, live."""
    sess = s.Session("tws", PLAN)
    connect(sess, T0)
    feed(sess, [quote("2026-06-01T12:00:01Z")], T0 + 1)
    sess.closed()
    sess.open(T0 + 5)
    feed(sess, acks(), T0 + 5)
    sess.take_actions()
    feed(sess, [msg("orderHistory", requestId="orderHistory-2-2", orders=[])], T0 + 6)
    err = msg("error", code="RATE_LIMIT", message="slow down", requestId="dealHistory-2-1")
    out = feed(sess, [err], T0 + 6)
    assert [event_type(e) for e in out] == ["status.error"]
    assert sess.take_actions() == [
        s.Reported("upstream_error", "RATE_LIMIT"),
        s.Gap("history_unavailable", "2026-06-01T12:00:01.000Z", "2026-06-01T12:00:06.000Z"),
    ]
    assert phase(sess) is s.Phase.LIVE


def test_no_history_account_reports_gap_for_executions() -> None:
    """Without an account to query, a reconnect says executions were not back-filled."""
    plan = s.Plan(symbols=("EURUSD",), events=("executionEvent",))
    sess = s.Session("tws", plan)
    sess.open(T0)
    feed(sess, [msg("subscribed", symbols=["EURUSD"], events=["executionEvent"])], T0)
    sess.closed()
    sess.open(T0 + 3)
    feed(sess, [msg("subscribed", symbols=["EURUSD"], events=["executionEvent"])], T0 + 3)
    assert sess.take_actions()[-1] == s.Gap(
        "executions_not_backfilled", "2026-06-01T12:00:00.000Z", "2026-06-01T12:00:03.000Z"
    )
    assert phase(sess) is s.Phase.LIVE


def test_bad_execution_is_a_problem_not_a_crash() -> None:
    """An execution with an unknown status yields a Problem action and no event."""
    sess = s.Session("tws", PLAN)
    connect(sess, T0)
    sess.take_actions()
    bad = msg("executionEvent", executionId="e", orderId="o", status="WEIRD")
    assert feed(sess, [bad], T0) == []
    assert sess.take_actions() == [s.Problem("executionEvent", "unknown execution status 'WEIRD'")]


def test_history_keeps_only_subscribed_symbols() -> None:
    """Back-filled executions are those the live stream would have given: subscribed symbols."""
    sess = s.Session("tws", PLAN)
    connect(sess, T0)
    sess.closed()
    sess.open(T0 + 5)
    feed(sess, acks(), T0 + 5)
    other = {**execution(8), "symbol": "USDJPY"}  # type: ignore[dict-item]
    feed(sess, [msg("orderHistory", requestId="orderHistory-2-2", orders=[other])], T0 + 6)
    out = feed(
        sess, [msg("dealHistory", requestId="dealHistory-2-1", deals=[execution(9)])], T0 + 6
    )
    assert [e.id for e in out] == ["tws:exec:ex-9"]


def test_endpoints_derive_ws_scheme_from_url() -> None:
    """http → ws and https → wss, under the configured path, without the config's query."""
    login, ws = endpoints("https://broker.example/trader/?x=1")
    assert (str(login), str(ws)) == (
        "https://broker.example/trader/api/v1/login",
        "wss://broker.example/trader/api/v1/ws",
    )
    login, ws = endpoints("http://127.0.0.1:8080")
    assert (str(login), str(ws)) == (
        "http://127.0.0.1:8080/api/v1/login",
        "ws://127.0.0.1:8080/api/v1/ws",
    )


def test_data_before_all_acks_is_held_until_connected() -> None:
    """Data arriving before every ack is in is released right after Connected, in order."""
    sess = s.Session("tws", PLAN)
    sess.open(T0)
    assert feed(sess, acks()[:1], T0) == []
    early = [quote("2026-06-01T12:00:00.100Z"), msg("executionEvent", **execution(1))]  # type: ignore[arg-type]
    assert feed(sess, early, T0) == []
    err = msg("error", code="X", message="nope")
    assert [event_type(e) for e in feed(sess, [err], T0)] == ["status.error"]
    assert sess.take_actions() == [s.Reported("upstream_error", "X")]
    out = feed(sess, acks()[1:], T0)
    assert sess.take_actions() == [s.Connected()]
    assert [e.id for e in out] == [
        "tws:quote:EURUSD:2026-06-01T12:00:00.100Z:1.1:1.2",
        "tws:exec:ex-1",
    ]


def test_market_data_held_before_connected_is_bounded_and_the_rest_is_a_gap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Quotes held back for a late ack stop at the bound; what came past it is a gap from the
    first one dropped until the session went live. Executions are held whatever the count."""
    monkeypatch.setattr(s, "HELD_MARKET_LIMIT", 3)
    sess = s.Session("tws", PLAN)
    sess.open(T0)
    assert feed(sess, acks()[:1], T0) == []
    early: list[wire.ServerMessage] = [quote(f"2026-06-01T12:00:00.{n:03d}Z") for n in range(1, 6)]
    early.insert(4, msg("executionEvent", **execution(1)))  # type: ignore[arg-type]
    early.append(msg("executionEvent", **execution(2)))  # type: ignore[arg-type]
    for n, m in enumerate(early):
        assert sess.receive(m, f"2026-06-01T12:00:00.{n + 1:03d}Z", T0) == []
    out = feed(sess, acks()[1:], T0 + 2)
    assert sess.take_actions() == [
        s.Connected(),
        s.Gap("market_data_not_held", "2026-06-01T12:00:00.004Z", "2026-06-01T12:00:02.000Z"),
    ]
    assert [e.id for e in out] == [
        "tws:quote:EURUSD:2026-06-01T12:00:00.001Z:1.1:1.2",
        "tws:quote:EURUSD:2026-06-01T12:00:00.002Z:1.1:1.2",
        "tws:quote:EURUSD:2026-06-01T12:00:00.003Z:1.1:1.2",
        "tws:exec:ex-1",
        "tws:exec:ex-2",
    ]
    # The next connection starts with an empty hold and no gap of its own (this one holds
    # until both history replies are in).
    sess.closed()
    sess.open(T0 + 10)
    feed(sess, [*acks(), *[quote(f"2026-06-01T12:00:10.{n:03d}Z") for n in (1, 2, 3)]], T0 + 10)
    replies = [
        msg("dealHistory", requestId="dealHistory-2-1", deals=[]),
        msg("orderHistory", requestId="orderHistory-2-2", orders=[]),
    ]
    released = feed(sess, replies, T0 + 11)
    gaps = [a.reason for a in sess.take_actions() if isinstance(a, s.Gap)]
    assert gaps == ["quotes_not_backfilled"]
    assert len(released) == 3


def test_cut_before_first_ack_backfills_from_first_open() -> None:
    """A first connection lost before going live is back-filled from when it opened."""
    sess = s.Session("tws", PLAN)
    sess.open(T0)
    sess.closed()
    sess.open(T0 + 20)
    feed(sess, acks(), T0 + 20)
    sent = [a.message for a in sess.take_actions() if isinstance(a, s.Send)]
    assert [m.payload.from_ for m in sent] == ["2026-06-01T11:59:55.000Z"] * 2  # type: ignore[union-attr]
