"""tradebus: one canonical event stream from many trading feeds."""

__version__ = "0.1.0"
