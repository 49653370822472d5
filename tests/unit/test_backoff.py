"""Backoff delays (full jitter, cap, floor, stable reset) and the HTTP failure classifier."""

from __future__ import annotations

import email.utils
import random
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradebus.backoff import Backoff, Failure, Kind, classify_http, parse_retry_after

NETWORK = Failure(Kind.RETRYABLE, "network")
RECYCLE = Failure(Kind.RECYCLE, "recycle")
AUTH = Failure(Kind.AUTH, "unauthorized", "401")
FATAL = Failure(Kind.FATAL, "http_error", "404")


def backoff(
    seed: int = 7,
    *,
    base: float = 0.5,
    cap: float = 30.0,
    stable_after: float = 30.0,
    auth_delay: float = 60.0,
) -> Backoff:
    return Backoff(
        base=base,
        cap=cap,
        stable_after=stable_after,
        auth_delay=auth_delay,
        rng=random.Random(seed),
    )


@settings(max_examples=200, deadline=None)
@given(
    seed=st.integers(min_value=0, max_value=2**32),
    base=st.floats(min_value=0.001, max_value=5.0),
    cap=st.floats(min_value=0.01, max_value=120.0),
    failures=st.integers(min_value=1, max_value=40),
)
def test_full_jitter_stays_within_the_exponential_ceiling(
    seed: int, base: float, cap: float, failures: int
) -> None:
    """The n-th retryable delay lies in [0, min(cap, base * 2**n)] for any seed."""
    policy = backoff(seed, base=base, cap=cap)
    for n in range(failures):
        delay = policy.delay(NETWORK)
        assert 0.0 <= delay <= min(cap, base * 2.0**n)
    assert policy.attempts == failures


def test_jitter_is_the_seeded_uniform_draw() -> None:
    """Each delay is exactly rng.uniform(0, ceiling) from the injected generator."""
    policy = backoff(42, base=0.5, cap=30.0)
    reference = random.Random(42)
    expected = [reference.uniform(0.0, min(30.0, 0.5 * 2.0**n)) for n in range(10)]
    assert [policy.delay(NETWORK) for _ in range(10)] == expected


def test_jitter_actually_spreads_delays() -> None:
    """Full jitter uses the whole range: many draws at the cap cover low and high values."""
    policy = backoff(3, base=1.0, cap=10.0)
    for _ in range(10):
        policy.delay(NETWORK)
    draws = [policy.delay(NETWORK) for _ in range(500)]
    assert min(draws) < 1.0
    assert max(draws) > 9.0
    assert max(draws) <= 10.0


def test_cap_holds_after_many_failures() -> None:
    """After dozens of failures the delay never exceeds the cap."""
    policy = backoff(1, base=0.5, cap=2.0)
    assert all(policy.delay(NETWORK) <= 2.0 for _ in range(200))


def test_cap_holds_after_thousands_of_failures() -> None:
    """A daemon retrying a dead upstream for hours still gets capped delays, not an exception."""
    policy = backoff(1, base=0.5, cap=30.0)
    assert all(0.0 <= policy.delay(NETWORK) <= 30.0 for _ in range(1100))


@pytest.mark.parametrize("seed", range(20))
def test_floor_is_honoured(seed: int) -> None:
    """A server's retry / Retry-After floor is never undercut, even early with a small ceiling."""
    policy = backoff(seed, base=0.1, cap=1.0)
    assert policy.delay(NETWORK, floor=3.0) >= 3.0
    assert policy.delay(Failure(Kind.RETRYABLE, "rate_limited", "429", 5.0)) >= 5.0
    assert policy.delay(Failure(Kind.RETRYABLE, "rate_limited", "429", 2.0), floor=4.0) >= 4.0


def test_floor_above_cap_wins() -> None:
    """The server's floor is honoured even when it is above our cap."""
    policy = backoff(base=0.1, cap=1.0)
    assert policy.delay(NETWORK, floor=12.5) == 12.5


def test_recycle_is_immediate_and_does_not_escalate() -> None:
    """A planned recycle reconnects at once and leaves the attempt counter alone."""
    policy = backoff(base=1.0, cap=60.0)
    policy.delay(NETWORK)
    policy.delay(NETWORK)
    assert policy.attempts == 2
    for _ in range(50):
        assert policy.delay(RECYCLE) == 0.0
        assert policy.delay(RECYCLE, floor=5.0) == 0.0
    assert policy.attempts == 2
    assert policy.delay(NETWORK) <= 4.0  # ceiling still base * 2**2


@pytest.mark.parametrize("failure", [AUTH, FATAL])
def test_auth_and_fatal_retry_slowly(failure: Failure) -> None:
    """Auth and fatal failures wait between auth_delay/2 and auth_delay, from the first one."""
    policy = backoff(5, base=0.01, cap=0.1, auth_delay=60.0)
    delays = [policy.delay(failure) for _ in range(200)]
    assert all(30.0 <= d <= 60.0 for d in delays)
    assert len(set(delays)) > 100  # jittered, not a fixed beat


@pytest.mark.parametrize("failure", [AUTH, FATAL])
def test_auth_and_fatal_respect_the_floor(failure: Failure) -> None:
    """A floor above the slow pace wins for auth and fatal failures too."""
    policy = backoff(base=0.01, cap=0.1, auth_delay=2.0)
    assert all(policy.delay(failure, floor=90.0) >= 90.0 for _ in range(20))
    with_after = Failure(failure.kind, failure.reason, failure.code, retry_after=45.0)
    assert policy.delay(with_after) >= 45.0


