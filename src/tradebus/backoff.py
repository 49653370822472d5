"""Retry policy, pure: a backoff generator with full jitter and a cap, and a failure classifier.

"Full jitter" (each delay uniform in [0, min(cap, base * factor**n)]) spreads reconnecting
clients apart; the attempt counter resets only after a connection stayed up ``stable_after``
seconds, so a server that accepts and then drops at once cannot pull us into a hot loop.
"""

from __future__ import annotations

import email.utils
import enum
import random
from dataclasses import dataclass, field
from datetime import UTC

# Past this many doublings any sane cap is reached; it also keeps factor**n a finite float
# for an upstream that stays down for days.
_MAX_EXPONENT = 64


class Kind(enum.Enum):
    RETRYABLE = "retryable"  # network, 5xx, 408, 409, 429: backoff and reconnect
    RECYCLE = "recycle"  # a planned close by the server: reconnect at once, no escalation
    AUTH = "auth"  # 401/403, revoked credentials: a status.auth_* event and a slow retry
    FATAL = "fatal"  # nothing a retry changes soon (404, bad request): a slow retry, loudly


@dataclass(frozen=True, slots=True)
class Failure:
    kind: Kind
    reason: str
    code: str | None = None
    retry_after: float | None = None
    # Ended on purpose, nothing failed (an upstream that asked for a reconnect, a credential
    # renewed on schedule): the source stays ready while it reconnects.
    planned: bool = False


def classify_http(
    status: int,
    retry_after: str | None = None,
    *,
    now: float | None = None,
    conflict_retries: bool = True,
) -> Failure:
    """The failure a non-2xx HTTP status means, for an upstream's connect and a sink's request.

    One table for every HTTP client in tradebus; the one place callers differ is a 409, which
    each states with ``conflict_retries``. To an upstream a 409 is a session still held ("another
    stream is already open"): it clears, so retry. To a sink's receiver it is a request it will
    never take (a key it already holds): asking again changes nothing. ``now`` lets
    ``retry_after`` be an HTTP-date; without it only delay-seconds count.
    """
    after = parse_retry_after(retry_after, now)
    if status in (401, 403):
        return Failure(Kind.AUTH, "unauthorized", str(status))
    if status == 409 and conflict_retries:
        return Failure(Kind.RETRYABLE, "conflict", "409", after)
    if status == 408:  # RFC 9110 15.5.9: the client may repeat the request
        return Failure(Kind.RETRYABLE, "request_timeout", "408", after)
    if status == 429:
        return Failure(Kind.RETRYABLE, "rate_limited", "429", after)
    if status >= 500:
        return Failure(Kind.RETRYABLE, "server_error", str(status), after)
    # Other 4xx will not change by asking again; 3xx are not followed (URLs are configured).
    return Failure(Kind.FATAL, "http_error", str(status), after)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` asks for; None if it says nothing usable.

    RFC 9110 10.2.3: ``Retry-After = HTTP-date / delay-seconds``. The date form needs ``now``
    (a replayed source must not read the wall clock; the upstreams send seconds); a date in the
    past asks for no wait at all.
    """
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    if now is None:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000" (RFC 5322: UTC, local zone unknown)
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


@dataclass(slots=True)
class Backoff:
    """Delays for successive reconnects; feed it connect/disconnect times, it says how long."""

    base: float = 0.5
    cap: float = 30.0
    factor: float = 2.0
    stable_after: float = 30.0
    auth_delay: float = 60.0
    rng: random.Random = field(default_factory=random.Random)
    attempts: int = 0
    _connected_at: float | None = None

    def connected(self, now: float) -> None:
        self._connected_at = now

    def disconnected(self, now: float) -> None:
        """A connection ended; one that lasted ``stable_after`` resets the escalation."""
        if self._connected_at is not None and now - self._connected_at >= self.stable_after:
            self.attempts = 0
        self._connected_at = None

    def reset(self) -> None:
        self.attempts = 0

    def delay(self, failure: Failure, floor: float = 0.0) -> float:
        """Seconds to wait before the next attempt after ``failure``.

        ``floor`` is what the server asked for (SSE ``retry:``, Retry-After): never go below it.
        """
        if failure.kind is Kind.RECYCLE:
            return 0.0
        floor = max(floor, failure.retry_after or 0.0)
        if failure.kind in (Kind.AUTH, Kind.FATAL):
            # Slow and jittered, but never below the configured pace: no hot loop on a bad key.
            self.attempts += 1
            return max(floor, self.auth_delay * (0.5 + 0.5 * self.rng.random()))
        ceiling = min(self.cap, self.base * self.factor ** min(self.attempts, _MAX_EXPONENT))
        self.attempts += 1
        return max(floor, self.rng.uniform(0.0, ceiling))
