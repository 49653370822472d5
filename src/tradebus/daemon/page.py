"""``GET /``: one self-contained status page, and ``/api/v1/status/stream`` that feeds it.

No CDN, no build step, no framework: the HTML, its one style sheet and its one script are
below, and the Content-Security-Policy allows exactly those two (by hash) and connections to
this endpoint alone. The page opens two EventSources: the status snapshots (one a second) and
the live tail (``/api/v1/events`` with the filters typed in). Upstream strings (errors, event
fields) reach the page only through ``textContent``, never as HTML. Every state is written as
a word; the colour only repeats it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from tradebus.daemon.stream import Streams

if TYPE_CHECKING:
    from tradebus.daemon.view import DaemonView

SNAPSHOT_EVERY = 1.0
# A refused reload of a large file names every problem, each quoting what it refused: a
# snapshot a second carries a few of them, each cut (all of them stay in /readyz).
MAX_PROBLEMS = 5
MAX_PROBLEM_CHARS = 240

_STYLE = """
:root{color-scheme:light dark;--ok:#1a7f37;--warn:#9a6700;--bad:#cf222e;--mute:#6e7781}
body{font:14px/1.4 system-ui,sans-serif;margin:0;padding:.5rem}
h1{font-size:1.2rem;margin:.2rem 0}h2{font-size:1rem;margin:1rem 0 .3rem}
.wrap{overflow-x:auto}table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.2rem .4rem;border-bottom:1px solid #8884;white-space:nowrap}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:var(--ok);font-weight:600}.warn{color:var(--warn);font-weight:600}
.bad{color:var(--bad);font-weight:600}.mute{color:var(--mute)}
svg.spark{width:120px;height:20px;vertical-align:middle}
form{display:flex;flex-wrap:wrap;gap:.3rem}input{font:inherit;width:9rem}
#tail td{font-family:ui-monospace,monospace;font-size:12px}
"""

_SCRIPT = """
"use strict";
const $ = (s) => document.querySelector(s);
const hist = {}; let prev = null;
function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}
function age(s) { return s === null || s === undefined ? "-" : s.toFixed(1) + " s"; }
function rate(now, before, key, dt) {
  return before && dt > 0 ? Math.max(0, (now[key] - before[key]) / dt) : null;
}
function spark(points) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "spark"); svg.setAttribute("viewBox", "0 0 300 20");
  svg.setAttribute("preserveAspectRatio", "none");
  const max = Math.max(1, ...points);
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("fill", "none"); line.setAttribute("stroke", "currentColor");
  line.setAttribute("points", points.map((v, i) =>
    (300 - points.length + i) + "," + (19 - 18 * v / max).toFixed(1)).join(" "));
  svg.appendChild(line);
  return svg;
}
function sourceState(r) {
  if (r.connected) return ["connected", "ok"];
  if (r.ready) return [r.required ? "reconnecting" : "disconnected (optional)", "warn"];
  return ["disconnected", "bad"];
}
function sinkState(r) {
  if (r.failed) return ["failed", "bad"];
  if (r.error) return ["retrying", "bad"];
  if (!r.ready) return ["lagging", "bad"];
  if (r.lag_seconds >= 1) return ["catching up", "warn"];
  return [r.state || "writing", "ok"];
}
function fill(id, rows) {
  const body = $(id); body.replaceChildren();
  for (const [name, cells] of rows) {
    const tr = el("tr"); tr.dataset.name = name;
    for (const c of cells) {
      if (c instanceof Node) { const td = el("td"); td.appendChild(c); tr.appendChild(td); }
      else tr.appendChild(el("td", c[0], c[1]));
    }
    body.appendChild(tr);
  }
}
function n(v) {
  return [v === null ? "-" : v.toLocaleString(undefined, {maximumFractionDigits: 1}), "num"];
}
function render(s) {
  const dt = prev ? s.time - prev.time : 0;
  const before = prev || {sources: {}, sinks: {}};
  fill("#sources", Object.entries(s.sources).map(([name, r]) => {
    const ev = rate(r, before.sources[name], "events", dt);
    const h = (hist[name] = hist[name] || []); if (ev !== null) h.push(ev);
    if (h.length > 300) h.shift();
    const [state, cls] = sourceState(r);
    return [name, [[name], [state, cls + " state"], n(ev), spark(h), [age(r.last_event_age)],
      n(r.events), n(r.reconnects), n(r.gaps), [r.last_error || ""]]];
  }));
  const notApplied = (s.reload && s.reload.failed_sinks) || {};
  fill("#sinks", Object.entries(s.sinks).map(([name, r]) => {
    let [state, cls] = sinkState(r);
    if (name in notApplied) { state += " (reload failed)"; if (cls === "ok") cls = "warn"; }
    return [name, [[name], [state, cls + " state"], n(rate(r, before.sinks[name], "written", dt)),
      [age(r.lag_seconds)], n(r.backlog), n(r.written), n(r.retries), n(r.dead_letters),
      [r.last_error || ""]]];
  }));
  const j = s.journal, d = s.delivery;
  $("#journal").textContent = (j.bytes / 1048576).toFixed(1) + " MiB in " + j.segments +
    " segments, seq " + j.first_seq + " to " + j.last_seq;
  $("#delivery").textContent = d.mode + (d.running ? ", running" : ", not running") +
    (d.pid ? " (pid " + d.pid + ")" : "") + ", restarts " + d.restarts;
  const c = s.reload;
  $("#config").textContent = "generation " + c.generation + ", last reload: " +
    (c.last_result === null ? "none yet" : c.last_result + " at " +
      new Date(c.last_time * 1000).toISOString().slice(11, 19) + " UTC") +
    (c.last_problems.length ? " (" + c.last_problems.join("; ") + ")" : "");
  const failed = Object.entries(c.failed_sinks || {});
  $("#not-applied").textContent = failed.length ? "not applied: " +
    failed.map(([name, why]) => "sink " + name + " (" + why + ")").join("; ") : "";
  const ready = $("#ready");
  ready.textContent = s.ready ? "ready" : "NOT READY"; ready.className = s.ready ? "ok" : "bad";
  prev = s;
}
const status = new EventSource("api/v1/status/stream");
status.onmessage = (m) => { $("#link").textContent = "live"; render(JSON.parse(m.data)); };
status.onerror = () => { $("#link").textContent = "connection lost, retrying"; };
let tail = null;
function follow(ev) {
  if (ev) ev.preventDefault();
  if (tail) tail.close();
  const q = new URLSearchParams();
  for (const key of ["types", "sources", "symbols"]) {
    const v = $("#f-" + key).value.trim(); if (v) q.set(key, v);
  }
  $("#tail").replaceChildren();
  tail = new EventSource("api/v1/events?" + q.toString());
  tail.onmessage = (m) => {
    const e = JSON.parse(m.data); const tr = el("tr");
    tr.dataset.type = e.type;
    for (const c of [(e.time || "").slice(11, 23), e.source, e.type, e.symbol || "-"])
      tr.appendChild(el("td", c));
    const body = $("#tail"); body.prepend(tr);
    while (body.children.length > 200) body.lastChild.remove();
  };
}
$("#filters").addEventListener("submit", follow);
follow();
"""

_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>tradebus</title><style>{style}</style></head>
<body>
<h1>tradebus <span id="ready" class="mute">-</span>
<small id="link" class="mute">connecting</small></h1>
<h2>Sources</h2><div class="wrap"><table><thead><tr><th>source</th><th>state</th><th>events/s</th>
<th>5 min</th><th>last event</th><th>events</th><th>reconnects</th><th>gaps</th><th>last error</th>
</tr></thead><tbody id="sources"></tbody></table></div>
<h2>Sinks</h2><div class="wrap"><table><thead><tr><th>sink</th><th>state</th><th>events/s</th>
<th>lag</th><th>backlog</th><th>written</th><th>retries</th><th>dead letters</th><th>last error</th>
</tr></thead><tbody id="sinks"></tbody></table></div>
<h2>Journal</h2><p id="journal">-</p>
<h2>Delivery</h2><p id="delivery">-</p>
<h2>Config</h2><p id="config">-</p><p id="not-applied" class="warn"></p>
<h2>Live tail</h2>
<form id="filters"><input id="f-types" placeholder="types: order.,position.">
<input id="f-sources" placeholder="sources"><input id="f-symbols" placeholder="symbols">
<button type="submit">follow</button></form>
<div class="wrap"><table><thead><tr><th>time</th><th>source</th><th>type</th><th>symbol</th></tr>
</thead><tbody id="tail"></tbody></table></div>
<script>{script}</script>
</body></html>
"""


