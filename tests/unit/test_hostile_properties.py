"""Per adapter, the per-message path (decode, then normalize) fed arbitrary JSON-like messages:
deep nesting (thousands of levels), long strings, odd numbers, wrong types in every field.

What the adapter calls outside its per-message ``try`` (the error-path type readers, the MT4
frame decoder, the Trader WS session) must never raise; decoders may refuse a message only with
``msgspec.DecodeError`` or ``RecursionError``, normalizers only with ``ValueError``; and no event
carries an upstream string past the bounds (``tradebus.adapters.bounds``).
"""

from __future__ import annotations

from typing import Any

import msgspec
import msgspec.inspect as mi
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import hostile
from tradebus import times
from tradebus.adapters import bounds
from tradebus.adapters.mt4bridge import normalize as mt4_normalize
from tradebus.adapters.mt4bridge import wire as mt4_wire
from tradebus.adapters.tpalerts import normalize as tp_normalize
from tradebus.adapters.tpalerts import wire as tp_wire
from tradebus.adapters.traderws import session as tws_session
from tradebus.adapters.traderws import wire as tws_wire
from tradebus.adapters.ttmt import wire as ttmt_wire
from tradebus.adapters.ttmt.normalize import BUILDERS, SymbolCache
from tradebus.schemas.events import Event

SOURCE = "src"
RECEIVED = "2026-06-09T14:50:00.007Z"
NOW = 1_780_315_200.0
DECODE_ERRORS = (msgspec.DecodeError, RecursionError)
# An id is the source, a kind and a few bounded parts; nothing upstream can grow it past this.
ID_BOUND = 4 * bounds.MAX_ID
SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class Deep:
    """A stand-in for ``[[[…]]]`` ``depth`` deep, spliced into the encoded message (a plain
    class, so the encoder hands it to ``enc_hook``)."""

    def __init__(self, depth: int) -> None:
        self.depth = depth


def _placeholder(deep: Deep) -> str:
    return f"@@deep:{deep.depth}@@"


def encode(value: Any) -> bytes:
    """``value`` as JSON, each ``Deep`` replaced by nesting that deep."""
    raw = msgspec.json.encode(value, enc_hook=_placeholder)
    while b'"@@deep:' in raw:
        start = raw.index(b'"@@deep:')
        end = raw.index(b'@@"', start + 8)
        depth = int(raw[start + 8 : end])
        raw = raw[:start] + hostile.nested(depth) + raw[end + 3 :]
    return raw


long_text = st.integers(0, 5000).map(lambda n: "x" * n)
times_text = st.sampled_from(
    [
        "2026-06-09T14:32:01.123Z",
        "2026-06-09T16:32:01+02:00",
        "2026-06-09T14:32:01.123456789Z",
        "2026.06.09 14:32:01",
        "2026-02-30T00:00:00Z",
        "9999-12-31T23:59:59-23:59",
        "not a time",
        "",
    ]
)
numbers = (
    st.integers()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([0, -1, 2**63, 1e300, -1e300, 5e-324, 1e11, 253402300800000.0])
)
scalars = st.none() | st.booleans() | numbers | st.text(max_size=12) | long_text | times_text
json_values = st.recursive(
    scalars | st.integers(1, 12_000).map(Deep),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)


