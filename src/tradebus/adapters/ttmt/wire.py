"""TTMT (TelegramToMetaTrader): the wire structs of ``GET /api/v1/stream`` (Server-Sent Events).

"All events share a common outer envelope": ``{"type", "eventId", "timestamp", "userId",
"data"}``. Each SSE ``data:`` line holds one envelope; ``type`` is the tag of a msgspec tagged
union, so one prebuilt decoder turns the JSON straight into the right struct, in one pass.

Unknown fields are ignored (upstreams add some); every field the doc's example does not need to
identify the event is optional, so a missing price never costs us the whole event. ``recycle``
appears in the doc in two shapes, ``{"type": "recycle", "reason": "max_lifetime"}`` and the full
envelope with ``data.reason``: both decode.
"""

from __future__ import annotations

from typing import Annotated, Final, TypeAlias

import msgspec

from tradebus.adapters.bounds import Id, Name, Text, Time
from tradebus.schemas.events import Origin

# ``signal``: "the Telegram message that originated the trade". Its two snake_case fields are
# the canonical ``Origin``'s, so it decodes straight into one that the event then shares (frozen)
# rather than copies.
Signal: TypeAlias = Origin


# "eventId" is a counter: outside a signed 64-bit range it is hostile, not an id (and would lift
# the highest id seen past every real one, hiding gaps).
EventId: TypeAlias = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]


# gc=False: decoded JSON is a tree, never a cycle; untracked structs spare the cyclic GC.
class _Data(msgspec.Struct, frozen=True, gc=False, kw_only=True, rename="camel"):
    """Shared by every ``data`` object: camelCase on the wire, unknown fields ignored."""

    account_id: Name | None = None
    signal: Signal | None = None


class PositionItem(msgspec.Struct, frozen=True, gc=False, rename="camel"):
    """One entry of a batch ``position_update``'s ``positions`` (it has ``id``, not positionId)."""

    id: Id
    symbol: Name | None = None
    unrealized_profit: float | None = None
    current_price: float | None = None
    signal: Signal | None = None


class PositionUpdateData(_Data, frozen=True):
    """ "The data may contain either a single position delta or a batch of positions.\""""

    position_id: Id | None = None
    symbol: Name | None = None
    unrealized_profit: float | None = None
    current_price: float | None = None
    positions: list[PositionItem] | None = None


class OrderFillData(_Data, frozen=True):
    order_id: Id
    position_id: Id | None = None
    symbol: Name | None = None
    volume: float | None = None
    fill_price: float | None = None
    layer: int | None = None


class PositionClosedData(_Data, frozen=True):
    position_id: Id
    reason: Text | None = None
    trade_id: Id | None = None


class TradeExecutedData(_Data, frozen=True):
    trade_id: Id
    symbol: Name | None = None
    channel_name: Text | None = None
    positions_count: int | None = None
    orders_count: int | None = None


class TradeFinalizedData(_Data, frozen=True):
    trade_id: Id
    status: Name | None = None
    profit_loss: float | None = None


class TpHitData(_Data, frozen=True):
    trade_id: Id
    tp_level: Name | None = None


class BreakevenSetData(_Data, frozen=True):
    """ "breakeven_set carries a DB position UUID (not the MetaAPI position ID)"."""

    position_id: Id
    new_sl: float | None = msgspec.field(default=None, name="newSL")


class BreakevenFailedData(_Data, frozen=True):
    position_id: Id
    trade_id: Id | None = None


class ReasonData(msgspec.Struct, frozen=True, gc=False):
    """``auth_revoked`` and ``recycle``: ``{"reason": ...}``."""

    reason: Text | None = None


class _Envelope(
    msgspec.Struct, frozen=True, gc=False, kw_only=True, rename="camel", tag_field="type"
):
    """ "All events share a common outer envelope" (``userId`` is not in every example)."""

    event_id: EventId
    timestamp: Time | None = None
    user_id: Id | None = None


