"""Configuration: TOML decoded in one call into closed, frozen msgspec structs.

``${VAR}`` and ``${VAR:-default}`` interpolate the environment in any string; ``<key>_file = PATH``
reads a secret from a file instead (a relative PATH is looked up in systemd's
``$CREDENTIALS_DIRECTORY`` when set). Errors name the field path and what was expected:
``sources[1].url: expected an http(s) URL, got ''``. Each key's meaning is on its field
(``msgspec.Meta(description=…)``), which ``make docs`` writes into docs/configuration.md.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import re
import tomllib
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, TypeAlias
from urllib.parse import urlsplit

import msgspec

from tradebus import demo_keys
from tradebus.errors import ConfigError
from tradebus.schemas.events import Provider
from tradebus.schemas.subject import SubjectTemplate
from tradebus.secret import Secret

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]
Positive = Annotated[float, msgspec.Meta(gt=0)]
Count = Annotated[int, msgspec.Meta(ge=1)]
SECRET_FIELDS = frozenset(
    {"api_key", "token", "password", "username", "secret", "user", "http_token"}
)
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _Closed(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


def _check_url(url: str, schemes: tuple[str, ...]) -> None:
    parts = urlsplit(url)
    if parts.scheme not in schemes or not parts.hostname:
        raise ValueError(f"url: expected an {'/'.join(schemes)} URL, got {log_safe(url)!r}")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an ``http`` address's) is reachable from this machine alone."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: whatever it resolves to, it may be more than loopback


def http_address(value: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` for IPv6) as a pair, or ValueError naming the field."""
    host, sep, port = value.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"http: expected host:port, got {value[:80]!r}")
    return host, int(port)


class DaemonConfig(_Closed, frozen=True, kw_only=True):
    state_dir: Annotated[
        str,
        msgspec.Meta(
            description="Directory for the daemon's durable state: the journal, the sinks' "
            "cursors, dead letters and the lock (one daemon per state dir; a locked one exits 2)."
        ),
    ] = "/var/lib/tradebus"
    fsync: Annotated[
        Literal["interval", "always", "never"],
        msgspec.Meta(
            description="When the journal is fsynced: `interval` every 100 ms (a power loss costs "
            "at most that, a crash of the process nothing), `always` before any sink sees a batch, "
            "`never` when the OS decides."
        ),
    ] = "interval"
    segment_bytes: Annotated[
        int,
        msgspec.Meta(
            ge=4096,
            description="Size at which a journal segment file is closed and a new one begun.",
        ),
    ] = 64 * 1024 * 1024
    retention_bytes: Annotated[
        int,
        msgspec.Meta(
            ge=4096,
            description="Journal size past which the oldest segments are deleted, even if a sink "
            "has not read them (that sink then gets a `status.gap` naming the seqs).",
        ),
    ] = 1024 * 1024 * 1024
    retention_age: Annotated[
        Positive,
        msgspec.Meta(
            description="Seconds after which a segment is deleted, even if a sink has not read it "
            "(with the same `status.gap`). Segments every sink has passed go sooner."
        ),
    ] = 7 * 86400.0
    log_level: Annotated[
        Literal["debug", "info", "warning", "error"],
        msgspec.Meta(description="Least severe log level written (logs go to stderr)."),
    ] = "info"
    log_format: Annotated[
        Literal["json", "console"] | None,
        msgspec.Meta(
            description="`json`: one JSON object per log line; `console`: for a terminal. Unset: "
            "`console` when stderr is a terminal, else `json`; `--log-format` overrides it."
        ),
    ] = None
    drain_timeout: Annotated[
        Positive,
        msgspec.Meta(
            description="Seconds SIGTERM waits for the sinks to write what was received before the "
            "daemon gives up and exits."
        ),
    ] = 15.0
    http: Annotated[
        str | None,
        msgspec.Meta(
            description="The ops endpoint (`/healthz`, `/readyz`, `/metrics`, the event stream "
            "`/api/v1/events`) as `host:port` (`[v6]:port` for IPv6); off when unset. An address "
            "beyond loopback needs `http_token`."
        ),
    ] = None
    http_max_clients: Annotated[
        Count,
        msgspec.Meta(
            description="Event streams (`/api/v1/events`) served at once; the next is answered 503."
        ),
    ] = 16
    http_token: Annotated[
        Secret | None,
        msgspec.Meta(
            description="The Bearer token the ops endpoint asks of `/` and `/api/*` (at least 16 "
            "characters; a secret: `http_token_file` or `${VAR}`; empty is unset). Required when "
            "`http` listens beyond loopback. A browser signs in at `/` with it and gets a cookie "
            "good for reads only (docs/operations.md)."
        ),
    ] = None
    http_token_all: Annotated[
        bool,
        msgspec.Meta(
            description="`true`: `/healthz`, `/readyz` and `/metrics` ask for `http_token` too (by "
            "default they stay open for probes and Prometheus)."
        ),
    ] = False
    delivery: Annotated[
        Literal["process", "inline"],
        msgspec.Meta(
            description='`"process"`: the sinks run in a delivery process of their own (the second '
            'core), supervised by the daemon and restarted if it dies; `"inline"`: in the '
            "daemon's own event loop (one core, embedding)."
        ),
    ] = "process"

    def __post_init__(self) -> None:
        if self.http_token is not None and not self.http_token:
            # "${TRADEBUS_HTTP_TOKEN:-}": one config serves with and without a token.
            msgspec.structs.force_setattr(self, "http_token", None)
        if self.http is not None:
            host, _ = http_address(self.http)
            if self.http_token is None and not is_loopback(host):
                raise ValueError(
                    f"http_token: required when http listens beyond loopback ({host}): set "
                    "http_token or http_token_file, or listen on 127.0.0.1"
                )
        if self.http_token is not None and len(self.http_token.reveal()) < 16:
            raise ValueError("http_token: expected at least 16 characters")


