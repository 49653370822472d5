"""What the daemon and its delivery process say to each other over their socket pair.

Frames are a 4-byte big-endian length and a msgpack message. The daemon says where the journal
ends (``Advance``), to reopen files (``Reopen``), to follow a reloaded set of sinks
(``Reconfigure``) and to drain and stop (``Drain``); the delivery process answers with its
sinks' state (``Snapshot``, every ``SNAPSHOT_EVERY`` seconds and once at the end), what its
sinks set aside (``DeadLetter``) and what a reload could not apply (``Reconfigured``). The
sinks' configuration, secrets included, travels in ``Hello`` and ``Reconfigure``, never on a
command line, each sink's with the entry point of its plugin: the delivery process imports the
plugins it runs and no other (every sink client library and what it imports costs memory).
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import msgspec

from tradebus.config import SinkConfig, dec_hook, kind
from tradebus.plugin import SINKS
from tradebus.secret import Secret

SNAPSHOT_EVERY = 0.2
MAX_FRAME = 64 << 20
_LEN = struct.Struct(">I")


class Watermark(msgspec.Struct, frozen=True, array_like=True):
    """Seqs below ``end_seq`` are in the journal (synced, where ``fsync = "always"``): the
    segment that starts at ``segment`` may be read up to ``size`` bytes. ``time`` is when the
    daemon appended the last of them (unix seconds): where a sink's latency starts."""

    end_seq: int
    segment: int
    size: int
    time: float


class SinkSnapshot(msgspec.Struct, kw_only=True):
    """One sink's state as its follower sees it."""

    name: str
    type: str = ""  # the sink's ``type``: its plugin's
    state: str  # opening | writing | idle | retrying | failed | stopped
    cursor: int
    written: int = 0
    retries: int = 0
    failed: bool = False
    # The failure still in force (cleared by the next acknowledged write), and the latest one.
    error: str | None = None
    last_error: str | None = None
    gaps: int = 0
    corrupt: int = 0
    dead_letters: int = 0
    latency_counts: list[int] = msgspec.field(default_factory=list)
    latency_sum: float = 0.0
    # Counters a sink keeps of its own (NATS acks, webhook deliveries): its ``metrics()``.
    counters: dict[str, float] = msgspec.field(default_factory=dict)


class Hello(msgspec.Struct, tag=True):
    state_dir: str
    sinks: bytes  # ``encode_sinks``
    log_level: str
    log_format: str | None
    durable: bool = True  # cursors fsynced (every fsync policy but "never")


class Advance(msgspec.Struct, tag=True):
    mark: Watermark


class Reopen(msgspec.Struct, tag=True):
    pass


class Reconfigure(msgspec.Struct, tag=True):
    """A reload: follow these sinks from now on (``encode_sinks``), by difference."""

    id: int
    sinks: bytes
    drain_timeout: float
    log_level: str


class Drain(msgspec.Struct, tag=True):
    timeout: float


class Snapshot(msgspec.Struct, tag=True):
    pid: int
    sinks: list[SinkSnapshot]
    final: bool = False


class Reconfigured(msgspec.Struct, tag=True):
    """A reload's sinks applied; what could not be, by sink (the old one runs on)."""

    id: int
    problems: dict[str, str]


class DeadLetter(msgspec.Struct, tag=True):
    sink: str
    message: str


ToChild = Hello | Advance | Reopen | Reconfigure | Drain
ToParent = Snapshot | DeadLetter | Reconfigured


def _reveal(obj: Any) -> Any:
    if isinstance(obj, Secret):
        return obj.reveal()
    raise NotImplementedError


class _WireSink(msgspec.Struct, frozen=True, array_like=True):
    type: str
    plugin: str  # its entry point's object reference, ``module:attr``
    config: msgspec.Raw  # msgpack, decoded with the plugin's config struct


def encode_sinks(sinks: list[SinkConfig]) -> bytes:
    """The resolved sink configs (secrets revealed: for our own child's socket only)."""
    return msgspec.msgpack.encode(
        [
            _WireSink(
                kind(s),
                SINKS.ref(kind(s)),
                msgspec.Raw(msgspec.msgpack.encode(s, enc_hook=_reveal)),
            )
            for s in sinks
        ]
    )


def decode_sinks(data: bytes) -> list[SinkConfig]:
    """The configs ``encode_sinks`` sent, each sink's plugin loaded for it alone."""
    return [
        msgspec.msgpack.decode(
            bytes(w.config), type=SINKS.load(w.type, w.plugin).config, dec_hook=dec_hook
        )
        for w in msgspec.msgpack.decode(data, type=list[_WireSink])
    ]


class Channel:
    """Framed messages over one end of the socket pair."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        inbound: Any,  # the union of message types this end receives
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._decoder = msgspec.msgpack.Decoder(inbound)
        self._encoder = msgspec.msgpack.Encoder()

    def send(self, message: ToChild | ToParent) -> None:
        """Queue ``message`` (the transport writes it without blocking the loop); dropped
        once the other side is gone (its supervisor or its exit deals with that)."""
        if self._writer.is_closing():
            return
        data = self._encoder.encode(message)
        self._writer.write(_LEN.pack(len(data)) + data)

    async def flush(self) -> None:
        await self._writer.drain()

    async def receive(self) -> Any:
        """The next message; ``asyncio.IncompleteReadError`` once the other side is gone."""
        (size,) = _LEN.unpack(await self._reader.readexactly(_LEN.size))
        if size > MAX_FRAME:
            raise ValueError(f"frame of {size} bytes")
        return self._decoder.decode(await self._reader.readexactly(size))

    def close(self) -> None:
        self._writer.close()
