"""Golden hostile payloads, shared by the adapters' tests: each must be that message's bad input.

Nesting of 10,000 levels is past msgspec's decoding stack (it raises ``RecursionError`` while
skipping such a value); the rest are values no upstream document allows.
"""

from __future__ import annotations

DEPTH = 10_000


def nested(depth: int = DEPTH) -> bytes:
    """``[[[…]]]``, ``depth`` deep."""
    return b"[" * depth + b"]" * depth


def nested_objects(depth: int = DEPTH) -> bytes:
    """``{"a":{"a":…1…}}``, ``depth`` deep."""
    return b'{"a":' * depth + b"1" + b"}" * depth


def envelope(template: bytes, value: bytes) -> bytes:
    """``template`` with ``@`` replaced by ``value`` (a JSON fragment)."""
    return template.replace(b"@", value)
