"""Config: TOML into closed frozen structs, env interpolation, secret files, field-path errors."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from tradebus import config
from tradebus.config import FileSinkConfig, StdoutSinkConfig, TpAlertsSource, TtmtSource
from tradebus.errors import ConfigError
from tradebus.plugin import SINKS, SOURCES

MINIMAL = """
[daemon]
state_dir = "/var/lib/tradebus"

[[sources]]
name = "ttmt-main"
type = "ttmt"
url = "http://127.0.0.1:8081/api/v1/stream"
api_key = "${TTMT_API_KEY}"

[[sources]]
name = "alerts"
type = "tpalerts"
url = "http://127.0.0.1:8082/api/v1/alerts"
token = "${TP_TOKEN}"

[[sinks]]
name = "archive"
type = "file"
path = "/var/log/tradebus/events.jsonl"

[[sinks]]
name = "console"
type = "stdout"
"""
ENV = {"TTMT_API_KEY": "ttmt_live_abcdef", "TP_TOKEN": "tp-token-123456"}
REPO = Path(__file__).resolve().parents[2]


def _problems(data: dict[str, object], env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config.parse(data, env if env is not None else ENV)
    return info.value.problems


def _minimal() -> dict[str, object]:
    return tomllib.loads(MINIMAL)


def test_minimal_config_from_the_issue_works_as_written() -> None:
    """The issue's minimal config decodes with every default filled in."""
    cfg = config.parse(_minimal(), ENV)
    ttmt, alerts = cfg.sources
    assert isinstance(ttmt, TtmtSource)
    assert isinstance(alerts, TpAlertsSource)
    assert ttmt.api_key.reveal() == "ttmt_live_abcdef"
    assert alerts.token.reveal() == "tp-token-123456"
    assert ttmt.account_id is None
    assert alerts.missed_pings == 3
    archive, console = cfg.sinks
    assert isinstance(archive, FileSinkConfig)
    assert archive.path == "/var/log/tradebus/events.jsonl"
    assert isinstance(console, StdoutSinkConfig)
    assert cfg.daemon.state_dir == "/var/lib/tradebus"
    assert [config.kind(s) for s in cfg.sources] == ["ttmt", "tpalerts"]


def test_secrets_never_show_in_repr() -> None:
    """A decoded config prints its secrets as *** only."""
    cfg = config.parse(_minimal(), ENV)
    assert "ttmt_live_abcdef" not in repr(cfg)
    assert "tp-token-123456" not in repr(cfg)
    assert "***" in repr(cfg.sources[0])


def test_env_default_is_used_when_the_variable_is_unset() -> None:
    """``${VAR:-default}`` falls back to the default."""
    data = _minimal()
    data["sources"][0]["url"] = "${TTMT_URL:-http://127.0.0.1:9999/s}"  # type: ignore[index]
    cfg = config.parse(data, ENV)
    assert cfg.sources[0].url == "http://127.0.0.1:9999/s"


def test_unset_variable_names_field_and_variable() -> None:
    """An unset ``${VAR}`` without default is an error naming the field path and the variable."""
    assert _problems(_minimal(), {"TP_TOKEN": "x"}) == [
        "sources[0].api_key: environment variable TTMT_API_KEY is not set"
    ]


