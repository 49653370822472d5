"""The ops endpoint over HTTP (``[daemon] http``): ``/healthz``, ``/readyz``, ``/metrics`` and
the event stream ``/api/v1/events`` (``stream.py``).

``/healthz`` is answered by the event loop itself, so a wedged loop fails it. ``/readyz`` is
200 only while every required source is connected and every sink writes. ``/metrics`` is the
Prometheus text format from prometheus-client; its collector reads, at scrape time, the counters
the sources keep anyway and the sinks' state delivery reports every 200 ms, so metrics cost the
event path nothing.
"""

from __future__ import annotations

import hmac
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from tradebus import log
from tradebus.config import http_address
from tradebus.daemon import page, stream
from tradebus.daemon.signin import LOGIN, Signin, form
from tradebus.daemon.stream import Streams
from tradebus.delivery.follower import LATENCY_BUCKETS
from tradebus.delivery.wire import SinkSnapshot
from tradebus.errors import ConfigError
from tradebus.plugin import SINKS
from tradebus.schemas.events import event_type
from tradebus.secret import Secret

if TYPE_CHECKING:
    from tradebus.daemon.view import DaemonView

_LOCAL = frozenset({"127.0.0.1", "::1", "localhost"})
_LOOPBACK = frozenset({"127.0.0.1", "::1", "::ffff:127.0.0.1"})


