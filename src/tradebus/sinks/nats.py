"""The NATS JetStream sink: every event of a batch published, the batch done when all are acked.

A batch's messages are published pipelined (up to ``max_inflight`` awaiting their PubAck) and
``write`` returns only once JetStream acknowledged every one of them: only then may the bus move
this sink's cursor. A missing ack within ``ack_timeout``, a lost connection or a JetStream error
raises ``RetryableSinkError`` and the whole batch is published again later. What the first try
had stored is then dropped by JetStream itself: every message carries ``Nats-Msg-Id`` = the
event id, and the stream drops a repeated id inside its ``duplicate_window`` (the ack says
``duplicate``, counted here).

Where the stream allows it (``allow_batched``, nats-server 2.14+; ``publish = "auto"``), a
write goes out as one JetStream fast-ingest batch instead: the server stores each message as it
comes and acknowledges every ``flow`` messages, and the batch's end, rather than each message.
That halves the sink's CPU per event (reading the acks was most of it). JetStream still applies
the Msg-Id dedupe to every message, but its batch ack does not say how many it dropped, so only
``publish = "each"`` counts duplicates. A message the stream refuses ends the batch there (the
``fail`` of the reply subject): nothing after it is stored, and the retry starts from the first.

Order survives an outage because a lost connection is never resumed: nats-py's own reconnect
would first send what it still held in its buffer, so a message lost in the cut would be stored
after later ones of its batch once the retry sent it again (a test saw exactly that). Instead the
client closes on a cut, the batch fails at once, and the retry opens a fresh connection (trying
every server in ``servers``, ``reconnect_wait`` apart, for ``connect_timeout``) and publishes
the batch from its first event: what the stream stored is a prefix of the batch (one connection,
one order), so the retry stores the rest behind it. Cuts and reconnects are logged and counted.
Credentials go to the client only; no log line or error of this module carries one.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import msgspec
import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import StreamConfig
from nats.protocol.parser import AWAITING_CONTROL_LINE, Parser

from tradebus import log
from tradebus.config import NatsSinkConfig
from tradebus.errors import FatalSinkError, RetryableSinkError
from tradebus.plugin import SinkPlugin
from tradebus.schemas.subject import Head, SubjectTemplate
from tradebus.sinks.base import Batch, Sink, SinkContext

MSG_ID = "Nats-Msg-Id"
# The stream must be this one, or JetStream refuses the message (a stream listening on
# overlapping subjects never takes our events by accident).
EXPECTED_STREAM = "Nats-Expected-Stream"
# What a lost connection, a full client buffer or a JetStream refusal raises in nats-py.
_NATS_FAILURES = (nats.errors.Error, OSError, asyncio.TimeoutError)
_T = TypeVar("_T")


def _lines(chunks: Sequence[bytes]) -> Iterator[bytes]:
    """Each JSON line of the batch without its newline (the message body as the bus encoded it)."""
    for chunk in chunks:
        lines = chunk.split(b"\n")
        lines.pop()  # after the last newline: nothing
        yield from lines


class _ApiError(msgspec.Struct, frozen=True):
    code: int = 0
    err_code: int = 0
    description: str = ""


class _PubAck(msgspec.Struct, frozen=True):
    """JetStream's answer to a publish: ``{"stream","seq","duplicate"}`` or ``{"error"}``."""

    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    error: _ApiError | None = None


class _FlowFrame(msgspec.Struct, frozen=True):
    """What JetStream sends a fast-ingest batch's reply subjects: ``{"type":"ack","seq":n}``
    (stored through message n), ``{"type":"gap"|"err",...}``, or, at the end, the batch's
    PubAck ``{"stream","seq","batch","count"}`` or ``{"error"}``."""

    type: str = ""
    seq: int = 0
    batch: str = ""
    count: int = 0
    error: _ApiError | None = None


