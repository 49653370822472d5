"""The built-in adapters. Importing one module registers its ``type`` (one line per upstream)."""

from __future__ import annotations

import importlib

BUILTIN = ("ttmt", "tpalerts", "traderws", "mt4bridge")

for _name in BUILTIN:
    try:
        importlib.import_module(f"tradebus.adapters.{_name}.adapter")
    except ModuleNotFoundError as exc:  # an adapter still being written is simply absent
        if exc.name != f"tradebus.adapters.{_name}.adapter":
            raise