class DaemonCollector(Collector):
    """Every ``tradebus_*`` metric, read from the daemon when scraped."""

    def __init__(self, daemon: DaemonView, clock: Callable[[], float] = time.time) -> None:
        self.daemon = daemon
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        yield from self._sources()
        yield from self._sinks()
        yield from self._journal()
        yield from self._reloads()
        bus = self.daemon.bus
        yield CounterMetricFamily(
            "tradebus_bus_events", "Events numbered by the bus.", value=bus.published
        )
        yield GaugeMetricFamily("tradebus_bus_last_seq", "The last seq assigned.", bus.last_seq)

    def _sources(self) -> Iterator[Metric]:
        now = self.clock()
        events = CounterMetricFamily(
            "tradebus_source_events", "Events published by source and type.", labels=_ST
        )
        bad = CounterMetricFamily(
            "tradebus_source_bad_input", "Upstream messages skipped as bad.", labels=_SK
        )
        unknown = CounterMetricFamily(
            "tradebus_source_unknown_types",
            "Upstream messages of a type this version does not know.",
            labels=["source"],
        )
        reconnects = CounterMetricFamily(
            "tradebus_source_reconnects", "Connections after the first.", labels=["source"]
        )
        gaps = CounterMetricFamily(
            "tradebus_source_gaps",
            "status.gap events (what could not be replayed).",
            labels=["source"],
        )
        junk_times = CounterMetricFamily(
            "tradebus_source_time_fallback",
            "Events whose upstream time did not parse: their time is the receipt time.",
            labels=["source"],
        )
        connected = GaugeMetricFamily(
            "tradebus_source_connected", "1 while the source is connected.", labels=["source"]
        )
        recorded = CounterMetricFamily(
            "tradebus_source_recorded_bytes",
            "Bytes written to the source's recording (compressed), record = true.",
            labels=["source"],
        )
        recording = GaugeMetricFamily(
            "tradebus_source_recording",
            "1 for the recording file a source is writing now (its path a label).",
            labels=["source", "path"],
        )
        required = GaugeMetricFamily(
            "tradebus_source_required",
            "1 if the source holds readiness (required = true): alerts on these alone.",
            labels=["source"],
        )
        age = GaugeMetricFamily(
            "tradebus_source_last_event_age_seconds",
            "Seconds since the source last published (absent before its first event).",
            labels=["source"],
        )
        for name, ctx in self.daemon.contexts.items():
            for cls, n in ctx.published.items():
                events.add_metric([name, event_type(cls)], n)  # type: ignore[arg-type]
            unknown_total = 0
            for key, n in ctx.counters.items():
                if key.startswith("bad."):
                    bad.add_metric([name, key[4:]], n)
                elif key.startswith("unknown."):
                    # The names are the upstream's: summed, so labels stay bounded.
                    unknown_total += n
            unknown.add_metric([name], unknown_total)
            junk_times.add_metric([name], ctx.counters["time_fallback"])
            reconnects.add_metric([name], ctx.reconnects)
            gaps.add_metric([name], ctx.gaps)
            connected.add_metric([name], 1 if ctx.up else 0)
            path = ctx.transport.path
            if path is not None:
                recorded.add_metric([name], ctx.transport.recorded_bytes)
                recording.add_metric([name, path], 1)
            required.add_metric([name], 1 if self.daemon.required.get(name, True) else 0)
            if ctx.last_event is not None:
                age.add_metric([name], max(0.0, now - ctx.last_event))
        yield from (events, bad, unknown, junk_times, reconnects, gaps, connected, required, age)
        yield from (recorded, recording)

    def _sinks(self) -> Iterator[Metric]:
        written = CounterMetricFamily(
            "tradebus_sink_events", "Events the sink wrote and had acknowledged.", labels=["sink"]
        )
        retries = CounterMetricFamily(
            "tradebus_sink_retries", "Writes that failed and were retried.", labels=["sink"]
        )
        failed = GaugeMetricFamily(
            "tradebus_sink_failed", "1 once the sink failed for good.", labels=["sink"]
        )
        backlog = GaugeMetricFamily(
            "tradebus_sink_backlog_events",
            "Events published and not yet acknowledged by the sink.",
            labels=["sink"],
        )
        cursor = GaugeMetricFamily(
            "tradebus_sink_cursor_seq", "The last seq the sink acknowledged.", labels=["sink"]
        )
        gaps = CounterMetricFamily(
            "tradebus_sink_gaps",
            "Journal stretches the sink could not be given (retention, damage).",
            labels=["sink"],
        )
        dead = CounterMetricFamily(
            "tradebus_sink_dead_letters",
            "Events the sink gave up delivering and set aside.",
            labels=["sink"],
        )
        latency = HistogramMetricFamily(
            "tradebus_sink_latency_seconds",
            "Time from publish (about the upstream read) to the sink's acknowledgement.",
            labels=["sink"],
        )
        lag = GaugeMetricFamily(
            "tradebus_sink_lag_seconds",
            "Age of the oldest event the sink has not acknowledged (0 when it has them all).",
            labels=["sink"],
        )
        max_lag = GaugeMetricFamily(
            "tradebus_sink_max_lag_seconds",
            "The lag past which the sink is reported not ready (0: never).",
            labels=["sink"],
        )
        daemon = self.daemon
        now, last = self.clock(), daemon.bus.last_seq
        snaps = daemon.link.sinks()
        for snap in snaps:
            name = snap.name
            cumulative, buckets = 0, []
            counts = snap.latency_counts or [0] * (len(LATENCY_BUCKETS) + 1)
            for le, n in zip((*LATENCY_BUCKETS, float("inf")), counts, strict=True):
                cumulative += n
                buckets.append(("+Inf" if le == float("inf") else repr(le), cumulative))
            latency.add_metric([name], buckets, sum_value=snap.latency_sum)
            written.add_metric([name], snap.written)
            retries.add_metric([name], snap.retries)
            failed.add_metric([name], 1 if snap.failed else 0)
            backlog.add_metric([name], max(0, last - snap.cursor))
            cursor.add_metric([name], snap.cursor)
            gaps.add_metric([name], snap.gaps)
            dead.add_metric([name], snap.dead_letters)
            lag.add_metric([name], daemon.lag(snap.cursor, now))
            max_lag.add_metric([name], daemon.max_lag.get(name, 0.0))
        yield from (written, retries, failed, backlog, cursor, gaps, dead, latency, lag, max_lag)
        yield from _own_metrics(snaps)
        yield CounterMetricFamily(
            "tradebus_delivery_restarts",
            "Times the delivery process died and was started again.",
            value=daemon.link.restarts,
        )
        yield GaugeMetricFamily(
            "tradebus_delivery_up",
            "1 while delivery runs (in its process, or inline).",
            value=1 if daemon.link.running else 0,
        )

    def _reloads(self) -> Iterator[Metric]:
        reloads = self.daemon.reloads
        total = CounterMetricFamily(
            "tradebus_config_reloads", "Config reloads by result.", labels=["result"]
        )
        for result, n in reloads.counts.items():
            total.add_metric([result], n)
        yield total
        if reloads.last_success is not None:
            yield GaugeMetricFamily(
                "tradebus_config_last_reload_success_timestamp_seconds",
                "Unix time of the last reload applied (in full or in part).",
                value=reloads.last_success,
            )
        yield GaugeMetricFamily(
            "tradebus_config_generation",
            "The running config's generation: 1 at start, one more per reload applied.",
            value=reloads.generation,
        )

    def _journal(self) -> Iterator[Metric]:
        bus = self.daemon.bus
        journal = bus.journal
        yield GaugeMetricFamily(
            "tradebus_journal_bytes", "Bytes in the journal's segments.", value=journal.total_bytes
        )
        yield GaugeMetricFamily(
            "tradebus_journal_segments", "Segment files.", value=len(journal.segments)
        )
        yield GaugeMetricFamily(
            "tradebus_journal_last_seq",
            "The seq of the newest journaled event.",
            value=journal.last_seq,
        )
        yield CounterMetricFamily(
            "tradebus_journal_append_failures",
            "Appends that failed (a full disk); sources wait while they do.",
            value=bus.append_failures,
        )
        yield CounterMetricFamily(
            "tradebus_journal_retention_forced",
            "Segments deleted by retention before every sink had read them.",
            value=bus.forced_drops,
        )


