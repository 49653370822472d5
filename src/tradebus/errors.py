"""The exception tree of tradebus. Names say whose fault it is and whether a retry can help.

    TradebusError
    ├── ConfigError                  the operator's config is wrong; fix it and restart
    ├── UpstreamProtocolError        an upstream sent something that breaks its own protocol
    ├── SourceError                  an upstream connection failed (classified once, by
    │                                backoff's classifier, into retry / recycle / auth)
    └── SinkError                    a sink could not take a batch
        ├── RetryableSinkError       try the same batch again later
        └── FatalSinkError           the sink is unusable as configured

A bad upstream message is counted and skipped, never raised; a bug is never wrapped in these.
No message built here may contain a secret: callers pass redacted URLs and no credentials.
"""

from __future__ import annotations


class TradebusError(Exception):
    """Root of every error tradebus raises on purpose."""


class ConfigError(TradebusError):
    """The configuration is invalid; ``problems`` lists ``path: what was expected`` lines."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class UpstreamProtocolError(TradebusError):
    """An upstream broke its own protocol (wrong content type, a frame past the size limit)."""


class SourceError(TradebusError):
    """An upstream connection failed."""


class SinkError(TradebusError):
    """A sink could not take a batch."""


class RetryableSinkError(SinkError):
    """The sink may take the same batch later."""


class FatalSinkError(SinkError):
    """The sink is unusable as configured."""