# --- sources --------------------------------------------------------------------------------


class SourceBase(_Closed, tag_field="type", frozen=True, kw_only=True):
    name: Annotated[
        Name,
        msgspec.Meta(
            description="The source's name: the `source` field and the prefix of every event `id` "
            "it gives. Unique among sources."
        ),
    ]
    url: Annotated[str, msgspec.Meta(description="The upstream's endpoint (`http` or `https`).")]
    enabled: Annotated[
        bool,
        msgspec.Meta(description="`false` keeps the source configured but not started."),
    ] = True
    reconnect_min: Annotated[
        Positive,
        msgspec.Meta(
            description="Seconds: the first reconnect delay; later ones double up to "
            "`reconnect_max`, each drawn with full jitter."
        ),
    ] = 0.5
    reconnect_max: Annotated[
        Positive,
        msgspec.Meta(description="Seconds: the cap of the reconnect delay."),
    ] = 30.0
    stable_after: Annotated[
        Positive,
        msgspec.Meta(description="Seconds a connection must stay up before the backoff resets."),
    ] = 30.0
    auth_retry: Annotated[
        Positive,
        msgspec.Meta(
            description="Seconds between retries after an auth failure (401, `auth_revoked`, a "
            "rejected login): slow, never a hot loop."
        ),
    ] = 60.0
    required: Annotated[
        bool,
        msgspec.Meta(
            description="`false` keeps the source out of the daemon's readiness (`/readyz`)."
        ),
    ] = True
    record: Annotated[
        bool,
        msgspec.Meta(
            description="`true` records every transport event of the source raw, below the framing "
            "(connections, reads, messages sent, timers), secrets redacted, in "
            "`<state_dir>/recordings/<name>/`, for `tradebus replay` (see `docs/recording.md`)."
        ),
    ] = False
    record_max_bytes: Annotated[
        int,
        msgspec.Meta(
            ge=4096,
            description="Bytes: a recording file is closed and a new one begun past this size (and "
            "every hour).",
        ),
    ] = 64 * 1024 * 1024
    record_retention_bytes: Annotated[
        int,
        msgspec.Meta(
            ge=4096,
            description="Bytes: the oldest recording files of the source go once its directory "
            "holds more.",
        ),
    ] = 1024 * 1024 * 1024
    record_retention_age: Annotated[
        Positive,
        msgspec.Meta(description="Seconds: recording files older than this go."),
    ] = 7 * 86400.0

    def __post_init__(self) -> None:
        _check_url(self.url, ("http", "https"))


class TtmtSource(SourceBase, tag="ttmt", frozen=True, kw_only=True):
    api_key: Annotated[
        Secret,
        msgspec.Meta(description="The TTMT API key, sent as `Authorization: Bearer`."),
    ]
    account_id: Annotated[
        str | None,
        msgspec.Meta(
            description="Only this account's events (the account's UUID); all accounts when unset. "
            "Set, it turns replay-gap detection off (the ids skip other accounts' events)."
        ),
    ] = None
    start: Annotated[
        Literal["earliest", "latest"],
        msgspec.Meta(
            description="With nothing journaled for this source yet: `earliest` asks the upstream "
            "for all it still buffers (`Last-Event-ID: 0`), `latest` only for what comes next."
        ),
    ] = "earliest"
    read_timeout: Annotated[
        Positive,
        msgspec.Meta(
            description="Seconds without a byte before the stream counts as dead and is reopened. "
            "The server recycles every 300 s, so a healthy stream is never silent longer."
        ),
    ] = 330.0
    dedupe_size: Annotated[
        Count,
        msgspec.Meta(description="Event ids remembered to drop what a resume replays."),
    ] = 10_000
    symbol_cache: Annotated[
        Count,
        msgspec.Meta(
            description="Trades and positions whose symbol is remembered for later events that "
            "lack it (`trade.tp_hit`)."
        ),
    ] = 10_000


class TpAlertsSource(SourceBase, tag="tpalerts", frozen=True, kw_only=True):
    token: Annotated[
        Secret,
        msgspec.Meta(description="The TradingPartners API token, sent as `Authorization: Bearer`."),
    ]
    ping_interval: Annotated[
        Positive,
        msgspec.Meta(description="Seconds between the server's pings."),
    ] = 30.0
    missed_pings: Annotated[
        Count,
        msgspec.Meta(
            description="No byte for this many ping intervals: `status.disconnected` "
            "(`ping_timeout`) and a reconnect."
        ),
    ] = 3
    symbol_cache: Annotated[
        Count,
        msgspec.Meta(
            description="Live alerts whose `working` event (ticker, prices) is remembered to fill "
            "in their later events."
        ),
    ] = 10_000
    dedupe_size: Annotated[
        Count,
        msgspec.Meta(description="Event ids remembered to drop what a reconnect repeats."),
    ] = 10_000