# Counters only some sinks keep, read by attribute: a sink without one has no sample in it.
_SINK_COUNTERS = (
    ("acked", "tradebus_sink_nats_acked", "Messages JetStream acknowledged as stored."),
    (
        "duplicates",
        "tradebus_sink_nats_duplicates",
        "Messages JetStream acknowledged as duplicates (Msg-Id seen within its window).",
    ),
    ("disconnects", "tradebus_sink_nats_disconnects", "Connections to NATS lost."),
    ("reconnects", "tradebus_sink_nats_reconnects", "Connections to NATS after the first."),
    ("delivered", "tradebus_sink_webhook_delivered", "Events the webhook receiver acknowledged."),
    (
        "retries",
        "tradebus_sink_webhook_retries",
        "Webhook requests sent again after a failure.",
    ),
)
_PLUGIN_KEY = re.compile(r"[^A-Za-z0-9_]")


def _builtin(type_: str) -> bool:
    try:
        return SINKS.builtin(type_)
    except KeyError:  # a sink made in code (embedding, tests): no plugin of its own
        return True


def _own_metrics(snaps: Sequence[SinkSnapshot]) -> Iterator[Metric]:
    """What each sink's ``metrics()`` reports: a built-in's into its families above (its
    ``dead_letters`` and ``retries`` counted in the rows every sink has), a plugin's as
    ``tradebus_sink_plugin_<key>``, labelled by sink."""
    own = {
        attr: CounterMetricFamily(name, help_, labels=["sink"])
        for attr, name, help_ in _SINK_COUNTERS
    }
    plugins: dict[str, GaugeMetricFamily] = {}
    for snap in snaps:
        builtin = _builtin(snap.type)
        for key, value in snap.counters.items():
            family: CounterMetricFamily | GaugeMetricFamily | None
            if builtin:
                family = own.get(key)
            else:
                name = "tradebus_sink_plugin_" + _PLUGIN_KEY.sub("_", key)[:64]
                family = plugins.get(name)
                if family is None:
                    family = plugins[name] = GaugeMetricFamily(
                        name, f"{key!r} as sink plugins report it.", labels=["sink"]
                    )
            if family is not None:
                family.add_metric([snap.name], value)
    yield from own.values()
    yield from plugins.values()


_ST = ["source", "type"]
_SK = ["source", "kind"]


class SigninCollector(Collector):
    """The endpoint's own counter: sign-ins refused. 0 without ``http_token`` (no sign-in), so
    a rule on it needs no ``absent()``."""

    def __init__(self, signin: Signin | None) -> None:
        self.signin = signin

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "tradebus_ops_login_failures",
            "Sign-ins (POST /-/login) refused for a wrong token.",
            value=0 if self.signin is None else self.signin.failures,
        )


def registry_for(daemon: DaemonView, signin: Signin | None = None) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DaemonCollector(daemon))
    registry.register(SigninCollector(signin))
    ProcessCollector(namespace="tradebus", registry=registry)
    return registry


