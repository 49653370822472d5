"""Wire structs of the Trader WebSocket API: one struct per message, one decoder, tag dispatch.

The API doc: "Every message — client → server and server → client — uses the same envelope:
``{ "type": "<message-type>", "payload": { ... } }``. The type field selects the payload schema."
So each envelope is a Struct tagged on ``type``; msgspec picks the payload schema in the same
pass that parses the bytes. Field names are camelCase on the wire (``rename="camel"``).

Payloads the doc does not show (executions, portfolio, metrics, depth, history, login) follow the
shapes documented in ``tradebus.simulators.traderws``. Every payload struct ignores unknown fields
and keeps optional fields optional: the upstream may add fields or omit ones it has no value for.
"""

from __future__ import annotations

from typing import Literal, TypeAlias

import msgspec

from tradebus.adapters.bounds import Id, Name, Text, Time


# gc=False: decoded JSON is a tree, never a cycle; untracked structs spare the cyclic GC.
class _Payload(msgspec.Struct, kw_only=True, rename="camel", gc=False):
    pass


# --- server → client payloads ---------------------------------------------------------------


class QuotePayload(_Payload):
    """``{ "symbol": "EURUSD", "bid": 1.0843, "ask": 1.0844, "ts": "2026-06-01T12:00:00Z" }``."""

    symbol: Name
    bid: float | None = None
    ask: float | None = None
    last: float | None = None
    bid_size: float | None = None
    ask_size: float | None = None
    ts: Time | None = None


class Level(msgspec.Struct, array_like=True, gc=False):
    """One book level on the wire: ``[price, volume]`` (trailing extras are ignored)."""

    price: float
    volume: float


class DepthPayload(_Payload):
    symbol: Name
    bids: list[Level] = msgspec.field(default_factory=list)
    asks: list[Level] = msgspec.field(default_factory=list)
    ts: Time | None = None


class ExecutionPayload(_Payload):
    execution_id: Id
    order_id: Id
    status: Name
    account_id: Name | None = None
    symbol: Name | None = None
    side: Name | None = None
    type: Name | None = None
    quantity: float | None = None
    filled_quantity: float | None = None
    price: float | None = None
    position_id: Id | None = None
    reason: Text | None = None
    ts: Time | None = None


class PositionPayload(_Payload):
    position_id: Id
    symbol: Name | None = None
    side: Name | None = None
    quantity: float | None = None
    open_price: float | None = None
    current_price: float | None = None
    close_price: float | None = None
    stop_loss: float | None = None
    take_profit: float | None = None
    unrealized_pnl: float | None = None
    realized_pnl: float | None = None
    # OPENED | UPDATED | CLOSED: what changed; without it, status CLOSED or quantity 0 → closed.
    change: Name | None = None
    status: Name | None = None


class PortfolioPayload(_Payload):
    account_id: Name
    positions: list[PositionPayload] = msgspec.field(default_factory=list)
    balance: float | None = None
    equity: float | None = None
    margin: float | None = None
    free_margin: float | None = None
    margin_level: float | None = None
    unrealized_pnl: float | None = None
    currency: Name | None = None
    ts: Time | None = None


class MetricsPayload(_Payload):
    account_id: Name
    balance: float | None = None
    equity: float | None = None
    margin: float | None = None
    free_margin: float | None = None
    margin_level: float | None = None
    unrealized_pnl: float | None = None
    currency: Name | None = None
    ts: Time | None = None


class SubscribedPayload(_Payload):
    """The ack echoes the request: ``{symbols, events}``, ``{symbol, depth}`` or ``{accountId}``."""

    symbols: list[Name] | None = None
    events: list[Name] | None = None
    symbol: Name | None = None
    depth: int | None = None
    account_id: Name | None = None


class ErrorPayload(_Payload):
    """ "error — The server rejected a message; payload includes a code and message"."""

    code: Name | int | None = None
    message: Text | None = None
    request_id: Id | None = None
    request_type: Name | None = None


class HistoryPayload(_Payload):
    """A ``dealHistory`` / ``orderHistory`` reply, matched to its request by ``requestId``."""

    request_id: Id | None = None
    account_id: Name | None = None
    deals: list[ExecutionPayload] = msgspec.field(default_factory=list)
    orders: list[ExecutionPayload] = msgspec.field(default_factory=list)