class TraderWsSource(SourceBase, tag="traderws", frozen=True, kw_only=True):
    username: Annotated[Secret, msgspec.Meta(description="Login user name (`POST /api/v1/login`).")]
    password: Annotated[Secret, msgspec.Meta(description="Login password.")]
    symbols: Annotated[
        list[str],
        msgspec.Meta(description="Symbols subscribed to for the `events` kinds."),
    ] = msgspec.field(default_factory=list)
    events: Annotated[
        list[Literal["quoteEvent", "executionEvent", "portfolioEvent"]],
        msgspec.Meta(description="Event kinds subscribed to for `symbols`."),
    ] = msgspec.field(default_factory=lambda: ["quoteEvent", "executionEvent", "portfolioEvent"])
    depth: Annotated[
        list[str],
        msgspec.Meta(description="Symbols whose order book is subscribed to (`depth.updated`)."),
    ] = msgspec.field(default_factory=list)
    depth_levels: Annotated[
        Count | None,
        msgspec.Meta(description="Levels per side of each book; the server's default when unset."),
    ] = None
    metrics_accounts: Annotated[
        list[str],
        msgspec.Meta(description="Accounts whose balances are subscribed to (`account.updated`)."),
    ] = msgspec.field(default_factory=list)
    account_id: Annotated[
        str | None,
        msgspec.Meta(
            description="Account whose deals and orders are back-filled after a cut; "
            "`metrics_accounts[0]` when unset. With neither, the cut is a `status.gap`."
        ),
    ] = None
    ping_interval: Annotated[
        Positive,
        msgspec.Meta(description="Seconds between our WebSocket pings."),
    ] = 10.0
    ping_timeout: Annotated[
        Positive,
        msgspec.Meta(description="Seconds a pong may take before the connection counts as dead."),
    ] = 10.0
    idle_timeout: Annotated[
        Positive,
        msgspec.Meta(description="Seconds without any message before reconnecting."),
    ] = 60.0
    subscribe_timeout: Annotated[
        Positive,
        msgspec.Meta(
            description="Seconds the subscription acks (and, after a cut, the history replies) may "
            "take before reconnecting."
        ),
    ] = 10.0
    connect_timeout: Annotated[
        Positive,
        msgspec.Meta(
            description="Seconds for the login request and for the WebSocket handshake, each."
        ),
    ] = 10.0
    dedupe_size: Annotated[
        Count,
        msgspec.Meta(
            description="Execution ids remembered so that a back-fill never repeats an order event."
        ),
    ] = 100_000
    # A refused history reply would be asked for again on every reconnect: hence the large
    # default.
    max_message_bytes: Annotated[
        Count,
        msgspec.Meta(
            description="The largest WebSocket message taken; a larger one closes the connection "
            "(1009), counts as bad input and the source reconnects and back-fills. Large because "
            "one history reply holds a whole away-window."
        ),
    ] = 64 * 1024 * 1024


class Mt4BridgeSource(SourceBase, tag="mt4bridge", frozen=True, kw_only=True):
    api_key: Annotated[Secret, msgspec.Meta(description="The bridge API key.")]
    account_id: Annotated[
        str,
        msgspec.Meta(description="The bridge account id; also the `account` of every event."),
    ]
    server: Annotated[
        str,
        msgspec.Meta(description="The MT4 broker server the bridge session logs in to."),
    ]
    login: Annotated[int, msgspec.Meta(description="The MT4 login number.")]
    password: Annotated[Secret, msgspec.Meta(description="The MT4 terminal password.")]
    symbols: Annotated[
        list[str],
        msgspec.Meta(description="Symbols whose quotes are subscribed to."),
    ] = msgspec.field(default_factory=list)
    heartbeat_interval: Annotated[
        Positive,
        msgspec.Meta(description="Seconds between session heartbeats."),
    ] = 30.0
    reconcile_interval: Annotated[
        Positive,
        msgspec.Meta(
            description="Seconds between REST polls of the account and the positions (also done on "
            "every connect), so an open or close missed by the stream is still reported, once."
        ),
    ] = 60.0
    idle_timeout: Annotated[
        Positive,
        msgspec.Meta(description="Seconds without a WebSocket message before reconnecting."),
    ] = 60.0
    request_timeout: Annotated[
        Positive,
        msgspec.Meta(description="Seconds for each REST call."),
    ] = 10.0
    breaker_threshold: Annotated[
        Count,
        msgspec.Meta(
            description="502 BridgeUnavailable answers in a row that open the circuit breaker."
        ),
    ] = 3
    breaker_reset: Annotated[
        Positive,
        msgspec.Meta(description="Seconds the open breaker waits before trying again."),
    ] = 30.0
    max_message_bytes: Annotated[
        Count,
        msgspec.Meta(
            description="The largest WebSocket frame taken; a larger one closes the connection "
            "(1009), counts as bad input and the source reconnects and reconciles."
        ),
    ] = 16 * 1024 * 1024


# A ``[[sources]]`` table: a built-in's struct or an installed plugin's (``source_kinds``).
SourceConfig: TypeAlias = SourceBase


# --- sinks ----------------------------------------------------------------------------------


