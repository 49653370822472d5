"""The canonical event model: the public contract of tradebus.

Every line tradebus writes is one ``Event``: a frozen msgspec Struct, tagged on ``type``.
A consumer decodes any output line with ``msgspec.json.decode(line, type=Event)``.

Fields shared by every event (see DESIGN.md, "The canonical event"):

- ``id``: ``<source>:<upstream event id>`` (``#<n>`` for the n-th event of one upstream message
  that gives several); the dedupe and idempotency key everywhere downstream.
- ``seq``: assigned by the bus, strictly increasing.
- ``source`` / ``provider``: the adapter instance's configured name and the upstream kind.
- ``time``: the upstream's own timestamp (UTC), else receipt time; ``received``: when read.
- ``account`` / ``symbol``: normalized, or null. ``origin``: provenance, or null.
- ``data``: the typed payload of that ``type``.

Times are fixed-width RFC 3339 strings in UTC with milliseconds and ``Z``
(``2026-06-09T14:32:01.123Z``, see ``tradebus.times``): fixed width, so lines sort by time as text.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal, TypeAlias

import msgspec

# The kind of upstream an event comes from: a source plugin's ``type``, a built-in's or an
# installed plugin's. ``tradebus.plugin.SourcePlugin`` refuses a type outside
# ``PROVIDER_PATTERN`` (lower case, no dot, space or wildcard a NATS subject or a metric label
# would have to escape), so every provider a daemon writes matches it. Decoding checks the
# length alone: the pattern on every event decoded cost about 0.5 us more per line than the
# closed Literal did, where the length check costs nothing measurable.
PROVIDER_PATTERN: Final = r"^[a-z][a-z0-9_\-]*$"
PROVIDER_MAX: Final = 64
Provider: TypeAlias = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=PROVIDER_MAX,
        description="The kind of upstream: the `type` of its source plugin, or `tradebus`.",
    ),
]
TTMT: Final = "ttmt"
TPALERTS: Final = "tpalerts"
TRADERWS: Final = "traderws"
MT4BRIDGE: Final = "mt4bridge"
# What the daemon says itself (a journal gap, a dead letter), not an upstream.
TRADEBUS: Final = "tradebus"
# The providers of the built-in sources, in the order docs list them.
BUILTIN_PROVIDERS: Final = (TTMT, TPALERTS, TRADERWS, MT4BRIDGE)
Side: TypeAlias = Literal["buy", "sell"]
Timestamp: TypeAlias = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$",
        extra_json_schema={"format": "date-time"},
    ),
]


# gc=False on every struct here: an event is a frozen tree of scalars and structs, so it can
# never be part of a reference cycle, and the cyclic GC need not track the millions made.
class Origin(msgspec.Struct, frozen=True, gc=False, omit_defaults=False):
    """Provenance of an event: the signal (and its Telegram message) that caused it."""

    # Bounded as the upstream ids it comes from are (tradebus.adapters.bounds.MAX_ID).
    signal_id: Annotated[str, msgspec.Meta(max_length=256)] | None = None
    telegram_message_id: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)] | None = None


# --- payloads -------------------------------------------------------------------------------
# omit_defaults on every payload: a field without a value is absent from the line, not null
# (as the protobuf JSON mapping leaves fields at their default out). It shrinks a typical line
# by about a third, which every sink, disk and network pays for. The envelope (``_Event``)
# keeps every field, so routing and filtering never need a key check. A field whose empty
# value is information (a depth side with no levels) has no default, so it is always written.


class QuoteData(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    bid: float | None = None
    ask: float | None = None
    last: float | None = None
    bid_size: float | None = None
    ask_size: float | None = None


class DepthLevel(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """One order-book level, written as ``[price, volume]``."""

    price: float
    volume: float


class DepthData(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    bids: tuple[DepthLevel, ...]
    asks: tuple[DepthLevel, ...]


class OrderData(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    order_id: str
    position_id: str | None = None
    execution_id: str | None = None
    side: Side | None = None
    order_type: str | None = None
    volume: float | None = None
    filled_volume: float | None = None
    remaining_volume: float | None = None
    price: float | None = None
    layer: int | None = None
    reason: str | None = None


class PositionData(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    position_id: str
    trade_id: str | None = None
    side: Side | None = None
    volume: float | None = None
    open_price: float | None = None
    current_price: float | None = None
    close_price: float | None = None
    stop_loss: float | None = None
    take_profit: float | None = None
    unrealized_profit: float | None = None
    profit: float | None = None
    reason: str | None = None


class BreakevenData(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    position_id: str
    trade_id: str | None = None
    new_stop_loss: float | None = None
    reason: str | None = None


class AccountData(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    balance: float | None = None
    equity: float | None = None
    margin: float | None = None
    free_margin: float | None = None
    margin_level: float | None = None
    profit: float | None = None
    currency: str | None = None


class TradeData(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    trade_id: str
    channel: str | None = None
    positions_count: int | None = None
    orders_count: int | None = None
    tp_level: str | None = None
    status: str | None = None
    profit_loss: float | None = None


class SignalData(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    alert_id: int
    strategy: str | None = None
    market: str | None = None
    entry: float | None = None
    target: float | None = None
    stop: float | None = None
    exit: float | None = None
    gain: float | None = None
    token: str | None = None
    token_state: str | None = None
    started_at: Timestamp | None = None
    closed_at: Timestamp | None = None


class StatusData(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """The feed's own state; ``code`` is the upstream's (HTTP status, error code) if it gave one."""

    reason: str | None = None
    code: str | None = None
    message: str | None = None
    retry_in: float | None = None


class GapData(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """Upstream ids that could not be replayed, or (no ids) the window that was not back-filled."""

    first_missing: int | None = None
    last_missing: int | None = None
    reason: str | None = None
    since: Timestamp | None = None
    until: Timestamp | None = None


# --- events ---------------------------------------------------------------------------------


class _Event(msgspec.Struct, frozen=True, gc=False, kw_only=True, tag_field="type"):
    id: str
    seq: int = 0
    source: str
    provider: Provider
    time: Timestamp
    received: Timestamp
    account: str | None = None
    symbol: str | None = None
    origin: Origin | None = None


class QuoteUpdated(_Event, tag="quote.updated", frozen=True, kw_only=True):
    data: QuoteData


class DepthUpdated(_Event, tag="depth.updated", frozen=True, kw_only=True):
    data: DepthData


class OrderAccepted(_Event, tag="order.accepted", frozen=True, kw_only=True):
    data: OrderData


class OrderFilled(_Event, tag="order.filled", frozen=True, kw_only=True):
    data: OrderData


class OrderPartiallyFilled(_Event, tag="order.partially_filled", frozen=True, kw_only=True):
    data: OrderData


class OrderCancelled(_Event, tag="order.cancelled", frozen=True, kw_only=True):
    data: OrderData


class OrderRejected(_Event, tag="order.rejected", frozen=True, kw_only=True):
    data: OrderData


class PositionOpened(_Event, tag="position.opened", frozen=True, kw_only=True):
    data: PositionData


class PositionUpdated(_Event, tag="position.updated", frozen=True, kw_only=True):
    data: PositionData


class PositionClosed(_Event, tag="position.closed", frozen=True, kw_only=True):
    data: PositionData


class PositionBreakevenSet(_Event, tag="position.breakeven_set", frozen=True, kw_only=True):
    data: BreakevenData


class PositionBreakevenFailed(_Event, tag="position.breakeven_failed", frozen=True, kw_only=True):
    data: BreakevenData


class AccountUpdated(_Event, tag="account.updated", frozen=True, kw_only=True):
    data: AccountData


class TradeOpened(_Event, tag="trade.opened", frozen=True, kw_only=True):
    data: TradeData


class TradeTpHit(_Event, tag="trade.tp_hit", frozen=True, kw_only=True):
    data: TradeData


class TradeClosed(_Event, tag="trade.closed", frozen=True, kw_only=True):
    data: TradeData


class SignalDetected(_Event, tag="signal.detected", frozen=True, kw_only=True):
    data: SignalData


class SignalActive(_Event, tag="signal.active", frozen=True, kw_only=True):
    data: SignalData


class SignalAborted(_Event, tag="signal.aborted", frozen=True, kw_only=True):
    data: SignalData


class SignalClosed(_Event, tag="signal.closed", frozen=True, kw_only=True):
    data: SignalData


class StatusConnected(_Event, tag="status.connected", frozen=True, kw_only=True):
    data: StatusData


class StatusDisconnected(_Event, tag="status.disconnected", frozen=True, kw_only=True):
    data: StatusData


class StatusAuthFailed(_Event, tag="status.auth_failed", frozen=True, kw_only=True):
    data: StatusData


class StatusAuthRevoked(_Event, tag="status.auth_revoked", frozen=True, kw_only=True):
    data: StatusData


class StatusError(_Event, tag="status.error", frozen=True, kw_only=True):
    data: StatusData


class StatusGap(_Event, tag="status.gap", frozen=True, kw_only=True):
    data: GapData


Event: TypeAlias = (
    QuoteUpdated
    | DepthUpdated
    | OrderAccepted
    | OrderFilled
    | OrderPartiallyFilled
    | OrderCancelled
    | OrderRejected
    | PositionOpened
    | PositionUpdated
    | PositionClosed
    | PositionBreakevenSet
    | PositionBreakevenFailed
    | AccountUpdated
    | TradeOpened
    | TradeTpHit
    | TradeClosed
    | SignalDetected
    | SignalActive
    | SignalAborted
    | SignalClosed
    | StatusConnected
    | StatusDisconnected
    | StatusAuthFailed
    | StatusAuthRevoked
    | StatusError
    | StatusGap
)

StatusEvent: TypeAlias = (
    StatusConnected | StatusDisconnected | StatusAuthFailed | StatusAuthRevoked | StatusError
)
STATUS_TYPES: dict[str, type[StatusEvent]] = {
    "status.connected": StatusConnected,
    "status.disconnected": StatusDisconnected,
    "status.auth_failed": StatusAuthFailed,
    "status.auth_revoked": StatusAuthRevoked,
    "status.error": StatusError,
}

EVENT_TYPES: tuple[str, ...] = tuple(str(cls.__struct_config__.tag) for cls in Event.__args__)


def event_type(event: Event) -> str:
    """The ``type`` tag of an event (the wire value of its tag field)."""
    tag: str = event.__struct_config__.tag  # type: ignore[assignment]
    return tag


def json_schema() -> dict[str, object]:
    """The JSON Schema of ``Event``, as ``tradebus schema`` prints it."""
    schema: dict[str, object] = msgspec.json.schema(Event)
    return schema


decoder: msgspec.json.Decoder[Event] = msgspec.json.Decoder(Event)
