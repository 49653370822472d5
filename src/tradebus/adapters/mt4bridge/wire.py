"""MT4 bridge: the wire structs of the REST calls and the ``WS /events`` stream.

The upstream doc shows two bodies: the session bootstrap ("POST /session/open" with
``accountId``, ``server``, ``login``, ``password``) and an order task (``symbol``, ``type``,
``volume``, ``sl``, ``tp``, ``comment``). Every other payload here is designed the way the
bridge's REST and WS surfaces describe them, and documented in ``tradebus.simulators.mt4bridge``.

camelCase on the wire, unknown fields ignored, everything but the identifying field optional:
"Use quote, depth, account, order, and on-profit channels" — upstreams add channels and fields.
WS messages are tagged on ``type`` and decoded once by one decoder; a frame holds one message or
a JSON array of them.
"""

from __future__ import annotations

from typing import Final, NamedTuple, TypeAlias

import msgspec

from tradebus.adapters import bounds
from tradebus.adapters.bounds import Id, IntId, Name, Text

# Every field a price, a volume or a time; MT4 tickets are integers.
Number: TypeAlias = float | None
Time: TypeAlias = bounds.Time | float | None


# gc=False: decoded JSON is a tree, never a cycle; untracked structs spare the cyclic GC.
class _Wire(msgspec.Struct, frozen=True, rename="camel", gc=False):
    """Shared config: camelCase on the wire (``freeMargin``), unknown fields ignored."""


# --- REST -------------------------------------------------------------------------------------


class SessionOpenRequest(_Wire, frozen=True, kw_only=True):
    """``POST /session/open``: "Start a broker-connected MT4 bridge session"."""

    account_id: Name
    server: Name
    login: IntId
    password: str


class SessionInfo(_Wire, frozen=True, kw_only=True):
    """The session bootstrap and heartbeat response: "Bridge session returned by the session
    bootstrap flow" (``x-session-id``) and when it lapses without a heartbeat."""

    session_id: Id
    expires_at: bounds.Time | None = None
    account_id: Name | None = None


class Account(_Wire, frozen=True, kw_only=True):
    """``GET /account``: "Read balance, equity, free margin, and currency data"."""

    balance: Number = None
    equity: Number = None
    margin: Number = None
    free_margin: Number = None
    margin_level: Number = None
    profit: Number = None
    currency: Name | None = None
    login: IntId | None = None
    account_id: Name | None = None


class Position(_Wire, frozen=True, kw_only=True):
    """One entry of ``GET /positions``: "List open positions and pending orders"."""

    ticket: IntId
    symbol: Name | None = None
    type: Name | None = None  # BUY | SELL; pending orders: BUY_LIMIT, SELL_STOP, ...
    volume: Number = None
    open_price: Number = None
    current_price: Number = None
    sl: Number = None
    tp: Number = None
    profit: Number = None
    open_time: Time = None
    comment: Text | None = None


class Positions(_Wire, frozen=True, kw_only=True):
    """``GET /positions``: open positions, and pending orders kept apart under ``orders``."""

    positions: list[Position] = msgspec.field(default_factory=list)
    orders: list[Position] = msgspec.field(default_factory=list)


class OrderRequest(_Wire, frozen=True, kw_only=True):
    """``POST /orders``: "Create market or pending trade tasks" (the doc's own example body)."""

    symbol: Name
    type: Name
    volume: float
    price: Number = None
    sl: Number = None
    tp: Number = None
    comment: Text | None = None


class OrderTask(_Wire, frozen=True, kw_only=True):
    """ "Each call returns a task identifier so you can reconcile asynchronous broker execution"."""

    task_id: Id
    status: Name | None = None
    request_id: Id | None = None


class ErrorBody(_Wire, frozen=True, kw_only=True):
    """An error reply: ``{"code": "BridgeUnavailable", "message": ...}`` (the doc's error names)."""

    code: Name | None = None
    message: Text | None = None


# --- WS /events: "Receive quotes, profit, and order execution events in real time" -----------


class Subscribe(_Wire, frozen=True, kw_only=True):
    """What the client sends after the handshake: the channels and the symbol universe."""

    action: Name = "subscribe"
    channels: list[Name] = msgspec.field(default_factory=list)
    symbols: list[Name] = msgspec.field(default_factory=list)


class _Message(_Wire, frozen=True, kw_only=True, tag_field="type"):
    pass