class SinkBase(_Closed, tag_field="type", frozen=True, kw_only=True):
    name: Annotated[
        Name,
        msgspec.Meta(description="The sink's name, in logs and metrics. Unique among sinks."),
    ]
    # Source types, a plugin's too: checked against what is installed (``_table_problems``).
    providers: Annotated[
        list[Provider],
        msgspec.Meta(
            description="Only events of these providers (source types, an installed plugin's "
            "too); all when empty."
        ),
    ] = msgspec.field(default_factory=list)
    types: Annotated[
        list[str],
        msgspec.Meta(
            description='Only events whose `type` starts with one of these (`"order."`, '
            '`"status"`); all when empty.'
        ),
    ] = msgspec.field(default_factory=list)
    sources: Annotated[
        list[str],
        msgspec.Meta(description="Only events of these sources (by name); all when empty."),
    ] = msgspec.field(default_factory=list)
    symbols: Annotated[
        list[str],
        msgspec.Meta(description="Only events of these symbols; all when empty."),
    ] = msgspec.field(default_factory=list)
    max_lag: Annotated[
        float,
        msgspec.Meta(
            ge=0,
            description="Seconds this sink may lag (the age of the oldest event it has not "
            "acknowledged) before `/readyz` reports it not ready and a warning is logged once a "
            "minute; 0: never.",
        ),
    ] = 60.0
    queue_size: Annotated[
        Count | None,
        msgspec.Meta(
            description="No longer used (every sink reads the journal, nothing is held in memory "
            "for it); accepted so older configs still load."
        ),
    ] = None
    start: Annotated[
        Literal["latest", "earliest"],
        msgspec.Meta(
            description='Where a sink new to the state dir begins: `"latest"` at the journal\'s '
            'end (what comes next), `"earliest"` with all the journal still holds. A cursor on '
            "record wins."
        ),
    ] = "latest"


class StdoutSinkConfig(SinkBase, tag="stdout", frozen=True, kw_only=True):
    pass


class FileSinkConfig(SinkBase, tag="file", frozen=True, kw_only=True):
    path: Annotated[
        str,
        msgspec.Meta(description="The JSONL file appended to; reopened on SIGHUP."),
    ]
    max_bytes: Annotated[
        int,
        msgspec.Meta(ge=0, description="Rotate when the file would pass this size; 0: never."),
    ] = 256 * 1024 * 1024
    backups: Annotated[
        int,
        msgspec.Meta(ge=0, description="Rotated files kept (`path.1` … `path.N`)."),
    ] = 5
    fsync: Annotated[
        bool,
        msgspec.Meta(
            description="`fsync` after every batch: survives a power loss, costs throughput."
        ),
    ] = False

    def __post_init__(self) -> None:
        if not self.path:
            raise ValueError("path: expected a file path, got ''")


