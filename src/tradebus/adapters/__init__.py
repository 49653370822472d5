"""The built-in adapters, one folder per upstream; each registers in pyproject.toml."""