# A fast-ingest reply subject is ``<inbox>.<batch id>.<flow>.fail.<n>.<op>.$FI``: ``fail``
# makes the server abandon the batch at a gap; op 0 starts it, 1 adds, 3 ends it (a message
# that is not stored).
_FAST_FIRST = "0.$FI"
_FAST_NEXT = "1.$FI"
_FAST_END = "3.$FI"
_UNREADABLE_FRAME = _FlowFrame(error=_ApiError(description="unreadable ack"))
# Acks asked for once per this many messages (fewer with a small max_inflight): a write's
# windows wait on them. 500 is the most nats-server 2.15 grants (asked for 512, it says 500).
FLOW = 500

# No stream listens on the subject: the server answers the reply subject with status 503.
_NO_STREAM = _ApiError(code=503, description="no stream takes this subject")
_UNREADABLE = _PubAck(error=_ApiError(description="unreadable ack"))


def _read(decoder: msgspec.json.Decoder[_T], data: bytes, unreadable: _T) -> _T:
    try:
        return decoder.decode(data)
    except msgspec.DecodeError:
        return unreadable


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


# Where the three digits of a status header ("NATS/1.0 503 ...") are.
_STATUS_CODE = slice(len(b"NATS/1.0 "), len(b"NATS/1.0 ") + 3)


def _status(headers: bytes) -> _ApiError:
    """What a status line instead of an ack says: 503 = no stream takes the subject."""
    code = headers[_STATUS_CODE]
    if code == b"503":
        return _NO_STREAM
    try:
        number = int(code)
    except ValueError:
        number = 0
    return _ApiError(code=number, description="status instead of an ack")


_HEADER_START = f"NATS/1.0\r\n{MSG_ID}: ".encode()
_UNSAFE_ID = re.compile(r"[%\x00-\x1f\x7f]")


def _msg_id(event_id: str) -> bytes:
    """The Nats-Msg-Id header value of an event: its id, with what would end or break a header
    line percent-encoded (an id can hold upstream text). Injective, so two ids never merge."""
    if _UNSAFE_ID.search(event_id) is not None:
        event_id = _UNSAFE_ID.sub(lambda m: f"%{ord(m.group()):02X}", event_id)
    return event_id.encode()


class _Acks:
    """The acks of one write. One ack a message: message ``k`` of it was published with reply
    token ``base + k``. A fast-ingest batch (``batch`` set): its reply subjects begin with
    ``batch``, and ``got`` is how far the server says it stored."""

    __slots__ = (
        "at",
        "base",
        "batch",
        "duplicates",
        "failure",
        "got",
        "refused",
        "seen",
        "size",
        "waiter",
        "want",
    )

    def __init__(self, base: int, size: int, batch: bytes = b"") -> None:
        self.base = base
        self.size = size
        self.batch = batch
        self.at = 0
        self.seen = bytearray(0 if batch else size)
        self.got = 0
        self.duplicates = 0
        self.refused = 0
        self.failure: _ApiError | None = None
        self.want = size + 1  # nobody waits yet
        self.waiter: asyncio.Future[None] | None = None

    def wake(self) -> None:
        if self.got >= self.want and self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def fail(self, error: _ApiError) -> None:
        self.refused += 1
        if self.failure is None:
            self.failure = error

    def abandon(self, error: _ApiError, at: int) -> None:
        """The server gave the batch up at message ``at``: nothing after it is stored, so
        nobody waits for more (the write fails and publishes it again from its first message,
        and the dedupe drops what is stored already)."""
        if self.failure is None:
            self.failure = error
            self.at = at
            self.refused = self.size - max(at - 1, 0)
        self.got = self.size