def _check_nats_server(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("nats", "tls") or not parts.hostname:
        raise ValueError(f"servers: expected nats:// or tls:// URLs, got {log_safe(url)!r}")
    if parts.username or parts.password:
        # Credentials in a URL end up in client logs and errors: they have their own fields.
        raise ValueError("servers: give user/password or token, not credentials in the URL")


def log_safe(url: str) -> str:
    """``url`` cut to 80 characters, without its userinfo and with its query as ``?***`` (a
    NATS or webhook URL may carry ``?token=``), for an error message: it reaches logs,
    ``tradebus reload``'s answer and the status page. Any scheme, unlike ``log.redact_url``,
    which looks for http and ws URLs in free text."""
    path, query, _ = url.partition("?")
    url = path + ("?***" if query else "")
    parts = urlsplit(url)
    if "@" in parts.netloc:
        url = url.replace(parts.netloc, "***@" + parts.netloc.rpartition("@")[2], 1)
    return url if len(url) <= 80 else url[:80] + "…"


class NatsSinkConfig(SinkBase, tag="nats", frozen=True, kw_only=True):
    servers: Annotated[
        list[str],
        msgspec.Meta(
            min_length=1,
            description="NATS server URLs (`nats://` or `tls://`, no credentials in them); the "
            "client connects to one and fails over to the others.",
        ),
    ] = msgspec.field(default_factory=lambda: ["nats://127.0.0.1:4222"])
    stream: Annotated[
        str,
        msgspec.Meta(
            min_length=1,
            max_length=64,
            pattern=r"^[A-Za-z0-9_\-]+$",
            description="The JetStream stream events are stored in.",
        ),
    ] = "TRADEBUS"
    subject_prefix: Annotated[
        str,
        msgspec.Meta(
            description="First token(s) of every subject; a stream created here listens on "
            "`<prefix>.>`."
        ),
    ] = "tradebus"
    subject: Annotated[
        str,
        msgspec.Meta(
            description="The rest of the subject, from `{provider}`, `{type}` (its dot makes two "
            "tokens), `{source}` and `{symbol}` (`_` without one); any character NATS forbids in a "
            "token becomes `_`."
        ),
    ] = "{provider}.{type}.{symbol}"
    create_stream: Annotated[
        bool,
        msgspec.Meta(
            description="Create the stream when it is missing (an existing one is left as it is); "
            "`false`: a missing stream is a fatal error naming it."
        ),
    ] = True
    replicas: Annotated[
        int,
        msgspec.Meta(
            ge=1,
            le=5,
            description="Replicas of a stream created here (a cluster of that many nodes).",
        ),
    ] = 1
    max_age: Annotated[
        float,
        msgspec.Meta(
            ge=0, description="Seconds a stream created here keeps a message; 0: no limit."
        ),
    ] = 0.0
    max_bytes: Annotated[
        int,
        msgspec.Meta(ge=-1, description="Bytes a stream created here keeps; -1: no limit."),
    ] = -1
    duplicate_window: Annotated[
        Positive,
        msgspec.Meta(
            description="Seconds JetStream remembers a `Nats-Msg-Id` (the event id): what a "
            "restart or a retry publishes again within it is stored once."
        ),
    ] = 120.0
    user: Annotated[
        Secret | None,
        msgspec.Meta(
            description="User name, with `password` (a secret: `user_file` reads it from a file)."
        ),
    ] = None
    password: Annotated[Secret | None, msgspec.Meta(description="Password, with `user`.")] = None
    token: Annotated[
        Secret | None,
        msgspec.Meta(description="Token authentication, instead of `user`/`password`."),
    ] = None
    creds_file: Annotated[
        str | None,
        msgspec.Meta(description="A NATS `.creds` file (JWT and NKey seed), read by the client."),
    ] = None
    # TLS is used with tls:// servers or when the server requires it.
    tls_ca_file: Annotated[
        str | None,
        msgspec.Meta(
            description="CA file to verify the server with (else the system's CAs); the server's "
            "certificate is always verified."
        ),
    ] = None
    tls_cert_file: Annotated[
        str | None,
        msgspec.Meta(description="Client certificate for mutual TLS, with `tls_key_file`."),
    ] = None
    tls_key_file: Annotated[
        str | None,
        msgspec.Meta(description="Client key for mutual TLS, with `tls_cert_file`."),
    ] = None
    ack_timeout: Annotated[
        Positive,
        msgspec.Meta(
            description="Seconds for every acknowledgement of a batch to arrive; else the batch is "
            "published again (the stream's dedupe drops what it already has)."
        ),
    ] = 10.0
    max_inflight: Annotated[
        Count,
        msgspec.Meta(description="Publishes awaiting their acknowledgement at once."),
    ] = 4096
    publish: Annotated[
        Literal["auto", "batched", "each"],
        msgspec.Meta(
            description="`batched`: each write is one JetStream fast-ingest batch, acknowledged "
            "every few hundred messages (nats-server 2.14+, a stream with `allow_batched`; a "
            "stream created here gets it); `each`: one acknowledgement per message, which also "
            "counts the duplicates JetStream dropped; `auto`: `batched` where the stream allows "
            "it, else `each`."
        ),
    ] = "auto"
    connect_timeout: Annotated[
        Positive,
        msgspec.Meta(description="Seconds a connection attempt to one server may take."),
    ] = 5.0
    reconnect_wait: Annotated[
        Positive,
        msgspec.Meta(description="Seconds between connection attempts after a server went away."),
    ] = 2.0

    def __post_init__(self) -> None:
        for url in self.servers:
            _check_nats_server(url)
        SubjectTemplate(self.subject_prefix, self.subject)
        if (self.user is None) != (self.password is None):
            raise ValueError("user: give user and password together")
        given = [
            n
            for n, v in (
                ("user", self.user),
                ("token", self.token),
                ("creds_file", self.creds_file),
            )
            if v is not None
        ]
        if len(given) > 1:
            raise ValueError(f"{given[1]}: give one of user/password, token or creds_file")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file: give tls_cert_file and tls_key_file together")


# Header names as RFC 9110 defines a token; values without control characters (no CR/LF).
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
# Headers the webhook sink sets itself: a static header must not replace them.
_OWN_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "host",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    }
)


def webhook_key(secret: Secret) -> bytes:
    """The HMAC key of a Standard Webhooks secret: ``whsec_`` stripped, the rest base64-decoded.

    The spec: "the secret is the base64 encoded portion after the prefix"; the reference
    library pads unpadded base64, so this does too. The prefix is required: without it a
    receiver cannot tell a base64 secret from a plain one, and one that keys its HMAC with the
    text itself refuses every request. ValueError never quotes the value.
    """
    text = secret.reveal()
    key = b""
    if text.startswith("whsec_"):
        body = text.removeprefix("whsec_")
        try:
            key = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
        except (binascii.Error, ValueError):
            key = b""
    if not key:
        raise ValueError(
            "secret: expected whsec_<base64>, as Standard Webhooks defines it"
            " (e.g. whsec_ and the base64 of 24 to 64 random bytes)"
        )
    return key