def test_secret_file_is_read_relative_to_credentials_directory(tmp_path: Path) -> None:
    """``api_key_file`` reads the secret, relative paths from $CREDENTIALS_DIRECTORY."""
    (tmp_path / "ttmt.key").write_text("ttmt_from_file_999\n")
    data = _minimal()
    del data["sources"][0]["api_key"]  # type: ignore[index]
    data["sources"][0]["api_key_file"] = "ttmt.key"  # type: ignore[index]
    cfg = config.parse(data, {**ENV, "CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert isinstance(cfg.sources[0], TtmtSource)
    assert cfg.sources[0].api_key.reveal() == "ttmt_from_file_999"


def test_missing_secret_file_is_a_field_error(tmp_path: Path) -> None:
    """An unreadable secret file names the field and the path, not a traceback."""
    data = _minimal()
    del data["sources"][1]["token"]  # type: ignore[index]
    data["sources"][1]["token_file"] = str(tmp_path / "absent")  # type: ignore[index]
    (problem,) = _problems(data)
    assert problem.startswith("sources[1].token_file: cannot read ")


def test_empty_url_names_the_field() -> None:
    """An empty URL reads ``sources[1].url: expected …, got ''``."""
    data = _minimal()
    data["sources"][1]["url"] = ""  # type: ignore[index]
    assert _problems(data) == ["sources[1].url: expected an http/https URL, got ''"]


def test_unknown_key_is_rejected_with_its_path() -> None:
    """A misspelt key is an error at its path, not silently ignored."""
    data = _minimal()
    data["sinks"][0]["max_byte"] = 10  # type: ignore[index]
    assert _problems(data) == ["sinks[0].max_byte: unknown field (check its spelling and section)"]


def test_wrong_type_names_path_and_expectation() -> None:
    """A wrong type says what was expected and where."""
    data = _minimal()
    data["sources"][1]["ping_interval"] = "fast"  # type: ignore[index]
    assert _problems(data) == ["sources[1].ping_interval: expected `float`, got `str`"]


def test_secret_of_wrong_type_does_not_echo_the_value() -> None:
    """A non-string secret is rejected without repeating it."""
    data = _minimal()
    data["sources"][0]["api_key"] = 123456789  # type: ignore[index]
    (problem,) = _problems(data)
    assert problem == "sources[0].api_key: expected a string"


def installed(section: str) -> str:
    """The types installed plugins add (the example sink in this venv), as a message lists
    them after the built-ins."""
    registry = SINKS if section == "sinks" else SOURCES
    return "".join(f", {t}" for t in registry.plugins() if not registry.builtin(t))


def test_unknown_type_lists_the_valid_ones() -> None:
    """An unknown or missing ``type`` is named with its path and the types there are: the
    built-ins first, then those of installed plugins."""
    data = _minimal()
    data["sources"][0]["type"] = "ftp"  # type: ignore[index]
    del data["sinks"][1]["type"]  # type: ignore[index]
    data["sinks"][0]["type"] = "kafka"  # type: ignore[index]
    assert _problems(data) == [
        "sources[0].type: unknown type 'ftp'; expected one of: ttmt, tpalerts, traderws,"
        f" mt4bridge{installed('sources')}",
        "sinks[0].type: unknown type 'kafka'; expected one of: stdout, file, webhook,"
        f" nats{installed('sinks')}",
        f"sinks[1].type: missing; expected one of: stdout, file, webhook, nats{installed('sinks')}",
    ]


def test_every_problem_of_a_file_is_reported_at_once() -> None:
    """Three mistakes in three tables, two in one table, a missing key and a bad section:
    one parse names them all, in file order."""
    data = _minimal()
    data["daemon"]["drain_timeout"] = -1  # type: ignore[index]
    data["daemon"]["log_level"] = "loud"  # type: ignore[index]
    data["sinks"][1]["providers"] = ["ttmt", "bloomberg"]  # type: ignore[index]
    data["sources"][0]["url"] = "ftp://x/"  # type: ignore[index]
    data["sources"][1]["ping_interval"] = "fast"  # type: ignore[index]
    data["sources"][1]["missed_pings"] = 0  # type: ignore[index]
    del data["sinks"][0]["path"]  # type: ignore[index]
    data["sinks"][1]["queue_sise"] = 10  # type: ignore[index]
    data["sink"] = {}
    assert _problems(data) == [
        "sink: unknown field (check its spelling and section)",
        "daemon.drain_timeout: expected `float` > 0.0",
        "daemon.log_level: invalid enum value 'loud'; expected one of: debug, info, warning, error",
        "sources[0].url: expected an http/https URL, got 'ftp://x/'",
        "sources[1].ping_interval: expected `float`, got `str`",
        "sources[1].missed_pings: expected `int` >= 1",
        "sinks[0].path: required, not given",
        "sinks[1].providers[1]: invalid enum value 'bloomberg'; expected one of: ttmt,"
        " tpalerts, traderws, mt4bridge",
        "sinks[1].queue_sise: unknown field (check its spelling and section)",
    ]


def test_a_bad_url_is_shown_without_its_credentials() -> None:
    """A URL refused for its scheme is named without its userinfo or query (secrets both)."""
    data = _minimal()
    data["sources"][0]["url"] = "htp://bob:pw-7d1e@example.com/s?api_key=k-9f3a"  # type: ignore[index]
    assert _problems(data) == [
        "sources[0].url: expected an http/https URL, got 'htp://***@example.com/s?***'"
    ]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://h:4222?token=t-5c1e", "'http://h:4222?***'"),
        ("nats-ws://h:4222/?auth_token=t-5c1e&x=1", "'nats-ws://h:4222/?***'"),
        ("amqp://bob:t-5c1e@h/v?secret=t-5c1e#frag", "'amqp://***@h/v?***'"),
    ],
)
def test_a_bad_nats_server_is_shown_without_its_query(url: str, shown: str) -> None:
    """A NATS server URL refused for its scheme may carry a token in its query (or its
    userinfo): the message names the URL with neither, whatever the scheme."""
    data = _minimal()
    sinks: list[dict[str, object]] = data["sinks"]  # type: ignore[assignment]
    sinks.append({"name": "bus", "type": "nats", "servers": [url]})
    (problem,) = _problems(data)
    expected = "servers: expected nats:// or tls:// URLs, got " + shown
    assert problem == f"sinks[{len(sinks) - 1}].{expected}"
    assert "t-5c1e" not in problem


