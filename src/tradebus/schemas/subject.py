"""NATS subjects for events, from a template checked once at config load (sans-I/O).

A subject is ``<prefix>.<template>``, e.g. ``tradebus`` + ``{provider}.{type}.{symbol}`` gives
``tradebus.ttmt.position.updated.XAUUSD``. NATS subjects are ``.``-separated tokens; ``*`` and
``>`` as a whole token are wildcards, and whitespace is forbidden ("Subject-Based Messaging":
"the characters ``.``, ``*`` and ``>`` ... are reserved"). Upstream values (symbol, account,
source) therefore have every character outside ``[A-Za-z0-9_-]`` replaced by ``_``, and an empty
or missing value becomes ``_``: no upstream value can add a token, a wildcard or an empty token.
Only ``{type}`` keeps its dot (``position.updated`` is two tokens): its values are our own tags.
"""

from __future__ import annotations

import operator
import re
import string
from collections.abc import Callable
from typing import Final

import msgspec

_UNSAFE: Final = re.compile(r"[^A-Za-z0-9_\-]")
_LITERAL: Final = re.compile(r"^[A-Za-z0-9_\-]*$")
# A symbol is a dozen characters; a bound keeps one odd upstream value from bloating subjects.
TOKEN_MAX: Final = 64
# Distinct subjects remembered; a burst of new symbols past this starts the cache afresh.
CACHE_MAX: Final = 16_384


class Head(msgspec.Struct, frozen=True, gc=False):
    """The envelope fields of an encoded event that subjects and Msg-Ids are made of: decoded
    from the line, so the bus need not keep the Event structs for this sink."""

    id: str
    type: str
    source: str
    provider: str
    symbol: str | None = None
    account: str | None = None


_FIELDS: Final = ("source", "provider", "type", "symbol", "account")


def token(value: str | None) -> str:
    """One subject token made of ``value``: never empty, never a wildcard, never two tokens."""
    if not value:
        return "_"
    return _UNSAFE.sub("_", value[:TOKEN_MAX])


def _type_tokens(value: str | None) -> str:
    return ".".join(map(token, (value or "").split(".")))


def _tuple_getter(names: list[str]) -> Callable[[Head], tuple[str | None, ...]]:
    if len(names) > 1:
        return operator.attrgetter(*names)
    if names:
        one = operator.attrgetter(names[0])
        return lambda e: (one(e),)
    return lambda _e: ()


def check_prefix(prefix: str) -> None:
    """ValueError (naming the field) unless ``prefix`` is one or more literal tokens."""
    if not prefix or not all(t and _LITERAL.match(t) for t in prefix.split(".")):
        raise ValueError(
            f"subject_prefix: expected dot-separated tokens of A-Z a-z 0-9 _ -, got {prefix[:80]!r}"
        )


class SubjectTemplate:
    """Renders the subject of an event; built once per sink, so a bad template fails at load."""

    def __init__(self, prefix: str, template: str) -> None:
        check_prefix(prefix)
        self.prefix = prefix
        literal: list[str] = [prefix, "."]
        self._cleaners: list[Callable[[str | None], str]] = []
        try:
            parsed = list(string.Formatter().parse(template))
        except ValueError as exc:
            raise ValueError(f"subject: {exc}, in {template[:80]!r}") from None
        names: list[str] = []
        for text, field, spec, conversion in parsed:
            if not _LITERAL.match(text.replace(".", "")):
                raise ValueError(
                    f"subject: literal text may hold only A-Z a-z 0-9 _ - and dots, "
                    f"got {text[:40]!r}"
                )
            literal.append(text.replace("{", "{{").replace("}", "}}"))
            if field is None:
                continue
            if field not in _FIELDS or spec or conversion:
                raise ValueError(
                    f"subject: unknown placeholder {{{field}}}; expected one of "
                    + ", ".join(f"{{{f}}}" for f in _FIELDS)
                )
            literal.append("{}")
            names.append(field)
            self._cleaners.append(_type_tokens if field == "type" else token)
        self._format = "".join(literal).format
        # A placeholder always renders as at least "_", so only literal dots can make empty
        # tokens: check with every placeholder filled.
        sample = self._format(*("x" for _ in names))
        if any(not t for t in sample.split(".")):
            raise ValueError(f"subject: empty token in {template[:80]!r} (doubled or edge dot)")
        self._cache: dict[tuple[str | None, ...], str] = {}
        # One C call for the cache key: render runs once per published event.
        self._values = _tuple_getter(names)

    @property
    def stream_subjects(self) -> list[str]:
        """What a stream must listen on to hold every subject rendered here."""
        return [f"{self.prefix}.>"]

    def render(self, event: Head) -> str:
        values = self._values(event)
        subject = self._cache.get(values)
        if subject is None:
            if len(self._cache) >= CACHE_MAX:
                self._cache.clear()
            subject = self._format(*(c(v) for c, v in zip(self._cleaners, values, strict=True)))
            self._cache[values] = subject
        return subject
