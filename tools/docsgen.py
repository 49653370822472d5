"""The generated parts of ``docs/*.md``: ``python -m tools.docsgen`` (``make docs``).

A generated part sits between ``<!-- generated:NAME -->`` and ``<!-- /generated:NAME -->``; the
prose around it is written by hand. Everything inside comes from the code itself:

- ``configuration.md``: every key of ``[daemon]``, ``[[sources]]`` and ``[[sinks]]``, walked from
  the msgspec config structs (name, type, default) with its meaning from the field's own
  ``msgspec.Meta(description=…)``; the keys of installed plugins the same way, from theirs.
- ``events.md``: the envelope and every event ``type`` with its ``data`` fields, walked from
  ``tradebus.schemas.events``, meanings from ``EVENT_DOCS`` / ``FIELD_DOCS``, and one example
  line per type: the upstream docs' own example messages (the golden payloads the unit tests
  use) decoded and normalized by each adapter's own sans-I/O functions, status events built by
  ``SourceContext`` as the adapters build them; ``received``, status times and ``seq`` fixed.

A built-in key, event type or field without a meaning fails ``tests/unit/test_docs.py`` naming
it: a key is described on its field in ``src/tradebus/config.py``, an event type or field by one
line in the dicts below. ``--check`` exits 1 when a generated part is stale. It runs from a
checkout (it reads ``examples/upstreams``), not from an installed wheel.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import typing
from collections.abc import Callable, Container, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
import msgspec.inspect as mi

from tradebus import config, log, times
from tradebus.plugin import SINKS, SOURCES
from tradebus.registry import Registry
from tradebus.reload import RESTART_ONLY
from tradebus.schemas import events as ev
from tradebus.secret import Secret

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
GOLDEN = ROOT / "examples" / "upstreams"
REGION = re.compile(
    r"(<!-- generated:(?P<name>[a-z_-]+) -->\n)(?P<body>.*?)(<!-- /generated:(?P=name) -->)",
    re.DOTALL,
)

# --- what each event field means ------------------------------------------------------------
# ``envelope.<field>`` for the fields every event has, ``<DataStruct>.<field>`` for ``data``.
FIELD_DOCS: dict[str, str] = {
    "envelope.type": "The event type, `kind.action` (the table below).",
    "envelope.id": "The dedupe key (see [ids](#ids)).",
    "envelope.seq": "Assigned by the bus: strictly increasing in the stream.",
    "envelope.source": "The configured name of the source that gave it.",
    "envelope.provider": "Which upstream kind the source is: the `type` of its source plugin "
    "(`ttmt`, `tpalerts`, `traderws`, `mt4bridge` or an installed plugin's), or `tradebus` "
    "for what the daemon says itself.",
    "envelope.time": "The upstream's own timestamp; the receipt time if it gives none, or one "
    "that does not parse.",
    "envelope.received": "When tradebus read it.",
    "envelope.account": "The account the event belongs to, or null.",
    "envelope.symbol": "The instrument as the upstream names it (`EURUSD`, `BTC/USD`), or null.",
    "envelope.origin": "The signal that caused it (TTMT), or null.",
    "envelope.data": "The payload of this `type` (below).",
    "Origin.signal_id": "The upstream's signal id.",
    "Origin.telegram_message_id": "The Telegram message the signal was read from.",
    "QuoteData.bid": "Best bid price.",
    "QuoteData.ask": "Best ask price.",
    "QuoteData.last": "Last traded price.",
    "QuoteData.bid_size": "Volume at the best bid.",
    "QuoteData.ask_size": "Volume at the best ask.",
    "DepthData.bids": "Bid levels, best first, each `[price, volume]`; `[]` is an empty side.",
    "DepthData.asks": "Ask levels, best first, each `[price, volume]`; `[]` is an empty side.",
    "OrderData.order_id": "The upstream's order (or task, or ticket) id.",
    "OrderData.position_id": "The position the order opened or changed.",
    "OrderData.execution_id": "The upstream's execution id.",
    "OrderData.side": "`buy` or `sell`.",
    "OrderData.order_type": "The upstream's order type, lower case (`market`, `limit`, …).",
    "OrderData.volume": "Ordered volume (lots, or the upstream's quantity unit).",
    "OrderData.filled_volume": "Volume filled so far.",
    "OrderData.remaining_volume": "Volume still open.",
    "OrderData.price": "Fill price, else the order's price.",
    "OrderData.layer": "TTMT: the entry layer of the trade this fill belongs to.",
    "OrderData.reason": "Why it was cancelled or rejected, as the upstream says.",
    "PositionData.position_id": "The upstream's position id (ticket).",
    "PositionData.trade_id": "TTMT: the trade the position belongs to.",
    "PositionData.side": "`buy` or `sell`.",
    "PositionData.volume": "Position volume (lots, or the upstream's quantity unit).",
    "PositionData.open_price": "Price the position was opened at.",
    "PositionData.current_price": "Price the profit is marked at.",
    "PositionData.close_price": "Price it was closed at.",
    "PositionData.stop_loss": "Stop-loss price.",
    "PositionData.take_profit": "Take-profit price.",
    "PositionData.unrealized_profit": "Open profit, in the account currency.",
    "PositionData.profit": "Realized profit on close, in the account currency.",
    "PositionData.reason": "Why it closed or changed, as the upstream says (`tp_hit`, …); "
    "`reconciled` when the MT4 bridge's REST poll found it.",
    "BreakevenData.position_id": "The position whose stop was to move.",
    "BreakevenData.trade_id": "The trade the position belongs to.",
    "BreakevenData.new_stop_loss": "The stop-loss price it was moved to.",
    "BreakevenData.reason": "Why moving it failed, as the upstream says.",
    "AccountData.balance": "Balance, in `currency`.",
    "AccountData.equity": "Equity (balance plus open profit), in `currency`.",
    "AccountData.margin": "Margin in use, in `currency`.",
    "AccountData.free_margin": "Margin still available, in `currency`.",
    "AccountData.margin_level": "Equity over margin, in percent.",
    "AccountData.profit": "Open profit, in `currency`.",
    "AccountData.currency": "The account currency (`USD`).",
    "TradeData.trade_id": "TTMT's trade id (one signal's trade, over one or more positions).",
    "TradeData.channel": "The signal channel the trade came from.",
    "TradeData.positions_count": "Positions the trade opened.",
    "TradeData.orders_count": "Orders the trade placed.",
    "TradeData.tp_level": "The take-profit level reached (`TP1`, `TP2`, …).",
    "TradeData.status": "The trade's terminal status, as TTMT says (`closed_profit`, …).",
    "TradeData.profit_loss": "The trade's realized profit or loss, in the account currency.",
    "SignalData.alert_id": "The upstream's alert id: one alert goes through each state once.",
    "SignalData.strategy": "The strategy that detected the alert (`durationStrategy`: `short`, …).",
    "SignalData.market": "The market (`CRYPTOCURRENCIES`, `FOREX`, `INDICES`, `STOCKS`, …).",
    "SignalData.entry": "Starting price of the alert.",
    "SignalData.target": "Price the alert aims at.",
    "SignalData.stop": "Stop-loss price of the alert.",
    "SignalData.exit": "Closing price (`signal.closed`).",
    "SignalData.gain": "Gain the alert realized, as the upstream gives it; negative for a loss.",
    "SignalData.token": "Id of the credit the user spent to receive the alert.",
    "SignalData.token_state": "What became of that credit: `REIMBURSED` or `CONSUMED`.",
    "SignalData.started_at": "When the alert started (upstream time).",
    "SignalData.closed_at": "When the alert closed (upstream time).",
    "StatusData.reason": "Why, in one word (the table below).",
    "StatusData.code": "The upstream's code if it gave one: HTTP status, close code, error code.",
    "StatusData.message": "The upstream's own words, scrubbed of secrets, at most 500 characters.",
    "StatusData.retry_in": "Seconds until the next connection attempt.",
    "GapData.first_missing": "First upstream event id that could not be replayed.",
    "GapData.last_missing": "Last upstream event id that could not be replayed.",
    "GapData.reason": "Why (the table below).",
    "GapData.since": "Start of the window not back-filled (no ids).",
    "GapData.until": "End of that window.",
}

# --- what each event type means -------------------------------------------------------------
EVENT_DOCS: dict[str, str] = {
    "quote.updated": "A new best bid / ask (top of book).",
    "depth.updated": "A new order-book snapshot for `symbol`: the whole book, not a delta.",
    "order.accepted": "The upstream accepted an order; nothing is filled yet.",
    "order.filled": "An order (or one fill of it) was executed in full.",
    "order.partially_filled": "Part of an order was executed; `remaining_volume` is still open.",
    "order.cancelled": "An order was cancelled (or expired) before it filled.",
    "order.rejected": "The upstream refused an order; `reason` says why.",
    "position.opened": "A position was opened.",
    "position.updated": "An open position's price or profit moved.",
    "position.closed": "A position was closed.",
    "position.breakeven_set": "A position's stop loss was moved to break even.",
    "position.breakeven_failed": "Moving a position's stop loss to break even failed.",
    "account.updated": "The account's balance, equity or margin changed.",
    "trade.opened": "TTMT processed a signal and placed its orders: a new trade.",
    "trade.tp_hit": "A trade reached one of its take-profit levels; partial orders close.",
    "trade.closed": "A trade reached a terminal state: all its positions closed, P&L computed.",
    "signal.detected": "An alert was detected: ticker, strategy and prices.",
    "signal.active": "An alert reached its starting price: it is running.",
    "signal.aborted": "An alert was invalidated; `token_state` says what became of the credit.",
    "signal.closed": "An alert closed (stop hit, or profits taken): exit price and gain.",
    "status.connected": "The source is connected (and subscribed): events flow.",
    "status.disconnected": "A connection that was up ended; the source reconnects.",
    "status.auth_failed": "The upstream refused the credentials; the source retries slowly.",
    "status.auth_revoked": "The upstream revoked the credentials on an open stream.",
    "status.error": "An attempt failed, or the upstream reported an error in-band.",
    "status.gap": "Events were lost and cannot be replayed: the range or window is named.",
}


def config_key(section: str, tag: str | None, field: str, shared: bool) -> str:
    """How a config key is named where one lacks a description: ``daemon.<key>``,
    ``sources.<key>`` for a key every type has, ``sources.<type>.<key>`` for one type's."""
    if tag is None or shared:
        return f"{section}.{field}"
    return f"{section}.{tag}.{field}"