def _sometimes_hostile(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a value of the field's own type (so normalizers are reached), now and then any."""
    return st.one_of([valid] * 7 + [json_values])


def shaped(t: mi.Type) -> st.SearchStrategy[Any]:
    """JSON values shaped like the wire type ``t``, strings up to past their bounds."""
    if isinstance(t, mi.StrType):
        bound = t.max_length or bounds.MAX_TEXT
        short = (
            st.text(max_size=12)
            | times_text
            | st.sampled_from(["BUY", "SELL", "FILLED", "CLOSED", "EURUSD", "opened", "closed"])
        )
        # As often as not a string at its bound, or just past it.
        return short | st.integers(bound - 1, bound + 1).map(lambda n: "x" * n)
    if isinstance(t, mi.IntType):
        return st.integers(-5, 2**64) | st.integers(0, 10**6)
    if isinstance(t, mi.FloatType):
        return numbers
    if isinstance(t, mi.BoolType):
        return st.booleans()
    if isinstance(t, mi.NoneType):
        return st.none()
    if isinstance(t, mi.LiteralType):
        return st.sampled_from(list(t.values))
    if isinstance(t, mi.UnionType):
        return st.one_of([shaped(member) for member in t.types])
    if isinstance(t, mi.ListType):
        return st.lists(_sometimes_hostile(shaped(t.item_type)), max_size=3)
    if isinstance(t, mi.StructType):
        return struct_objects(t)
    return json_values


def struct_objects(t: mi.StructType) -> st.SearchStrategy[Any]:
    """An object (or array, for an array-like struct) of ``t``'s fields."""
    if t.array_like:
        return st.tuples(*[_sometimes_hostile(shaped(f.type)) for f in t.fields]).map(list)
    required = {f.encode_name: _sometimes_hostile(shaped(f.type)) for f in t.fields if f.required}
    optional = {
        f.encode_name: _sometimes_hostile(shaped(f.type)) for f in t.fields if not f.required
    }
    if t.tag_field is not None:
        required[t.tag_field] = st.just(t.tag)
    return st.fixed_dictionaries(required, optional=optional)


def messages_of(union: Any) -> st.SearchStrategy[bytes]:
    """Encoded messages of every struct of ``union``, deep / odd / unknown ones among them."""
    info = mi.type_info(union)
    members = info.types if isinstance(info, mi.UnionType) else (info,)
    shaped_ones = st.one_of([struct_objects(m) for m in members if isinstance(m, mi.StructType)])
    return st.one_of([shaped_ones] * 4 + [json_values]).map(encode)


def check_bounded(events: list[Event]) -> None:
    """Every upstream string an event carries is within its bound."""
    for event in events:
        assert len(event.id) <= ID_BOUND
        assert len(event.time) == 24
        assert event.symbol is None or len(event.symbol) <= bounds.MAX_NAME
        assert event.account is None or len(event.account) <= bounds.MAX_NAME
        stack: list[Any] = [msgspec.to_builtins(event.data)]
        while stack:
            item = stack.pop()
            if isinstance(item, str):
                assert len(item) <= bounds.MAX_TEXT
            elif isinstance(item, dict):
                stack.extend(item.values())
            elif isinstance(item, list):
                stack.extend(item)


# --- TTMT ---------------------------------------------------------------------------------------

ttmt_messages = messages_of(ttmt_wire.Message)


def ttmt_message(raw: bytes, cache: SymbolCache) -> list[Event]:
    """As ``TtmtAdapter._on_read`` handles one message."""
    try:
        decoded = ttmt_wire.decode_known(raw)
    except DECODE_ERRORS as exc:
        ttmt_wire.unknown_type(raw, exc)  # the adapter calls it outside its try
        return []
    builder = BUILDERS[type(decoded)]
    if builder is None:
        return []
    try:
        events = builder(decoded, SOURCE, RECEIVED, times.Refusals())
    except ValueError:
        return []
    return cache.apply(events)


@SETTINGS
@given(st.lists(ttmt_messages, min_size=1, max_size=4))
def test_ttmt_per_message_path_never_raises_and_stays_bounded(messages: list[bytes]) -> None:
    """Any TTMT payload is decoded or refused as bad input; its events are bounded."""
    cache = SymbolCache(16)
    for raw in messages:
        check_bounded(ttmt_message(raw, cache))


# --- TradingPartners ----------------------------------------------------------------------------

tp_messages = st.sampled_from([*tp_wire.NAMES.items()]).flatmap(
    lambda pair: st.tuples(
        st.sampled_from([pair[1], pair[1] + ",", "promoted"]),
        st.one_of(
            [struct_objects(mi.type_info(pair[0]))] * 4 + [json_values]  # type: ignore[arg-type]
        ).map(encode),
    )
)


def tp_message(name: str, raw: bytes, cache: tp_normalize.AlertCache) -> list[Event]:
    """As ``TpAlertsAdapter._message`` handles one SSE message."""
    name = tp_wire.event_name(name)  # outside the adapter's try, as is decoder_for
    decoder = tp_wire.decoder_for(name)
    if name == "ping" or decoder is None:
        return []
    try:
        decoded = decoder.decode(raw)
    except DECODE_ERRORS:
        return []
    tp_normalize.event_id(SOURCE, decoded)
    try:
        return cache.events(decoded, SOURCE, RECEIVED, times.Refusals())
    except ValueError:
        return []


@SETTINGS
@given(st.lists(tp_messages, min_size=1, max_size=4))
def test_tpalerts_per_message_path_never_raises_and_stays_bounded(
    messages: list[tuple[str, bytes]],
) -> None:
    """Any TradingPartners event is decoded or refused as bad input; its events are bounded."""
    cache = tp_normalize.AlertCache(16)
    for name, raw in messages:
        check_bounded(tp_message(name, raw, cache))


# --- Trader WS ----------------------------------------------------------------------------------

tws_messages = messages_of(tws_wire.ServerMessage)


@SETTINGS
@given(st.lists(tws_messages, min_size=1, max_size=4))
def test_traderws_per_message_path_never_raises_and_stays_bounded(messages: list[bytes]) -> None:
    """Any Trader WS message is decoded or refused; the live session takes it without raising."""
    session = tws_session.Session(SOURCE, tws_session.Plan())
    session.open(NOW)
    for raw in messages:
        try:
            decoded = tws_wire.decode(raw)
        except DECODE_ERRORS:
            tws_wire.message_type(raw)  # the adapter calls it outside its try
            continue
        check_bounded(session.receive(decoded, RECEIVED, NOW))  # also outside: must not raise
        session.take_actions()


# --- MT4 bridge ---------------------------------------------------------------------------------

mt4_one = messages_of(mt4_wire.Message)
mt4_frames = mt4_one | st.lists(mt4_one, min_size=1, max_size=4).map(
    lambda parts: b"[" + b",".join(parts) + b"]"
)


def mt4_events(msg: mt4_wire.Message) -> list[Event]:
    """As ``Mt4BridgeAdapter._on_message`` normalizes one decoded message."""
    if isinstance(msg, mt4_wire.Quote):
        return [mt4_normalize.quote(msg, SOURCE, None, RECEIVED, times.Refusals())]
    if isinstance(msg, mt4_wire.Profit):
        return [mt4_normalize.profit(msg, SOURCE, None, RECEIVED, times.Refusals())]
    if not isinstance(msg, mt4_wire.Order):
        return []
    name = msg.event.strip().lower()
    if name in mt4_normalize.POSITION_EVENTS and msg.ticket is not None:
        position = mt4_normalize.position_from_order(msg)
        return [
            mt4_normalize.position_event(
                name,
                position,
                SOURCE,
                None,
                RECEIVED,
                refused=times.Refusals(),
                when=msg.time,
                reason=msg.reason,
            )
        ]
    event = mt4_normalize.order(msg, SOURCE, None, RECEIVED, times.Refusals())
    return [] if event is None else [event]


@SETTINGS
@given(mt4_frames)
def test_mt4bridge_per_frame_path_never_raises_and_stays_bounded(raw: bytes) -> None:
    """Any MT4 frame splits into messages and refusals without raising; events are bounded."""
    decoded = mt4_wire.decode_frame(raw)  # the adapter calls it outside any try
    for msg in decoded.messages:
        try:
            events = mt4_events(msg)
        except ValueError:
            continue
        check_bounded(events)
