"""``tradebus tail``: the ops endpoint's event stream (``/api/v1/events``) on a terminal.

Standard library and ``sse.py`` only, like ``probe.py``: it starts fast and needs nothing of
the daemon. One line per event (``line``, a pure function); a lost connection is retried by
itself, resuming with ``Last-Event-ID``, so a restart of the daemon shows as one line on
stderr and no event missing or repeated.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from tradebus.sse import SSEDecoder

# A stream says something at least every 15 s (a comment); silence for this long is a dead one.
READ_TIMEOUT = 40.0
RETRY_MIN, RETRY_MAX = 0.5, 5.0
# The payload fields a line shows, those a type has, in this order, at most ``FIELDS``.
SHOWN = (
    "side",
    "volume",
    "filled_volume",
    "price",
    "open_price",
    "close_price",
    "bid",
    "ask",
    "last",
    "profit",
    "balance",
    "equity",
    "reason",
    "message",
    "first_missing",
    "last_missing",
)
FIELDS = 5
_RESET = "\033[0m"
_HUES = (
    ("status.gap", "\033[1;31m"),
    ("status.error", "\033[1;31m"),
    ("status.auth", "\033[1;31m"),
    ("status.disconnected", "\033[31m"),
    ("status.", "\033[33m"),
    ("order.", "\033[32m"),
    ("position.", "\033[36m"),
    ("trade.", "\033[35m"),
    ("signal.", "\033[34m"),
    ("quote.", "\033[2m"),
    ("depth.", "\033[2m"),
)


class TailError(Exception):
    """An answer that retrying cannot change (a bad filter, a missing token): one line."""


def _hue(kind: str) -> str:
    return next((hue for prefix, hue in _HUES if kind.startswith(prefix)), "")


def line(event: Mapping[str, Any], *, color: bool = False) -> str:
    """One event as ``time source type symbol field=value …`` (time of day, UTC)."""
    stamp = str(event.get("time") or "")[11:23]
    kind = str(event.get("type", "?"))
    data = event.get("data") or {}
    fields = [f"{k}={data[k]}" for k in SHOWN if k in data][:FIELDS]
    shown_kind = f"{_hue(kind)}{kind:<22}{_RESET}" if color and _hue(kind) else f"{kind:<22}"
    cells = [
        stamp,
        f"{event.get('source', '?'):<12}",
        shown_kind,
        f"{event.get('symbol') or '-':<8}",
    ]
    return " ".join([*cells, *fields]).rstrip()


def stream_url(
    base: str, *, types: list[str], sources: list[str], symbols: list[str], start: str
) -> str:
    query = [("from", start)]
    for key, values in (("types", types), ("sources", sources), ("symbols", symbols)):
        if values:
            query.append((key, ",".join(values)))
    return f"{base.rstrip('/')}/api/v1/events?{urllib.parse.urlencode(query)}"


def follow(
    url: str,
    emit: Callable[[str], None],
    note: Callable[[str], None],
    *,
    token: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Hand each event's line (its ``data:``) to ``emit`` until interrupted; reconnect with
    ``Last-Event-ID`` after any loss, saying so once through ``note``."""
    decoder = SSEDecoder()
    delay, down = RETRY_MIN, False
    while True:
        headers = {"Accept": "text/event-stream"}
        if decoder.last_event_id:
            headers["Last-Event-ID"] = decoder.last_event_id
        if token:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(url, headers=headers)  # noqa: S310 - the CLI checks the scheme
        try:
            with urllib.request.urlopen(request, timeout=READ_TIMEOUT) as response:  # noqa: S310
                if down:
                    note(f"tail: reconnected, resuming after seq {decoder.last_event_id or '-'}")
                down, delay = False, RETRY_MIN
                while chunk := response.read1(1 << 16):
                    for message in decoder.feed(chunk):
                        if message.data:
                            emit(message.data)
        except urllib.error.HTTPError as exc:
            with exc:
                body = exc.read(300).decode("utf-8", "replace").strip()
            if exc.code in (400, 401, 403, 404):
                raise TailError(f"{url}: {exc.code} {body or exc.reason}") from None
            why = f"{exc.code} {body}"
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            why = getattr(reason, "strerror", None) or str(reason)
        else:
            why = "the stream ended (the daemon stopped?)"
        decoder.close()
        if not down:
            note(f"tail: {why}; retrying")
            down = True
        sleep(delay)
        delay = min(delay * 2, RETRY_MAX)


def formatter(*, raw: bool, color: bool) -> Callable[[str], str]:
    """What ``emit`` prints of a ``data:`` line: itself (``--json``) or ``line`` of it."""
    if raw:
        return lambda data: data
    return lambda data: line(json.loads(data), color=color)