class _AckParser(Parser):
    """nats-py's parser with a fast path for the acks: a read that begins with plain ``MSG``s
    of the ack subscription (``MSG <subject> <sid> <size>``, no reply, no headers) hands each
    to ``on_ack`` by index; the first anything else (an HMSG error ack, a PING, a message cut
    by the read) and all after it go to nats-py's parser, which deletes each message from the
    front of its buffer: a copy of the rest of the read per ack, the largest CPU cost of a
    busy sink."""

    nc: _AckClient

    async def parse(self, data: bytes = b"") -> None:
        nc = self.nc
        on_ack = nc.on_ack
        if on_ack is not None and not self.buf and self.state == AWAITING_CONTROL_LINE:
            sid = b" %d " % nc.ack_sid
            pos, size = 0, len(data)
            while data.startswith(b"MSG ", pos):
                eol = data.find(b"\r\n", pos, pos + 512)
                if eol < 0:
                    break
                line = data[pos + 4 : eol]
                cut = line.find(sid)
                if cut <= 0 or not line[cut + len(sid) :].isdigit():
                    break  # another subscription's, a reply subject, or not a MSG we know
                start = eol + 2
                end = start + int(line[cut + len(sid) :])
                if end + 2 > size:
                    break  # the payload is in the next read
                on_ack(line[:cut], data[start:end], None)
                pos = end + 2
            if pos:
                data = data[pos:]
        await super().parse(data)


class _AckClient(Client):
    """nats-py's client with two shortcuts: a message on the sink's ack subscription goes to
    ``on_ack`` as the parser's bytes, before nats-py builds a Msg and queues it for a task; and
    a read of acks is parsed by index (``_AckParser``)."""

    def __init__(self) -> None:
        super().__init__()
        self.ack_sid = -1
        self.on_ack: Callable[[bytes, bytes, bytes | None], None] | None = None
        self._ps = _AckParser(self)

    async def _process_msg(
        self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
    ) -> None:
        if sid == self.ack_sid and self.on_ack is not None:
            self.on_ack(subject, data, headers)
            return
        await super()._process_msg(sid, subject, reply, data, headers)  # type: ignore[arg-type]


