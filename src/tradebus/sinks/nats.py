"""The NATS JetStream sink: every event of a batch published, the batch done when all are acked.

A batch's messages are published pipelined (up to ``max_inflight`` awaiting their PubAck) and
``write`` returns only once JetStream acknowledged every one of them: only then may the bus move
this sink's cursor. A missing ack within ``ack_timeout``, a lost connection or a JetStream error
raises ``RetryableSinkError`` and the whole batch is published again later. What the first try
had stored is then dropped by JetStream itself: every message carries ``Nats-Msg-Id`` = the
event id, and the stream drops a repeated id inside its ``duplicate_window`` (the ack says
``duplicate``, counted here).

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
from typing import Any

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


# No stream listens on the subject: the server answers the reply subject with status 503.
_NO_STREAM = _ApiError(code=503, description="no stream takes this subject")
_UNREADABLE = _PubAck(error=_ApiError(description="unreadable ack"))


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _status(code: bytes) -> _ApiError:
    try:
        number = int(code)
    except ValueError:
        number = 0
    return _ApiError(code=number, description="status instead of an ack")


_HEADER_START = f"NATS/1.0\r\n{MSG_ID}: ".encode()
# Where the three digits of a status header ("NATS/1.0 503 ...") are.
_STATUS_CODE = slice(len(b"NATS/1.0 "), len(b"NATS/1.0 ") + 3)
_UNSAFE_ID = re.compile(r"[%\x00-\x1f\x7f]")


def _msg_id(event_id: str) -> bytes:
    """The Nats-Msg-Id header value of an event: its id, with what would end or break a header
    line percent-encoded (an id can hold upstream text). Injective, so two ids never merge."""
    if _UNSAFE_ID.search(event_id) is not None:
        event_id = _UNSAFE_ID.sub(lambda m: f"%{ord(m.group()):02X}", event_id)
    return event_id.encode()


class _Acks:
    """The acks of one write: message ``k`` of it was published with reply token ``base + k``."""

    __slots__ = (
        "base",
        "duplicates",
        "failure",
        "got",
        "refused",
        "seen",
        "size",
        "waiter",
        "want",
    )

    def __init__(self, base: int, size: int) -> None:
        self.base = base
        self.size = size
        self.seen = bytearray(size)
        self.got = 0
        self.duplicates = 0
        self.refused = 0
        self.failure: _ApiError | None = None
        self.want = size + 1  # nobody waits yet
        self.waiter: asyncio.Future[None] | None = None

    def fail(self, error: _ApiError) -> None:
        self.refused += 1
        if self.failure is None:
            self.failure = error


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
            sub = await nc.subscribe(f"{inbox}.*", cb=self._on_ack_msg)
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
            await js.stream_info(c.stream)
        except nats.js.errors.NotFoundError:
            if not c.create_stream:
                raise FatalSinkError(
                    f"sink {self.name}: JetStream stream {c.stream!r} does not exist"
                    " and create_stream is false"
                ) from None
            await self._create_stream(js)
        except _NATS_FAILURES as exc:
            raise RetryableSinkError(
                f"sink {self.name}: cannot look up stream {c.stream!r}: {_describe(exc)}"
            ) from None

    async def _create_stream(self, js: JetStreamContext) -> None:
        c = self.config
        config = StreamConfig(
            name=c.stream,
            subjects=self.subjects.stream_subjects,
            num_replicas=c.replicas,
            max_age=c.max_age or None,
            max_bytes=c.max_bytes,
            duplicate_window=c.duplicate_window,
        )
        try:
            await js.add_stream(config)
        except nats.js.errors.BadRequestError as exc:
            # Another daemon may have created it a moment ago: then it is there, as wanted.
            try:
                await js.stream_info(c.stream)
            except _NATS_FAILURES:
                raise FatalSinkError(
                    f"sink {self.name}: cannot create stream {c.stream!r}: {_describe(exc)}"
                ) from None
        except _NATS_FAILURES as exc:
            raise RetryableSinkError(
                f"sink {self.name}: cannot create stream {c.stream!r}: {_describe(exc)}"
            ) from None
        else:
            self._log.info("nats_stream_created", stream=c.stream, subjects=config.subjects)

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
        try:
            k = int(subject[self._reply_len :]) - acks.base
        except ValueError:
            return
        if not 0 <= k < acks.size or acks.seen[k]:
            return
        acks.seen[k] = 1
        if headers and not data:
            # A status line instead of an ack: 503 = no stream takes the subject.
            code = headers[_STATUS_CODE]
            acks.fail(_NO_STREAM if code == b"503" else _status(code))
        else:
            try:
                answer = self._ack_decoder.decode(data)
            except msgspec.DecodeError:
                answer = _UNREADABLE
            if answer.error is not None:
                acks.fail(answer.error)
            else:
                acks.duplicates += answer.duplicate
        acks.got += 1
        if acks.got >= acks.want and acks.waiter is not None and not acks.waiter.done():
            acks.waiter.set_result(None)

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
        base = self._next_token
        self._next_token += size
        acks = self._acks = _Acks(base, size)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.ack_timeout
        inflight = self.config.max_inflight
        step = max(inflight // 2, 1)
        try:
            for first in range(0, size, step):
                window = lines[first : first + step]
                await self._await_acks(acks, first + len(window) - inflight, deadline)
                if nc.is_closed or not nc.is_connected:
                    raise self._retry("publish failed: connection lost")
                out = self._frames(window, base + first, nc.max_payload)
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
            if failure is _NO_STREAM:
                self._stream_ready = False  # the stream went away: look it up (or create it)
            raise self._retry(
                f"{acks.refused} of {size} publishes refused: {failure.description}"
                f" (code {failure.code}, {failure.err_code})"
            )

    def _frames(self, window: Sequence[bytes], token: int, max_payload: int) -> bytes:
        """The HPUB frames of ``window``, reply tokens counted up from ``token``."""
        decode = self._decoder.decode
        render = self.subjects.render
        reply = self._inbox + "."
        stream = self._stream_header
        fixed = len(_HEADER_START) + len(stream)
        out = bytearray()
        for body in window:
            if len(body) > max_payload:
                raise self._retry(
                    f"an event of {len(body)} bytes is over the server's max_payload"
                    f" ({max_payload})"
                )
            event = decode(body)
            mid = _msg_id(event.id)
            hlen = fixed + len(mid)
            out += f"HPUB {render(event)} {reply}{token} {hlen} {hlen + len(body)}\r\n".encode()
            out += _HEADER_START
            out += mid
            out += stream
            out += body
            out += b"\r\n"
            token += 1
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
