"""The NATS JetStream sink against real ``nats-server -js`` processes on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import re
import signal
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec
import nats
import pytest
import trustme
from nats.aio.msg import Msg
from nats.js.api import RawStreamMsg

from tests import tools
from tests.sinkctx import context
from tradebus import config as cfg
from tradebus import log
from tradebus.errors import FatalSinkError, RetryableSinkError
from tradebus.plugin import sink_factory
from tradebus.schemas.events import Event, PositionData, PositionUpdated, QuoteData, QuoteUpdated
from tradebus.sinks.base import Batch
from tradebus.sinks.nats import NatsSink, _AckClient

_LISTENING = re.compile(rb"Listening for client connections on [^:\s]+:(\d+)")
_names = itertools.count(1)


class NatsServer:
    """One ``nats-server -js`` process; ``start`` returns once it says it is ready."""

    def __init__(self, store: Path, *extra: str) -> None:
        self.binary = tools.dev_program("nats-server")
        self.store = store
        self.extra = extra
        self.port = -1  # the server picks a free one at the first start, and keeps it after
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(  # noqa: S603 - our own fixed argv
            [
                *(self.binary, "-js", "-a", "127.0.0.1", "-p", str(self.port)),
                *("-sd", str(self.store), *self.extra),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        assert self.proc.stderr is not None
        seen = []
        for line in self.proc.stderr:  # blocks until the server logs, no sleeping
            seen.append(line)
            if m := _LISTENING.search(line):
                self.port = int(m.group(1))
            if b"Server is ready" in line:
                return
        pytest.fail(f"nats-server exited before it was ready: {b''.join(seen)[-2000:]!r}")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            if self.proc.stderr is not None:
                self.proc.stderr.close()
            self.proc = None


@contextlib.contextmanager
def running(store: Path, *extra: str) -> Iterator[NatsServer]:
    server = NatsServer(store, *extra)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def logged() -> Iterator[io.StringIO]:
    """The rendered log lines of the test (the real chain, redaction included)."""
    stream = io.StringIO()
    log.configure("debug", stream=stream)
    try:
        yield stream
    finally:
        log.configure("debug")  # what the session-wide fixture set up


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    with running(tmp_path_factory.mktemp("nats")) as s:
        yield s


def sink_config(server: NatsServer, **overrides: Any) -> cfg.NatsSinkConfig:
    """A config with its own stream and subject prefix, so tests sharing a server never meet."""
    n = next(_names)
    table: dict[str, Any] = {
        "name": "bus",
        "type": "nats",
        "servers": [server.url],
        "stream": f"T{n}",
        "subject_prefix": f"t{n}",
        "ack_timeout": 2.0,
        "connect_timeout": 2.0,
        "reconnect_wait": 0.1,
    }
    table.update(overrides)
    return msgspec.convert(table, cfg.NatsSinkConfig, dec_hook=cfg.dec_hook)


def quote(n: int, symbol: str | None = "XAUUSD", source: str = "ttmt-main") -> QuoteUpdated:
    return QuoteUpdated(
        id=f"{source}:{n}",
        seq=n,
        source=source,
        provider="ttmt",
        time="2026-06-09T14:32:01.123Z",
        received="2026-06-09T14:32:01.125Z",
        symbol=symbol,
        data=QuoteData(bid=2300.0 + n, ask=2300.5 + n),
    )


def position(n: int) -> PositionUpdated:
    return PositionUpdated(
        id=f"ttmt-main:p{n}",
        seq=n,
        source="ttmt-main",
        provider="ttmt",
        time="2026-06-09T14:32:02.000Z",
        received="2026-06-09T14:32:02.001Z",
        account="acc 1",
        symbol="EUR/USD.x",
        data=PositionData(position_id=f"p{n}", volume=0.1),
    )


_encoder = msgspec.json.Encoder()


def batch(events: Sequence[Event]) -> Batch:
    """A batch as the bus builds it: the lines encoded once, the structs kept."""
    return Batch(_encoder.encode_lines(events), len(events), events)


@contextlib.asynccontextmanager
async def opened(config: cfg.NatsSinkConfig) -> AsyncIterator[NatsSink]:
    sink = sink_factory("nats")(config)
    assert isinstance(sink, NatsSink)
    await sink.open(context())
    try:
        yield sink
    finally:
        await sink.close()


async def stored(url: str, stream: str, **connect: Any) -> list[RawStreamMsg]:
    """Every message of ``stream``, in stream order."""
    nc = await nats.connect(url, **connect)
    try:
        jsm = nc.jsm()
        info = await jsm.stream_info(stream)
        return [await jsm.get_msg(stream, seq) for seq in range(1, info.state.messages + 1)]
    finally:
        await nc.close()


async def test_batch_lands_in_order_with_subjects_bodies_and_msg_ids(server: NatsServer) -> None:
    """Every event is stored once, in batch order, on its subject, with its line as the body."""
    config = sink_config(server)
    events: list[Event] = [quote(1), quote(2, symbol=None), position(3), quote(4, symbol="a*b >")]
    first, second = batch(events[:2]), batch(events[2:])
    merged = Batch.merge([first, second])  # a merged batch's lines come in several chunks
    async with opened(config) as sink:
        await sink.write(merged)
        assert (sink.acked, sink.duplicates, sink.last_error) == (4, 0, None)
    msgs = await stored(server.url, config.stream)
    p = config.subject_prefix
    assert [m.subject for m in msgs] == [
        f"{p}.ttmt.quote.updated.XAUUSD",
        f"{p}.ttmt.quote.updated._",
        f"{p}.ttmt.position.updated.EUR_USD_x",
        f"{p}.ttmt.quote.updated.a_b__",
    ]
    assert [m.data for m in msgs] == [_encoder.encode(e) for e in events]
    assert [(m.headers or {}).get("Nats-Msg-Id") for m in msgs] == [e.id for e in events]


@pytest.mark.parametrize("publish", ["batched", "each"])
async def test_republished_batch_is_deduped_by_msg_id(server: NatsServer, publish: str) -> None:
    """The same batch written twice is stored once, in fast batches as with one ack each;
    one ack each also counts what JetStream dropped (a batch's ack does not say)."""
    config = sink_config(server, publish=publish)
    events: list[Event] = [quote(n) for n in range(1, 51)]
    async with opened(config) as sink:
        assert sink.batched == (publish == "batched")
        await sink.write(batch(events))
        await sink.write(batch(events))
        await sink.write(batch([*events[40:], quote(51)]))  # overlapping retry plus one new
        assert (sink.acked, sink.duplicates) == (111, 60 if publish == "each" else 0)
    msgs = await stored(server.url, config.stream)
    assert [(m.headers or {})["Nats-Msg-Id"] for m in msgs] == [
        f"ttmt-main:{n}" for n in range(1, 52)
    ]


async def test_template_subject_and_created_stream_settings(server: NatsServer) -> None:
    """A custom subject template is used, and a created stream gets the configured settings."""
    config = sink_config(server, subject="ev.{source}.{type}", duplicate_window=30.0)
    async with opened(config) as sink:
        await sink.write(batch([quote(1, source="ttmt.main")]))
    (msg,) = await stored(server.url, config.stream)
    assert msg.subject == f"{config.subject_prefix}.ev.ttmt_main.quote.updated"
    nc = await nats.connect(server.url)
    try:
        info = await nc.jsm().stream_info(config.stream)
    finally:
        await nc.close()
    assert info.config.subjects == [f"{config.subject_prefix}.>"]
    assert info.config.duplicate_window == 30.0


async def test_missing_stream_without_create_is_fatal_and_named(server: NatsServer) -> None:
    """With create_stream = false a missing stream is a FatalSinkError naming the stream."""
    config = sink_config(server, create_stream=False, stream="NOSUCHSTREAM")
    sink = NatsSink(config)
    with pytest.raises(FatalSinkError, match="'NOSUCHSTREAM' does not exist"):
        await sink.open(context())
    with pytest.raises(FatalSinkError, match="NOSUCHSTREAM"):
        await sink.write(batch([quote(1)]))
    await sink.close()


async def test_existing_stream_is_used_when_create_is_off(server: NatsServer) -> None:
    """With create_stream = false an existing stream takes the events."""
    first = sink_config(server)
    async with opened(first) as sink:
        await sink.write(batch([quote(1)]))
    second = msgspec.structs.replace(first, create_stream=False)
    async with opened(second) as sink:
        await sink.write(batch([quote(2)]))
    assert len(await stored(server.url, first.stream)) == 2


async def test_unreachable_server_is_retryable(tmp_path: Path) -> None:
    """No server: open and write raise RetryableSinkError within the connect timeout."""
    with running(tmp_path) as gone:
        url = gone.url
    config = sink_config(gone, servers=[url], connect_timeout=0.5)
    sink = NatsSink(config)
    with pytest.raises(RetryableSinkError, match="cannot connect"):
        await sink.open(context())
    with pytest.raises(RetryableSinkError, match="cannot connect"):
        await sink.write(batch([quote(1)]))
    await sink.close()


async def test_server_killed_mid_stream_then_restarted(tmp_path: Path) -> None:
    """Killed between batches and in the middle of one, restarted on the same store: after the
    bus's retries every event is in the stream exactly once, in order."""
    events: list[Event] = [quote(n) for n in range(1, 3001)]
    small, big, rest = batch(events[:50]), batch(events[50:2050]), batch(events[2050:])
    node = NatsServer(tmp_path)
    node.start()
    try:
        config = sink_config(node, ack_timeout=1.0, max_inflight=64)
        async with opened(config) as sink:
            await sink.write(small)
            node.kill()  # between batches
            with pytest.raises(RetryableSinkError):
                await sink.write(big)
            node.start()
            await _write_retrying(sink, big)
            node.kill()  # and again in the middle of one
            node.start()
            await _kill_during(node, sink, rest, after=200)
            assert sink.last_error is not None
            await _write_retrying(sink, rest)
            assert sink.reconnects >= 2
            assert sink.disconnects >= 2
        msgs = await stored(node.url, config.stream)
    finally:
        node.kill()
    assert [(m.headers or {})["Nats-Msg-Id"] for m in msgs] == [e.id for e in events]
    assert [m.data for m in msgs] == [_encoder.encode(e) for e in events]


async def _kill_during(node: NatsServer, sink: NatsSink, b: Batch, *, after: int) -> None:
    """Write ``b``, kill the server once it has seen ``after`` of its messages, restart it."""
    seen = 0
    enough = asyncio.Event()

    async def count(_msg: Msg) -> None:
        nonlocal seen
        seen += 1
        if seen >= after:
            enough.set()

    watcher = await nats.connect(node.url, allow_reconnect=False)
    await watcher.subscribe(f"{sink.config.subject_prefix}.>", cb=count)
    await watcher.flush()
    write = asyncio.create_task(sink.write(b))
    await asyncio.wait_for(enough.wait(), 10)
    node.kill()
    with pytest.raises(RetryableSinkError):
        await write
    with contextlib.suppress(nats.errors.Error):
        await watcher.close()
    assert after <= seen < len(b)
    node.start()


async def _write_retrying(sink: NatsSink, b: Batch | None, attempts: int = 50) -> None:
    """What the bus does: the same batch (None: the open) again after a RetryableSinkError."""
    for _ in range(attempts):
        try:
            await (sink.open(context()) if b is None else sink.write(b))
        except RetryableSinkError:
            await asyncio.sleep(0.05)  # the bus's backoff between tries, not a synchronisation
        else:
            return
    pytest.fail(f"not done after {attempts} tries: {sink.last_error}")


async def test_authenticated_server_works_and_password_is_never_logged(
    tmp_path: Path, logged: io.StringIO
) -> None:
    """user/password connects; the password appears in no log line, also on a refused login."""
    password = "n4ts-pa55word-7f3a"
    with running(tmp_path, "--user", "feeder", "--pass", password) as node:
        good = sink_config(node, user="feeder", password=password)
        async with opened(good) as sink:
            await sink.write(batch([quote(1), quote(2)]))
            assert sink.acked == 2
        msgs = await stored(node.url, good.stream, user="feeder", password=password)
        assert len(msgs) == 2

        bad = sink_config(node, user="feeder", password=password + "-wrong", connect_timeout=0.5)
        refused = NatsSink(bad)
        with pytest.raises(RetryableSinkError) as caught:
            await refused.write(batch([quote(3)]))
        await refused.close()
        assert password not in str(caught.value)
    text = logged.getvalue()
    assert "nats_connected" in text
    assert "nats_error" in text  # the refused login was logged ...
    assert password not in text  # ... without the password
    assert password not in repr(good) + repr(bad)


async def test_token_server_works_and_token_is_never_logged(
    tmp_path: Path, logged: io.StringIO
) -> None:
    """token connects; without it the server refuses, and the token is in no log line."""
    secret_token = "tok-9c2e11b04d-nats"
    with running(tmp_path, "--auth", secret_token) as node:
        async with opened(sink_config(node, token=secret_token)) as sink:
            await sink.write(batch([quote(1)]))
            assert sink.acked == 1
        anonymous = NatsSink(sink_config(node, connect_timeout=0.5))
        with pytest.raises(RetryableSinkError, match="cannot connect"):
            await anonymous.write(batch([quote(2)]))
        await anonymous.close()
    assert "nats_connected" in logged.getvalue()
    assert secret_token not in logged.getvalue()


async def test_batch_without_structs_is_decoded_from_its_lines(server: NatsServer) -> None:
    """A batch of lines only (as read back from a journal) lands with the same subjects."""
    config = sink_config(server)
    events: list[Event] = [quote(1), position(2)]
    async with opened(config) as sink:
        await sink.write(Batch(_encoder.encode_lines(events), 2))
    msgs = await stored(server.url, config.stream)
    assert [(m.subject or "").split(".", 2)[2] for m in msgs] == [
        "quote.updated.XAUUSD",
        "position.updated.EUR_USD_x",
    ]
    assert [m.data for m in msgs] == [_encoder.encode(e) for e in events]


async def test_stalled_server_times_out_then_the_retry_lands_once(tmp_path: Path) -> None:
    """A server that stops answering (SIGSTOP) fails the batch after ack_timeout; once it
    answers again the retried batch is in the stream exactly once."""
    events: list[Event] = [quote(n) for n in range(1, 101)]
    with running(tmp_path) as node:
        config = sink_config(node, ack_timeout=0.5)
        async with opened(config) as sink:
            assert node.proc is not None
            node.proc.send_signal(signal.SIGSTOP)
            try:
                with pytest.raises(RetryableSinkError, match=r"acks missing: not in within 0.5s"):
                    await sink.write(batch(events))
            finally:
                node.proc.send_signal(signal.SIGCONT)
            await _write_retrying(sink, batch(events))
        msgs = await stored(node.url, config.stream)
    assert [(m.headers or {})["Nats-Msg-Id"] for m in msgs] == [e.id for e in events]


async def test_stream_deleted_while_running_is_created_again(server: NatsServer) -> None:
    """A stream removed under a running sink fails one write; the next recreates it."""
    config = sink_config(server)
    async with opened(config) as sink:
        await sink.write(batch([quote(1)]))
        nc = await nats.connect(server.url)
        try:
            assert await nc.jsm().delete_stream(config.stream)
        finally:
            await nc.close()
        with pytest.raises(RetryableSinkError, match="refused"):
            await sink.write(batch([quote(2)]))
        await sink.write(batch([quote(2)]))
    msgs = await stored(server.url, config.stream)
    assert [(m.headers or {})["Nats-Msg-Id"] for m in msgs] == ["ttmt-main:2"]


def certificates(where: Path) -> tuple[Path, Path, Path]:
    """A test CA's certificate, and a certificate for 127.0.0.1 it signed with its key."""
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1")
    ca_pem, cert, key = where / "ca.pem", where / "cert.pem", where / "key.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    return ca_pem, cert, key


async def test_tls_server_is_verified_against_the_given_ca(tmp_path: Path) -> None:
    """With tls_ca_file the sink talks TLS to the server; without it the unknown
    certificate is refused (verification is never off)."""
    ca, cert, key = certificates(tmp_path)
    tls = ("--tls", "--tlscert", str(cert), "--tlskey", str(key))
    with running(tmp_path / "store", *tls) as node:
        tls_url = node.url.replace("nats://", "tls://")
        async with opened(sink_config(node, servers=[tls_url], tls_ca_file=str(ca))) as sink:
            await sink.write(batch([quote(1)]))
            assert sink.acked == 1
        untrusted = NatsSink(sink_config(node, servers=[tls_url], connect_timeout=0.5))
        with pytest.raises(RetryableSinkError, match="CERTIFICATE_VERIFY_FAILED"):
            await untrusted.write(batch([quote(2)]))
        await untrusted.close()
    broken = NatsSink(sink_config(node, tls_ca_file=str(tmp_path / "missing.pem")))
    with pytest.raises(FatalSinkError, match="TLS files unusable"):
        await broken.open(context())


async def test_first_reachable_server_of_several_is_used(
    server: NatsServer, tmp_path: Path
) -> None:
    """With a dead server listed first, the sink connects to the live one and writes."""
    with running(tmp_path) as gone:
        dead = gone.url
    config = sink_config(server, servers=[dead, server.url], connect_timeout=1.0)
    async with opened(config) as sink:
        await sink.write(batch([quote(1)]))
        assert sink.acked == 1
    assert len(await stored(server.url, config.stream)) == 1


async def test_empty_batch_needs_no_server(tmp_path: Path) -> None:
    """A batch of no events (a filtered stretch that only moves the cursor) is done at once."""
    with running(tmp_path) as gone:
        url = gone.url
    sink = NatsSink(sink_config(gone, servers=[url], connect_timeout=0.2))
    await sink.write(Batch(b"", 0, first_seq=5, last_seq=9))
    assert sink.acked == 0
    await sink.close()


def free_ports(n: int) -> list[int]:
    """Ports free right now, for the cluster routes every node must know before it starts."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


async def test_three_node_cluster_survives_a_node_killed_mid_stream(tmp_path: Path) -> None:
    """A stream of 3 replicas on a 3-node cluster: one node (the sink's own) killed mid-stream,
    publishing goes on through the others and the stream holds every event once, in order."""
    routes = free_ports(3)
    route_list = ",".join(f"nats://127.0.0.1:{p}" for p in routes)
    nodes = [
        NatsServer(
            tmp_path / f"n{i}",
            *("--server_name", f"n{i}", "--cluster_name", "c1"),
            *("--cluster", f"nats://127.0.0.1:{routes[i]}", "--routes", route_list),
        )
        for i in range(3)
    ]
    try:
        for node in nodes:
            node.start()
        config = sink_config(nodes[0], servers=[n.url for n in nodes], replicas=3, ack_timeout=2.0)
        events: list[Event] = [quote(n) for n in range(1, 601)]
        batches = [batch(events[i : i + 100]) for i in range(0, 600, 100)]
        sink = NatsSink(config)
        await _write_retrying(
            sink, None, attempts=100
        )  # the cluster elects its JetStream leader first
        try:
            await _write_retrying(sink, batches[0])
            own = next(n for n in nodes if sink.server == f"127.0.0.1:{n.port}")
            own.kill()
            for b in batches[1:]:
                await _write_retrying(sink, b, attempts=200)
            assert sink.reconnects >= 1
        finally:
            await sink.close()
        alive = next(n for n in nodes if n.proc is not None)
        msgs = await stored(alive.url, config.stream)
    finally:
        for node in nodes:
            node.kill()
    assert [(m.headers or {})["Nats-Msg-Id"] for m in msgs] == [e.id for e in events]


@pytest.mark.parametrize("publish", ["batched", "each"])
async def test_ids_that_would_break_a_header_line_are_escaped_and_still_dedupe(
    server: NatsServer, publish: str
) -> None:
    """An id holding CR, LF or % (upstream text can reach ids) is published percent-encoded:
    the header stays one line, the next message is not eaten, and a replay is still dropped."""
    config = sink_config(server, publish=publish)
    odd = [
        msgspec.structs.replace(quote(1), id="ttmt-main:a\r\nNats-Msg-Id: forged"),
        msgspec.structs.replace(quote(2), id="ttmt-main:100%"),
        quote(3),
    ]
    async with opened(config) as sink:
        await sink.write(batch(odd))
        await sink.write(batch(odd))
        dropped = 3 if publish == "each" else 0
        assert (sink.acked, sink.duplicates, sink.last_error) == (6, dropped, None)
    msgs = await stored(server.url, config.stream)
    assert [(m.headers or {}).get("Nats-Msg-Id") for m in msgs] == [
        "ttmt-main:a%0D%0ANats-Msg-Id: forged",
        "ttmt-main:100%25",
        "ttmt-main:3",
    ]
    assert [m.data for m in msgs] == [_encoder.encode(e) for e in odd]


async def test_batch_larger_than_the_window_lands_whole_and_in_order(server: NatsServer) -> None:
    """With max_inflight 8, a 100-event batch goes out in windows that wait for acks."""
    config = sink_config(server, max_inflight=8)
    events: list[Event] = [quote(n) for n in range(100)]
    async with opened(config) as sink:
        await sink.write(batch(events))
        assert (sink.acked, sink.last_error) == (100, None)
    msgs = await stored(server.url, config.stream)
    assert [m.data for m in msgs] == [_encoder.encode(e) for e in events]


@pytest.mark.parametrize("publish", ["batched", "each"])
async def test_acks_still_count_when_the_client_shortcut_is_not_taken(
    server: NatsServer, publish: str
) -> None:
    """If a nats-py release stopped routing acks through ``_process_msg``, they arrive as Msg
    objects on the subscription instead: the write must finish the same way."""
    config = sink_config(server, publish=publish)
    async with opened(config) as sink:
        nc = sink._nc
        assert isinstance(nc, _AckClient)
        nc.ack_sid = -1  # as if the override were never called
        await sink.write(batch([quote(1), quote(2)]))
        assert (sink.acked, sink.duplicates, sink.last_error) == (2, 0, None)
        await sink.write(batch([quote(2)]))
        assert (sink.acked, sink.duplicates) == (3, 1 if publish == "each" else 0)
    msgs = await stored(server.url, config.stream)
    assert [(m.headers or {})["Nats-Msg-Id"] for m in msgs] == ["ttmt-main:1", "ttmt-main:2"]


async def _stream_config(url: str, stream: str) -> dict[str, Any]:
    """The stream's config as the server sends it (nats-py's StreamConfig drops fields it does
    not know, ``allow_batched`` among them)."""
    nc = await nats.connect(url)
    try:
        reply = await nc.request(f"$JS.API.STREAM.INFO.{stream}", b"", timeout=2)
    finally:
        await nc.close()
    config: dict[str, Any] = msgspec.json.decode(reply.data)["config"]
    return config


async def _set_batched(url: str, stream: str, allowed: bool) -> None:
    config = await _stream_config(url, stream)
    config["allow_batched"] = allowed
    nc = await nats.connect(url)
    try:
        reply = await nc.request(
            f"$JS.API.STREAM.UPDATE.{stream}", msgspec.json.encode(config), timeout=2
        )
    finally:
        await nc.close()
    assert "error" not in msgspec.json.decode(reply.data), reply.data


async def test_a_created_stream_takes_fast_batches_and_the_sink_uses_them(
    server: NatsServer, logged: io.StringIO
) -> None:
    """``publish = "auto"`` on a current server: the stream is created with ``allow_batched``,
    the writes go out as fast-ingest batches, and the log says which."""
    config = sink_config(server, max_inflight=16)  # acks every 4 messages, windows of 8
    events: list[Event] = [quote(n) for n in range(1, 38)]
    async with opened(config) as sink:
        assert sink.batched
        await sink.write(batch(events[:1]))
        await sink.write(batch(events[1:]))
        assert (sink.acked, sink.last_error) == (37, None)
    assert (await _stream_config(server.url, config.stream)).get("allow_batched") is True
    msgs = await stored(server.url, config.stream)
    assert [m.data for m in msgs] == [_encoder.encode(e) for e in events]
    lines = [msgspec.json.decode(line) for line in logged.getvalue().splitlines()]
    assert [line.get("publish") for line in lines if line["event"] == "nats_publish_mode"] == [
        "batched"
    ]


async def test_a_stream_without_fast_batches_gets_one_ack_each(server: NatsServer) -> None:
    """An existing stream that does not take batches (an older server or tradebus made it, or
    its owner turned them off) is published to one ack a message under ``auto``."""
    config = sink_config(server, create_stream=False)
    nc = await nats.connect(server.url)
    try:
        await nc.jsm().add_stream(name=config.stream, subjects=[f"{config.subject_prefix}.>"])
    finally:
        await nc.close()
    async with opened(config) as sink:
        assert not sink.batched
        await sink.write(batch([quote(1), quote(2)]))
        await sink.write(batch([quote(2)]))
        assert (sink.acked, sink.duplicates) == (3, 1)
    msgs = await stored(server.url, config.stream)
    assert [(m.headers or {})["Nats-Msg-Id"] for m in msgs] == ["ttmt-main:1", "ttmt-main:2"]


async def test_publish_batched_on_a_stream_without_them_is_fatal_and_says_what_to_set(
    server: NatsServer,
) -> None:
    config = sink_config(server, publish="batched", create_stream=False)
    nc = await nats.connect(server.url)
    try:
        await nc.jsm().add_stream(name=config.stream, subjects=[f"{config.subject_prefix}.>"])
    finally:
        await nc.close()
    sink = NatsSink(config)
    try:
        with pytest.raises(FatalSinkError) as caught:
            await sink.open(context())
    finally:
        await sink.close()
    assert str(caught.value) == (
        f"sink bus: stream '{config.stream}' does not allow batched publishing"
        ' (allow_batched, nats-server 2.14+): set publish = "each" or "auto"'
    )


async def test_publish_each_creates_a_stream_without_fast_batches(server: NatsServer) -> None:
    config = sink_config(server, publish="each")
    async with opened(config) as sink:
        await sink.write(batch([quote(1)]))
        assert not sink.batched
    assert not (await _stream_config(server.url, config.stream)).get("allow_batched")


async def test_batches_turned_off_under_a_running_sink_fail_one_write_then_it_acks_each(
    server: NatsServer,
) -> None:
    """The stream's owner turns ``allow_batched`` off while the sink runs: the batch in hand is
    refused and retried, the retry goes out one ack a message, and every event lands once."""
    config = sink_config(server)
    events: list[Event] = [quote(n) for n in range(1, 11)]
    async with opened(config) as sink:
        await sink.write(batch(events[:5]))
        assert sink.batched
        await _set_batched(server.url, config.stream, allowed=False)
        with pytest.raises(RetryableSinkError, match="refused"):
            await sink.write(batch(events[5:]))
        assert sink.last_error == (
            "a batch of 5 refused at message 1: batch publish is disabled (code 400, 10205)"
        )
        await sink.write(batch(events[5:]))
        assert (sink.batched, sink.acked, sink.duplicates) == (False, 10, 0)
    msgs = await stored(server.url, config.stream)
    assert [(m.headers or {})["Nats-Msg-Id"] for m in msgs] == [e.id for e in events]


async def test_a_message_the_stream_refuses_fails_its_batch_and_nothing_after_it_is_stored(
    server: NatsServer,
) -> None:
    """An event over the stream's ``max_msg_size``: the server abandons the fast batch at it,
    the write fails naming the refusal, and the stream holds what came before it, in order
    (what comes after waits for the retry: order is kept)."""
    config = sink_config(server, create_stream=False)
    nc = await nats.connect(server.url)
    try:
        body = {
            "name": config.stream,
            "subjects": [f"{config.subject_prefix}.>"],
            "max_msg_size": 400,
            "allow_batched": True,
        }
        reply = await nc.request(
            f"$JS.API.STREAM.CREATE.{config.stream}", msgspec.json.encode(body), timeout=2
        )
        assert "error" not in msgspec.json.decode(reply.data), reply.data
    finally:
        await nc.close()
    big = msgspec.structs.replace(quote(3), symbol="X" * 300)
    events: list[Event] = [quote(1), quote(2), big, quote(4), quote(5)]
    async with opened(config) as sink:
        assert sink.batched
        with pytest.raises(RetryableSinkError, match="refused") as caught:
            await sink.write(batch(events))
        assert sink.acked == 2
    assert str(caught.value) == (
        "sink bus: a batch of 5 refused at message 3: message size exceeds maximum allowed"
        " (code 400, 10054)"
    )
    msgs = await stored(server.url, config.stream)
    assert [(m.headers or {})["Nats-Msg-Id"] for m in msgs] == ["ttmt-main:1", "ttmt-main:2"]


async def test_a_write_many_windows_long_lands_whole_as_one_fast_batch(server: NatsServer) -> None:
    """12,000 events in one write with the default window (4,096 unacknowledged, acks every
    500): the server's flow acks pace the windows, and every event lands once, in order."""
    config = sink_config(server)
    events: list[Event] = [quote(n) for n in range(12_000)]
    async with opened(config) as sink:
        assert sink.batched
        await sink.write(batch(events))
        assert (sink.acked, sink.last_error) == (12_000, None)
    nc = await nats.connect(server.url)
    try:
        info = await nc.jsm().stream_info(config.stream)
        first, last = [await nc.jsm().get_msg(config.stream, seq) for seq in (1, 12_000)]
    finally:
        await nc.close()
    assert info.state.messages == 12_000
    assert (first.data, last.data) == (_encoder.encode(events[0]), _encoder.encode(events[-1]))
