"""NATS subjects from templates, and the nats sink's config checks (pure, no server)."""

from __future__ import annotations

import re
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradebus import config as cfg
from tradebus.errors import ConfigError
from tradebus.schemas.events import Event, PositionUpdated, QuoteData, QuoteUpdated
from tradebus.schemas.subject import TOKEN_MAX, Head, SubjectTemplate, token
from tradebus.secret import Secret

_TOKEN = re.compile(r"^[A-Za-z0-9_\-]+$")
SOURCE = {"name": "t", "type": "ttmt", "url": "http://127.0.0.1:1/stream", "api_key": "k"}


def head(event: Event) -> Head:
    """The envelope of ``event`` as the sink decodes it from the event's line."""
    return msgspec.json.decode(msgspec.json.encode(event), type=Head)


def quote(symbol: str | None, *, source: str = "ttmt-main", account: str | None = None) -> Head:
    event = QuoteUpdated(
        id="ttmt-main:1",
        source=source,
        provider="ttmt",
        time="2026-06-09T14:32:01.123Z",
        received="2026-06-09T14:32:01.125Z",
        symbol=symbol,
        account=account,
        data=QuoteData(bid=1.0),
    )
    return head(event)


def parse_sink(**fields: Any) -> cfg.Config:
    table = {"name": "bus", "type": "nats", **fields}
    return cfg.parse({"sources": [SOURCE], "sinks": [table]}, env={})


def test_default_subject_is_prefix_provider_type_symbol() -> None:
    """The issue's layout: tradebus.ttmt.quote.updated.XAUUSD, '_' with no symbol."""
    t = SubjectTemplate("tradebus", "{provider}.{type}.{symbol}")
    assert t.render(quote("XAUUSD")) == "tradebus.ttmt.quote.updated.XAUUSD"
    assert t.render(quote(None)) == "tradebus.ttmt.quote.updated._"
    assert t.render(quote("")) == "tradebus.ttmt.quote.updated._"
    assert t.stream_subjects == ["tradebus.>"]


def test_unsafe_characters_in_values_become_underscores() -> None:
    """Dots, wildcards, slashes and spaces in upstream values never make tokens of their own."""
    t = SubjectTemplate("a.b", "x-{source}.{account}.{symbol}")
    event = quote("EUR/USD .*>", source="ttmt.main", account="acc >")
    assert t.render(event) == "a.b.x-ttmt_main.acc__.EUR_USD____"
    position = PositionUpdated(
        id="i",
        source="s",
        provider="ttmt",
        time="2026-06-09T14:32:01.123Z",
        received="2026-06-09T14:32:01.125Z",
        data={"position_id": "p"},  # type: ignore[arg-type]
    )
    assert SubjectTemplate("p", "{type}").render(head(position)) == "p.position.updated"


@given(st.one_of(st.none(), st.text()), st.text(min_size=1))
def test_any_upstream_value_renders_a_valid_subject(symbol: str | None, source: str) -> None:
    """Whatever the upstream sends, every token is non-empty and made of safe characters."""
    subject = SubjectTemplate("tradebus", "{source}.{type}.{symbol}").render(
        quote(symbol, source=source)
    )
    tokens = subject.split(".")
    assert len(tokens) == 5
    assert all(_TOKEN.match(t) and len(t) <= TOKEN_MAX for t in tokens)
    assert token(symbol) == tokens[-1]


@pytest.mark.parametrize(
    ("prefix", "template", "message"),
    [
        ("tradebus", "{provider}..{type}", "empty token"),
        ("tradebus", ".{type}", "empty token"),
        ("tradebus", "{type}.", "empty token"),
        ("tradebus", "{nope}", "unknown placeholder {nope}"),
        ("tradebus", "{type!r}", "unknown placeholder"),
        ("tradebus", "{type:>5}", "unknown placeholder"),
        ("tradebus", "*.{type}", "literal text"),
        ("tradebus", "ev>.{type}", "literal text"),
        ("tradebus", "a b.{type}", "literal text"),
        ("tradebus", "{type", "subject:"),
        ("trade.>", "{type}", "subject_prefix"),
        ("", "{type}", "subject_prefix"),
        ("a..b", "{type}", "subject_prefix"),
        ("$JS", "{type}", "subject_prefix"),
    ],
)
def test_bad_templates_are_refused(prefix: str, template: str, message: str) -> None:
    """A template that could render a wildcard, an empty token or nonsense fails at load."""
    with pytest.raises(ValueError, match=re.escape(message)):
        SubjectTemplate(prefix, template)


def test_issue_example_config_loads_with_documented_defaults() -> None:
    """The [[sinks]] table of the issue, as written, gives these settings."""
    config = parse_sink(
        servers=["nats://127.0.0.1:4222"], stream="TRADEBUS", subject_prefix="tradebus"
    )
    (sink,) = config.sinks
    assert isinstance(sink, cfg.NatsSinkConfig)
    assert cfg.kind(sink) == "nats"
    assert (sink.stream, sink.subject_prefix, sink.subject) == (
        "TRADEBUS",
        "tradebus",
        "{provider}.{type}.{symbol}",
    )
    assert (sink.create_stream, sink.duplicate_window, sink.replicas) == (True, 120.0, 1)
    assert (sink.ack_timeout, sink.max_inflight) == (10.0, 4096)


def test_credentials_are_secrets_and_read_from_files(tmp_path: Any) -> None:
    """user/password/token are Secrets; user_file and password_file read them from files."""
    (tmp_path / "user").write_text("feeder\n")
    (tmp_path / "pw").write_text("s3cret-pass\n")
    config = parse_sink(user_file=str(tmp_path / "user"), password_file=str(tmp_path / "pw"))
    (sink,) = config.sinks
    assert isinstance(sink, cfg.NatsSinkConfig)
    assert sink.user == Secret("feeder")
    assert sink.password == Secret("s3cret-pass")
    assert "s3cret-pass" not in repr(sink)
    assert "user" in cfg.SECRET_FIELDS


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"servers": ["http://h:4222"]}, "sinks[0].servers: expected nats:// or tls:// URLs"),
        ({"servers": []}, "sinks[0].servers"),
        ({"servers": ["nats://bob:pw-1234@h:4222"]}, "not credentials in the URL"),
        ({"user": "u"}, "sinks[0].user: give user and password together"),
        ({"token": "t0ken", "creds_file": "/x.creds"}, "creds_file: give one of"),
        ({"subject": "{symbol}..x"}, "sinks[0].subject: empty token"),
        ({"stream": "A.B"}, "sinks[0].stream"),
        ({"ack_timeout": 0}, "sinks[0].ack_timeout"),
        ({"max_inflight": 0}, "sinks[0].max_inflight"),
        ({"subjects": ["x"]}, "sinks[0].subjects: unknown field"),
    ],
)
def test_bad_nats_sink_config_names_the_field(fields: dict[str, Any], message: str) -> None:
    """Each mistake is reported with its field path, and never echoes a password."""
    with pytest.raises(ConfigError) as caught:
        parse_sink(**fields)
    assert message in str(caught.value)
    assert "pw-1234" not in str(caught.value)