class PositionUpdate(_Envelope, frozen=True, tag="position_update"):
    data: PositionUpdateData


class OrderFill(_Envelope, frozen=True, tag="order_fill"):
    data: OrderFillData


class PositionClosed(_Envelope, frozen=True, tag="position_closed"):
    data: PositionClosedData


class TradeExecuted(_Envelope, frozen=True, tag="trade_executed"):
    data: TradeExecutedData


class TradeFinalized(_Envelope, frozen=True, tag="trade_finalized"):
    data: TradeFinalizedData


class TpHit(_Envelope, frozen=True, tag="tp_hit"):
    data: TpHitData


class BreakevenSet(_Envelope, frozen=True, tag="breakeven_set"):
    data: BreakevenSetData


class BreakevenFailed(_Envelope, frozen=True, tag="breakeven_failed"):
    data: BreakevenFailedData


class AuthRevoked(_Envelope, frozen=True, tag="auth_revoked"):
    """ "reason is "key_revoked" or "access_disabled"." The stream closes right after."""

    data: ReasonData = msgspec.field(default_factory=ReasonData)


class Recycle(
    msgspec.Struct, frozen=True, gc=False, rename="camel", tag_field="type", tag="recycle"
):
    """ "Fired before the server-initiated 5-minute recycle close. Reconnect immediately."

    The doc shows it bare (``reason`` at the top) and enveloped (``data.reason``): both decode.
    """

    event_id: EventId | None = None
    timestamp: Time | None = None
    user_id: Id | None = None
    reason: Text | None = None
    data: ReasonData | None = None

    @property
    def why(self) -> str | None:
        return self.data.reason if self.data is not None and self.data.reason else self.reason


Message: TypeAlias = (
    PositionUpdate
    | OrderFill
    | PositionClosed
    | TradeExecuted
    | TradeFinalized
    | TpHit
    | BreakevenSet
    | BreakevenFailed
    | AuthRevoked
    | Recycle
)
Control: TypeAlias = AuthRevoked | Recycle

TYPES: Final[frozenset[str]] = frozenset(cls.__struct_config__.tag for cls in Message.__args__)


class UnknownTypeError(ValueError):
    """A well-formed envelope whose ``type`` this version does not know (not an error)."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"unknown event type {name[:64]!r}")


class _TypeOnly(msgspec.Struct, frozen=True, gc=False):
    type: str


_decoder: Final[msgspec.json.Decoder[Message]] = msgspec.json.Decoder(Message)
_type_only: Final[msgspec.json.Decoder[_TypeOnly]] = msgspec.json.Decoder(_TypeOnly)


def decode(raw: bytes | str) -> Message:
    """One SSE ``data`` payload as its struct.

    Raises ``UnknownTypeError`` for a type this version does not know, and for anything malformed
    ``msgspec.DecodeError`` (``ValidationError`` included) or ``RecursionError`` (nesting deeper
    than the decoder's stack, met while skipping an unknown field). Only on the error path is
    the envelope read a second time, for its ``type`` alone, to tell the two apart.
    """
    try:
        return _decoder.decode(raw)
    except (msgspec.DecodeError, RecursionError) as exc:
        name = unknown_type(raw, exc)
        if name is not None:
            raise UnknownTypeError(name) from None
        raise


# The hot path calls the decoder itself (one Python call less per event) and ``unknown_type``
# on failure; ``decode`` is the same, in one call.
decode_known: Final = _decoder.decode


def unknown_type(raw: bytes | str, exc: BaseException) -> str | None:
    """The ``type`` a payload ``decode_known`` refused has, if this version does not know it."""
    if not isinstance(exc, msgspec.ValidationError):
        return None  # not JSON at all, or nested past the decoder's stack
    try:
        name = _type_only.decode(raw).type
    except (msgspec.DecodeError, RecursionError):
        # Skipping a value nested thousands deep to reach ``type`` overflows msgspec's stack:
        # that message is malformed, never a crash of the feed.
        return None
    return None if name in TYPES else name
