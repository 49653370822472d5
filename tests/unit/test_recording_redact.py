"""What never lands in a recording: each net of ``recording.redact`` on its own."""

from __future__ import annotations

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from tradebus.recording import redact
from tradebus.recording.redact import REDACTED

SECRETS = redact.secrets_bytes(["k3y-Sekr1t", "pw-0fTheAccount", "sess_mt4_00ab12cd34ef"])
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ0cmFkZXIiLCJleHAiOjE3OTY1NDU5MjN9"
    ".meqObwIuhFCDERihMr0Ga2AutfFB3cLqt0GUG78VbAY"
)


def test_request_headers_keep_only_protocol_state() -> None:
    """Authorization, a session header and any header of the operator's are replaced whole;
    Accept, Last-Event-ID and a request id stay, as the replay reader wants them."""
    got = redact.request_headers(
        {
            "Authorization": "Bearer k3y-Sekr1t",
            "x-session-id": "anything",
            "X-Custom-Thing": "plain",
            "Accept": "text/event-stream",
            "Last-Event-ID": "41",
            "x-request-id": "tb-1",
        },
        SECRETS,
    )
    assert got == {
        "Authorization": REDACTED,
        "x-session-id": REDACTED,
        "X-Custom-Thing": REDACTED,
        "Accept": "text/event-stream",
        "Last-Event-ID": "41",
        "x-request-id": "tb-1",
    }


def test_response_headers_lose_credential_named_values() -> None:
    """Set-Cookie and the like go; Retry-After and Content-Type stay (the replay reads them)."""
    got = redact.response_headers(
        {"Set-Cookie": "sid=1", "Retry-After": "3", "Content-Type": "text/event-stream"}, SECRETS
    )
    assert got == {"Set-Cookie": REDACTED, "Retry-After": "3", "Content-Type": "text/event-stream"}


def test_a_token_in_a_query_parameter_and_userinfo_are_replaced() -> None:
    """The Trader WS JWT travels as ?token=; a URL's user:password too; a session id in the
    path is a known secret."""
    assert redact.url(f"ws://127.0.0.1:8000/api/v1/ws?token={JWT}&x=1", SECRETS) == (
        "ws://127.0.0.1:8000/api/v1/ws?token=<redacted>&x=1"
    )
    assert redact.url("https://me:pw@host/p", SECRETS) == "https://<redacted>@host/p"
    assert redact.url("http://h/mt4/client/session/sess_mt4_00ab12cd34ef/heartbeat", SECRETS) == (
        "http://h/mt4/client/session/<redacted>/heartbeat"
    )


def test_json_bodies_lose_credential_named_values_and_keep_the_rest() -> None:
    """A login (username, password), its answer (token), a session opened (sessionId):
    replaced, while what the replay decodes (expiresIn, accountId) stays as it was."""
    login = redact.body(b'{"username": "trader", "password": "hunter22"}', SECRETS)
    assert msgspec.json.decode(login) == {"username": REDACTED, "password": REDACTED}
    answer = redact.body(b'{"token": "opaque-not-a-jwt", "expiresIn": 3600}', SECRETS)
    assert msgspec.json.decode(answer) == {"token": REDACTED, "expiresIn": 3600}
    session = redact.body(b'{"sessionId":"s-1","accountId":"demo","nested":[{"apiKey":1}]}', ())
    assert msgspec.json.decode(session) == {
        "sessionId": REDACTED,
        "accountId": "demo",
        "nested": [{"apiKey": REDACTED}],
    }


def test_a_body_without_credentials_is_kept_byte_for_byte() -> None:
    """Nothing to replace: the body is not re-encoded (the replay decodes the same bytes)."""
    raw = b'{ "positions" : [ {"ticket": 50011, "profit": 24.20} ] }'
    assert redact.body(raw, SECRETS) == raw


def test_known_secrets_and_jwts_go_from_text_that_is_no_json() -> None:
    """A known secret anywhere, and anything shaped like a JWT, in a body that is no JSON."""
    raw = f"error: key k3y-Sekr1t refused, token {JWT} expired".encode()
    assert redact.body(raw, SECRETS) == b"error: key <redacted> refused, token <redacted> expired"


def test_streamed_data_gets_the_value_net_only() -> None:
    """A TradingPartners alert's own ``token`` field is data, not a credential: kept; a known
    secret in streamed data is replaced."""
    data = b'data: {"token":"b1f0-alert-token","note":"pw-0fTheAccount"}\n\n'
    assert redact.scrub(data, SECRETS) == (
        b'data: {"token":"b1f0-alert-token","note":"<redacted>"}\n\n'
    )


@given(st.binary(max_size=200), st.binary(max_size=200), st.sampled_from(SECRETS))
def test_a_known_secret_never_survives_the_value_net(
    before: bytes, after: bytes, value: bytes
) -> None:
    """Whatever surrounds it, a known secret is gone after ``scrub``."""
    assert value not in redact.scrub(before + value + after, SECRETS)


def test_a_secret_inside_another_goes_whole() -> None:
    """The longer is replaced first: no tail of it is left behind."""
    secrets = redact.secrets_bytes(["abcd", "xxabcdxx"])
    assert redact.scrub(b"-xxabcdxx-abcd-", secrets) == b"-<redacted>-<redacted>-"