def sha256_source(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


PAGE = _HTML.format(style=_STYLE, script=_SCRIPT).encode()
CSP = (
    f"default-src 'none'; script-src {sha256_source(_SCRIPT)}; style-src {sha256_source(_STYLE)}; "
    "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
_HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


async def index(_request: web.Request) -> web.Response:
    return web.Response(body=PAGE, headers=_HEADERS)


def snapshot(daemon: DaemonView) -> dict[str, Any]:
    """``/readyz``'s state (the config generation and the last reload among it) with the
    journal and the time: one status frame."""
    state = daemon.state()
    journal = daemon.bus.journal
    state["journal"] = {
        "bytes": journal.total_bytes,
        "segments": len(journal.segments),
        "first_seq": journal.first_seq,
        "last_seq": journal.last_seq,
    }
    state["time"] = time.time()
    reload = state.get("reload")
    if reload is not None:
        failed: dict[str, str] = reload.get("failed_sinks") or {}
        # A partial reload's problems are its failed sinks: the page says each once, as
        # `tradebus status` does. As many sinks as a config has; each reason is cut.
        said = {f"sinks.{name}: {why}" for name, why in failed.items()}
        reload["last_problems"] = bounded([p for p in reload["last_problems"] if p not in said])
        reload["failed_sinks"] = {
            name: bounded([why.removeprefix(f"sink {name}: ")])[0] for name, why in failed.items()
        }
    return state


def bounded(problems: list[str]) -> list[str]:
    """The first ``MAX_PROBLEMS`` of ``problems``, each at most ``MAX_PROBLEM_CHARS``, and a
    line saying how many more there were."""
    shown = [
        p if len(p) <= MAX_PROBLEM_CHARS else p[: MAX_PROBLEM_CHARS - 1] + "…"
        for p in problems[:MAX_PROBLEMS]
    ]
    if len(problems) > MAX_PROBLEMS:
        shown.append(f"{len(problems) - MAX_PROBLEMS} more in /readyz")
    return shown


def status_stream(
    daemon: DaemonView, streams: Streams, every: float = SNAPSHOT_EVERY
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """``GET /api/v1/status/stream``: a snapshot a second, counted among the streams."""

    async def handler(request: web.Request) -> web.StreamResponse:
        if streams.full or streams.closing:
            return web.Response(status=503, headers={"Retry-After": "5"}, text="busy\n")
        streams.clients += 1
        try:
            response = web.StreamResponse(
                headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
            )
            await response.prepare(request)
            with suppress(ConnectionError, TimeoutError):
                while not streams.closing:
                    frame = b"data: " + msgspec.json.encode(snapshot(daemon)) + b"\n\n"
                    async with asyncio.timeout(60):  # a stalled page is let go
                        await response.write(frame)
                    await asyncio.sleep(every)
            return response
        finally:
            streams.clients -= 1

    return handler
