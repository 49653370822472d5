"""Signing in from a browser to an ops endpoint with ``http_token``: the form, the cookie (never
the token), what the cookie opens (reads of the page and its streams) and what it does not
(reload); the token in no log line."""

from __future__ import annotations

from collections.abc import AsyncIterator, MutableMapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from tests.integration.test_events_stream import running_daemon
from tests.integration.test_ops import two_sources
from tradebus import config
from tradebus.daemon.signin import COOKIE, CSP, WRONG
from tradebus.secret import Secret

TOKEN = "ops-signin-token-3e9a51c7d2"
WRONG_TOKEN = "not-the-token-but-long-8f04"
FAILURES = "tradebus_ops_login_failures"


class Endpoint:
    def __init__(self, base: str, logs: list[MutableMapping[str, Any]]) -> None:
        self.base, self.logs = base, logs

    def session(self) -> aiohttp.ClientSession:
        # A cookie from an IP address (127.0.0.1) is kept only by an "unsafe" jar.
        return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))

    async def login(self, http: aiohttp.ClientSession, token: str) -> aiohttp.ClientResponse:
        resp = await http.post(f"{self.base}/-/login", data={"token": token}, allow_redirects=False)
        await resp.read()
        return resp


@pytest.fixture
async def endpoint(tmp_path: Path) -> AsyncIterator[Endpoint]:
    cfg = config.with_overrides(
        two_sources(tmp_path),
        daemon=config.DaemonConfig(
            http="127.0.0.1:0", state_dir=str(tmp_path), http_token=Secret(TOKEN)
        ),
    )
    with capture_logs() as logs:
        async for running in running_daemon(cfg):
            yield Endpoint(running.base, logs)
    assert TOKEN not in repr(logs)
    assert WRONG_TOKEN not in repr(logs)


async def test_without_a_credential_the_page_is_the_form(endpoint: Endpoint) -> None:
    async with endpoint.session() as http, http.get(endpoint.base + "/") as resp:
        body = await resp.text()
        assert resp.status == 401
        assert resp.headers["Content-Security-Policy"] == CSP
        assert "script-src" not in CSP
        assert '<form method="post" action="/-/login">' in body
        assert 'name="token"' in body
        assert WRONG not in body
    # The API still answers a bare 401 to a client without the token, not a page.
    async with endpoint.session() as http, http.get(endpoint.base + "/api/v1/events") as resp:
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        assert "/-/login" not in await resp.text()


async def test_a_wrong_token_is_401_with_the_form_and_is_not_echoed(endpoint: Endpoint) -> None:
    async with endpoint.session() as http:
        for token in (WRONG_TOKEN, ""):
            resp = await endpoint.login(http, token)
            body = await resp.text()
            assert resp.status == 401
            assert WRONG in body
            assert "<form" in body
            assert WRONG_TOKEN not in body
            assert COOKIE not in resp.cookies
        assert len(http.cookie_jar) == 0
    failed = [e for e in endpoint.logs if e["event"] == "ops_login_failed"]
    assert [e["failures"] for e in failed] == [1, 2]
    assert all("token" not in e for e in failed)


async def login_failures(endpoint: Endpoint) -> float:
    """``tradebus_ops_login_failures_total`` as /metrics (open without the token) says."""
    async with aiohttp.ClientSession() as http, http.get(endpoint.base + "/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    (family,) = [f for f in text_string_to_metric_families(text) if f.name == FAILURES]
    assert family.type == "counter"
    (sample,) = family.samples
    return sample.value


async def test_failed_sign_ins_are_counted_in_metrics(endpoint: Endpoint) -> None:
    """Each wrong token is one more in the counter and one log line; the right one is neither."""
    assert await login_failures(endpoint) == 0
    async with endpoint.session() as http:
        for token in (WRONG_TOKEN, "", WRONG_TOKEN):
            assert (await endpoint.login(http, token)).status == 401
        assert await login_failures(endpoint) == 3
        assert (await endpoint.login(http, TOKEN)).status == 303
    assert await login_failures(endpoint) == 3
    failed = [e for e in endpoint.logs if e["event"] == "ops_login_failed"]
    assert len(failed) == 3


async def test_the_right_token_sets_a_strict_cookie_that_opens_the_reads_only(
    endpoint: Endpoint,
) -> None:
    async with endpoint.session() as http:
        resp = await endpoint.login(http, TOKEN)
        assert resp.status == 303
        assert resp.headers["Location"] == "/"
        header = resp.headers["Set-Cookie"]
        attributes = {a.strip().split("=")[0].lower() for a in header.split(";")}
        assert {"httponly", "samesite", "path"} <= attributes
        assert "SameSite=Strict" in header
        assert "secure" not in attributes  # plain HTTP here
        value = resp.cookies[COOKIE].value
        assert len(value) == 64
        assert TOKEN not in value
        assert TOKEN not in header

        async with http.get(endpoint.base + "/") as page:
            assert page.status == 200
            assert "/-/login" not in await page.text()
        async with http.get(endpoint.base + "/api/v1/status/stream") as stream:
            assert stream.status == 200
            assert stream.headers["Content-Type"].startswith("text/event-stream")
            assert b"data: " in await stream.content.readuntil(b"\n\n")
        async with http.get(endpoint.base + "/api/v1/events") as events:
            assert events.status == 200
        # State changes need the Bearer header: a cookie any site's form could send does not do.
        async with http.post(endpoint.base + "/-/reload") as reload:
            assert reload.status == 401
        auth = {"Authorization": f"Bearer {TOKEN}"}
        async with http.post(endpoint.base + "/-/reload", headers=auth) as reload:
            assert reload.status == 422  # the handler answered: not started from a file


async def test_a_forged_cookie_opens_nothing(endpoint: Endpoint) -> None:
    async with endpoint.session() as http:
        http.cookie_jar.update_cookies({COOKIE: "0" * 64})
        async with http.get(endpoint.base + "/api/v1/status/stream") as resp:
            assert resp.status == 401
        http.cookie_jar.update_cookies({COOKIE: TOKEN})
        async with http.get(endpoint.base + "/") as resp:
            assert resp.status == 401
            assert "/-/login" in await resp.text()


async def test_behind_a_tls_proxy_the_cookie_is_secure(endpoint: Endpoint) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{endpoint.base}/-/login",
            data={"token": TOKEN},
            headers={"X-Forwarded-Proto": "https"},
            allow_redirects=False,
        ) as resp,
    ):
        assert resp.status == 303
        assert "; Secure" in resp.headers["Set-Cookie"]
