"""Secrets never show themselves, and the log chain scrubs them from every rendered line."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
import yarl

from tradebus import log, secret
from tradebus.secret import Secret

API_KEY = "sk-live-7f3a9c2e11b04d"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ0cmFkZXIifQ.c2lnbmF0dXJl"


class Captured:
    """The JSON lines the configured structlog chain rendered."""

    def __init__(self, stream: io.StringIO) -> None:
        self.stream = stream

    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text().splitlines()]


@pytest.fixture
def captured() -> Iterator[Captured]:
    stream = io.StringIO()
    log.configure("debug", stream=stream)
    try:
        yield Captured(stream)
    finally:
        log.configure("debug")  # what the session-wide fixture set up


# --- Secret -------------------------------------------------------------------------------------


def test_secret_never_shows_its_value() -> None:
    """repr, str, f-strings, %-formatting, containers and exceptions all read ***."""
    key = Secret(API_KEY)
    renderings = [
        repr(key),
        str(key),
        f"{key}",
        f"{key!r}",
        f"{key!s}",
        "%s %r" % (key, key),  # noqa: UP031 - the old style must not leak either
        "{}".format(key),  # noqa: UP032 - nor str.format
        str([key]),
        repr({"k": key}),
        str(ValueError(key)),
        repr(ValueError(key)),
    ]
    for text in renderings:
        assert API_KEY not in text
    assert str(key) == "***"
    assert repr(key) == "Secret('***')"
    assert key.reveal() == API_KEY


def test_secret_compares_by_value_without_exposing_it() -> None:
    """Two Secrets with one value are equal and hash alike; emptiness is falsy."""
    assert Secret(API_KEY) == Secret(API_KEY)
    assert hash(Secret(API_KEY)) == hash(Secret(API_KEY))
    assert Secret(API_KEY) != API_KEY
    assert not Secret("")
    assert Secret("x")


def test_scrub_hides_wrapped_and_registered_values() -> None:
    """Every wrapped or registered value of 4+ characters is replaced by *** in any text."""
    Secret(API_KEY)
    secret.register(JWT)
    text = f"key={API_KEY} auth=Bearer {JWT} again {API_KEY}"
    assert secret.scrub(text) == "key=*** auth=Bearer *** again ***"


def test_short_values_are_not_scrubbed() -> None:
    """Values under 4 characters are not registered, so ordinary words survive scrubbing."""
    Secret("on")
    secret.register("id")
    assert secret.scrub("the id is on") == "the id is on"


# --- the rendered log chain ---------------------------------------------------------------------


def test_credential_named_keys_are_hidden(captured: Captured) -> None:
    """Values under keys naming a credential render as ***, at any depth."""
    log.get(source="s").info(
        "connect",
        password="pw-1",
        api_key="k-2",
        apikey="k-3",
        Authorization="Bearer t-4",
        jwt="j-5",
        cookie="c-6",
        client_secret="s-7",
        headers={"X_Api_Key": "k-8", "Accept": "json", "nested": {"token": "t-9"}},
        user="alice",
    )
    (line,) = captured.lines()
    for key in ("password", "api_key", "apikey", "Authorization", "jwt", "cookie", "client_secret"):
        assert line[key] == "***"
    assert line["headers"] == {"X_Api_Key": "***", "Accept": "json", "nested": {"token": "***"}}
    assert line["user"] == "alice"
    assert line["source"] == "s"
    assert line["event"] == "connect"
    assert line["level"] == "info"
    for value in ("pw-1", "k-2", "k-3", "t-4", "j-5", "c-6", "s-7", "k-8", "t-9"):
        assert value not in captured.text()


def test_hyphenated_api_key_header_is_hidden(captured: Captured) -> None:
    """An X-API-Key header value is hidden like an api_key field."""
    log.get().info("request", headers={"X-API-Key": "k-hyphen-1"})
    assert "k-hyphen-1" not in captured.text()


def test_registered_secrets_are_scrubbed_from_any_string(captured: Captured) -> None:
    """A known secret inside an ordinary value, the event name, a list or a dict is scrubbed."""
    Secret(API_KEY)
    secret.register(JWT)
    logger = log.get(source="s")
    event = f"login answered {JWT}"
    logger.warning(
        event,
        detail=f"server echoed {API_KEY} back",
        items=["a", f"x{JWT}y"],
        extra={"note": API_KEY},
        key=Secret(API_KEY),
    )
    (line,) = captured.lines()
    assert line["event"] == "login answered ***"
    assert line["detail"] == "server echoed *** back"
    assert line["items"] == ["a", "x***y"]
    assert line["extra"] == {"note": "***"}
    assert line["key"] == "Secret('***')"
    assert API_KEY not in captured.text()
    assert JWT not in captured.text()


def test_bound_context_is_scrubbed(captured: Captured) -> None:
    """Context bound on the logger goes through the same redaction."""
    secret.register(JWT)
    log.get(source="s", session=f"jwt:{JWT}", token="abc").info("tick")
    (line,) = captured.lines()
    assert line["session"] == "jwt:***"
    assert line["token"] == "***"


def test_exception_text_is_scrubbed(captured: Captured) -> None:
    """Exceptions as values and rendered tracebacks lose secrets and URL queries."""
    Secret(API_KEY)
    logger = log.get(source="s")
    error = RuntimeError(f"rejected {API_KEY} at wss://h.example/api/v1/ws?token=abc123")
    try:
        _raise(error)
    except RuntimeError:
        logger.exception("connect_failed")
    logger.error("connect_failed_value", error=error)
    first, second = captured.lines()
    assert first["exception"].startswith("Traceback (most recent call last):")
    assert first["exception"].endswith(
        "RuntimeError: rejected *** at wss://h.example/api/v1/ws?***"
    )
    assert second["error"] == "RuntimeError: rejected *** at wss://h.example/api/v1/ws?***"
    assert API_KEY not in captured.text()
    assert "abc123" not in captured.text()


def _raise(error: Exception) -> None:
    raise error


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("wss://h/api/v1/ws?token=abc", "wss://h/api/v1/ws?***"),
        ("ws://127.0.0.1:8080/ws?token=abc&x=1#frag", "ws://127.0.0.1:8080/ws?***#frag"),
        ("https://api.example.com/v1/stream?apikey=abc", "https://api.example.com/v1/stream?***"),
        ("http://h/path", "http://h/path"),
    ],
)
def test_url_query_strings_are_stripped(captured: Captured, url: str, expected: str) -> None:
    """Query strings (which may carry tokens) vanish from URLs in any logged string."""
    assert log.redact_url(url) == expected
    log.get().info("connecting", url=url, message=f"GET {url} failed")
    (line,) = captured.lines()
    assert line["url"] == expected
    assert line["message"] == f"GET {expected} failed"
    if "?" in url:
        assert "abc" not in captured.text()


def test_non_string_values_are_scrubbed(captured: Captured) -> None:
    """A URL object or bytes value is rendered without its token or any known secret."""
    Secret(API_KEY)
    log.get().info(
        "connecting",
        url=yarl.URL("wss://h/api/v1/ws?token=abc123"),
        raw=b"apikey=" + API_KEY.encode(),
    )
    assert "abc123" not in captured.text()
    assert API_KEY not in captured.text()


def test_level_filter_still_applies(captured: Captured) -> None:
    """A reconfigured chain at info drops debug lines."""
    log.configure("info", stream=captured.stream)
    log.get().debug("noise")
    log.get().info("signal")
    assert [line["event"] for line in captured.lines()] == ["signal"]


# --- excerpt ------------------------------------------------------------------------------------


def test_excerpt_keeps_short_input_whole() -> None:
    """Input within the limit comes back unchanged, with no suffix."""
    assert log.excerpt(b'{"type":"ping"}') == '{"type":"ping"}'
    assert log.excerpt("x" * 200) == "x" * 200


def test_excerpt_is_bounded_and_says_how_much_was_cut() -> None:
    """Long input is cut at the limit and the suffix counts what was left out."""
    assert log.excerpt(b"x" * 1000) == "x" * 200 + "…(+800 more)"
    assert log.excerpt("y" * 201) == "y" * 200 + "…(+1 more)"
    assert log.excerpt("abcdef", limit=3) == "abc…(+3 more)"
    huge = log.excerpt(b"z" * (10 << 20))
    assert huge == "z" * 200 + f"…(+{(10 << 20) - 200} more)"


def test_excerpt_replaces_invalid_utf8_and_scrubs() -> None:
    """Bad bytes become U+FFFD; secrets and URL queries are scrubbed."""
    Secret(API_KEY)
    assert log.excerpt(b"\xff{" + API_KEY.encode() + b"}") == "\ufffd{***}"
    assert log.excerpt("see wss://h/ws?token=abc") == "see wss://h/ws?***"


def test_excerpt_counts_multibyte_input_correctly() -> None:
    """Non-ASCII bytes within the limit are not reported as cut."""
    assert log.excerpt("é".encode() * 10) == "é" * 10


def test_excerpt_never_shows_part_of_a_secret() -> None:
    """A secret that straddles the cut leaves no prefix of itself in the excerpt."""
    Secret(API_KEY)
    text = log.excerpt("x" * 190 + API_KEY)
    assert API_KEY[:10] not in text


def test_redact_url_hides_userinfo_and_ignores_scheme_case() -> None:
    """Credentials in the URL's userinfo and an upper-case scheme's query are both hidden."""
    assert log.redact_url("https://bob:hunter2@h/x") == "https://***@h/x"
    assert log.redact_url("WSS://h/ws?token=abc") == "WSS://h/ws?***"


def test_unset_format_is_console_on_a_terminal_and_json_elsewhere() -> None:
    """``fmt=None`` (no log_format in the config, no --log-format): a person at a terminal gets
    the console renderer, a pipe or file gets JSON lines."""
    master, replica = os.openpty()
    try:
        with open(replica, "w", closefd=True) as tty:
            log.configure("info", fmt=None, stream=tty)
            log.get(source="s").info("hello", n=1)
            tty.flush()
            shown = os.read(master, 4096).decode()
        assert "hello" in shown
        assert not shown.lstrip().startswith("{")
        pipe = io.StringIO()
        log.configure("info", fmt=None, stream=pipe)
        log.get(source="s").info("hello", n=1)
        assert json.loads(pipe.getvalue())["event"] == "hello"
    finally:
        os.close(master)
        log.configure("debug")  # what the session-wide fixture set up
