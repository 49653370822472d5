"""A string that never shows itself: in reprs, f-strings, logs or exceptions it reads ``***``."""

from __future__ import annotations

from typing import Final

_REDACTED: Final = "***"
# Every secret value ever wrapped, so the log chain can scrub them out of any text.
_known: set[str] = set()


class Secret:
    """Holds a credential; only ``reveal()`` gives the value, at the one place that sends it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        if len(value) >= 4:  # shorter values would scrub ordinary words out of log lines
            _known.add(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({_REDACTED!r})"

    def __str__(self) -> str:
        return _REDACTED

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


def scrub(text: str) -> str:
    """``text`` with every known secret value replaced by ``***``."""
    for value in _known:
        if value in text:
            text = text.replace(value, _REDACTED)
    return text


def known() -> tuple[str, ...]:
    """Every known secret value, as one snapshot (safe to take from another thread)."""
    return tuple(_known)


def register(value: str) -> None:
    """Make ``scrub`` hide a value that never went through ``Secret`` (a JWT from a login)."""
    if len(value) >= 4:
        _known.add(value)