# --- rendering types and defaults -----------------------------------------------------------


_INT64_MAX = (1 << 63) - 1


def _num_bounds(t: mi.IntType | mi.FloatType) -> str:
    bounds = [
        "64-bit" if value == _INT64_MAX else f"{op} {value}"
        for op, value in ((">", t.gt), ("≥", t.ge), ("<", t.lt), ("≤", t.le))
        if value is not None
    ]
    return f", {', '.join(bounds)}" if bounds else ""


def _timestamp_pattern() -> str | None:
    info = mi.type_info(ev.Timestamp)
    assert isinstance(info, mi.Metadata)
    assert isinstance(info.type, mi.StrType)
    return info.type.pattern


_TIMESTAMP_PATTERN = _timestamp_pattern()


def type_text(t: mi.Type) -> str:
    """A config or event field's type, in words."""
    if isinstance(t, mi.Metadata):
        return type_text(t.type)
    if isinstance(t, mi.StrType):
        if t.pattern == _TIMESTAMP_PATTERN:
            return "timestamp"
        if t.min_length is not None and t.max_length is not None:
            if t.pattern is None:
                return f"string, {t.min_length}-{t.max_length} chars"
            return f"string, {t.min_length}-{t.max_length} chars of `A-Za-z0-9_.-`"
        return "string"
    if isinstance(t, mi.BoolType):
        return "boolean"
    if isinstance(t, mi.IntType):
        return "integer" + _num_bounds(t)
    if isinstance(t, mi.FloatType):
        return "number" + _num_bounds(t)
    if isinstance(t, mi.LiteralType):
        return " \\| ".join(f"`{json.dumps(v)}`" for v in t.values)
    if isinstance(t, mi.ListType | mi.VarTupleType):
        return f"list of {type_text(t.item_type)}"
    if isinstance(t, mi.UnionType):
        parts = [type_text(u) for u in t.types if not isinstance(u, mi.NoneType)]
        nullable = any(isinstance(u, mi.NoneType) for u in t.types)
        return " or ".join(parts) + (" or null" if nullable else "")
    if isinstance(t, mi.CustomType) and t.cls.__name__ == "Secret":
        return "secret string"
    if isinstance(t, mi.StructType):
        if t.array_like:
            return "[" + ", ".join(f.name for f in t.fields) + "]"
        return "object"
    if isinstance(t, mi.DictType):
        return f"table of {type_text(t.key_type)} to {type_text(t.value_type)}"
    if isinstance(t, mi.NoneType):
        return "null"
    # Anything rarer (a datetime, an enum) by msgspec's own name for it: "DateTimeType" → datetime.
    return type(t).__name__.removesuffix("Type").lower()


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


