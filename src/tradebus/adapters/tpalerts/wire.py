"""TradingPartners alerts: the wire structs of ``GET /api/v1/alerts`` (Server-Sent Events).

The upstream doc: "An event is always formatted as so: event - string, The event type.
data - object, The data". The SSE ``event:`` field names the type and ``data:`` holds one JSON
object, so the type never appears inside the JSON: we pick the decoder by the event name (one dict
lookup) and decode the data once, straight into that type's struct.

"TradingPartners AI produces 5 types of events: ping, working, aborted, onGoing, closed."

Every field but the alert ``id`` is optional (a missing one decodes as ``None``) and unknown
fields are ignored: upstreams add fields, and a missing price must not cost us the whole alert.
"""

from __future__ import annotations

from typing import Any, Final, TypeAlias

import msgspec

from tradebus.adapters.bounds import Id, IntId, Name, Time


# gc=False: decoded JSON is a tree, never a cycle; untracked structs spare the cyclic GC.
class _Wire(msgspec.Struct, frozen=True, rename="camel", gc=False):
    """Shared config: camelCase on the wire (``startedAt``), unknown fields ignored."""


class Ping(_Wire, frozen=True):
    """``ping``: "Ping event is used to keep the connection alive." (``ping``: date-time)."""

    ping: Time | None = None


class Working(_Wire, frozen=True):
    """``working``: "an alert that has just been detected by the algorithm"."""

    id: IntId
    duration_strategy: Name | None = None
    instrument: Name | None = None
    ticker: Name | None = None
    start: float | None = None
    target: float | None = None
    stop: float | None = None
    started_at: Time | None = None
    token: Id | None = None


class Aborted(_Wire, frozen=True):
    """``aborted``: "an alert that has been invalidated by the algorithm"."""

    id: IntId
    token: Id | None = None
    token_state: Name | None = None


class OnGoing(_Wire, frozen=True):
    """``onGoing``: "an alert that has reached its starting price"."""

    id: IntId
    token: Id | None = None


class Closed(_Wire, frozen=True):
    """``closed``: "It either has reached its stopLoss price or the algorithm has detected the
    alert should close now and keep the present profits"."""

    id: IntId
    exit: float | None = None
    gain: float | None = None
    closed_at: Time | None = None
    token: Id | None = None
    token_state: Name | None = None


WireMessage: TypeAlias = Ping | Working | Aborted | OnGoing | Closed
Alert: TypeAlias = Working | Aborted | OnGoing | Closed

# The upstream's own event names, exactly as they appear after ``event:``.
NAMES: Final[dict[type[WireMessage], str]] = {
    Ping: "ping",
    Working: "working",
    Aborted: "aborted",
    OnGoing: "onGoing",
    Closed: "closed",
}

# Built once: one decoder per event type, never a union decoder tried twice.
DECODERS: Final[dict[str, msgspec.json.Decoder[Any]]] = {
    name: msgspec.json.Decoder(cls) for cls, name in NAMES.items()
}


def event_name(field: str) -> str:
    """The event name of an SSE ``event:`` field value.

    The doc's format section writes ``event: ping,`` (with a trailing comma) twice, while every
    other example has none. SSE takes the rest of the line verbatim as the event type, so if the
    server really sends that comma the type is ``"ping,"``; treating it as an unknown type would
    log every ping as a stranger. A trailing comma is therefore dropped from any name.
    """
    if field in DECODERS:
        return field  # the hot path: a name exactly as documented
    return field.rstrip().rstrip(",").rstrip()


def decoder_for(name: str) -> msgspec.json.Decoder[Any] | None:
    """The decoder for event ``name`` (already passed through ``event_name``), or None."""
    return DECODERS.get(name)


def decode(name: str, data: str | bytes) -> WireMessage | None:
    """The wire struct for one SSE message; None when the event name is unknown.

    Raises ``msgspec.DecodeError`` (not JSON) or ``msgspec.ValidationError`` (JSON of the wrong
    shape) for a bad payload; the caller counts it and skips the message.
    """
    decoder = DECODERS.get(event_name(name))
    if decoder is None:
        return None
    message: WireMessage = decoder.decode(data)
    return message
