"""The structlog chain: JSON lines to stderr, every known secret scrubbed from every value."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from tradebus import lineout, secret

_SENSITIVE_KEY = re.compile(
    r"pass(word)?|secret|token|api[_-]?key|authorization|jwt|cookie|session[_-]?id", re.I
)
# A URL's query can carry a token (the Trader WS API takes ?token=JWT): never log one.
_QUERY = re.compile(r"(https?|wss?)://([^\s?#\"']+)\?[^\s#\"']*", re.I)
_USERINFO = re.compile(r"(https?|wss?)://[^\s/@\"']+@", re.I)
EXCERPT_LIMIT = 200


def redact_url(url: str) -> str:
    """``url`` without its query string, which may carry credentials."""
    return _QUERY.sub(r"\1://\2?***", _USERINFO.sub(r"\1://***@", url))


# Scrub this much past the cut before cutting, so a secret straddling the cut is still whole
# when it is recognised (JWTs run to a few hundred characters).
_SCRUB_MARGIN = 4096


def excerpt(raw: bytes | str, limit: int = EXCERPT_LIMIT) -> str:
    """A bounded, printable, secret-free excerpt of bad upstream input for a log line."""
    if isinstance(raw, bytes):
        text = raw[: limit * 4 + _SCRUB_MARGIN].decode("utf-8", "replace")
        shown = len(text[:limit].encode("utf-8", "replace"))
        more = len(raw) - min(shown, len(raw))  # in bytes, as the upstream sent them
    else:
        text = raw[: limit + _SCRUB_MARGIN]
        more = len(raw) - min(limit, len(raw))
    cut = scrub_text(text)[:limit]
    return cut + (f"…(+{more} more)" if more > 0 else "")


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
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, bytes | bytearray):
        return scrub_text(bytes(value).decode("utf-8", "replace"))
    # Anything else (a yarl.URL, a path) would be rendered by repr() after this step, unscrubbed.
    return scrub_text(repr(value))


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


class LineLogger:
    """Writes each rendered line with its newline in one ``write()`` call on the stream's
    descriptor: structlog's PrintLogger goes through ``print()``, which with an unbuffered
    stderr (``PYTHONUNBUFFERED=1``) writes the line and its newline as two calls, and another
    writer's line (the stdout sink's) then lands between them (``lineout``)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def msg(self, message: str) -> None:
        line = message + "\n"
        try:
            fd = self._stream.fileno()
        except (AttributeError, OSError, ValueError):  # io.StringIO; a stream without a fd
            self._stream.write(line)
            self._stream.flush()
            return
        self._stream.flush()  # what print() left in the stream's buffer goes first
        lineout.write_whole(fd, line.encode("utf-8", "backslashreplace"))

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg


# Whether debug lines are on: code that would log per batch checks this first, so a daemon at
# "info" pays one attribute read per batch, not the building of a log call.
DEBUG = False


def configure(level: str = "info", *, fmt: str | None = "json", stream: Any = None) -> None:
    """Set up structlog once per process; logs go to stderr so stdout stays pure JSONL events.

    ``fmt=None``: the console renderer when the stream is a terminal (a person reads it), JSON
    lines otherwise (journald, docker logs, a file).
    """
    global DEBUG  # noqa: PLW0603 - one switch per process, set where the level is
    DEBUG = level.lower() == "debug"
    stream = stream or sys.stderr
    if fmt is None:
        fmt = "console" if stream.isatty() else "json"
    _settings[:] = [level, fmt]
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
        logger_factory=lambda *_args: LineLogger(stream),
        cache_logger_on_first_use=False,
    )


# The level and format in force: a child process (delivery) logs the same way.
_settings = ["info", "json"]


def settings() -> tuple[str, str]:
    """(level, format) as ``configure`` last set them."""
    return _settings[0], _settings[1]


def get(**context: Any) -> Any:
    """A bound logger with ``context`` (``source=``, ``sink=``) on every line."""
    return structlog.get_logger("tradebus").bind(**context)
