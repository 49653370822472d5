"""Upstream strings are bounded in the decoder: at the bound a field decodes, one past it the
message is refused (``ValidationError``, so the adapter counts it as bad input)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import pytest

from tradebus import times
from tradebus.adapters import bounds
from tradebus.adapters.base import SourceContext
from tradebus.adapters.mt4bridge import normalize as mt4_normalize
from tradebus.adapters.mt4bridge import wire as mt4
from tradebus.adapters.tpalerts import wire as tp
from tradebus.adapters.traderws import wire as tws
from tradebus.adapters.ttmt import normalize as ttmt_normalize
from tradebus.adapters.ttmt import wire as ttmt
from tradebus.schemas.events import Event

Decode = Callable[[bytes], Any]


def _mt4_one(raw: bytes) -> Any:
    decoded = mt4.decode_frame(raw)
    if decoded.bad:
        raise msgspec.ValidationError(decoded.bad[0][1])
    return decoded.messages[0]


def _tp(name: str) -> Decode:
    def decode(raw: bytes) -> Any:
        return tp.decode(name, raw)

    return decode


# (decoder, template with @ for the string, bound)
CASES: list[tuple[str, Decode, bytes, int]] = [
    ("ttmt id", ttmt.decode, b'{"type":"tp_hit","eventId":1,"data":{"tradeId":"@"}}', 256),
    (
        "ttmt symbol",
        ttmt.decode,
        b'{"type":"order_fill","eventId":1,"data":{"orderId":"o","symbol":"@"}}',
        64,
    ),
    (
        "ttmt account",
        ttmt.decode,
        b'{"type":"tp_hit","eventId":1,"data":{"tradeId":"t","accountId":"@"}}',
        64,
    ),
    (
        "ttmt time",
        ttmt.decode,
        b'{"type":"tp_hit","eventId":1,"timestamp":"@","data":{"tradeId":"t"}}',
        64,
    ),
    (
        "ttmt text",
        ttmt.decode,
        b'{"type":"position_closed","eventId":1,"data":{"positionId":"p","reason":"@"}}',
        4096,
    ),
    (
        "ttmt signal id",
        ttmt.decode,
        b'{"type":"tp_hit","eventId":1,"data":{"tradeId":"t","signal":{"signal_id":"@"}}}',
        256,
    ),
    ("tpalerts ticker", _tp("working"), b'{"id":1,"ticker":"@"}', 64),
    ("tpalerts time", _tp("closed"), b'{"id":1,"closedAt":"@"}', 64),
    ("tpalerts token", _tp("onGoing"), b'{"id":1,"token":"@"}', 256),
    ("traderws symbol", tws.decode, b'{"type":"quoteEvent","payload":{"symbol":"@"}}', 64),
    (
        "traderws time",
        tws.decode,
        b'{"type":"quoteEvent","payload":{"symbol":"EURUSD","ts":"@"}}',
        64,
    ),
    (
        "traderws id",
        tws.decode,
        b'{"type":"executionEvent","payload":{"executionId":"@","orderId":"o","status":"FILLED"}}',
        256,
    ),
    (
        "traderws account",
        tws.decode,
        b'{"type":"metricsEvent","payload":{"accountId":"@"}}',
        64,
    ),
    ("traderws text", tws.decode, b'{"type":"error","payload":{"message":"@"}}', 4096),
    ("mt4 symbol", _mt4_one, b'{"type":"quote","symbol":"@"}', 64),
    ("mt4 time", _mt4_one, b'{"type":"quote","symbol":"EURUSD","time":"@"}', 64),
    ("mt4 id", _mt4_one, b'{"type":"order","event":"filled","taskId":"@"}', 256),
    ("mt4 text", _mt4_one, b'{"type":"order","event":"rejected","reason":"@"}', 4096),
    ("mt4 session", mt4.session_decoder.decode, b'{"sessionId":"@"}', 256),
    ("mt4 account", mt4.account_decoder.decode, b'{"currency":"@"}', 64),
]


@pytest.mark.parametrize(
    ("decode", "template", "bound"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_a_string_at_its_bound_decodes_and_one_past_it_is_refused(
    decode: Decode, template: bytes, bound: int
) -> None:
    """A field of exactly its bound decodes; one character more refuses the whole message."""
    decode(template.replace(b"@", b"x" * bound))
    with pytest.raises(msgspec.ValidationError, match=f"length <= {bound}"):
        decode(template.replace(b"@", b"x" * (bound + 1)))


def test_the_four_megabyte_ts_of_the_issue_is_refused() -> None:
    """A quote whose ``ts`` is 4 MB of ``x`` never becomes a quote (nor a 4 MB id)."""
    raw = b'{"type":"quoteEvent","payload":{"symbol":"EURUSD","ts":"' + b"x" * 4_000_000 + b'"}}'
    with pytest.raises(msgspec.ValidationError):
        tws.decode(raw)


def test_the_bounds_are_the_documented_numbers() -> None:
    """docs/running.md's "Limits" says these numbers."""
    assert (bounds.MAX_ID, bounds.MAX_NAME, bounds.MAX_TIME, bounds.MAX_TEXT) == (
        256,
        64,
        64,
        4096,
    )