class LoginResponse(_Payload):
    """``POST /api/v1/login`` → ``{ "token": "<JWT>", "expiresIn": 3600 }`` (seconds)."""

    token: str
    expires_in: float | None = None


# --- server → client envelopes --------------------------------------------------------------


class _Envelope(msgspec.Struct, tag_field="type", gc=False):
    pass


class QuoteEvent(_Envelope, tag="quoteEvent"):
    payload: QuotePayload


class DepthEvent(_Envelope, tag="depthEvent"):
    payload: DepthPayload


class ExecutionEvent(_Envelope, tag="executionEvent"):
    payload: ExecutionPayload


class PortfolioEvent(_Envelope, tag="portfolioEvent"):
    payload: PortfolioPayload


class MetricsEvent(_Envelope, tag="metricsEvent"):
    payload: MetricsPayload


class Subscribed(_Envelope, tag="subscribed"):
    payload: SubscribedPayload


class Unsubscribed(_Envelope, tag="unsubscribed"):
    payload: SubscribedPayload


class Error(_Envelope, tag="error"):
    payload: ErrorPayload


class DealHistory(_Envelope, tag="dealHistory"):
    payload: HistoryPayload


class OrderHistory(_Envelope, tag="orderHistory"):
    payload: HistoryPayload


ServerMessage: TypeAlias = (
    QuoteEvent
    | DepthEvent
    | ExecutionEvent
    | PortfolioEvent
    | MetricsEvent
    | Subscribed
    | Unsubscribed
    | Error
    | DealHistory
    | OrderHistory
)
SERVER_TYPES: frozenset[str] = frozenset(
    str(cls.__struct_config__.tag) for cls in ServerMessage.__args__
)


class _TypeOnly(msgspec.Struct):
    type: str = ""


decoder: msgspec.json.Decoder[ServerMessage] = msgspec.json.Decoder(ServerMessage)
_type_decoder = msgspec.json.Decoder(_TypeOnly)
_login_decoder = msgspec.json.Decoder(LoginResponse)


def decode(raw: bytes | str) -> ServerMessage:
    """One server message; raises ``msgspec.DecodeError`` (a ValidationError included), or
    ``RecursionError`` for nesting past the decoder's stack in a field it skips."""
    return decoder.decode(raw)


def message_type(raw: bytes | str) -> str | None:
    """The envelope's ``type`` of a message ``decode`` refused (error path only), or None."""
    try:
        name = _type_decoder.decode(raw).type
    except (msgspec.DecodeError, RecursionError):
        # Reaching ``type`` past a value nested thousands deep overflows msgspec's stack.
        return None
    return name or None


def decode_login(raw: bytes | str) -> LoginResponse:
    return _login_decoder.decode(raw)


# --- client → server ------------------------------------------------------------------------

EventKind: TypeAlias = Literal["quoteEvent", "executionEvent", "portfolioEvent"]


class SubscribeRequest(_Payload):
    """``{ symbols: string[], events: ("quoteEvent" | "executionEvent" | "portfolioEvent")[] }``."""

    symbols: list[str]
    events: list[str]


class DepthSubscribeRequest(_Payload, omit_defaults=True):
    """``{ symbol: string, depth?: number }``."""

    symbol: str
    depth: int | None = None


class MetricsSubscribeRequest(_Payload):
    """``{ accountId: string }``."""

    account_id: str


class HistoryRequest(_Payload):
    """``dealHistory`` / ``orderHistory``: the REST query body plus a correlation ``requestId``."""

    request_id: str
    account_id: str
    from_: str
    to: str


class CreateOrderRequest(_Payload, omit_defaults=True):
    account_id: str
    symbol: str
    side: str
    quantity: float
    type: str
    price: float | None = None


ClientPayload: TypeAlias = (
    SubscribeRequest
    | DepthSubscribeRequest
    | MetricsSubscribeRequest
    | HistoryRequest
    | CreateOrderRequest
)


class ClientMessage(msgspec.Struct):
    type: str
    payload: ClientPayload


_encoder = msgspec.json.Encoder()


def encode(message: ClientMessage) -> str:
    """A client message as the text of one WebSocket frame."""
    return _encoder.encode(message).decode()
