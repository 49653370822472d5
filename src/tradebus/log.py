"""The structlog chain: JSON lines to stderr, every known secret scrubbed from every value."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from tradebus import secret

_SENSITIVE_KEY = re.compile(r"pass(word)?|secret|token|api_?key|authorization|jwt|cookie", re.I)
# A URL's query can carry a token (the Trader WS API takes ?token=JWT): never log one.
_QUERY = re.compile(r"(https?|wss?)://([^\s?#\"']+)\?[^\s#\"']*")
EXCERPT_LIMIT = 200


def redact_url(url: str) -> str:
    """``url`` without its query string, which may carry credentials."""
    return _QUERY.sub(r"\1://\2?***", url)


def excerpt(raw: bytes | str, limit: int = EXCERPT_LIMIT) -> str:
    """A bounded, printable, secret-free excerpt of bad upstream input for a log line."""
    text = raw[: limit * 4].decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    cut = text[:limit]
    suffix = f"…(+{len(raw) - len(cut)} more)" if len(raw) > len(cut) else ""
    return scrub_text(cut) + suffix


def scrub_text(text: str) -> str:
    return secret.scrub(redact_url(text))


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {k: "***" if _SENSITIVE_KEY.search(str(k)) else _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    if isinstance(value, BaseException):
        return scrub_text(f"{type(value).__name__}: {value}")
    return value


def redact_processor(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Hide credential-named keys; scrub known secrets and URL queries from every other value."""
    for key, value in list(event_dict.items()):
        if _SENSITIVE_KEY.search(key):
            event_dict[key] = "***"
        else:
            event_dict[key] = _scrub(value)
    return event_dict


def configure(level: str = "info", *, fmt: str = "json", stream: Any = None) -> None:
    """Set up structlog once per process; logs go to stderr so stdout stays pure JSONL events."""
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact_processor,
    ]
    if fmt == "console":
        processors.append(structlog.dev.ConsoleRenderer(colors=False))
    else:
        processors.append(structlog.processors.JSONRenderer())
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=False,
    )


def get(**context: Any) -> Any:
    """A bound logger with ``context`` (``source=``, ``sink=``) on every line."""
    return structlog.get_logger("tradebus").bind(**context)