@pytest.mark.parametrize("junk", ["not-a-time", "2026-02-30T00:00:00Z", "x" * 64])
def test_a_time_that_is_no_time_is_refused_and_counted(junk: str) -> None:
    """Junk in a time field falls back to the receipt time, and the count rises by one."""
    refused = times.Refusals()
    assert times.canonical_or(junk, "fallback", refused) == "fallback"
    assert refused.count == 1
    assert times.canonical(junk, refused) is None
    assert refused.count == 2


def test_a_good_or_missing_time_is_not_counted() -> None:
    """Only junk counts: a canonical time, another RFC 3339 shape, or none at all do not."""
    refused = times.Refusals()
    assert times.canonical_or("2026-06-09T14:32:01.123Z", "f", refused) == (
        "2026-06-09T14:32:01.123Z"
    )
    assert times.canonical_or("2026-06-09T16:32:01+02:00", "f", refused) == (
        "2026-06-09T14:32:01.000Z"
    )
    assert times.canonical_or(None, "f", refused) == "f"
    assert refused.count == 0


@pytest.mark.parametrize("epoch", [1e300, float("nan"), -1.0])
def test_an_mt4_epoch_no_canonical_time_holds_is_counted(epoch: float) -> None:
    """An epoch time past year 9999 (or NaN, or negative) is the receipt time, and counted."""
    refused = times.Refusals()
    assert mt4_normalize.upstream_time(epoch, "received", refused) == "received"
    assert refused.count == 1


async def _dropped(events: Sequence[Event]) -> None:
    pass


def test_two_sources_count_their_own_refused_times() -> None:
    """Each source's normalizers count into that source's ``time_fallback`` alone: junk times of
    one, interleaved with good and junk ones of another, never show up in the other's count."""
    first = SourceContext("a", "ttmt", _dropped)
    second = SourceContext("b", "mt4bridge", _dropped)
    junk = ttmt.decode(
        '{"type":"tp_hit","eventId":1,"timestamp":"soon","data":{"tradeId":"t1","tpLevel":"TP1"}}'
    )
    good = "2026.06.09 14:31:05"
    received = "2026-06-09T14:50:00.007Z"
    (event,) = ttmt_normalize.normalize(junk, "a", received, first.refused)
    assert event.time == received
    assert mt4_normalize.upstream_time(good, received, second.refused) != received
    assert mt4_normalize.upstream_time(1e300, received, second.refused) == received
    ttmt_normalize.normalize(junk, "a", received, first.refused)
    assert mt4_normalize.upstream_time("never", received, second.refused) == received
    assert first.counters["time_fallback"] == 2
    assert second.counters["time_fallback"] == 2
    assert first.refused.count == 2
    assert "time_fallback" not in SourceContext("c", "ttmt", _dropped).counters