def test_reset_after_a_stable_connection() -> None:
    """A connection that stayed up stable_after seconds resets the escalation."""
    policy = backoff(base=1.0, cap=1000.0, stable_after=30.0)
    for _ in range(8):
        policy.delay(NETWORK)
    policy.connected(100.0)
    policy.disconnected(130.0)
    assert policy.attempts == 0
    assert policy.delay(NETWORK) <= 1.0


def test_no_reset_after_a_short_connection() -> None:
    """A connection that dropped before stable_after keeps the escalation going."""
    policy = backoff(base=1.0, cap=1000.0, stable_after=30.0)
    for _ in range(8):
        policy.delay(NETWORK)
    policy.connected(100.0)
    policy.disconnected(129.9)
    assert policy.attempts == 8
    policy.disconnected(1000.0)  # no connect in between: nothing to measure, no reset
    assert policy.attempts == 8


def test_explicit_reset() -> None:
    """reset() starts the escalation from scratch."""
    policy = backoff()
    for _ in range(5):
        policy.delay(NETWORK)
    policy.reset()
    assert policy.attempts == 0


@pytest.mark.parametrize(
    ("status", "retry_after", "expected"),
    [
        (401, None, Failure(Kind.AUTH, "unauthorized", "401")),
        (403, "10", Failure(Kind.AUTH, "unauthorized", "403")),
        (409, None, Failure(Kind.RETRYABLE, "conflict", "409")),
        (409, "3", Failure(Kind.RETRYABLE, "conflict", "409", 3.0)),
        (429, "120", Failure(Kind.RETRYABLE, "rate_limited", "429", 120.0)),
        (429, None, Failure(Kind.RETRYABLE, "rate_limited", "429")),
        (500, None, Failure(Kind.RETRYABLE, "server_error", "500")),
        (503, "7", Failure(Kind.RETRYABLE, "server_error", "503", 7.0)),
        (408, None, Failure(Kind.RETRYABLE, "request_timeout", "408")),
        (404, None, Failure(Kind.FATAL, "http_error", "404")),
        (400, None, Failure(Kind.FATAL, "http_error", "400")),
    ],
)
def test_classify_http(status: int, retry_after: str | None, expected: Failure) -> None:
    """Each HTTP status maps to its failure kind, reason, code and Retry-After."""
    assert classify_http(status, retry_after) == expected


def test_retry_after_from_429_becomes_the_floor() -> None:
    """A 429's Retry-After keeps the next delay at or above it."""
    policy = backoff(base=0.01, cap=0.1)
    assert policy.delay(classify_http(429, "30")) >= 30.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("0", 0.0),
        ("120", 120.0),
        (" 15 ", 15.0),
        ("", None),
        ("1.5", None),
        ("-3", None),
        ("\uff11\uff12", None),  # fullwidth digits: isdigit() says yes
        ("\u0663", None),  # Arabic-Indic three
        ("1\u0663", None),
        ("\u00b2", None),  # superscript two
        ("Wed, 21 Oct 2026 07:28:00 GMT", None),  # a date needs the clock: see below
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    """Only plain ASCII delay-seconds are taken; HTTP dates and non-ASCII digits are ignored."""
    assert parse_retry_after(value) == expected


def test_a_conflict_is_final_where_the_caller_says_so() -> None:
    """A sink's receiver answering 409 will never take the request; an upstream's clears."""
    assert classify_http(409, "3", conflict_retries=False) == Failure(
        Kind.FATAL, "http_error", "409", 3.0
    )


def test_classify_http_reads_an_http_date_given_the_clock() -> None:
    """With ``now`` a Retry-After date counts; without it (a replayed source) it is ignored."""
    date = email.utils.formatdate(NOW + 45, usegmt=True)
    assert classify_http(503, date, now=NOW).retry_after == 45.0
    assert classify_http(503, date).retry_after is None


NOW = 1_780_000_000.0


# --- Retry-After, both forms -----------------------------------------------------------------


def test_retry_after_reads_delay_seconds() -> None:
    """delay-seconds: the number itself, whitespace around it ignored."""
    assert parse_retry_after("120", NOW) == 120.0
    assert parse_retry_after(" 0 ", NOW) == 0.0


def test_retry_after_reads_an_http_date() -> None:
    """IMF-fixdate (and the obsolete RFC 850 / asctime forms): seconds from now until then."""
    assert parse_retry_after(email.utils.formatdate(NOW + 90, usegmt=True), NOW) == 90.0
    when = datetime.fromtimestamp(NOW + 30, UTC)
    assert parse_retry_after(when.strftime("%A, %d-%b-%y %H:%M:%S GMT"), NOW) == 30.0
    assert parse_retry_after(when.strftime("%a %b %d %H:%M:%S %Y"), NOW) == 30.0


def test_retry_after_a_past_date_means_now() -> None:
    """A date already gone asks for no wait, never a negative one."""
    assert parse_retry_after(email.utils.formatdate(NOW - 3600, usegmt=True), NOW) == 0.0


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "1.5", "١٢", "Wed, 99 Foo 2026"])
def test_retry_after_ignores_what_is_neither(value: str | None) -> None:
    """Neither form (negative, fractional, non-ASCII digits, a broken date): None."""
    assert parse_retry_after(value, NOW) is None


@given(st.text(max_size=60))
def test_retry_after_never_raises(value: str) -> None:
    """Whatever a receiver sends, the answer is None or a wait of zero or more seconds."""
    got = parse_retry_after(value, NOW)
    assert got is None or got >= 0.0


@given(st.integers(min_value=0, max_value=10**12))
def test_retry_after_seconds_round_trip(seconds: int) -> None:
    assert parse_retry_after(str(seconds), NOW) == float(seconds)