class WebhookSinkConfig(SinkBase, tag="webhook", frozen=True, kw_only=True):
    url: Annotated[
        str,
        msgspec.Meta(description="The endpoint events are POSTed to (`http` or `https`)."),
    ]
    secret: Annotated[
        Secret | None,
        msgspec.Meta(
            description="`whsec_<base64>`: requests are signed per Standard Webhooks "
            "(`webhook-id`, `webhook-timestamp`, `webhook-signature`); unsigned when unset."
        ),
    ] = None
    format: Annotated[
        Literal["json", "jsonl", "cloudevents", "cloudevents-batch"],
        msgspec.Meta(
            description="`json`: one event a request, as is; `jsonl`: up to `batch_max_events` a "
            "request, one a line; `cloudevents`: one CloudEvent a request (structured mode); "
            "`cloudevents-batch`: a JSON array of them."
        ),
    ] = "json"
    headers: Annotated[
        dict[str, Secret],
        msgspec.Meta(
            description="Static extra headers (an API key, say); values are secrets, never logged. "
            "The sink's own headers cannot be replaced."
        ),
    ] = msgspec.field(default_factory=dict)
    batch_max_events: Annotated[
        Count,
        msgspec.Meta(description="Events per request for `jsonl` and `cloudevents-batch`."),
    ] = 500
    batch_linger_ms: Annotated[
        int,
        msgspec.Meta(
            ge=0,
            description="Milliseconds the sink waits for a batch to fill before it sends what it "
            "has; 0: never waits.",
        ),
    ] = 0
    timeout: Annotated[
        Positive,
        msgspec.Meta(description="Seconds one request may take before it counts as failed."),
    ] = 15.0
    retry_base: Annotated[
        Positive,
        msgspec.Meta(
            description="Seconds: the first retry delay; later ones double up to `retry_cap`, with "
            "full jitter. 429 and 503 wait at least their `Retry-After`."
        ),
    ] = 1.0
    retry_cap: Annotated[
        Positive,
        msgspec.Meta(description="Seconds: the cap of the retry delay."),
    ] = 60.0
    give_up_after: Annotated[
        Positive,
        msgspec.Meta(
            description="Seconds a request is retried before it goes to `dead-letter-<name>.jsonl` "
            "in the state dir (a 3xx, or a 4xx but 408 / 429, goes at once); delivery then moves "
            "on."
        ),
    ] = 24 * 3600.0
    max_in_flight: Annotated[
        Count,
        msgspec.Meta(
            description="Requests in flight at once; above 1, order across parallel requests is "
            "not kept."
        ),
    ] = 1
    verify_tls: Annotated[
        bool,
        msgspec.Meta(description="`false` skips TLS certificate checks (warned about at start)."),
    ] = True

    def __post_init__(self) -> None:
        _check_url(self.url, ("http", "https"))
        if self.secret is not None:
            webhook_key(self.secret)
        for name, value in self.headers.items():
            if not _HEADER_NAME.match(name):
                raise ValueError(f"headers: {name[:80]!r} is not a valid header name")
            if name.lower() in _OWN_HEADERS:
                raise ValueError(f"headers: {name!r} is set by the webhook sink itself")
            if any(c in value.reveal() for c in "\r\n\0"):
                raise ValueError(f"headers: the value of {name!r} has a line break or NUL")


# A ``[[sinks]]`` table: a built-in's struct or an installed plugin's (``sink_kinds``).
SinkConfig: TypeAlias = SinkBase


def source_kinds() -> dict[str, type[SourceBase]]:
    """Each ``[[sources]]`` ``type`` to its config struct, from the installed plugins."""
    from tradebus.plugin import SOURCES

    return {t: p.config for t, p in SOURCES.plugins().items()}


def sink_kinds() -> dict[str, type[SinkBase]]:
    """Each ``[[sinks]]`` ``type`` to its config struct, from the installed plugins."""
    from tradebus.plugin import SINKS

    return {t: p.config for t, p in SINKS.plugins().items()}


def table_list(kinds: dict[str, type[Any]]) -> Any:
    """``list[<the tagged union of kinds' structs>]``: decodes ``[[sinks]]`` in one call."""
    return list[typing.Union[tuple(kinds.values())]]  # type: ignore[misc] # noqa: UP007 - built at run time


class Config(_Closed, frozen=True, kw_only=True):
    daemon: DaemonConfig = msgspec.field(default_factory=DaemonConfig)
    sources: list[SourceConfig] = msgspec.field(default_factory=list)
    sinks: list[SinkConfig] = msgspec.field(default_factory=list)


# --- loading --------------------------------------------------------------------------------


def kind(item: SourceConfig | SinkConfig) -> str:
    """The ``type`` of a ``[[sources]]`` or ``[[sinks]]`` table (its struct's tag)."""
    return str(item.__struct_config__.tag)


def dec_hook(type_: type, obj: Any) -> Any:
    """Secrets from strings, for every msgspec decode of a config."""
    if type_ is Secret:
        if not isinstance(obj, str):
            raise ValueError("expected a string")  # never echo the value: it may be a secret
        return Secret(obj)
    raise NotImplementedError


def _interpolate(value: Any, path: str, env: dict[str, str], problems: list[str]) -> Any:
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            var, default = m.group(1), m.group(2)
            if var in env:
                return env[var]
            if default is not None:
                return default
            problems.append(f"{path}: environment variable {var} is not set")
            return ""

        return _VAR.sub(sub, value)
    if isinstance(value, dict):
        return {
            k: _interpolate(v, f"{path}.{k}" if path else k, env, problems)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_interpolate(v, f"{path}[{i}]", env, problems) for i, v in enumerate(value)]
    return value


def _read_secret_files(
    table: dict[str, Any], path: str, env: dict[str, str], problems: list[str]
) -> None:
    for key in [k for k in table if k.endswith("_file") and k[: -len("_file")] in SECRET_FIELDS]:
        field = key[: -len("_file")]
        file_path = Path(str(table.pop(key)))
        if not file_path.is_absolute() and "CREDENTIALS_DIRECTORY" in env:
            file_path = Path(env["CREDENTIALS_DIRECTORY"]) / file_path
        if field in table:
            problems.append(f"{path}.{key}: give {field} or {key}, not both")
            continue
        try:
            table[field] = file_path.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            problems.append(f"{path}.{key}: cannot read {file_path}: {exc.strerror}")