def _scale(value: object) -> str:
    """A reading aid for big round defaults: bytes in MiB / GiB, seconds in hours / days."""
    mib, hour = 1 << 20, 3600.0
    if isinstance(value, int) and not isinstance(value, bool) and value and value % mib == 0:
        return f" ({value >> 30} GiB)" if value % (1 << 30) == 0 else f" ({value // mib} MiB)"
    if isinstance(value, float) and value >= hour and value % hour == 0:
        hours = int(value // hour)
        return f" ({hours // 24} days)" if hours % 24 == 0 and hours > 24 else f" ({hours} h)"
    return ""


def default_text(f: mi.Field) -> str:
    if f.required:
        return "required"
    value = f.default_factory() if f.default is msgspec.NODEFAULT else f.default
    return "unset" if value is None else f"`{_toml(value)}`{_scale(value)}"


# --- configuration.md -----------------------------------------------------------------------


def _fields(cls: type) -> list[mi.Field]:
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    return list(info.fields)


def _variants(union: Any) -> list[type[msgspec.Struct]]:
    return list(typing.get_args(union))


def _registry(section: str) -> Registry[Any]:
    return SINKS if section == "sinks" else SOURCES


def builtin_configs(section: str) -> list[type[msgspec.Struct]]:
    """The built-in config structs of ``[[sources]]`` or ``[[sinks]]``, in registry order."""
    registry = _registry(section)
    return [p.config for t, p in registry.plugins().items() if registry.builtin(t)]


def _tag(cls: type[msgspec.Struct]) -> str:
    return str(cls.__struct_config__.tag)


def description(f: mi.Field) -> str:
    """A config key's meaning: its field's ``msgspec.Meta(description=…)``, or ``""``."""
    if isinstance(f.type, mi.Metadata):
        return str((f.type.extra_json_schema or {}).get("description", ""))
    return ""


def _bare(f: mi.Field) -> mi.Field:
    """``f`` without the ``msgspec.Meta`` wrapper its description puts around its type."""
    if isinstance(f.type, mi.Metadata):
        return msgspec.structs.replace(f, type=f.type.type)
    return f


Sections = dict[str, Sequence[type[msgspec.Struct]]]


def _builtin_sections() -> Sections:
    return {section: builtin_configs(section) for section in ("sources", "sinks")}


def config_keys(sections: Sections | None = None) -> Iterator[tuple[str, mi.Field]]:
    """Every config key, named as ``config_key`` does, with its field, in document order:
    ``[daemon]``'s, then for each section the keys every type has and each type's own (the
    built-ins', or the structs ``sections`` gives)."""
    for f in _fields(config.DaemonConfig):
        yield config_key("daemon", None, f.name, shared=True), f
    bases = {"sources": config.SourceBase, "sinks": config.SinkBase}
    for section, classes in (sections or _builtin_sections()).items():
        shared = {f.name for f in _fields(bases[section])}
        for f in _fields(bases[section]):
            yield config_key(section, None, f.name, shared=True), f
        for cls in classes:
            tag = _tag(cls)
            for f in _fields(cls):
                if f.name not in shared:
                    yield config_key(section, tag, f.name, shared=False), f


def undocumented_config(sections: Sections | None = None) -> list[str]:
    """The keys (of the built-ins, or of ``sections``' structs) whose field has no description."""
    return [key for key, f in config_keys(sections) if not description(f)]


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _without_none(t: mi.Type) -> mi.Type:
    if isinstance(t, mi.UnionType):
        rest = [u for u in t.types if not isinstance(u, mi.NoneType)]
        return rest[0] if len(rest) == 1 else mi.UnionType(tuple(rest))
    return t


def _key_table(fields: Sequence[mi.Field], restart_only: Container[str] = ()) -> str:
    rows = []
    for field in fields:
        f = _bare(field)
        kind = type_text(_without_none(f.type))  # TOML has no null: such a key is left out
        if f.name in config.SECRET_FIELDS:
            kind += f"; or `{f.name}_file`"
        meaning = description(field) or "(no description)"  # a plugin's; a built-in has one
        if f.name in restart_only:
            meaning += " **Restart only**: a reload that changes it is refused."
        rows.append([f"`{f.name}`", kind, default_text(f), meaning])
    return "\n".join(_table(["key", "type", "default", "meaning"], rows))


def _own_keys(cls: type[msgspec.Struct], shared: set[str]) -> str:
    own = [f for f in _fields(cls) if f.name not in shared]
    return _key_table(own) if own else "No keys of its own."


def _section(section: str, base: type) -> str:
    shared = {f.name for f in _fields(base)}
    types = ", ".join(f"`{_tag(cls)}`" for cls in builtin_configs(section))
    out = [
        f"Every `[[{section}]]` table has a `type` ({types}) and these keys:",
        "",
        _key_table(_fields(base)),
    ]
    for cls in builtin_configs(section):
        out += ["", f'### `type = "{_tag(cls)}"`', "", _own_keys(cls, shared)]
    return "\n".join(out)


def check_documented(sections: Sections | None = None) -> None:
    """Exit naming every built-in config key, event field or type that has no description."""
    missing = undocumented_config(sections) + undocumented_fields() + undocumented_types()
    if missing:
        raise SystemExit(
            "no description for: "
            + ", ".join(missing)
            + " (describe a config key with msgspec.Meta(description=...) on its field in"
            " src/tradebus/config.py; an event type or field in EVENT_DOCS / FIELD_DOCS in"
            " tools/docsgen.py)"
        )


def render_daemon() -> str:
    return _key_table(_fields(config.DaemonConfig), RESTART_ONLY)


def render_sources() -> str:
    return _section("sources", config.SourceBase)


def render_sinks() -> str:
    return _section("sinks", config.SinkBase)


def render_plugins() -> str:
    """The keys of each installed plugin (not the built-ins), from its fields' descriptions."""
    out: list[str] = []
    for section, base in (("sinks", config.SinkBase), ("sources", config.SourceBase)):
        registry = _registry(section)
        shared = {f.name for f in _fields(base)}
        for tag, plugin in registry.plugins().items():
            if not registry.builtin(tag):
                out.append(
                    f'### `[[{section}]]` `type = "{tag}"` (package `{registry.package(tag)}`)\n\n'
                    + _own_keys(plugin.config, shared)
                )
    return "\n\n".join(out) if out else "No plugin is installed."


# --- events.md ------------------------------------------------------------------------------


def _data_struct(cls: type) -> type:
    (data,) = [f for f in _fields(cls) if f.name == "data"]
    assert isinstance(data.type, mi.StructType)
    return data.type.cls


def event_fields() -> Iterator[str]:
    """Every ``FIELD_DOCS`` key the event model has."""
    yield "envelope.type"
    yield from (f"envelope.{f.name}" for f in _fields(ev.QuoteUpdated))
    yield from (f"Origin.{f.name}" for f in _fields(ev.Origin))
    seen: set[type] = set()
    for cls in _variants(ev.Event):
        data = _data_struct(cls)
        if data not in seen:
            seen.add(data)
            yield from (f"{data.__name__}.{f.name}" for f in _fields(data))


def undocumented_fields() -> list[str]:
    return [key for key in event_fields() if key not in FIELD_DOCS]


def undocumented_types() -> list[str]:
    return [t for t in ev.EVENT_TYPES if t not in EVENT_DOCS]


def render_envelope() -> str:
    rows = [["`type`", "string", FIELD_DOCS["envelope.type"]]]
    for f in _fields(ev.QuoteUpdated):
        kind = "object" if f.name == "data" else type_text(f.type)
        rows.append([f"`{f.name}`", kind, FIELD_DOCS[f"envelope.{f.name}"]])
    origin = [
        [f"`origin.{f.name}`", type_text(f.type), FIELD_DOCS[f"Origin.{f.name}"]]
        for f in _fields(ev.Origin)
    ]
    return "\n".join(_table(["field", "type", "meaning"], rows + origin))


def render_events() -> str:
    examples = example_lines()
    groups: list[tuple[type, list[str]]] = []
    for cls in _variants(ev.Event):
        data, tag = _data_struct(cls), _tag(cls)
        if groups and groups[-1][0] is data:
            groups[-1][1].append(tag)
        else:
            groups.append((data, [tag]))
    out = ["| type | meaning |", "|---|---|"]
    out += [f"| [`{t}`](#{_anchor(t)}) | {EVENT_DOCS[t]} |" for t in ev.EVENT_TYPES]
    for data, tags in groups:
        rows = [
            [f"`{f.name}`", type_text(f.type), FIELD_DOCS[f"{data.__name__}.{f.name}"]]
            for f in _fields(data)
        ]
        out += ["", f"### {', '.join(f'`{t}`' for t in tags)}", ""]
        out += [f"`data` ({data.__name__}):", ""]
        out += _table(["field", "type", "meaning"], rows)
        for tag in tags:
            out += ["", f'<a id="{_anchor(tag)}"></a>**`{tag}`**: {EVENT_DOCS[tag]}', ""]
            out += ["```json", examples[tag], "```"]
            if tag == "status.gap":
                out += ["", JOURNAL_GAP, "", "```json", journal_gap_line(), "```"]
    return "\n".join(out)


JOURNAL_GAP = (
    "A sink's own gap: the journal deleted (retention) or could not read (damage) seqs this sink "
    "had not yet written. `source` is `journal`, `provider` `tradebus`, `seq` the last seq "
    "lost, and `first_missing` / `last_missing` are **seqs**, not upstream ids; for damage a "
    "`status.error` (`journal_corrupt`) follows. Every sink gets it, whatever its filters."
)


def _anchor(tag: str) -> str:
    return tag.replace(".", "-").replace("_", "-")


# --- example lines --------------------------------------------------------------------------
# The receipt time every example is given (after every golden payload's own time, as a real
# receipt would be); status events are stamped with it too (their ids' boot stamp included),
# so the examples never depend on when they were made.
RECEIVED = "2026-06-09T15:00:00.004Z"
_RECEIVED_EPOCH = datetime.fromisoformat(RECEIVED).timestamp()


def _golden(provider: str, name: str) -> bytes:
    return (GOLDEN / provider / name).read_bytes()


def _refused() -> times.Refusals:
    # The golden files' times are all valid: nothing is ever counted here.
    return times.Refusals()


def _ttmt(source: str) -> Iterator[ev.Event]:
    from tradebus.adapters.ttmt import wire
    from tradebus.adapters.ttmt.normalize import SymbolCache, normalize

    symbols = SymbolCache(100)
    for name in (
        "trade_executed",
        "order_fill",
        "position_update_single",
        "tp_hit",
        "breakeven_set",
        "breakeven_failed",
        "position_closed",
        "trade_finalized",
    ):
        yield from symbols.apply(
            normalize(wire.decode(_golden("ttmt", f"{name}.json")), source, RECEIVED, _refused())
        )


def _tpalerts(source: str) -> Iterator[ev.Event]:
    from tradebus.adapters.tpalerts import wire
    from tradebus.adapters.tpalerts.normalize import AlertCache
    from tradebus.sse import SSEDecoder

    # The golden events are one alert's; aborted and closed both end it, so each is shown
    # after its own working event, with the context the adapter would have cached.
    for names in (("working", "ongoing", "closed"), ("working", "aborted")):
        alerts = AlertCache(100)
        for name in names:
            for message in SSEDecoder().feed(_golden("tpalerts", f"{name}.sse")):
                decoded = wire.decode(message.event, message.data)
                if decoded is not None:
                    yield from alerts.events(decoded, source, RECEIVED, _refused())


def _traderws(source: str) -> Iterator[ev.Event]:
    from tradebus.adapters.traderws import normalize, wire

    live: dict[type, Callable[[Any, str, str, times.Refusals], list[ev.Event]]] = {
        wire.QuoteEvent: normalize.quote,
        wire.DepthEvent: normalize.depth,
        wire.ExecutionEvent: normalize.execution,
        wire.PortfolioEvent: normalize.portfolio,
        wire.MetricsEvent: normalize.metrics,
        wire.Error: normalize.error,
    }
    # Server messages only: the other golden files are what the client sends.
    for name in (
        "quoteEvent",
        "depthEvent",
        "executionEvent_new",
        "executionEvent_partially_filled",
        "executionEvent_filled",
        "executionEvent_cancelled",
        "executionEvent_rejected",
        "portfolioEvent",
        "metricsEvent",
        "error",
    ):
        message = wire.decode(_golden("traderws", f"{name}.json"))
        yield from live[type(message)](message, source, RECEIVED, _refused())


def _mt4bridge(source: str, account: str) -> Iterator[ev.Event]:
    from tradebus.adapters.mt4bridge import normalize, wire

    (quote,) = wire.decode_frame(_golden("mt4bridge", "ws_quote.json")).messages
    assert isinstance(quote, wire.Quote)
    yield normalize.quote(quote, source, account, RECEIVED, _refused())
    snapshot = wire.account_decoder.decode(_golden("mt4bridge", "account.json"))
    yield normalize.account(normalize.account_data(snapshot), source, account, RECEIVED)


def _status(source: str) -> Iterator[ev.Event]:
    """Status events as the TTMT adapter (and ``SSESource``) makes them, at a fixed clock."""
    from tradebus.adapters.base import SourceContext
    from tradebus.adapters.ttmt import wire
    from tradebus.backoff import classify_http

    async def nowhere(_: Sequence[ev.Event]) -> None:
        return None

    ctx = SourceContext(source, "ttmt", nowhere, clock=lambda: _RECEIVED_EPOCH)
    defaults = config.TtmtSource(name=source, url="http://x", api_key=Secret("x"))
    revoked = wire.decode(_golden("ttmt", "auth_revoked.json"))
    assert isinstance(revoked, wire.AuthRevoked)
    refused = classify_http(401)
    made = [
        ctx.status("status.connected"),
        ctx.gap(first_missing=113, last_missing=120, reason="replay_buffer_exceeded"),
        ctx.status("status.disconnected", reason="recycle", retry_in=0.0),
        ctx.status("status.auth_revoked", reason=revoked.data.reason),
        ctx.status(
            "status.auth_failed",
            reason=refused.reason,
            code=refused.code,
            retry_in=defaults.auth_retry,
        ),
    ]
    for event in made:
        yield msgspec.structs.replace(event, time=RECEIVED, received=RECEIVED)


def journal_gap_line() -> str:
    """The ``status.gap`` a sink gets for seqs retention deleted before it read them."""
    from tradebus.delivery.follower import gap_events
    from tradebus.journal.store import Gap

    # What a follower sends: the example is exactly what a sink named "archive" is given.
    (event,) = gap_events("archive", Gap(4001, 4096, "retention"), RECEIVED)
    return msgspec.json.encode(event).decode()


def example_events() -> list[ev.Event]:
    """Every example candidate, in preference order (the first of each type is shown)."""
    return [
        *_status("ttmt-main"),
        *_ttmt("ttmt-main"),
        *_tpalerts("alerts"),
        *_mt4bridge("mt4", "demo-mt4-01"),
        *_traderws("trader"),
    ]


def example_lines() -> dict[str, str]:
    """One JSON line per event type, ``seq`` numbered in document order."""
    chosen: dict[str, ev.Event] = {}
    for event in example_events():
        chosen.setdefault(ev.event_type(event), event)
    missing = [t for t in ev.EVENT_TYPES if t not in chosen]
    if missing:
        raise SystemExit(f"no example for: {', '.join(missing)} (add one in docsgen.py)")
    encoder = msgspec.json.Encoder()
    lines = {}
    for seq, tag in enumerate(ev.EVENT_TYPES, start=1001):
        event = msgspec.structs.replace(chosen[tag], seq=seq)
        lines[tag] = encoder.encode(event).decode()
    return lines


# --- the files ------------------------------------------------------------------------------

RENDERERS: dict[str, Callable[[], str]] = {
    "daemon": render_daemon,
    "sources": render_sources,
    "sinks": render_sinks,
    "envelope": render_envelope,
    "events": render_events,
    "plugins": render_plugins,
}


def fill(text: str, rendered: dict[str, str]) -> str:
    """``text`` with every generated region's body replaced by its fresh rendering."""

    def sub(m: re.Match[str]) -> str:
        name = m.group("name")
        if name not in rendered:
            raise SystemExit(f"unknown generated region {name!r}")
        return f"{m.group(1)}{rendered[name]}\n{m.group(4)}"

    return REGION.sub(sub, text)


def render_all() -> dict[str, str]:
    check_documented()
    return {name: render() for name, render in RENDERERS.items()}


def stale(docs: Path = DOCS) -> dict[Path, str]:
    """Each docs file whose generated regions are out of date, with its fresh text."""
    rendered = render_all()
    out = {}
    for path in sorted(docs.glob("*.md")):
        text = path.read_text(encoding="utf-8")
        fresh = fill(text, rendered)
        if fresh != text:
            out[path] = fresh
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.docsgen", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if a region is stale")
    args = parser.parse_args(argv)
    log.configure("error")  # the journal gap example logs a warning, as the bus does
    changed = stale()
    for path, text in changed.items():
        rel = path.relative_to(ROOT)
        if args.check:
            print(f"{rel} is stale: run `make docs`", file=sys.stderr)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"rewrote {rel}", file=sys.stderr)
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    raise SystemExit(main())
