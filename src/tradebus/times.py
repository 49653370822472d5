"""Canonical timestamps: RFC 3339, UTC, milliseconds, ``Z`` — one fixed-width string format."""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Final, TypeVar


def format_utc(moment: datetime) -> str:
    """``moment`` as the canonical string; a naive datetime is taken to be UTC already."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T"
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}."
        f"{moment.microsecond // 1000:03d}Z"
    )


# Every memo below holds at most this many entries and is cleared whole when full.
_CHECKED_MAX: Final = 4096
# "YYYY-MM-DDTHH:MM:SS." of each whole Unix second met lately: building a datetime and its
# string costs over a microsecond, and receipt stamps and epoch times mostly share a second.
_second_heads: dict[int, str] = {}
# ".mmmZ" after the head: the 1,000 valid tails, indexed by the millisecond.
_TAIL_TEXT: Final = tuple(f"{ms:03d}Z" for ms in range(1000))


def from_epoch(seconds: float) -> str:
    """A Unix time as the canonical string, truncated to the millisecond.

    The microseconds are rounded as ``datetime.fromtimestamp`` rounds them (half to even), so
    the result is ``format_utc(datetime.fromtimestamp(seconds, UTC))``, at a fifth of the cost.
    """
    fraction, whole = math.modf(seconds)
    micros = round(fraction * 1e6)
    if micros >= 1_000_000:
        micros -= 1_000_000
        whole += 1.0
    elif micros < 0:
        micros += 1_000_000
        whole -= 1.0
    second = int(whole)
    head = _second_heads.get(second)
    if head is None:
        head = _second_head(second)
    return head + _TAIL_TEXT[micros // 1000]


def _second_head(second: int) -> str:
    moment = datetime.fromtimestamp(second, UTC)
    head = f"{moment:%Y-%m-%dT%H:%M:%S}." if moment.year >= 1000 else format_utc(moment)[:20]
    if len(_second_heads) >= _CHECKED_MAX:
        _second_heads.clear()
    _second_heads[second] = head
    return head


def to_epoch(stamp: str) -> float:
    """Unix seconds of a canonical time (``ValueError`` if it is not one)."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def now() -> str:
    """The current wall-clock time as the canonical string."""
    return from_epoch(time.time())


class Refusals:
    """Where one source counts the upstream times it refused (text that is no time, or a moment
    the canonical form cannot hold): the event takes its receipt time instead.

    Each source has its own, handed to whatever parses that source's times, so a count is never
    another source's. By default it keeps its own count; a source's context hands it the
    source's counters, where the count is ``time_fallback``.
    """

    __slots__ = ("_counts", "_key")

    def __init__(self, counts: Counter[str] | None = None, key: str = "time_fallback") -> None:
        self._counts: Counter[str] = Counter() if counts is None else counts
        self._key = key

    @property
    def count(self) -> int:
        return self._counts[self._key]

    def add(self) -> None:
        """One more upstream time refused; the caller falls back."""
        self._counts[self._key] += 1


# Times already checked and found canonical. A busy feed stamps many events with the same
# millisecond, and a dict lookup is the cheapest check there is; cleared whole when full.
_checked: dict[str, str] = {}
# A time of a new millisecond needs a shape check, not a parse: its separators in one strided
# slice ("--T::." at 4, 7, 10, 13, 16, 19), its ".mmmZ" tail against every valid one, and only
# then fromisoformat on its date and time (ASCII digits and a real date: a consumer's parser
# would choke on 2026-02-30 or 25:00). A memo of the seconds seen did the last part cheaper
# only while seconds repeat: the TTMT mix, whose clock moves 0.05-2 s an event, missed it on
# nearly every event and paid the memo on top (700 against 440 ns a new time).
_SEPARATORS: Final = "--T::."
_TAILS: Final = frozenset(_TAIL_TEXT)
_fromisoformat: Final = datetime.fromisoformat
_T = TypeVar("_T")
# The count of times no upstream gave (``canonical`` without ``refused``), kept by no one.
_UNCOUNTED: Final = Refusals()


def canonical(text: str, refused: Refusals | None = None) -> str | None:
    """An upstream's RFC 3339 / ISO 8601 time as the canonical string, or None if it is not one
    (counted in ``refused``; without, the text is no upstream's and nothing counts it).

    Upstreams already in the canonical form pass through untouched (the hot path); others
    (offsets, nanoseconds, no fraction) are parsed and rewritten. A time without an offset is
    taken to be UTC, as the upstream docs write their times.
    """
    return canonical_or(text, None, _UNCOUNTED if refused is None else refused)


def canonical_or(text: str | None, fallback: _T, refused: Refusals) -> str | _T:
    """``text`` as a canonical time (see ``canonical``), or ``fallback`` if it is none or junk
    (junk is counted in ``refused``; no text at all is not).

    Every event's time comes through here, so this is the one implementation and ``canonical``
    calls it, not the other way round: a call less per event.
    """
    if not text:
        return fallback
    hit = _checked.get(text)
    if hit is not None:
        return hit
    if len(text) == 24 and text[4:20:3] == _SEPARATORS and text[20:] in _TAILS:
        try:
            _fromisoformat(text[:19])
        except ValueError:
            refused.add()
            return fallback
        if len(_checked) >= _CHECKED_MAX:
            _checked.clear()
        _checked[text] = text
        return text
    rewritten = _rewrite(text)
    if rewritten is None:
        refused.add()
        return fallback
    return rewritten


def _rewrite(text: str) -> str | None:
    """A time in another RFC 3339 / ISO 8601 shape, rewritten; None if it is not a time."""
    candidate = text.strip()
    # fromisoformat takes at most 6 fraction digits: trim nanoseconds (TP alert pings carry 9).
    match = re.fullmatch(r"(.*T[0-9:]+\.)([0-9]{7,})(.*)", candidate)
    if match:
        candidate = match.group(1) + match.group(2)[:6] + match.group(3)
    try:
        return format_utc(datetime.fromisoformat(candidate))
    except (ValueError, OverflowError):  # an offset can push the year out of 1..9999
        return None
