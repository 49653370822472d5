"""Tests that need a system tool: skipped and named without it, failed under CI; nats-server
comes from .venv."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests import tools

REPO = Path(__file__).resolve().parents[2]
NEEDS_A_MISSING_TOOL = """
import pytest

@pytest.mark.tool("tradebus-no-such-tool")
def test_needs_it():
    pass

def test_plain():
    pass
"""


def _run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str | None) -> Any:
    pytester.makepyfile(test_x=NEEDS_A_MISSING_TOOL)
    pytester.makeini("[pytest]\nmarkers =\n    tool(name): needs a system tool\n")
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    # A child pytest, so CI is read from its own environment as `make test` would see it.
    return pytester.run(sys.executable, "-m", "pytest", "-p", "tests.tools", "-ra")


def test_a_missing_tool_skips_its_test_and_says_how_to_install_it(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without CI: the test is skipped naming the tool, the rest passes, the summary says what
    was not run and the one command that installs it; the run is green."""
    result = _run(pytester, monkeypatch, ci=None)
    assert result.ret == 0
    result.assert_outcomes(passed=1, skipped=1)
    out = result.stdout.str()
    assert "needs tradebus-no-such-tool, not installed (to run it: sudo make tools)" in out
    assert "tradebus-no-such-tool: 1 tests (test_x.py::test_needs_it)" in out
    assert "install them with `sudo make tools`, then run make test again" in out


@pytest.mark.parametrize("ci", ["true", "1"])
def test_under_ci_a_missing_tool_fails_its_test(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str
) -> None:
    """With CI set the same test fails (never a skip), naming the tool."""
    result = _run(pytester, monkeypatch, ci=ci)
    assert result.ret == 1
    result.assert_outcomes(passed=1, errors=1)
    assert "tradebus-no-such-tool not installed, and CI must run every test" in result.stdout.str()


@pytest.mark.parametrize("ci", ["", "0", "false"])
def test_ci_set_to_a_false_word_is_not_ci(monkeypatch: pytest.MonkeyPatch, ci: str) -> None:
    """CI="" / "0" / "false" means no CI, as CI services and make's tools target read it."""
    monkeypatch.setenv("CI", ci)
    assert not tools.in_ci()


def test_nats_server_is_the_one_in_the_virtualenv() -> None:
    """The NATS tests run the dev extra's nats-server from .venv, not whatever is on the PATH,
    and it is a current server (JetStream as the sink expects it, 2.10 or later)."""
    binary = tools.dev_program("nats-server")
    assert Path(binary).parent == Path(sys.prefix) / "bin"
    version = subprocess.run(  # noqa: S603 - the program found above
        [binary, "--version"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    major, minor = (int(x) for x in version.rsplit("v", 1)[1].split(".")[:2])
    assert (major, minor) >= (2, 10), version


def _make_tools(*args: str) -> str:
    """What `make -n tools` would run, for a user who is not root (``ROOT=``)."""
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    make = tools.path("make")
    return subprocess.run(  # noqa: S603 - make, on our own Makefile
        [make, "-n", "tools", "ROOT=", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_the_makefile_installs_only_under_ci_or_as_root() -> None:
    """`make tools` as a user without CI only reports; with CI set it installs."""
    assert "tools/test-tools.sh report" in _make_tools()
    assert "tools/test-tools.sh report" in _make_tools("CI=false")
    assert "tools/test-tools.sh install" in _make_tools("CI=true")


def test_the_report_names_a_missing_tool_and_the_command(tmp_path: Path) -> None:
    """test-tools.sh report, with no tool on the PATH, names each one and `sudo make tools`,
    and exits 0 (make test goes on to run the rest)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("sh", "printf"):  # the script's own needs, nothing else
        found = tools.find(name)
        if found:
            (bin_dir / name).symlink_to(found)
    result = subprocess.run(  # noqa: S603 - our own script
        ["/bin/sh", str(REPO / "tools" / "test-tools.sh"), "report"],
        env={"PATH": str(bin_dir)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "not installed: promtool systemd-analyze curl chromium; the tests that need them are"
        " skipped (to run them: sudo make tools)\n"
    )
