"""The webhook sink's pure parts: signatures, secrets, ids, status classes, config."""

from __future__ import annotations

import base64
import email.utils
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks import Webhook

from tradebus import config
from tradebus.errors import ConfigError
from tradebus.secret import Secret
from tradebus.sinks.webhook import (
    WebhookSink,
    batch_id,
    classify,
    header_id,
    signature,
    split_lines,
)

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
NOW = 1_780_000_000.0


# --- status classes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "retry_after", "verdict"),
    [
        (200, None, (True, False, None)),
        (202, "5", (True, False, None)),
        (204, None, (True, False, None)),
        (500, None, (False, True, None)),
        (502, "4", (False, True, 4.0)),
        (504, None, (False, True, None)),
        (408, None, (False, True, None)),
        (429, "30", (False, True, 30.0)),
        (503, email.utils.formatdate(NOW + 90, usegmt=True), (False, True, 90.0)),
        (400, "5", (False, False, None)),
        (401, None, (False, False, None)),
        (403, None, (False, False, None)),
        (404, None, (False, False, None)),
        (409, "5", (False, False, None)),
        (413, None, (False, False, None)),
        (301, None, (False, False, None)),
        (307, None, (False, False, None)),
    ],
)
def test_classify(
    status: int, retry_after: str | None, verdict: tuple[bool, bool, float | None]
) -> None:
    """2xx delivered; 5xx, 408 and 429 retried, honouring any Retry-After (seconds or a date);
    other 4xx (409 included, unlike a source's connect) and 3xx are dropped."""
    assert classify(status, retry_after, NOW) == verdict


# --- signatures and ids -------------------------------------------------------------------------


@given(st.text(min_size=1, max_size=40), st.integers(0, 2**33), st.text(max_size=200))
def test_signature_is_the_reference_librarys(msg_id: str, ts: int, body: str) -> None:
    """Byte for byte what standardwebhooks signs, for any id, timestamp and body."""
    key = config.webhook_key(Secret(SECRET))
    expected = Webhook(SECRET).sign(msg_id, datetime.fromtimestamp(ts, UTC), body)
    assert signature(key, msg_id, ts, body.encode()) == expected


def test_webhook_key_strips_the_prefix_and_decodes() -> None:
    """whsec_ stripped, the rest decoded; unpadded base64 works as in the reference library."""
    key = b"0123456789abcdef0123456789abcdef"
    text = base64.b64encode(key).decode()
    assert config.webhook_key(Secret("whsec_" + text)) == key
    assert config.webhook_key(Secret("whsec_" + text.rstrip("="))) == key


# "mysecret1234" and the bare base64 are valid base64 but lack the prefix: a receiver keying
# its HMAC with the text itself refused every request signed with the decoded key.
@pytest.mark.parametrize(
    "bad",
    ["whsec_", "whsec_not base64!", "", "whsec_@@@@", "mysecret1234", "MDEyMzQ1Njc4OWFiY2RlZg=="],
)
def test_webhook_key_refuses_without_quoting(bad: str) -> None:
    """Not base64, or empty: an error that never shows the value."""
    with pytest.raises(ValueError, match="expected whsec_<base64>") as err:
        config.webhook_key(Secret(bad))
    if shown := bad.removeprefix("whsec_"):
        assert shown not in str(err.value)


def test_ids() -> None:
    """One event: its id; several: first..last; unsendable characters: a stable digest."""
    assert batch_id("a:1", "a:1") == "a:1"
    assert batch_id("a:1", "a:9") == "a:1..a:9"
    odd = header_id("a:\r\nX-Evil: 1")
    assert odd.startswith("sha256:")
    assert odd == header_id("a:\r\nX-Evil: 1")
    assert header_id("a:é") != header_id("a:e")


def test_split_lines_across_chunks() -> None:
    """Lines of every chunk in order, without their newline; a torn chunk is a bug."""
    assert split_lines([b"a\nb\n", b"c\n"]) == [b"a", b"b", b"c"]
    with pytest.raises(ValueError, match="newline"):
        split_lines([b"a\nb"])


# --- config -------------------------------------------------------------------------------------

ISSUE_EXAMPLE = """
[[sources]]
name = "main"
type = "ttmt"
url = "http://127.0.0.1:8080/stream"
api_key = "k-123456"

[[sinks]]
name = "hook"
type = "webhook"
url = "https://example.com/hook"
secret = "${WEBHOOK_SECRET}"   # whsec_<base64>, as Standard Webhooks defines it
format = "json"                # json | jsonl | cloudevents | cloudevents-batch
"""


def test_the_issue_example_parses() -> None:
    """The documented example works as written; the secret never shows in the repr."""
    cfg = config.parse(tomllib.loads(ISSUE_EXAMPLE), env={"WEBHOOK_SECRET": SECRET})
    sink = cfg.sinks[0]
    assert isinstance(sink, config.WebhookSinkConfig)
    assert sink.secret == Secret(SECRET)
    assert (sink.format, sink.timeout, sink.give_up_after, sink.max_in_flight) == (
        "json",
        15.0,
        86400.0,
        1,
    )
    assert SECRET not in repr(cfg)


def test_secret_file_and_secret_headers(tmp_path: Path) -> None:
    """secret_file reads the secret; header values are Secrets, hidden in the repr."""
    (tmp_path / "hook.secret").write_text(SECRET + "\n")
    data = tomllib.loads(ISSUE_EXAMPLE.replace('secret = "${WEBHOOK_SECRET}"', ""))
    data["sinks"][0]["secret_file"] = str(tmp_path / "hook.secret")
    data["sinks"][0]["headers"] = {"X-Api-Key": "hdr-value-123"}
    sink = config.parse(data, env={}).sinks[0]
    assert isinstance(sink, config.WebhookSinkConfig)
    assert sink.secret == Secret(SECRET)
    assert sink.headers["X-Api-Key"].reveal() == "hdr-value-123"
    assert "hdr-value-123" not in repr(sink)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"secret": "whsec_!!notbase64"}, "sinks[0].secret: expected whsec_<base64>"),
        ({"format": "xml"}, "sinks[0].format"),
        ({"url": "ftp://example.com/"}, "sinks[0].url: expected an http/https URL"),
        ({"headers": {"webhook-signature": "x"}}, "is set by the webhook sink itself"),
        ({"headers": {"bad name": "x"}}, "is not a valid header name"),
        ({"headers": {"X-K": "a\r\nX-Evil: 1"}}, "has a line break"),
        ({"timeout": 0}, "sinks[0].timeout"),
        ({"batch_max_events": 0}, "sinks[0].batch_max_events"),
    ],
)
def test_bad_webhook_config_names_the_field(change: dict[str, object], message: str) -> None:
    data = tomllib.loads(ISSUE_EXAMPLE)
    data["sinks"][0].update(change)
    with pytest.raises(ConfigError) as err:
        config.parse(data, env={"WEBHOOK_SECRET": SECRET})
    assert message in str(err.value)
    assert "!!notbase64" not in str(err.value)


def test_batch_linger_ms_is_the_sinks_declared_linger() -> None:
    """``batch_linger_ms`` reaches the follower as the sink's ``linger``, in seconds."""
    hook = config.WebhookSinkConfig(
        name="h", url="http://127.0.0.1:1/", format="jsonl", batch_linger_ms=250
    )
    assert WebhookSink(hook).linger == 0.25
