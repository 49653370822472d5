"""Configuration: TOML decoded in one call into closed, frozen msgspec structs.

``${VAR}`` and ``${VAR:-default}`` interpolate the environment in any string; ``<key>_file = PATH``
reads a secret from a file instead (a relative PATH is looked up in systemd's
``$CREDENTIALS_DIRECTORY`` when set). Errors name the field path and what was expected:
``sources[1].url: expected an http(s) URL, got ''``.
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
        # Without userinfo and query, either of which may hold a credential: the message
        # reaches logs, `tradebus reload`'s answer and the status page.
        path, query, _ = url.partition("?")
        shown = log_safe(path + ("?***" if query else ""))
        raise ValueError(f"url: expected an {'/'.join(schemes)} URL, got {shown!r}")


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
    # The journal, the sinks' cursors and the lock live here; one daemon per state dir.
    state_dir: str = "/var/lib/tradebus"
    # "interval": fsync the journal every 100 ms (a power loss costs at most that; a crash of
    # the process nothing); "always": before any sink sees a batch; "never": the OS decides.
    fsync: Literal["interval", "always", "never"] = "interval"
    segment_bytes: Annotated[int, msgspec.Meta(ge=4096)] = 64 * 1024 * 1024
    # Segments go once every sink has passed them, or (with a status.gap to the sinks that had
    # not) once the journal holds more than retention_bytes or they are older than retention_age.
    retention_bytes: Annotated[int, msgspec.Meta(ge=4096)] = 1024 * 1024 * 1024
    retention_age: Positive = 7 * 86400.0
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # Unset: the console renderer when stderr is a terminal, JSON lines otherwise.
    log_format: Literal["json", "console"] | None = None
    # How long SIGTERM waits for sinks to write what was received before giving up.
    drain_timeout: Positive = 15.0
    # The ops endpoint (/healthz /readyz /metrics, the event stream) as "host:port"; off when
    # unset.
    http: str | None = None
    # Streams the ops endpoint serves at once (/api/v1/events); the next is refused with 503.
    http_max_clients: Count = 16
    # The Bearer token of /, /api/*; required when http listens beyond loopback.
    http_token: Secret | None = None
    # true: /healthz, /readyz and /metrics ask for the token too.
    http_token_all: bool = False
    # "process": the sinks run in a delivery process of their own (the second core), which
    # the daemon supervises; "inline": in the daemon's own loop (one core, embedding).
    delivery: Literal["process", "inline"] = "process"

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
    name: Name
    url: str
    enabled: bool = True
    # Backoff: full jitter under a cap, reset after a connection stayed up ``stable_after``.
    reconnect_min: Positive = 0.5
    reconnect_max: Positive = 30.0
    stable_after: Positive = 30.0
    # After 401 / auth_revoked / a rejected login: retry this slowly, never in a hot loop.
    auth_retry: Positive = 60.0
    # A source that is not required does not hold the daemon's readiness (/readyz).
    required: bool = True
    # Record every transport event raw (below the framing) in <state_dir>/recordings/<name>/,
    # for `tradebus replay`: a new file past record_max_bytes (or hourly); whole files go past
    # record_retention_bytes in all or when older than record_retention_age.
    record: bool = False
    record_max_bytes: Annotated[int, msgspec.Meta(ge=4096)] = 64 * 1024 * 1024
    record_retention_bytes: Annotated[int, msgspec.Meta(ge=4096)] = 1024 * 1024 * 1024
    record_retention_age: Positive = 7 * 86400.0

    def __post_init__(self) -> None:
        _check_url(self.url, ("http", "https"))


class TtmtSource(SourceBase, tag="ttmt", frozen=True, kw_only=True):
    api_key: Secret
    account_id: str | None = None
    # With nothing journaled for this source yet: "earliest" asks the upstream for all it still
    # buffers (Last-Event-ID: 0), "latest" only for what comes next.
    start: Literal["earliest", "latest"] = "earliest"
    # No byte for this long → reconnect. The server recycles every 300 s, so a healthy stream
    # is never silent longer than that plus slack.
    read_timeout: Positive = 330.0
    dedupe_size: Count = 10_000
    # Trades and positions whose symbol is remembered for later events that lack it (tp_hit).
    symbol_cache: Count = 10_000


class TpAlertsSource(SourceBase, tag="tpalerts", frozen=True, kw_only=True):
    token: Secret
    ping_interval: Positive = 30.0
    # No byte for ``missed_pings`` ping intervals → reconnect with a status.disconnected.
    missed_pings: Count = 3
    symbol_cache: Count = 10_000
    # Event ids remembered to drop what a reconnect repeats.
    dedupe_size: Count = 10_000


class TraderWsSource(SourceBase, tag="traderws", frozen=True, kw_only=True):
    username: Secret
    password: Secret
    symbols: list[str] = msgspec.field(default_factory=list)
    events: list[Literal["quoteEvent", "executionEvent", "portfolioEvent"]] = msgspec.field(
        default_factory=lambda: ["quoteEvent", "executionEvent", "portfolioEvent"]
    )
    depth: list[str] = msgspec.field(default_factory=list)
    depth_levels: Count | None = None
    metrics_accounts: list[str] = msgspec.field(default_factory=list)
    # Account whose deal/order history is back-filled after a cut (default: metrics_accounts[0]).
    account_id: str | None = None
    ping_interval: Positive = 10.0
    ping_timeout: Positive = 10.0
    idle_timeout: Positive = 60.0
    subscribe_timeout: Positive = 10.0
    # Login request and WebSocket handshake, each.
    connect_timeout: Positive = 10.0
    dedupe_size: Count = 100_000
    # The largest WebSocket message taken; a larger one closes the connection (1009) and is
    # bad input. A history reply holds every execution of the away-window in one message, and
    # one refused would be asked for again on every reconnect: hence the larger default.
    max_message_bytes: Count = 64 * 1024 * 1024


class Mt4BridgeSource(SourceBase, tag="mt4bridge", frozen=True, kw_only=True):
    api_key: Secret
    account_id: str
    server: str
    login: int
    password: Secret
    symbols: list[str] = msgspec.field(default_factory=list)
    heartbeat_interval: Positive = 30.0
    reconcile_interval: Positive = 60.0
    idle_timeout: Positive = 60.0
    request_timeout: Positive = 10.0
    # Circuit breaker around 502 BridgeUnavailable: open after this many in a row.
    breaker_threshold: Count = 3
    breaker_reset: Positive = 30.0
    # The largest WebSocket frame taken; a larger one closes the connection (1009) and is bad
    # input.
    max_message_bytes: Count = 16 * 1024 * 1024


# A ``[[sources]]`` table: a built-in's struct or an installed plugin's (``source_kinds``).
SourceConfig: TypeAlias = SourceBase


# --- sinks ----------------------------------------------------------------------------------


class SinkBase(_Closed, tag_field="type", frozen=True, kw_only=True):
    name: Name
    # Filters: an empty list lets everything through. ``types`` are prefixes ("order.", "status").
    # Source types, a plugin's too: checked against what is installed (``_table_problems``).
    providers: list[Provider] = msgspec.field(default_factory=list)
    types: list[str] = msgspec.field(default_factory=list)
    sources: list[str] = msgspec.field(default_factory=list)
    symbols: list[str] = msgspec.field(default_factory=list)
    # Seconds this sink may lag (the age of the oldest event it has not acknowledged) before
    # /readyz reports it not ready and a warning is logged once a minute; 0: never.
    max_lag: Annotated[float, msgspec.Meta(ge=0)] = 60.0
    # No longer used: every sink reads the journal, so nothing is held in memory for it.
    queue_size: Count | None = None
    # Where a sink new to the state dir begins (a cursor on record wins): "latest" at the
    # journal's end, with what comes next; "earliest" with everything the journal still holds.
    start: Literal["latest", "earliest"] = "latest"


class StdoutSinkConfig(SinkBase, tag="stdout", frozen=True, kw_only=True):
    pass


class FileSinkConfig(SinkBase, tag="file", frozen=True, kw_only=True):
    path: str
    # Rotate when the file would pass this size; keep ``backups`` old files (path.1 … path.N).
    max_bytes: Annotated[int, msgspec.Meta(ge=0)] = 256 * 1024 * 1024
    backups: Annotated[int, msgspec.Meta(ge=0)] = 5
    fsync: bool = False

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
    """``url`` cut to 80 characters and without its userinfo, for an error message."""
    parts = urlsplit(url)
    if "@" in parts.netloc:
        url = url.replace(parts.netloc, "***@" + parts.netloc.rpartition("@")[2], 1)
    return url if len(url) <= 80 else url[:80] + "…"


class NatsSinkConfig(SinkBase, tag="nats", frozen=True, kw_only=True):
    servers: Annotated[list[str], msgspec.Meta(min_length=1)] = msgspec.field(
        default_factory=lambda: ["nats://127.0.0.1:4222"]
    )
    stream: Annotated[
        str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")
    ] = "TRADEBUS"
    # Subject = <subject_prefix>.<subject>; the stream created here listens on <prefix>.>.
    subject_prefix: str = "tradebus"
    subject: str = "{provider}.{type}.{symbol}"
    # Create the stream when it is missing (an existing one is left as it is); with false a
    # missing stream is a fatal error naming it.
    create_stream: bool = True
    replicas: Annotated[int, msgspec.Meta(ge=1, le=5)] = 1
    # Seconds; 0 = unlimited. JetStream's duplicate window is how long a Nats-Msg-Id is
    # remembered: a batch replayed later than this after its first publish is stored again.
    max_age: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    max_bytes: Annotated[int, msgspec.Meta(ge=-1)] = -1
    duplicate_window: Positive = 120.0
    user: Secret | None = None
    password: Secret | None = None
    token: Secret | None = None
    # A NATS .creds file (JWT + NKey seed), read by the client itself.
    creds_file: str | None = None
    # TLS is used with tls:// servers or when the server requires it; the server's certificate
    # is always verified, against tls_ca_file if given (else the system's CAs). A client
    # certificate (mutual TLS) is tls_cert_file + tls_key_file.
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    # Every ack of a batch must arrive within this many seconds, or the batch is retried.
    ack_timeout: Positive = 10.0
    # Publishes awaiting their ack at once.
    max_inflight: Count = 4096
    connect_timeout: Positive = 5.0
    reconnect_wait: Positive = 2.0

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
    url: str
    # whsec_<base64> (Standard Webhooks); without one, requests go unsigned.
    secret: Secret | None = None
    format: Literal["json", "jsonl", "cloudevents", "cloudevents-batch"] = "json"
    # Static extra headers (an API key, say): values are secrets, never logged.
    headers: dict[str, Secret] = msgspec.field(default_factory=dict)
    # jsonl / cloudevents-batch: events per request; the bus waits up to the linger to fill one.
    batch_max_events: Count = 500
    batch_linger_ms: Annotated[int, msgspec.Meta(ge=0)] = 0
    # Seconds: one request is cut after ``timeout``; retries back off from ``retry_base`` up to
    # ``retry_cap`` (full jitter); after ``give_up_after`` a request is dead-lettered.
    timeout: Positive = 15.0
    retry_base: Positive = 1.0
    retry_cap: Positive = 60.0
    give_up_after: Positive = 24 * 3600.0
    # Requests in flight at once; above 1, order across parallel requests is not kept.
    max_in_flight: Count = 1
    verify_tls: bool = True

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