class Quote(_Message, frozen=True, kw_only=True, tag="quote"):
    symbol: Name
    bid: Number = None
    ask: Number = None
    time: Time = None


class Profit(_Message, frozen=True, kw_only=True, tag="profit"):
    """ "on-profit": the floating profit of one open position, as prices move."""

    ticket: IntId
    symbol: Name | None = None
    profit: Number = None
    current_price: Number = None
    time: Time = None


class Order(_Message, frozen=True, kw_only=True, tag="order"):
    """An execution event of a trade task; ``opened`` / ``closed`` are the position's own."""

    event: Name  # accepted | filled | partially_filled | cancelled | rejected | opened | closed
    task_id: Id | None = None
    ticket: IntId | None = None
    symbol: Name | None = None
    side: Name | None = None  # BUY | SELL
    order_type: Name | None = None  # MARKET | LIMIT | STOP
    volume: Number = None
    filled_volume: Number = None
    remaining_volume: Number = None
    price: Number = None
    open_price: Number = None
    close_price: Number = None
    sl: Number = None
    tp: Number = None
    profit: Number = None
    reason: Text | None = None
    time: Time = None


class Subscribed(_Message, frozen=True, kw_only=True, tag="subscribed"):
    channels: list[Name] = msgspec.field(default_factory=list)
    symbols: list[Name] = msgspec.field(default_factory=list)


class Error(_Message, frozen=True, kw_only=True, tag="error"):
    code: Name | None = None
    message: Text | None = None


Message: TypeAlias = Quote | Profit | Order | Subscribed | Error
MESSAGE_TYPES: Final = frozenset({"quote", "profit", "order", "subscribed", "error"})


class Envelope(_Wire, frozen=True):
    """Only the tag: read on the error path alone, to tell an unknown type from a broken one."""

    type: str | None = None


class Decoded(NamedTuple):
    """One frame's messages, the unknown type names it held, and its broken parts."""

    messages: list[Message]
    unknown: list[str]
    bad: list[tuple[bytes, str]]


# Built once each; the frame decoder takes one message or a batch of them in one pass.
frame_decoder: Final = msgspec.json.Decoder(Message | list[Message])
message_decoder: Final = msgspec.json.Decoder(Message)
envelope_decoder: Final = msgspec.json.Decoder(Envelope)
batch_decoder: Final = msgspec.json.Decoder(list[msgspec.Raw])
session_decoder: Final = msgspec.json.Decoder(SessionInfo)
account_decoder: Final = msgspec.json.Decoder(Account)
positions_decoder: Final = msgspec.json.Decoder(Positions | list[Position])
error_decoder: Final = msgspec.json.Decoder(ErrorBody)
encoder: Final = msgspec.json.Encoder()
# What decoding one message can raise: msgspec's errors, and RecursionError for a value nested
# past msgspec's stack in a field it skips (an unknown field, or on the way to ``type``).
_BAD: Final = (msgspec.DecodeError, RecursionError)


def decode_frame(raw: bytes | str) -> Decoded:
    """A WS text frame's messages, decoded once on the hot path.

    Only a frame that fails is looked at again, message by message, so that one unknown or
    broken message in a batch costs that message alone.
    """
    try:
        decoded = frame_decoder.decode(raw)
    except _BAD as exc:
        data = raw.encode() if isinstance(raw, str) else raw
        try:
            parts = batch_decoder.decode(data)
        except _BAD:
            parts = [msgspec.Raw(data)]
        if len(parts) == 1 and parts[0] == data:
            return _classify(data, exc)
        result = Decoded([], [], [])
        for part in parts:
            one = _decode_one(bytes(part))
            result.messages.extend(one.messages)
            result.unknown.extend(one.unknown)
            result.bad.extend(one.bad)
        return result
    return Decoded(decoded if isinstance(decoded, list) else [decoded], [], [])


def _decode_one(data: bytes) -> Decoded:
    try:
        return Decoded([message_decoder.decode(data)], [], [])
    except _BAD as exc:
        return _classify(data, exc)


def _classify(data: bytes, exc: Exception) -> Decoded:
    """An unknown ``type`` is news, not an error; anything else that failed is bad input."""
    name = None
    if isinstance(exc, msgspec.ValidationError):
        try:
            name = envelope_decoder.decode(data).type
        except _BAD:
            name = None
    if name is not None and name not in MESSAGE_TYPES:
        return Decoded([], [name], [])
    return Decoded([], [], [(data, str(exc))])
