"""The client side of the ops endpoint: ``tradebus health`` and ``tradebus status``.

Standard library only: a container's HEALTHCHECK starts this every few seconds, so it must
start fast and never load aiohttp (or anything of the daemon) to ask one question.
"""

from __future__ import annotations

import json
from typing import Any

DEFAULT_URL = "http://127.0.0.1:9464"
# A probe that hangs is worse than one that fails: Docker's own timeout would kill it silently.
DEFAULT_TIMEOUT = 3.0


class ProbeError(Exception):
    """The endpoint did not answer at all (refused, timed out, not HTTP)."""


def get(
    base: str,
    path: str,
    timeout: float = DEFAULT_TIMEOUT,
    *,
    method: str = "GET",
    token: str | None = None,
) -> tuple[int, bytes]:
    """``GET base+path`` (or ``method``; with ``token``, as ``Authorization: Bearer``): the
    status and body, a 5xx included; ProbeError when nothing answers."""
    # Here, not at the top: the CLI imports this module for its defaults, and urllib.request
    # would slow every start of the daemon itself.
    import urllib.error
    import urllib.request

    url = base.rstrip("/") + path
    if not url.startswith(("http://", "https://")):
        raise ProbeError(f"{url}: expected an http(s) URL")
    try:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        data = b"" if method != "GET" else None
        request = urllib.request.Request(url, data, headers, method=method)  # noqa: S310
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - scheme checked
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


def reload(
    base: str, *, dry_run: bool, timeout: float, token: str | None = None
) -> tuple[int, list[str]]:
    """``tradebus reload``: the exit code (0 applied or planned, 1 refused or partial) and the
    lines to print (the plan, or what was wrong)."""
    path = "/-/reload" + ("?dry_run=1" if dry_run else "")
    status, body = get(base, path, timeout, method="POST", token=token)
    try:
        outcome: dict[str, Any] = json.loads(body)
        result = str(outcome["result"])
    except (ValueError, KeyError, TypeError):
        text = body.decode("utf-8", "replace").strip()[:200]
        raise ProbeError(f"/-/reload answered {status}: {text}") from None
    lines = [f"reload {result.replace('_', ' ')}" + _generation(outcome)]
    plan = outcome.get("plan")
    if plan:
        for what in ("sources", "sinks"):
            for verb in ("restarted", "added", "removed", "kept"):
                names = plan[what].get(verb) or []
                if names:
                    lines.append(f"  {what} {verb}: {', '.join(names)}")
        if plan.get("daemon"):
            lines.append(f"  daemon keys applied: {', '.join(plan['daemon'])}")
    lines += [f"  {problem}" for problem in outcome.get("problems", [])]
    return (0 if result in ("applied", "dry_run") else 1), lines


def _generation(outcome: dict[str, Any]) -> str:
    n = outcome.get("generation")
    return f" (config generation {n})" if outcome.get("result") != "dry_run" and n else ""


# A sink whose oldest unacknowledged event is this many seconds old is shown catching up.
BEHIND = 1.0
_GREEN, _RED, _YELLOW, _RESET = "\033[32m", "\033[31m", "\033[33m", "\033[0m"


def _source_state(row: dict[str, Any]) -> tuple[str, str]:
    if row["connected"]:
        return "connected", _GREEN
    if row["ready"]:  # a planned reconnect within its grace, or a source that is not required
        return ("reconnecting", _YELLOW) if row["required"] else ("down (optional)", _YELLOW)
    return "down", _RED


def _sink_state(row: dict[str, Any]) -> tuple[str, str]:
    if row["failed"]:
        return "failed", _RED
    if row.get("error", row["last_error"]) is not None:  # an older daemon has no "error"
        return "retrying", _RED
    if not row["ready"]:  # past its max_lag
        return "lagging", _RED
    if row.get("state") in {"starting", "restarting", "opening"}:
        return str(row["state"]), _YELLOW
    if row.get("lag_seconds", 0) >= BEHIND:
        return "catching up", _YELLOW
    return "writing", _GREEN