def _pretty(error: msgspec.ValidationError, base: str = "") -> str:
    """``error`` as ``path: what was expected``, its path under ``base`` (``sources[1]``)."""
    text = str(error)
    message, _, where = text.partition(" - at `$")
    where = where.rstrip("`")
    message = message[0].lower() + message[1:] if message else message
    # Checks in __post_init__ name their field ("url: expected …"); unknown keys name theirs.
    field = re.match(r"([a-z_]+): (.*)", message) or re.match(
        r"object contains unknown field `([^`]+)`()", message
    )
    if field:
        where = f"{where}.{field.group(1)}"
        message = field.group(2) or "unknown field (check its spelling and section)"
    where = base + where if base else where.removeprefix(".")
    return f"{where}: {message}" if where else message


def _choices(tp: Any) -> list[str]:
    """The values a ``Literal`` allows, found inside ``tp`` (``Literal[…] | None``, lists)."""
    if typing.get_origin(tp) is Literal:
        return [str(v) for v in typing.get_args(tp)]
    return [c for arg in typing.get_args(tp) for c in _choices(arg)]


_UNKNOWN = "unknown field (check its spelling and section)"


def _unknown_providers(value: list[str], path: str) -> list[str]:
    """A sink's ``providers`` that no installed source type has: a typo that would let
    nothing through, and no run would tell."""
    known = list(source_kinds())
    return [
        f"{path}[{i}]: invalid enum value {p!r}; expected one of: {', '.join(known)}"
        for i, p in enumerate(value)
        if p not in known
    ]


def _table_problems(table: dict[str, Any], cls: type[msgspec.Struct], path: str) -> list[str]:
    """Every problem of one table: each key checked on its own (so one run shows them all),
    then, if each key is fine, the checks that look at several (``__post_init__``)."""
    fields = {f.encode_name: f for f in msgspec.structs.fields(cls)}
    tag_field = cls.__struct_config__.tag_field
    found = []
    for key, value in table.items():
        if key == tag_field:
            continue
        field = fields.get(key)
        if field is None:
            found.append(f"{path}.{key}: {_UNKNOWN}")
            continue
        try:
            msgspec.convert(value, field.type, dec_hook=dec_hook)
        except msgspec.ValidationError as exc:
            problem = _pretty(exc, f"{path}.{key}")
            if "invalid enum value" in problem:
                problem += f"; expected one of: {', '.join(_choices(field.type))}"
            found.append(problem)
            continue
        if key == "providers":
            found += _unknown_providers(value, f"{path}.{key}")
    found += [
        f"{path}.{name}: required, not given"
        for name, f in fields.items()
        if f.required and name not in table
    ]
    if not found:
        try:
            msgspec.convert(table, cls, dec_hook=dec_hook)
        except msgspec.ValidationError as exc:
            found.append(_pretty(exc, path))
    return found


def _problems(data: dict[str, Any]) -> list[str]:
    """Every problem in a decoded config, in file order (``[]`` when it is valid)."""
    found = [f"{key}: {_UNKNOWN}" for key in data if key not in ("daemon", "sources", "sinks")]
    daemon = data.get("daemon", {})
    if isinstance(daemon, dict):
        found += _table_problems(daemon, DaemonConfig, "daemon")
    else:
        found.append("daemon: expected a table ([daemon])")
    sections: tuple[tuple[str, dict[str, Any]], ...] = (
        ("sources", source_kinds()),
        ("sinks", sink_kinds()),
    )
    for section, kinds in sections:
        tables = data.get(section, [])
        if not isinstance(tables, list):
            found.append(f"{section}: expected [[{section}]] tables")
            continue
        for i, table in enumerate(tables):
            path = f"{section}[{i}]"
            if not isinstance(table, dict):
                found.append(f"{path}: expected a [[{section}]] table")
                continue
            tag = table.get("type")
            if not isinstance(tag, str) or tag not in kinds:
                given = "missing" if tag is None else f"unknown type {str(tag)[:40]!r}"
                found.append(f"{path}.type: {given}; expected one of: {', '.join(kinds)}")
                continue
            found += _table_problems(table, kinds[tag], path)
    return found


def _key_of(problem: str) -> str:
    """The table key a problem is about: ``sources[0].symbols`` of ``sources[0].symbols[2]: …``."""
    return re.sub(r"\[\d+\]$", "", problem.partition(": ")[0])


