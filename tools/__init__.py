"""Tools for working on tradebus from a checkout (not part of the installed package)."""