def test_log_safe_redacts_the_query_then_cuts() -> None:
    """The query goes before the cut, so a long path cannot push a token past it into view."""
    assert config.log_safe("tls://h:4222?token=t-5c1e") == "tls://h:4222?***"
    assert config.log_safe("tls://h:4222/x#frag") == "tls://h:4222/x#frag"
    long = "tls://h/" + "p" * 90 + "?token=t-5c1e"
    assert config.log_safe(long) == long[:80] + "…"
    assert "t-5c1e" not in config.log_safe("tls://h/" + "p" * 60 + "?token=t-5c1e")


def test_a_missing_variable_is_not_reported_again_as_a_bad_value() -> None:
    """An unset ${VAR} in a URL is one problem (the variable), not also an empty URL."""
    data = _minimal()
    data["sources"][1]["url"] = "${ALERTS_URL}"  # type: ignore[index]
    data["sinks"][0]["max_bytes"] = "big"  # type: ignore[index]
    assert _problems(data) == [
        "sources[1].url: environment variable ALERTS_URL is not set",
        "sinks[0].max_bytes: expected `int`, got `str`",
    ]


def test_duplicate_names_and_empty_sections() -> None:
    """Two sources with one name, and no sinks at all, are both reported."""
    data = _minimal()
    data["sources"][1]["name"] = "ttmt-main"  # type: ignore[index]
    data["sinks"] = []
    assert _problems(data) == [
        "sources[1].name: 'ttmt-main' is already sources[0]'s",
        "sinks: expected at least one [[sinks]] table",
    ]


def test_load_reports_toml_syntax_errors(tmp_path: Path) -> None:
    """Broken TOML is a ConfigError naming the file."""
    path = tmp_path / "bad.toml"
    path.write_text("[daemon\n")
    with pytest.raises(ConfigError) as info:
        config.load(path, ENV)
    assert info.value.problems[0].startswith(f"{path}: not valid TOML")


@pytest.mark.parametrize("name", ["demo.toml", "compose.toml", "production.example.toml"])
def test_shipped_example_configs_are_valid(name: str) -> None:
    """The configs under config/ validate (with placeholder credentials in the environment)."""
    env = {
        "TTMT_API_KEY": "k" * 8,
        "TP_TOKEN": "t" * 8,
        "TRADER_USER": "u" * 8,
        "TRADER_PASSWORD": "p" * 8,
        "MT4_API_KEY": "m" * 8,
        "MT4_PASSWORD": "w" * 8,
        "WEBHOOK_SECRET": "whsec_" + "c2VjcmV0LXNlY3JldC1zZWNyZXQ=",
    }
    cfg = config.load(REPO / "config" / name, env)
    assert cfg.sources
    assert cfg.sinks


