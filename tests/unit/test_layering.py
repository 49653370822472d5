"""The layering DESIGN.md draws, checked on the source: a simulator never imports an adapter.

A simulator is a fake upstream; one that decodes with the adapter's own wire structs agrees
with the adapter by construction and can never catch it misreading the upstream's shape.
The daemon imports its ops endpoint, never the reverse: the endpoint reads a ``DaemonView``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import tradebus.daemon
import tradebus.simulators

SIMULATORS = sorted(Path(tradebus.simulators.__file__).parent.glob("*.py"))
FORBIDDEN = "tradebus.adapters"
DAEMON = Path(tradebus.daemon.__file__).parent


def imported(tree: ast.AST, package: str) -> set[str]:
    """Every module ``tree`` imports, relative imports resolved against ``package``."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def forbidden(names: set[str], prefix: str = FORBIDDEN) -> list[str]:
    return sorted(n for n in names if n == prefix or n.startswith(prefix + "."))


def test_there_are_simulators_to_check() -> None:
    """The walk sees the four simulators (a wrong path must not pass vacuously)."""
    assert {p.stem for p in SIMULATORS} >= {"ttmt", "tpalerts", "traderws", "mt4bridge"}


@pytest.mark.parametrize("path", SIMULATORS, ids=[p.stem for p in SIMULATORS])
def test_a_simulator_imports_no_adapter(path: Path) -> None:
    """No ``import tradebus.adapters…`` nor ``from tradebus.adapters… import``, at any depth."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    assert forbidden(imported(tree, "tradebus.simulators")) == []


@pytest.mark.parametrize(
    "source",
    [
        "from tradebus.adapters.mt4bridge import wire",
        "import tradebus.adapters.traderws.wire as w",
        "from tradebus import adapters",
        "from ..adapters.ttmt import wire",
        "def f():\n    from tradebus.adapters import base",
    ],
)
def test_the_check_catches_every_spelling_of_the_import(source: str) -> None:
    """Absolute, aliased, from-the-package, relative and function-local imports all count."""
    assert forbidden(imported(ast.parse(source), "tradebus.simulators")) != []


@pytest.mark.parametrize("name", ["ops", "page", "stream", "view"])
def test_the_ops_endpoint_imports_not_the_daemon(name: str) -> None:
    """Not even for type checking: what it reads of the daemon is ``view.DaemonView``."""
    path = DAEMON / f"{name}.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    assert forbidden(imported(tree, "tradebus.daemon"), "tradebus.daemon.app") == []


@pytest.mark.parametrize("module", ["tradebus.sinks.base", "tradebus.adapters.base"])
def test_a_plugins_base_imports_no_registry(module: str) -> None:
    """What a plugin imports (its base) imports no registry, not even inside a function: the
    registry imports the plugins, so that would close a circle through them."""
    path = Path(__import__(module, fromlist=["_"]).__file__ or "")
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names = imported(tree, module.rpartition(".")[0])
    assert forbidden(names, "tradebus.plugin") == []
    assert forbidden(names, "tradebus.registry") == []


# Below every sink and the bus: what configures them, and what reports on the journal.
BELOW_SINKS = ("tradebus.config", "tradebus.journal.report")
ABOVE = ("tradebus.bus", "tradebus.sinks", "tradebus.delivery")


def test_config_and_journal_report_import_no_sink_and_no_bus() -> None:
    """Imported afresh, they bring in no sink, no bus and no delivery module. (Loading a
    config does: the sinks' config structs come from their plugins, found by entry point.)"""
    code = (
        "import sys, " + ", ".join(BELOW_SINKS) + "\n"
        "print('\\n'.join(m for m in sys.modules if m.startswith('tradebus')))"
    )
    out = subprocess.run(  # noqa: S603 - our own fixed argv
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert set(BELOW_SINKS) <= set(out)  # the walk saw them: it cannot pass vacuously
    assert [m for m in out if any(m == a or m.startswith(a + ".") for a in ABOVE)] == []


PACKAGE = Path(tradebus.daemon.__file__).parents[1]


def test_the_package_imports_nothing_of_the_checkout_tools() -> None:
    """``tools/`` (the docs generator) runs from a checkout: no module of the installed package
    may need it, or an installed tradebus would fail to import."""
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 50  # the walk sees the package: it cannot pass vacuously
    offenders = {
        str(path.relative_to(PACKAGE)): forbidden(
            imported(ast.parse(path.read_text("utf-8")), "tradebus"), "tools"
        )
        for path in modules
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_docs_generator_reads_no_test_file() -> None:
    """The examples in the docs come from ``examples/upstreams`` (the upstream docs' own
    payloads, which the tests read too), never from ``tests/``: no path under it, no import."""
    path = PACKAGE.parents[1] / "tools" / "docsgen.py"
    source = path.read_text("utf-8")
    assert '"examples"' in source  # where it does read them: the check cannot pass vacuously
    strings = [
        node.value
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]
    assert [s for s in strings if s == "tests" or s.startswith("tests/")] == []
    assert forbidden(imported(ast.parse(source), "tools"), "tests") == []
