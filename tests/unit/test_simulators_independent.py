"""The simulators speak each upstream's documented wire format on their own: none imports an
adapter, so a misreading of a doc cannot hide by being shared by both sides."""

from __future__ import annotations

import ast
from pathlib import Path

SIMULATORS = Path(__file__).resolve().parents[2] / "src" / "tradebus" / "simulators"


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_no_simulator_imports_an_adapter() -> None:
    """Every module under simulators/ imports nothing of tradebus.adapters."""
    modules = sorted(SIMULATORS.glob("*.py"))
    assert len(modules) >= 5  # base and the four upstreams
    for path in modules:
        leaks = sorted(m for m in imported_modules(path) if m.startswith("tradebus.adapters"))
        assert leaks == [], f"{path.name} imports {leaks}"
