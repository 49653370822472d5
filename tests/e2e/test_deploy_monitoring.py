"""The Grafana dashboard and the Prometheus rules shipped in deploy/: every metric they use is
one a running daemon exports, and promtool accepts the rules and passes their unit tests."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests import tools
from tests.e2e.delivery_rig import rig

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "tradebus.json"
RULES = DEPLOY / "prometheus" / "tradebus-rules.yml"
RULES_TEST = DEPLOY / "prometheus" / "tradebus-rules.test.yml"
METRIC = re.compile(r"\btradebus_[a-z_]+\b")


def _strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return [node] if isinstance(node, str) else []


def dashboard_metrics() -> set[str]:
    """Metric names in the dashboard's queries and variables."""
    dash = json.loads(DASHBOARD.read_text("utf-8"))
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    exprs += _strings(dash["templating"])
    return {m for e in exprs for m in METRIC.findall(e)}


def rule_metrics() -> set[str]:
    rules = yaml.safe_load(RULES.read_text("utf-8"))
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    return {m for e in exprs for m in METRIC.findall(e)}


def exported(text: str) -> set[str]:
    """Every series name a scrape of ``text`` gives (a counter's ``_total``, a histogram's
    ``_bucket``…), families without samples too."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
        names.update(family.name + s for s in suffixes.get(family.type, ()))
        names.update(sample.name for sample in family.samples)
    return names


def test_the_files_use_metrics_at_all() -> None:
    """The extraction finds the metrics the issue names (a wrong path must not pass empty)."""
    used = dashboard_metrics() | rule_metrics()
    assert {
        "tradebus_source_events_total",
        "tradebus_source_connected",
        "tradebus_sink_lag_seconds",
        "tradebus_sink_backlog_events",
        "tradebus_sink_retries_total",
        "tradebus_sink_dead_letters_total",
        "tradebus_source_gaps_total",
        "tradebus_sink_gaps_total",
        "tradebus_journal_bytes",
        "tradebus_delivery_restarts_total",
    } <= used


async def test_every_metric_the_dashboard_and_rules_use_is_exported(tmp_path: Path) -> None:
    """A daemon with a feed and a file sink exports each name deploy/ uses."""
    async with rig(tmp_path, feeds=1) as r:
        r.write()
        proc = await r.start()
        try:
            await r.until_ready(lambda b: b["sinks"]["archive"]["written"] > 0, 20)
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"http://127.0.0.1:{r.http}/metrics") as resp,
            ):
                text = await resp.text()
        finally:
            proc.send_signal(signal.SIGTERM)
            assert await proc.wait() == 0
    have = exported(text)
    assert dashboard_metrics() - have == set()
    assert rule_metrics() - have == set()


@pytest.mark.tool("promtool")
def test_promtool_checks_and_tests_the_rules() -> None:
    """promtool check rules and promtool test rules (every alert's firing and quiet cases)."""
    promtool = tools.path("promtool")
    for args in (["check", "rules", str(RULES)], ["test", "rules", str(RULES_TEST)]):
        done = subprocess.run(  # noqa: S603 - our own files
            [promtool, *args], capture_output=True, text=True, check=False, timeout=60
        )
        assert done.returncode == 0, done.stdout + done.stderr
