"""A reload's plan: per source and sink kept / restarted / added / removed, or refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tradebus import config
from tradebus.config import Config
from tradebus.reload import Plan, Refused, plan_file

BASE = """
[daemon]
state_dir = "{state}"
http = "127.0.0.1:9100"

[[sources]]
name = "ttmt-main"
type = "ttmt"
url = "http://127.0.0.1:8081/api/v1/stream"
api_key_file = "{key}"

[[sources]]
name = "alerts"
type = "tpalerts"
url = "http://127.0.0.1:8082/api/v1/alerts"
token = "tp-token-123456"

[[sinks]]
name = "archive"
type = "file"
path = "/tmp/events.jsonl"

[[sinks]]
name = "console"
type = "stdout"
"""


def _write(tmp_path: Path, text: str = BASE, **fmt: Any) -> Path:
    key = tmp_path / "ttmt.key"
    if not key.exists():
        key.write_text("ttmt_live_abcdef\n")
    path = tmp_path / "tradebus.toml"
    path.write_text(text.format(state=tmp_path / "state", key=key, **fmt))
    return path


def _load(path: Path) -> Config:
    return config.load(path, env={})


def _plan(old: Config, path: Path) -> Plan:
    new, result = plan_file(old, path, env={})
    assert new is not None
    assert isinstance(result, Plan), result
    return result


def test_the_same_file_keeps_everything(tmp_path: Path) -> None:
    """Re-reading an unchanged file plans no change: every source and sink kept."""
    path = _write(tmp_path)
    result = _plan(_load(path), path)
    assert not result.changes
    assert result.sources.kept == ["ttmt-main", "alerts"]
    assert result.sinks.kept == ["archive", "console"]
    assert result.lines()[0] == "no changes"


def test_a_rotated_key_file_restarts_that_source_alone(tmp_path: Path) -> None:
    """The secret is resolved before comparing: a new key in the file restarts its source."""
    path = _write(tmp_path)
    old = _load(path)
    (tmp_path / "ttmt.key").write_text("ttmt_live_rotated\n")
    result = _plan(old, path)
    assert result.sources.restarted == ["ttmt-main"]
    assert result.sources.kept == ["alerts"]
    assert not result.sinks.touched


def test_added_removed_changed_and_disabled(tmp_path: Path) -> None:
    """Names decide: a new name is added, a missing or disabled one removed, a changed one
    restarted; the order of the tables does not matter."""
    path = _write(tmp_path)
    old = _load(path)
    text = (
        BASE.replace('token = "tp-token-123456"', 'token = "tp-token-123456"\nenabled = false')
        .replace('path = "/tmp/events.jsonl"', 'path = "/tmp/other.jsonl"')
        .replace('[[sinks]]\nname = "console"\ntype = "stdout"\n', "")
    )
    text = text.replace(
        "[[sinks]]",
        '[[sinks]]\nname = "new-console"\ntype = "stdout"\nstart = "earliest"\n\n[[sinks]]',
        1,
    )
    result = _plan(old, _write(tmp_path, text))
    assert result.sources.kept == ["ttmt-main"]
    assert result.sources.removed == ["alerts"]
    assert result.sinks.added == ["new-console"]
    assert result.sinks.restarted == ["archive"]
    assert result.sinks.removed == ["console"]
    assert "sinks added: new-console" in result.lines()


def test_daemon_keys_that_apply_live_are_listed(tmp_path: Path) -> None:
    """drain_timeout and the retention limits change without a restart: named in the plan."""
    path = _write(tmp_path)
    old = _load(path)
    text = BASE.replace("[daemon]\n", "[daemon]\ndrain_timeout = 3.0\nretention_age = 3600\n")
    result = _plan(old, _write(tmp_path, text))
    assert result.daemon == ["retention_age", "drain_timeout"]
    assert not result.sources.touched
    assert not result.sinks.touched


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ('delivery = "inline"', "daemon.delivery"),
        ('http = "127.0.0.1:9200"', "daemon.http"),
        ('log_format = "console"', "daemon.log_format"),
        ('fsync = "always"', "daemon.fsync"),
        ('http_token = "a-token-of-twenty-chars"', "daemon.http_token"),
        ("http_token_all = true", "daemon.http_token_all"),
    ],
)
def test_a_restart_only_key_is_refused_by_name(tmp_path: Path, line: str, key: str) -> None:
    """A changed restart-only key refuses the whole reload, naming the key."""
    path = _write(tmp_path)
    old = _load(path)
    text = BASE.replace('http = "127.0.0.1:9100"\n', 'http = "127.0.0.1:9100"\n' + line + "\n")
    if key == "daemon.http":
        text = BASE.replace('http = "127.0.0.1:9100"', line)
    _, result = plan_file(old, _write(tmp_path, text), env={})
    assert isinstance(result, Refused)
    assert [p.partition(":")[0] for p in result.problems] == [key]
    assert "only with a restart" in result.problems[0]


def test_a_changed_state_dir_is_refused(tmp_path: Path) -> None:
    """state_dir is where the running journal lives: changing it is refused by name."""
    path = _write(tmp_path)
    old = _load(path)
    moved = path.read_text().replace(str(tmp_path / "state"), str(tmp_path / "elsewhere"))
    path.write_text(moved)
    _, result = plan_file(old, path, env={})
    assert isinstance(result, Refused)
    assert result.problems[0].startswith("daemon.state_dir: ")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda t: t.replace("[[sinks]]", "[[sinks", 1), "not valid TOML"),
        (lambda t: t.replace('http = "127.0.0.1:9100"', "http = 9100"), "daemon.http: "),
        (lambda t: t.replace('type = "stdout"', 'type = "kafka"'), "sinks[1].type: unknown"),
        (lambda t: t.replace("ttmt.key", "gone.key"), "sources[0].api_key_file: cannot read"),
    ],
    ids=["syntax", "wrong-type", "unknown-sink-type", "missing-secret-file"],
)
def test_a_broken_file_is_refused_with_field_paths(
    tmp_path: Path, change: Any, expected: str
) -> None:
    """A file check-config rejects is refused with check-config's own messages."""
    path = _write(tmp_path)
    old = _load(path)
    path.write_text(change(path.read_text()))
    new, result = plan_file(old, path, env={})
    assert new is None
    assert isinstance(result, Refused)
    assert any(expected in p for p in result.problems), result.problems