class NatsSink(Sink):
    # Bodies are the lines; subjects and Msg-Ids come from each line's envelope, decoded here
    # (about a microsecond a line), so the bus keeps no structs for this sink.
    needs_events = False
    max_batch = 0

    def __init__(self, config: NatsSinkConfig) -> None:
        self.name = config.name
        self.config = config
        self.subjects = SubjectTemplate(config.subject_prefix, config.subject)
        self.acked = 0
        self.duplicates = 0
        self.disconnects = 0
        self.reconnects = 0
        self.last_error: str | None = None
        self._nc: _AckClient | None = None
        self._js: JetStreamContext | None = None
        self._stream_ready = False
        # Resolved when the current connection is gone; a write waiting for acks stops at once.
        self._lost: asyncio.Future[None] | None = None
        self._connections = 0
        self._decoder = msgspec.json.Decoder(Head)
        self._ack_decoder = msgspec.json.Decoder(_PubAck)
        self._frame_decoder = msgspec.json.Decoder(_FlowFrame)
        # Decided with the stream: a fast-ingest batch per write, or one ack a message (None
        # until the stream was first looked up).
        self.batched: bool | None = None
        self._batches = 0
        self._last_subject = ""
        # Replies go to <inbox>.<token>, one token per publish, counted up for the sink's life.
        self._inbox = ""
        self._reply_len = 0
        self._next_token = 0
        self._acks: _Acks | None = None
        self._stream_header = f"\r\n{EXPECTED_STREAM}: {config.stream}\r\n\r\n".encode()
        self._log = log.get(sink=config.name)

    @property
    def server(self) -> str | None:
        """``host:port`` of the server the sink is connected to, or None."""
        nc = self._nc
        if nc is None or not nc.is_connected or nc.connected_url is None:
            return None
        return nc.connected_url.netloc

    # --- connection ---------------------------------------------------------------------------

    async def open(self, ctx: SinkContext) -> None:
        """Connect and check (or create) the stream; a server not reachable is retryable."""
        await self._ready()

    def _options(self) -> dict[str, Any]:
        c = self.config
        options: dict[str, Any] = {
            "servers": list(c.servers),
            "name": f"tradebus:{c.name}",
            "allow_reconnect": False,  # see the module docstring: a cut closes the client
            # ... yet the first connect goes round every server until ``connect_timeout``.
            "max_reconnect_attempts": -1,
            "reconnect_time_wait": c.reconnect_wait,
            "connect_timeout": c.connect_timeout,
            "error_cb": self._on_error,
            "closed_cb": self._on_closed,
        }
        if c.user is not None and c.password is not None:
            options["user"] = c.user.reveal()
            options["password"] = c.password.reveal()
        if c.token is not None:
            options["token"] = c.token.reveal()
        if c.creds_file is not None:
            options["user_credentials"] = c.creds_file
        if c.tls_ca_file or c.tls_cert_file or any(s.startswith("tls://") for s in c.servers):
            options["tls"] = self._tls()
        return options

    def _tls(self) -> ssl.SSLContext:
        c = self.config
        try:
            context = ssl.create_default_context(cafile=c.tls_ca_file)
            if c.tls_cert_file and c.tls_key_file:
                context.load_cert_chain(c.tls_cert_file, c.tls_key_file)
        except (OSError, ssl.SSLError) as exc:
            raise FatalSinkError(
                f"sink {self.name}: TLS files unusable: {_describe(exc)}"
            ) from None
        return context

    async def _connect(self) -> JetStreamContext:
        if self._js is not None and self._nc is not None and not self._nc.is_closed:
            return self._js
        options = self._options()
        budget = self.config.connect_timeout * len(self.config.servers)
        self.last_error = None  # what error_cb reports now says why this attempt fails
        nc = _AckClient()
        try:
            # With attempts unlimited, nats-py's first connect retries forever: bound it, giving
            # each server its own connect_timeout.
            await asyncio.wait_for(nc.connect(**options), budget)
        except _NATS_FAILURES as exc:
            await self._discard(nc)
            seen = self.last_error if isinstance(exc, asyncio.TimeoutError) else None
            raise RetryableSinkError(
                f"sink {self.name}: cannot connect to NATS ({len(self.config.servers)} server(s))"
                f" within {budget}s: {seen or _describe(exc)}"
            ) from None
        except asyncio.CancelledError:
            await self._discard(nc)
            raise
        inbox = nc.new_inbox()
        try:
            sub = await nc.subscribe(f"{inbox}.>", cb=self._on_ack_msg)
        except _NATS_FAILURES as exc:
            await self._discard(nc)
            raise RetryableSinkError(
                f"sink {self.name}: cannot subscribe to acks: {_describe(exc)}"
            ) from None
        nc.ack_sid, nc.on_ack = sub._id, self._on_ack
        self._nc, self._inbox, self._reply_len = nc, inbox, len(inbox) + 1
        self._js = nc.jetstream(timeout=self.config.ack_timeout)  # stream management only
        self._acks = None
        self._lost = asyncio.get_running_loop().create_future()
        self._connections += 1
        if self._connections > 1:
            self.reconnects += 1
        url = nc.connected_url
        self._log.info(
            "nats_reconnected" if self._connections > 1 else "nats_connected",
            server=url.netloc if url is not None else "",
        )
        return self._js

    async def _discard(self, nc: Client) -> None:
        try:
            # Bounded: closing a client whose TLS upgrade failed waits forever on its transport.
            await asyncio.wait_for(nc.close(), self.config.connect_timeout)
        except _NATS_FAILURES as exc:
            self._log.debug("nats_close_failed", error=_describe(exc))

    async def _ready(self) -> JetStreamContext:
        js = await self._connect()
        if not self._stream_ready:
            await self._ensure_stream(js)
            self._stream_ready = True
        return js

    async def _ensure_stream(self, js: JetStreamContext) -> None:
        c = self.config
        try:
            allows = await self._allows_batches(js)
        except nats.js.errors.NotFoundError:
            if not c.create_stream:
                raise FatalSinkError(
                    f"sink {self.name}: JetStream stream {c.stream!r} does not exist"
                    " and create_stream is false"
                ) from None
            allows = await self._create_stream(js)
        except _NATS_FAILURES as exc:
            raise RetryableSinkError(
                f"sink {self.name}: cannot look up stream {c.stream!r}: {_describe(exc)}"
            ) from None
        if c.publish == "batched" and not allows:
            raise FatalSinkError(
                f"sink {self.name}: stream {c.stream!r} does not allow batched publishing"
                ' (allow_batched, nats-server 2.14+): set publish = "each" or "auto"'
            )
        batched = allows and c.publish != "each"
        if batched != self.batched:  # the first lookup, or the stream changed
            self._log.info(
                "nats_publish_mode", stream=c.stream, publish="batched" if batched else "each"
            )
        self.batched = batched

    async def _allows_batches(self, js: JetStreamContext) -> bool:
        """Whether the stream takes fast-ingest batches (nats-py's StreamConfig drops the
        field, so the answer is read as sent)."""
        info = await js._api_request(
            f"{js._prefix}.STREAM.INFO.{self.config.stream}", b"", timeout=js._timeout
        )
        config = info.get("config")
        return isinstance(config, dict) and config.get("allow_batched") is True

    def _server_batches(self) -> bool:
        nc = self._nc
        info = nc._server_info if nc is not None else {}
        found = re.match(r"(\d+)\.(\d+)\.", str(info.get("version", "")))
        return found is not None and (int(found[1]), int(found[2])) >= (2, 14)

    async def _create_stream(self, js: JetStreamContext) -> bool:
        """Create the stream; whether it takes fast-ingest batches."""
        c = self.config
        config = StreamConfig(
            name=c.stream,
            subjects=self.subjects.stream_subjects,
            num_replicas=c.replicas,
            max_age=c.max_age or None,
            max_bytes=c.max_bytes,
            duplicate_window=c.duplicate_window,
        )
        body = config.as_dict()
        batches = c.publish != "each" and self._server_batches()
        if batches:
            body["allow_batched"] = True  # a field nats-py's StreamConfig does not know
        try:
            await js._api_request(
                f"{js._prefix}.STREAM.CREATE.{c.stream}",
                msgspec.json.encode(body),
                timeout=js._timeout,
            )
        except nats.js.errors.BadRequestError as exc:
            # Another daemon may have created it a moment ago: then it is there, as wanted.
            try:
                return await self._allows_batches(js)
            except _NATS_FAILURES:
                raise FatalSinkError(
                    f"sink {self.name}: cannot create stream {c.stream!r}: {_describe(exc)}"
                ) from None
        except _NATS_FAILURES as exc:
            raise RetryableSinkError(
                f"sink {self.name}: cannot create stream {c.stream!r}: {_describe(exc)}"
            ) from None
        self._log.info("nats_stream_created", stream=c.stream, subjects=config.subjects)
        return batches

    async def _on_error(self, exc: Exception) -> None:
        self.last_error = _describe(exc)
        self._log.warning("nats_error", error=_describe(exc))

    async def _on_closed(self) -> None:
        if self._nc is None:
            return  # closed by ``close``, not lost
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)
            self.disconnects += 1
            self._log.warning("nats_disconnected")

    # --- writing ------------------------------------------------------------------------------

    # A batch goes out as raw HPUB frames, built here into one buffer per window and handed to
    # the client's send queue, and the acks come back through ``_AckClient``, counted into one
    # ``_Acks`` per write: no Msg object, header dict, future or queue hop per event, which
    # costs a third of ``Client.publish`` with a future per ack (benchmarks/README.md).
    def _on_ack(self, subject: bytes, data: bytes, headers: bytes | None) -> None:
        acks = self._acks
        if acks is None:
            return  # no write waits: the answer to a batch given up on (it is retried anyway)
        if acks.batch:
            self._on_flow(acks, subject, data, headers)
            return
        try:
            k = int(subject[self._reply_len :]) - acks.base
        except ValueError:
            return
        if not 0 <= k < acks.size or acks.seen[k]:
            return
        acks.seen[k] = 1
        if headers and not data:
            acks.fail(_status(headers))
        else:
            answer = _read(self._ack_decoder, data, _UNREADABLE)
            if answer.error is not None:
                acks.fail(answer.error)
            else:
                acks.duplicates += answer.duplicate
        acks.got += 1
        acks.wake()

    def _on_flow(self, acks: _Acks, subject: bytes, data: bytes, headers: bytes | None) -> None:
        if not subject.startswith(acks.batch):
            return  # an earlier batch's
        # The message this answers: <prefix><n>.<op>.$FI
        at = subject[len(acks.batch) :].split(b".", 1)[0]
        n = int(at) if at.isdigit() else 0
        if headers and not data:
            acks.abandon(_status(headers), n)
        else:
            frame = _read(self._frame_decoder, data, _UNREADABLE_FRAME)
            if frame.error is not None:
                acks.abandon(frame.error, n)
            elif frame.type == "ack":
                acks.got = max(acks.got, min(frame.seq, acks.size))
            elif frame.type in ("gap", "err"):  # a gap (or, with gaps allowed, an error)
                acks.abandon(_ApiError(description=f"{frame.type} at message {frame.seq}"), n)
            elif frame.batch:  # the batch's PubAck: the server ends one it gave up on so too
                if frame.count == acks.size:
                    acks.got = acks.size
                else:
                    acks.abandon(_ApiError(description="the batch ended short"), frame.count + 1)
        acks.wake()

    async def _on_ack_msg(self, msg: Msg) -> None:
        # Only reached if a nats-py release stopped calling ``_process_msg`` (see _AckClient):
        # slower, but the same answers.
        raw = msg.headers and msg.headers.get("Status")
        self._on_ack(msg.subject.encode(), msg.data, f"NATS/1.0 {raw}".encode() if raw else None)

    async def write(self, batch: Batch) -> None:
        if not batch.count:
            return  # a filtered-out stretch: it only moves the cursor
        await self._ready()
        nc = self._nc
        assert nc is not None
        lines = list(_lines(batch.chunks))
        size = len(lines)
        inflight = self.config.max_inflight
        flow = max(min(FLOW, inflight // 4), 1)
        if self.batched:
            self._batches += 1
            # The last token before the flow is the batch's id; the inbox's own makes it unique.
            prefix = f"{self._inbox}.{self._inbox[7:]}{self._batches}.{flow}.fail."
            acks = self._acks = _Acks(0, size, prefix.encode())
        else:
            acks = self._acks = _Acks(self._next_token, size)
            self._next_token += size
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.ack_timeout
        step = max(inflight // 2, 1)
        try:
            for first in range(0, size, step):
                window = lines[first : first + step]
                await self._await_acks(acks, first + len(window) - inflight, deadline)
                if acks.failure is not None:
                    break  # an abandoned batch: the rest would only be refused
                if nc.is_closed or not nc.is_connected:
                    raise self._retry("publish failed: connection lost")
                out = self._window(acks, window, first, nc.max_payload)
                try:
                    await nc._send_command(out)
                    await nc._flush_pending()
                except _NATS_FAILURES as exc:
                    raise self._retry(f"publish failed: {_describe(exc)}") from None
            await self._await_acks(acks, size, deadline)
        finally:
            self._acks = None
        self.acked += size - acks.refused
        self.duplicates += acks.duplicates
        if log.DEBUG:
            self._log.debug(
                "nats_batch_acked", events=size, refused=acks.refused, duplicates=acks.duplicates
            )
        failure = acks.failure
        if failure is not None:
            if failure is _NO_STREAM or acks.batch:
                # The stream went away, or may no longer take batches: look it up again.
                self._stream_ready = False
            what = (
                f"a batch of {size} refused at message {acks.at}"
                if acks.batch
                else f"{acks.refused} of {size} publishes refused"
            )
            raise self._retry(
                f"{what}: {failure.description} (code {failure.code}, {failure.err_code})"
            )

    def _window(self, acks: _Acks, window: Sequence[bytes], first: int, max_payload: int) -> bytes:
        """The frames of the write's messages from ``first`` on; a batch's last window ends it."""
        if not acks.batch:
            token = acks.base + first
            replies = [f"{self._inbox}.{t}" for t in range(token, token + len(window))]
            return self._frames(window, replies, max_payload)
        prefix = acks.batch.decode()
        last = first + len(window)
        replies = [f"{prefix}{n}.{_FAST_NEXT}" for n in range(first + 1, last + 1)]
        if not first:
            replies[0] = f"{prefix}1.{_FAST_FIRST}"
        out = self._frames(window, replies, max_payload)
        if last < acks.size:
            return out
        # The end marker: not stored, and answered with the batch's PubAck.
        end = f"PUB {self._last_subject} {prefix}{acks.size + 1}.{_FAST_END} 0\r\n\r\n"
        return out + end.encode()

    def _frames(self, window: Sequence[bytes], replies: Sequence[str], max_payload: int) -> bytes:
        """The HPUB frames of ``window``, each with its reply subject."""
        decode = self._decoder.decode
        render = self.subjects.render
        stream = self._stream_header
        fixed = len(_HEADER_START) + len(stream)
        out = bytearray()
        subject = ""
        for body, reply in zip(window, replies, strict=True):
            if len(body) > max_payload:
                raise self._retry(
                    f"an event of {len(body)} bytes is over the server's max_payload"
                    f" ({max_payload})"
                )
            event = decode(body)
            mid = _msg_id(event.id)
            hlen = fixed + len(mid)
            subject = render(event)
            out += f"HPUB {subject} {reply} {hlen} {hlen + len(body)}\r\n".encode()
            out += _HEADER_START
            out += mid
            out += stream
            out += body
            out += b"\r\n"
        self._last_subject = subject
        return bytes(out)

    async def _await_acks(self, acks: _Acks, want: int, deadline: float) -> None:
        """Return once ``want`` acks of the write are in; raise on a timeout or a cut."""
        lost = self._lost
        assert lost is not None
        if acks.got >= want:
            return
        if lost.done():
            raise self._retry(f"{acks.size - acks.got} acks missing: connection lost")
        loop = asyncio.get_running_loop()
        acks.want = want
        waiter = acks.waiter = loop.create_future()
        timeout = max(deadline - loop.time(), 0)
        try:
            await asyncio.wait([waiter, lost], timeout=timeout, return_when="FIRST_COMPLETED")
        finally:
            acks.waiter = None
            waiter.cancel()
        if acks.got < want:
            why = "connection lost" if lost.done() else f"not in within {self.config.ack_timeout}s"
            raise self._retry(f"{acks.size - acks.got} acks missing: {why}")

    def _retry(self, why: str) -> RetryableSinkError:
        self.last_error = why
        return RetryableSinkError(f"sink {self.name}: {why}")

    async def close(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None:
            # Every write before this returned, so nothing awaits an ack: a drain would only
            # wait (up to 30 s) on a server that stopped answering.
            await self._discard(nc)

    def reopen(self) -> None:
        pass

    def metrics(self) -> dict[str, float]:
        return {
            "acked": self.acked,
            "duplicates": self.duplicates,
            "disconnects": self.disconnects,
            "reconnects": self.reconnects,
        }

    def errors(self) -> tuple[str | None, str | None]:
        return None, self.last_error


PLUGIN = SinkPlugin("nats", NatsSinkConfig, NatsSink)