def parse(data: dict[str, Any], env: dict[str, str] | None = None) -> Config:
    """A ``Config`` from decoded TOML, or ``ConfigError`` listing every problem found."""
    env = dict(os.environ) if env is None else env
    problems: list[str] = []
    data = _interpolate(data, "", env, problems)
    if isinstance(data.get("daemon"), dict):
        _read_secret_files(data["daemon"], "daemon", env, problems)
    for section in ("sources", "sinks"):
        tables = data.get(section)
        if isinstance(tables, list):
            for i, table in enumerate(tables):
                if isinstance(table, dict):
                    _read_secret_files(table, f"{section}[{i}]", env, problems)
    # A key whose variable or file was missing is reported once, not again as a bad value.
    reported = {p.partition(": ")[0].removesuffix("_file") for p in problems}
    problems += [p for p in _problems(data) if _key_of(p) not in reported]
    if problems:
        raise ConfigError(problems)
    try:
        rest = {k: v for k, v in data.items() if k not in ("sources", "sinks")}
        config = msgspec.structs.replace(
            msgspec.convert(rest, Config, dec_hook=dec_hook),
            sources=msgspec.convert(
                data.get("sources", []), table_list(source_kinds()), dec_hook=dec_hook
            ),
            sinks=msgspec.convert(
                data.get("sinks", []), table_list(sink_kinds()), dec_hook=dec_hook
            ),
        )
    except msgspec.ValidationError as exc:  # what the checks above did not foresee
        raise ConfigError([_pretty(exc)]) from None
    _check_names(config, problems)
    if problems:
        raise ConfigError(problems)
    return config


def _check_names(config: Config, problems: list[str]) -> None:
    sections: tuple[tuple[str, Sequence[SourceBase | SinkBase]], ...] = (
        ("sources", config.sources),
        ("sinks", config.sinks),
    )
    for section, items in sections:
        seen: dict[str, int] = {}
        for i, item in enumerate(items):
            if item.name in seen:
                problems.append(
                    f"{section}[{i}].name: {item.name!r} is already {section}[{seen[item.name]}]'s"
                )
            seen.setdefault(item.name, i)
    if not config.sources:
        problems.append("sources: expected at least one [[sources]] table")
    if not config.sinks:
        problems.append("sinks: expected at least one [[sinks]] table")


def _read(path: str | Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None


def load(path: str | Path, env: dict[str, str] | None = None) -> Config:
    """Read and validate a TOML config file."""
    return parse(_read(path), env)


def ops_address(path: str | Path, env: dict[str, str] | None = None) -> str | None:
    """``[daemon] http`` of a config file alone (interpolated): where ``tradebus reload`` asks.
    Nothing else of the file is checked, and no secret has to be at hand."""
    data = _read(path)
    env = dict(os.environ) if env is None else env
    problems: list[str] = []
    daemon = data.get("daemon", {})
    raw = daemon.get("http") if isinstance(daemon, dict) else None
    address = _interpolate(raw, "daemon.http", env, problems)
    if address is not None and not isinstance(address, str):
        problems.append("daemon.http: expected a string host:port")
    if problems:
        raise ConfigError(problems)
    return str(address) if address is not None else None


def load_daemon(
    path: str | Path, env: dict[str, str] | None = None
) -> tuple[DaemonConfig, list[str]]:
    """``[daemon]`` and the sinks' names alone: all that reading a state dir needs
    (``tradebus journal``), so no source's or sink's secret has to be at hand."""
    data = _read(path)
    env = dict(os.environ) if env is None else env
    problems: list[str] = []
    daemon = _interpolate(data.get("daemon", {}), "daemon", env, problems)
    sinks = data.get("sinks")
    names = [
        _interpolate(t.get("name"), f"sinks[{i}].name", env, problems)
        for i, t in enumerate(sinks if isinstance(sinks, list) else [])
        if isinstance(t, dict)
    ]
    if not isinstance(daemon, dict):
        problems.append("daemon: expected a table ([daemon])")
    elif not problems:
        # Reading the state dir needs no ops endpoint, so not its token either.
        for key in ("http", "http_token", "http_token_file"):
            daemon.pop(key, None)
        problems += _table_problems(daemon, DaemonConfig, "daemon")
    if problems:
        raise ConfigError(problems)
    return msgspec.convert(daemon, DaemonConfig), [n for n in names if isinstance(n, str)]


def _literal(value: str) -> bool:
    """Whether ``value`` holds a secret of its own once the environment is substituted: a
    ``${VAR}`` is none, the default of a ``${VAR:-default}`` is, unless it is one of the
    simulators' published credentials (the demo configs' defaults), which are no secret."""
    text = _VAR.sub(lambda m: m.group(2) or "", value).strip()
    return bool(text) and text not in demo_keys.PUBLISHED


def exposed_secrets(path: str | Path) -> list[str]:
    """The secret fields (``sources[0].api_key``) written literally in a config file that
    its group or others may read. Never their values."""
    try:
        if not os.stat(path).st_mode & 0o044:
            return []
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError):
        return []  # ``load`` reports those
    found = []
    daemon = data.get("daemon")
    if isinstance(daemon, dict):
        token = daemon.get("http_token")
        if isinstance(token, str) and _literal(token):
            found.append("daemon.http_token")
    for section in ("sources", "sinks"):
        tables = data.get(section)
        for i, table in enumerate(tables if isinstance(tables, list) else []):
            if isinstance(table, dict):
                found += [
                    f"{section}[{i}].{key}"
                    for key, value in table.items()
                    if key in SECRET_FIELDS and isinstance(value, str) and _literal(value)
                ]
                headers = table.get("headers")  # a webhook's extra headers: every value a secret
                if isinstance(headers, dict):
                    found += [
                        f"{section}[{i}].headers.{name}"
                        for name, value in headers.items()
                        if isinstance(value, str) and _literal(value)
                    ]
    return found


def with_overrides(config: Config, **changes: Any) -> Config:
    return msgspec.structs.replace(config, **changes)


Loader: TypeAlias = Callable[[str | Path], Config]
