"""Canonical timestamps: pass-through, rewriting, truncation to milliseconds, junk rejected."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradebus import times
from tradebus.schemas.events import Timestamp

# The pattern the canonical Event schema enforces on every time field.
_SCHEMA_PATTERN = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$")
_TIMESTAMP = msgspec.json.Decoder(Timestamp)


def assert_canonical(text: str) -> None:
    assert len(text) == 24
    assert _SCHEMA_PATTERN.match(text)
    assert _TIMESTAMP.decode(msgspec.json.encode(text)) == text  # the schema's own check


def test_canonical_string_passes_through_untouched() -> None:
    """An already canonical time comes back unchanged, the first time and from the memo."""
    text = "2026-06-09T14:32:01.123Z"
    assert times.canonical(text) == text
    assert times.canonical("".join(text)) == text
    assert times.canonical("2026-06-09T14:32:01.123+02:00") == "2026-06-09T12:32:01.123Z"


@given(
    st.integers(0, 23),
    st.sampled_from([*"0123456789", "\u0663", "\uff11", "a", "-", ":", ".", "T", "Z", " "]),
    st.integers(0, 10**6),
)
def test_canonical_passes_a_time_unchanged_exactly_when_it_matches_the_schema(
    position: int, char: str, offset: int
) -> None:
    """One character of a canonical time changed: passed through iff it is still a real time
    in the schema's shape."""
    base = times.format_utc(datetime(2026, 6, 9, tzinfo=UTC) + timedelta(seconds=offset))
    text = base[:position] + char + base[position + 1 :]
    expected = bool(_SCHEMA_PATTERN.match(text)) and _real(text)
    assert (times.canonical(text) == text) == expected
    assert (times.canonical(text) == text) == expected  # memoized


def _real(text: str) -> bool:
    try:
        datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")
    except ValueError:
        return False
    return True


@pytest.mark.parametrize(
    "text",
    [
        "2026-13-09T14:32:01.123Z",
        "2026-02-30T14:32:01.123Z",
        "2026-06-00T14:32:01.123Z",
        "2026-06-09T24:00:00.000Z",
        "2026-06-09T14:60:01.123Z",
        "2026-06-09T14:32:61.123Z",
        "0000-06-09T14:32:01.123Z",
    ],
)
def test_a_time_of_the_right_shape_but_no_real_date_is_junk(text: str) -> None:
    """No such day or hour: not canonical, so the event keeps its receipt time."""
    assert times.canonical(text) is None
    assert times.canonical(text) is None  # never memoized
    refused = times.Refusals()
    assert times.canonical_or(text, "2026-06-09T14:32:01.500Z", refused) == (
        "2026-06-09T14:32:01.500Z"
    )
    assert refused.count == 1


def test_canonical_memo_stays_bounded_and_never_admits_a_rewrite() -> None:
    """Thousands of distinct times keep the memo bounded; rewritten times are never memoized."""
    for n in range(10_000):
        text = f"2026-06-09T14:{n // 60000:02d}:{n // 1000 % 60:02d}.{n % 1000:03d}Z"
        assert times.canonical(text) == text
        assert times.canonical("".join(text)) == text
    assert times.canonical("2026-06-09T14:32:01.123+00:00") == "2026-06-09T14:32:01.123Z"
    assert times.canonical("2026-06-09T14:32:01.123+00:00") == "2026-06-09T14:32:01.123Z"
    assert len(times._checked) <= times._CHECKED_MAX
    assert "2026-06-09T14:32:01.123+00:00" not in times._checked


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-06-09T16:32:01.123+02:00", "2026-06-09T14:32:01.123Z"),
        ("2026-06-09T09:02:01.123-05:30", "2026-06-09T14:32:01.123Z"),
        ("2026-06-09T00:30:00.000+01:00", "2026-06-08T23:30:00.000Z"),
        ("2026-06-09T14:32:01.123+00:00", "2026-06-09T14:32:01.123Z"),
        ("2026-06-09T14:32:01.123456789Z", "2026-06-09T14:32:01.123Z"),
        ("2026-06-09T14:32:01.123999999Z", "2026-06-09T14:32:01.123Z"),
        ("2026-06-09T16:32:01.987654321+02:00", "2026-06-09T14:32:01.987Z"),
        ("2026-06-09T14:32:01Z", "2026-06-09T14:32:01.000Z"),
        ("2026-06-09T14:32:01.5Z", "2026-06-09T14:32:01.500Z"),
        ("2026-06-09T14:32:01.123456Z", "2026-06-09T14:32:01.123Z"),
        ("2026-06-09T14:32:01.123", "2026-06-09T14:32:01.123Z"),
        ("2026-06-09T14:32:01", "2026-06-09T14:32:01.000Z"),
        ("2026-06-09T14:32", "2026-06-09T14:32:00.000Z"),
        (" 2026-06-09T14:32:01.123Z ", "2026-06-09T14:32:01.123Z"),
        ("2026-06-09T23:59:59.9999Z", "2026-06-09T23:59:59.999Z"),
    ],
)
def test_canonical_rewrites(text: str, expected: str) -> None:
    """Offsets, nanoseconds, missing fractions and naive times (as UTC) become canonical."""
    result = times.canonical(text)
    assert result == expected
    assert_canonical(expected)


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "yesterday",
        "2026-06-09T14:32:01.123Zjunk",
        "2026-13-01T00:00:00Z",
        "2026-02-30T00:00:00Z",
        "2026-06-09T25:00:00Z",
        "1749479521",
        "\uff12\uff10\uff12\uff16-06-09T14:32:01Z",  # fullwidth digits
        "2026-06-09T14:32:01.123+25:00",
    ],
)
def test_canonical_rejects_junk(text: str) -> None:
    """Strings that are not a valid time give None, never an exception."""
    assert times.canonical(text) is None