def application(daemon: DaemonView, streams: Streams | None = None) -> web.Application:
    """The ops routes for ``daemon``; ``streams``: the event streams' registry (their limit)."""
    d = daemon.config.daemon
    guarded = d.http_token is not None
    token = d.http_token
    signin = None if token is None else Signin(token)
    registry = registry_for(daemon, signin)
    if streams is None:
        streams = Streams(d.http_max_clients)

    async def healthz(_request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_request: web.Request) -> web.Response:
        state = daemon.state()
        return web.Response(
            body=msgspec.json.encode(state) + b"\n",
            status=200 if state["ready"] else 503,
            content_type="application/json",
        )

    async def reload(request: web.Request) -> web.Response:
        # Whether bearer guards this app (fixed when it was built), not what a reload since says.
        if not reload_allowed(request.remote, token=guarded):
            return web.Response(
                status=403,
                text="reload: only from the loopback address, or with [daemon] http_token set\n",
            )
        dry_run = request.query.get("dry_run", "") not in ("", "0", "false")
        outcome = await daemon.reload(dry_run=dry_run)
        return web.Response(
            body=msgspec.json.encode(outcome) + b"\n",
            status=422 if outcome.result == "refused" else 200,
            content_type="application/json",
        )

    async def metrics(_request: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    middlewares = [] if token is None else [bearer(token, every=d.http_token_all, signin=signin)]
    app = web.Application(middlewares=middlewares)
    if signin is not None:
        app.router.add_post(LOGIN, signin.login)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/-/reload", reload)
    app.router.add_get("/api/v1/events", stream.handler(daemon.bus.journal, streams))
    app.router.add_get("/", page.index)
    app.router.add_get("/api/v1/status/stream", page.status_stream(daemon, streams))
    return app


def reload_allowed(remote: str | None, *, token: bool) -> bool:
    """Whether ``POST /-/reload`` from ``remote`` may change what runs: from the loopback
    address always; from elsewhere only when ``[daemon] http_token`` is set, because then
    ``bearer`` has already turned away every request without it (the path is no probe's)."""
    return token or remote in _LOOPBACK


# Open to probes and Prometheus without the token, unless http_token_all.
PROBES = frozenset({"/healthz", "/readyz", "/metrics"})


def bearer(token: Secret, *, every: bool, signin: Signin | None = None) -> Middleware:
    """Ask for ``Authorization: Bearer <token>`` (RFC 6750) of every path but the probes'
    (``every``: of those too). Compared in constant time; never logged. With ``signin``, its
    cookie stands in for the header on reads of the page and ``/api/*``, ``GET /`` without
    either answers the sign-in form, and ``POST /-/login`` checks the token itself."""
    expected = b"Bearer " + token.reveal().encode()

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if signin is not None and request.path == LOGIN:
            return await handler(request)
        if every or request.path not in PROBES:
            given = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                if signin is not None and signin.reads(request):
                    return await handler(request)
                if signin is not None and request.path == "/" and request.method == "GET":
                    return form()
                return web.Response(
                    status=401,
                    headers={"WWW-Authenticate": 'Bearer realm="tradebus"'},
                    text="401: this endpoint needs Authorization: Bearer <[daemon] http_token>\n",
                )
        return await handler(request)

    return check


class OpsServer:
    """The endpoint's listener; ``port`` is the bound one (useful with port 0)."""

    def __init__(self, daemon: DaemonView, address: str) -> None:
        self.host, self.port = http_address(address)
        self.streams = Streams(daemon.config.daemon.http_max_clients)
        self._unsubscribe = daemon.on_append(self.streams.wake)
        # The event streams end when the endpoint stops (``streams.close``): no wait for them.
        self._runner = web.AppRunner(
            application(daemon, self.streams), access_log=None, shutdown_timeout=1.0
        )
        self._log: Any = log.get()

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:  # in use, not this host's address, a privileged port
            await self._runner.cleanup()
            why = os.strerror(exc.errno) if exc.errno else str(exc)
            raise ConfigError(
                [f"daemon.http: cannot listen on {self.host}:{self.port}: {why.lower()}"]
            ) from None
        self.port = int(self._runner.addresses[0][1])
        if self.host not in _LOCAL:
            self._log.warning("ops_endpoint_public", host=self.host, port=self.port)
        self._log.info("ops_endpoint_listening", host=self.host, port=self.port)

    async def stop(self) -> None:
        self.streams.close()
        self._unsubscribe()
        await self._runner.cleanup()
