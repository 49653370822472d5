"""Signing in from a browser to an ops endpoint that has ``[daemon] http_token``.

A browser opening ``/`` cannot send ``Authorization: Bearer``; so ``/`` without a credential
answers a plain HTML form, ``POST /-/login`` checks the token and sets a cookie. The cookie holds
an HMAC of the token under a key drawn when the endpoint starts, never the token: a leaked cookie
dies with the process and reveals nothing of the token. It opens only reads (``GET`` of ``/`` and
``/api/*``); whatever changes state still needs the Bearer header, so no other site can make a
signed-in browser change anything (no CSRF by cookie).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from aiohttp import web

from tradebus import log
from tradebus.daemon.page import sha256_source
from tradebus.secret import Secret

LOGIN = "/-/login"
COOKIE = "tradebus_session"

_STYLE = (
    "body{font:16px system-ui,sans-serif;max-width:22em;margin:3em auto;padding:0 1em}"
    "input{font:inherit;width:100%;box-sizing:border-box;margin:.4em 0;padding:.4em}"
    "p.err{color:#a00}"
)
_FORM = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tradebus: sign in</title><style>{style}</style></head>
<body><h1>tradebus</h1>{message}
<form method="post" action="{login}">
<label for="token">Ops token (<code>[daemon] http_token</code>)</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<input type="submit" value="Sign in">
</form></body></html>
"""
# The status page's policy but for the form's one style, and posting to this endpoint only.
CSP = (
    f"default-src 'none'; style-src {sha256_source(_STYLE)}; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
_HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
WRONG = "Wrong token."


def form(message: str = "") -> web.Response:
    """401 with the sign-in form; ``message``: one line above it (fixed text, never input)."""
    shown = f'<p class="err" role="alert">{message}</p>' if message else ""
    body = _FORM.format(style=_STYLE, message=shown, login=LOGIN).encode()
    return web.Response(status=401, body=body, headers=_HEADERS)


class Signin:
    """The cookie this endpoint's process accepts for ``token``, and the login route."""

    def __init__(self, token: Secret) -> None:
        self._token = token.reveal().encode()
        self._session = hmac.new(secrets.token_bytes(32), self._token, hashlib.sha256).hexdigest()
        self.failures = 0
        self._log: Any = log.get()

    def reads(self, request: web.Request) -> bool:
        """Whether ``request`` is a read the cookie opens and carries the valid cookie."""
        if request.method not in ("GET", "HEAD"):
            return False
        if request.path != "/" and not request.path.startswith("/api/"):
            return False
        given = request.cookies.get(COOKIE, "")
        return hmac.compare_digest(given.encode(), self._session.encode())

    async def login(self, request: web.Request) -> web.StreamResponse:
        data = await request.post()
        given = data.get("token")
        raw = given.encode() if isinstance(given, str) else b""
        if not hmac.compare_digest(raw, self._token):
            self.failures += 1
            self._log.warning("ops_login_failed", remote=request.remote, failures=self.failures)
            return form(WRONG)
        # Behind a TLS-terminating proxy the request itself is plain HTTP.
        tls = request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"
        resp = web.Response(status=303, headers={"Location": "/"})
        resp.set_cookie(
            COOKIE, self._session, path="/", httponly=True, samesite="Strict", secure=tls
        )
        return resp