@pytest.mark.parametrize("text", ["0001-01-01T00:30:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_canonical_out_of_range_after_offset_is_none(text: str) -> None:
    """A time whose UTC equivalent falls outside datetime's range is junk, not a crash."""
    assert times.canonical(text) is None


def test_format_utc_truncates_to_milliseconds() -> None:
    """Microseconds are cut, not rounded: 999999 us stays in the same second."""
    moment = datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    assert times.format_utc(moment) == "2026-12-31T23:59:59.999Z"
    assert times.format_utc(moment.replace(microsecond=1999)) == "2026-12-31T23:59:59.001Z"
    assert times.format_utc(moment.replace(microsecond=999)) == "2026-12-31T23:59:59.000Z"


def test_format_utc_converts_offsets_and_takes_naive_as_utc() -> None:
    """An aware time is converted to UTC; a naive one is written as is."""
    tz = timezone(timedelta(hours=-3))
    assert times.format_utc(datetime(2026, 1, 1, 22, 0, 0, 250000, tzinfo=tz)) == (
        "2026-01-02T01:00:00.250Z"
    )
    assert times.format_utc(datetime(2026, 1, 1, 22, 0, 0, 250000)) == "2026-01-01T22:00:00.250Z"


def test_format_utc_pads_small_years() -> None:
    """Years below 1000 keep four digits so the string stays 24 characters."""
    assert times.format_utc(datetime(987, 3, 4, 5, 6, 7, 8000, tzinfo=UTC)) == (
        "0987-03-04T05:06:07.008Z"
    )


def test_from_epoch() -> None:
    """A Unix time becomes the canonical UTC string, truncated to milliseconds."""
    assert times.from_epoch(0) == "1970-01-01T00:00:00.000Z"
    assert times.from_epoch(1749479521.1239) == "2025-06-09T14:32:01.123Z"


@given(
    st.floats(min_value=-62_135_596_800, max_value=253_402_300_799, allow_nan=False)
    | st.integers(0, 4_000_000_000_000).map(lambda ms: ms / 1000)
)
def test_from_epoch_is_format_utc_of_fromtimestamp(seconds: float) -> None:
    """The fast path rounds and truncates exactly as datetime.fromtimestamp + format_utc."""
    try:
        moment = datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, ValueError, OSError):
        return  # outside datetime's years: not a time any upstream sends
    assert times.from_epoch(seconds) == times.format_utc(moment)
    assert times.from_epoch(seconds) == times.format_utc(moment)  # from the remembered second


def test_from_epoch_at_rounding_edges() -> None:
    """Microsecond rounding that carries into the next second, and times before 1970."""
    for seconds in (1.9999995, 1.9999994, -0.0000005, -1.5, -0.0004, 1780272000.9995):
        expected = times.format_utc(datetime.fromtimestamp(seconds, UTC))
        assert times.from_epoch(seconds) == expected


def test_now_is_canonical_and_current() -> None:
    """now() is canonical and within a few seconds of the clock."""
    stamp = times.now()
    assert_canonical(stamp)
    moment = datetime.fromisoformat(stamp)
    assert abs((datetime.now(UTC) - moment).total_seconds()) < 5


_OFFSETS = st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)


@settings(max_examples=300, deadline=None)
@given(
    moment=st.datetimes(
        min_value=datetime(1971, 1, 1),  # bounds are naive by contract
        max_value=datetime(2200, 1, 1),
        timezones=st.one_of(st.none(), st.just(UTC), _OFFSETS),
    ),
    sep=st.sampled_from(["T", " "]),
)
def test_canonical_of_any_isoformat_is_canonical(moment: datetime, sep: str) -> None:
    """Any ISO 8601 rendering becomes 24 schema-valid characters: the same instant, to the ms."""
    text = moment.isoformat(sep=sep)
    result = times.canonical(text)
    assert result is not None
    assert_canonical(result)
    assert result == times.format_utc(moment)
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(result)
    assert timedelta(0) <= aware - parsed < timedelta(milliseconds=1)
    assert times.canonical(result) == result  # idempotent


def test_canonical_or_falls_back_for_missing_or_junk_times() -> None:
    """A missing, empty or unparseable upstream time gives the fallback; a time its canonical."""
    fallback = "2026-01-01T00:00:00.000Z"
    refused = times.Refusals()
    assert times.canonical_or(None, fallback, refused) == fallback
    assert times.canonical_or("", fallback, refused) == fallback
    assert times.canonical_or("yesterday", fallback, refused) == fallback
    assert times.canonical_or("2026-06-09T16:32:01.1+02:00", fallback, refused) == (
        "2026-06-09T14:32:01.100Z"
    )
    assert refused.count == 1  # "yesterday" alone: no time at all is not a refusal
