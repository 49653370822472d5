"""The client side of the ops endpoint: ``tradebus health`` and ``tradebus status``.

Standard library only: a container's HEALTHCHECK starts this every few seconds, so it must
start fast and never load aiohttp (or anything of the daemon) to ask one question.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

DEFAULT_URL = "http://127.0.0.1:9464"
# A probe that hangs is worse than one that fails: Docker's own timeout would kill it silently.
DEFAULT_TIMEOUT = 3.0


class ProbeError(Exception):
    """The endpoint did not answer at all (refused, timed out, not HTTP)."""


def get(base: str, path: str, timeout: float = DEFAULT_TIMEOUT) -> tuple[int, bytes]:
    """``GET base+path``: the status and body, a 5xx included; ProbeError when nothing answers."""
    url = base.rstrip("/") + path
    if not url.startswith(("http://", "https://")):
        raise ProbeError(f"{url}: expected an http(s) URL")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - scheme checked
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:  # a 503 from /readyz is an answer, not a failure
        with exc:
            return exc.code, exc.read()
    except urllib.error.URLError as exc:
        reason = exc.reason
        text = reason.strerror if isinstance(reason, OSError) and reason.strerror else reason
        raise ProbeError(f"{url}: {text}") from None
    except TimeoutError:
        raise ProbeError(f"{url}: no answer within {timeout:g} s") from None
    except (OSError, ValueError) as exc:  # a reset mid-answer, a malformed status line
        raise ProbeError(f"{url}: {type(exc).__name__}: {exc}") from None


def health(base: str, *, ready: bool, timeout: float = DEFAULT_TIMEOUT) -> tuple[int, str]:
    """Exit code and one line for ``tradebus health``: 0 when the endpoint answers 200."""
    path = "/readyz" if ready else "/healthz"
    try:
        status, _ = get(base, path, timeout)
    except ProbeError as exc:
        return 1, f"unhealthy: {exc}"
    if status == 200:
        return 0, f"ok: {path} answered 200"
    return 1, f"unhealthy: {path} answered {status}"


def readyz(base: str, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
    """The decoded ``/readyz`` body, ready or not; ProbeError when there is none."""
    status, body = get(base, "/readyz", timeout)
    try:
        state: dict[str, Any] = json.loads(body)
    except ValueError:
        raise ProbeError(f"/readyz answered {status} without a JSON body") from None
    if not isinstance(state, dict) or not {"ready", "sources", "sinks"} <= state.keys():
        raise ProbeError(f"/readyz answered {status} with an unexpected body")
    return state