def test_exposed_secrets_names_literal_secrets_in_a_readable_file(tmp_path: Path) -> None:
    """Literal values and ${VAR:-default} defaults count; ${VAR} and *_file do not; a file
    only its owner reads exposes nothing."""
    path = tmp_path / "t.toml"
    path.write_text(
        '[[sources]]\nname = "a"\ntype = "ttmt"\nurl = "http://h/s"\napi_key = "lit-key-1"\n'
        '[[sources]]\nname = "b"\ntype = "tpalerts"\nurl = "http://h/a"\ntoken = "${TP}"\n'
        '[[sources]]\nname = "c"\ntype = "traderws"\nurl = "http://h"\n'
        'username = "${U:-alice}"\npassword_file = "pw"\n'
        '[[sinks]]\nname = "w"\ntype = "webhook"\nurl = "http://h/w"\nsecret = "${WH}"\n'
        'headers = { X-Api-Key = "hdr-lit-1", X-Other = "${H}" }\n'
    )
    exposed = ["sources[0].api_key", "sources[2].username", "sinks[0].headers.X-Api-Key"]
    path.chmod(0o640)
    assert config.exposed_secrets(path) == exposed
    path.chmod(0o600)
    assert config.exposed_secrets(path) == []
    path.chmod(0o604)
    assert config.exposed_secrets(path) == exposed


@pytest.mark.parametrize("name", ["demo.toml", "compose.toml"])
def test_the_shipped_demo_configs_warn_of_no_secret(tmp_path: Path, name: str) -> None:
    """On a fresh clone (mode 0644) the demo configs hold only the simulators' published
    credentials: no warning. The same file with one real-looking key warns of that key alone."""
    path = tmp_path / name
    path.write_text((REPO / "config" / name).read_text())
    path.chmod(0o644)
    assert config.exposed_secrets(path) == []
    path.write_text(path.read_text().replace("tp_demo_token", "tp-live-6f1e0a"))
    assert config.exposed_secrets(path) == ["sources[1].token"]


def test_exposed_secrets_leaves_unreadable_and_invalid_files_to_load(tmp_path: Path) -> None:
    """A missing or malformed file gives no warning here: ``load`` reports it properly."""
    assert config.exposed_secrets(tmp_path / "missing.toml") == []
    bad = tmp_path / "bad.toml"
    bad.write_text("[[sources]\n")
    bad.chmod(0o644)
    assert config.exposed_secrets(bad) == []


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),  # noqa: S104 - every address is what is checked
        ("::", False),
        ("192.168.1.10", False),
        ("ops.example", False),
    ],
)
def test_only_loopback_addresses_go_without_a_token(host: str, loopback: bool) -> None:
    """A name or any non-loopback address needs http_token; the error names that key."""
    assert config.is_loopback(host) is loopback
    table = {"sources": [{"name": "t", "type": "ttmt", "url": "http://h/s", "api_key": "k"}]}
    data = {**table, "sinks": [{"name": "o", "type": "stdout"}]}
    address = f"[{host}]:9464" if ":" in host else f"{host}:9464"
    if loopback:
        config.parse({**data, "daemon": {"http": address}}, env={})
        return
    with pytest.raises(ConfigError) as err:
        config.parse({**data, "daemon": {"http": address}}, env={})
    assert err.value.problems[0].startswith("daemon.http_token: required when http listens")
    token = {"http": address, "http_token": "cfg-test-ops-token-7f3a"}
    assert config.parse({**data, "daemon": token}, env={}).daemon.http_token is not None


def test_an_empty_http_token_is_unset() -> None:
    """``${TRADEBUS_HTTP_TOKEN:-}`` with nothing set: no token, fine on loopback only."""
    table = {"sources": [{"name": "t", "type": "ttmt", "url": "http://h/s", "api_key": "k"}]}
    data = {**table, "sinks": [{"name": "o", "type": "stdout"}]}
    daemon = {"http": "127.0.0.1:9464", "http_token": "${TRADEBUS_HTTP_TOKEN:-}"}
    assert config.parse({**data, "daemon": daemon}, env={}).daemon.http_token is None
    with pytest.raises(ConfigError) as err:
        config.parse({**data, "daemon": {**daemon, "http": "0.0.0.0:9464"}}, env={})
    assert err.value.problems[0].startswith("daemon.http_token: required")
