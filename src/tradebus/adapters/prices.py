"""Prices as the text an event id writes them in, remembered.

Quote ids carry their prices (``<symbol>:<ts>:<bid>:<ask>``), and formatting a float costs
about 240 ns, twice per quote on the hottest paths. Prices sit on a tick grid and repeat, and a
dict hit costs a fifth of that. Callers look in ``TEXTS`` first and call ``text`` on a miss.
"""

from __future__ import annotations

from typing import Final

_MAX: Final = 8192
TEXTS: dict[float, str] = {}


def text(value: float) -> str:
    """``value`` as an f-string writes it (its repr), remembered; cleared whole when full."""
    written = repr(value)
    if value:  # 0.0 == -0.0 as a key, but not as text: zeros are never remembered
        if len(TEXTS) >= _MAX:
            TEXTS.clear()
        TEXTS[value] = written
    return written
