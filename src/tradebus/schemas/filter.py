"""A sink's filter over the canonical envelope: providers, ``type`` prefixes, sources, symbols.

It reads only the envelope (``Head``): a follower decodes that much of a journaled line to
decide, never the payload, and a line that passes is written as it was encoded.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec


class Head(msgspec.Struct):
    """The envelope fields a filter looks at; every other field of the line is skipped."""

    type: str
    source: str = ""
    provider: str = ""
    symbol: str | None = None


head_of = msgspec.json.Decoder(Head).decode


class EventFilter:
    """Providers, ``type`` prefixes, sources, symbols; an empty list lets everything through."""

    __slots__ = ("providers", "sources", "symbols", "types")

    def __init__(
        self,
        *,
        providers: Sequence[str] = (),
        types: Sequence[str] = (),
        sources: Sequence[str] = (),
        symbols: Sequence[str] = (),
    ) -> None:
        self.providers = frozenset(providers)
        self.types = tuple(types)
        self.sources = frozenset(sources)
        self.symbols = frozenset(symbols)

    def __bool__(self) -> bool:
        return bool(self.providers or self.types or self.sources or self.symbols)

    def __call__(self, head: Head) -> bool:
        if self.providers and head.provider not in self.providers:
            return False
        if self.sources and head.source not in self.sources:
            return False
        if self.symbols and head.symbol not in self.symbols:
            return False
        return not self.types or head.type.startswith(self.types)

    def line(self, line: bytes) -> bool:
        """Whether one encoded event line passes (its envelope decoded, nothing else)."""
        return self(head_of(line))