def _rate(now: dict[str, Any], before: dict[str, Any] | None, key: str, elapsed: float) -> str:
    if before is None or elapsed <= 0:
        return "-"
    return f"{max(0, now[key] - before[key]) / elapsed:,.1f}"


def _age(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:,.1f}s"


def render(
    state: dict[str, Any],
    before: dict[str, Any] | None = None,
    elapsed: float = 0.0,
    *,
    color: bool = False,
) -> str:
    """``/readyz`` as a table; events/s from ``before``, a body read ``elapsed`` seconds earlier."""
    old = before or {"sources": {}, "sinks": {}}
    sources: list[tuple[list[str], str]] = [
        (["SOURCE", "STATE", "EV/S", "LAST EVENT", "RECONNECTS", "GAPS", "ERROR"], "")
    ]
    for name, row in state["sources"].items():
        label, hue = _source_state(row)
        rate = _rate(row, old["sources"].get(name), "events", elapsed)
        cells = [name, label, rate, _age(row["last_event_age"])]
        cells += [str(row["reconnects"]), str(row["gaps"]), row["last_error"] or ""]
        sources.append((cells, hue))
    sinks: list[tuple[list[str], str]] = [
        (["SINK", "STATE", "EV/S", "BACKLOG", "LAG", "RETRIES", "DEAD", "ERROR"], "")
    ]
    reload = state.get("reload") or {}  # an older daemon has none
    # A sink the last applied reload could not open runs as before it (its old config, or
    # retrying its open): the row says so in words, the line under the table says why.
    failed: dict[str, str] = reload.get("failed_sinks") or {}
    for name, row in state["sinks"].items():
        label, hue = _sink_state(row)
        if name in failed:
            label, hue = f"{label} (reload failed)", _RED if hue == _RED else _YELLOW
        rate = _rate(row, old["sinks"].get(name), "written", elapsed)
        dead = str(row.get("dead_letters", 0))  # a daemon of an older version has no count
        lag = _age(row.get("lag_seconds"))
        cells = [name, label, rate, f"{row['backlog']:,}", lag, str(row["retries"]), dead]
        sinks.append(([*cells, row["last_error"] or ""], hue))
    lines = [*_table(sources, color=color), *_table(sinks, color=color)]
    # A recording's path is too long for a column: a line per recording source, under the table.
    for name, row in state["sources"].items():
        if row.get("recording"):  # a daemon of an older version has no such key
            size = f"{row.get('recorded_bytes', 0) / 1e6:,.1f} MB"
            lines.append(f"recording {name}: {row['recording']} ({size} written)")
    if reload:
        last = reload.get("last_result") or "none since the start"
        lines.append(f"config generation {reload['generation']}, last reload: {last}")
        # A partial reload's problems are its failed sinks: each is said once, below.
        shown = {f"sinks.{name}: {why}" for name, why in failed.items()}
        lines += [f"  {p}" for p in reload.get("last_problems") or [] if p not in shown]
        for name, why in failed.items():
            lines.append(f"  not applied: sink {name} ({why.removeprefix(f'sink {name}: ')})")
    verdict = "ready" if state["ready"] else "NOT READY"
    if color:
        verdict = f"{_GREEN if state['ready'] else _RED}{verdict}{_RESET}"
    return "\n".join([*lines, verdict])


def _table(rows: list[tuple[list[str], str]], *, color: bool) -> list[str]:
    widths = [max(len(cells[i]) for cells, _ in rows) for i in range(len(rows[0][0]))]
    lines = []
    for cells, hue in rows:
        padded = [c.ljust(w) for c, w in zip(cells, widths, strict=True)]
        if color and hue:  # colour after padding: escape codes take no column
            padded[1] = f"{hue}{padded[1]}{_RESET}"
        lines.append("  ".join(padded).rstrip())
    return lines
