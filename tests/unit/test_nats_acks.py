"""The NATS sink's ack parser: the same acks, in the same order, as nats-py's own parser,
whatever the reads the stream arrives in, and everything else passed on as nats-py would."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nats.protocol.parser import Parser

from tradebus import config as cfg
from tradebus.sinks.nats import NatsSink, _AckClient, _AckParser, _Acks

ACK_SID = 7
INBOX = b"_INBOX.abc"


class Recorder:
    """What a client is told by its parser: acks through ``on_ack``, the rest as nats-py calls
    it (``_process_msg`` for another subscription or a message with headers, pings, pongs)."""

    def __init__(self, fast: bool) -> None:
        self.ack_sid = ACK_SID
        self.got: list[tuple[Any, ...]] = []
        self.on_ack = self._ack if fast else None

    def _ack(self, subject: bytes, data: bytes, headers: bytes | None) -> None:
        self.got.append(("ack", bytes(subject), bytes(data), headers))

    async def _process_msg(
        self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
    ) -> None:
        if sid == ACK_SID and self.on_ack is not None:
            self.on_ack(subject, data, headers)
            return
        if sid == ACK_SID:  # nats-py's path to the same callback
            self._ack(subject, data, headers)
            return
        self.got.append(("msg", sid, bytes(subject), bytes(reply), bytes(data), headers))

    async def _process_ping(self) -> None:
        self.got.append(("ping",))

    async def _process_pong(self) -> None:
        self.got.append(("pong",))


def ack(token: int, seq: int, duplicate: bool = False) -> bytes:
    body = b'{"stream":"S","seq":%d%s}' % (seq, b',"duplicate":true' if duplicate else b"")
    return b"MSG %s.%d %d %d\r\n%s\r\n" % (INBOX, token, ACK_SID, len(body), body)


def error_ack(token: int) -> bytes:
    headers = b"NATS/1.0 503\r\n\r\n"
    return b"HMSG %s.%d %d %d %d\r\n%s\r\n" % (
        INBOX,
        token,
        ACK_SID,
        len(headers),
        len(headers),
        headers,
    )


def other(sid: int) -> bytes:
    return b"MSG orders.x %d _INBOX.r.1 5\r\nhello\r\n" % sid


def parse(stream: bytes, cuts: list[int], fast: bool) -> list[tuple[Any, ...]]:
    client = Recorder(fast)
    parser = (_AckParser if fast else Parser)(client)

    async def feed() -> None:
        last = 0
        for cut in [*sorted(cuts), len(stream)]:
            await parser.parse(stream[last:cut])
            last = cut

    asyncio.run(feed())
    return client.got


pieces = st.one_of(
    st.builds(ack, st.integers(0, 10**6), st.integers(1, 10**9), st.booleans()),
    st.builds(error_ack, st.integers(0, 10**6)),
    st.builds(other, st.sampled_from([1, 17, 70, 777])),
    st.just(b"PING\r\n"),
    st.just(b"PONG\r\n"),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(pieces, max_size=40), st.data())
def test_any_reads_give_what_nats_pys_parser_gives(parts: list[bytes], data: st.DataObject) -> None:
    """Acks, error acks, other subscriptions' messages, pings and pongs, cut anywhere."""
    stream = b"".join(parts)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=8))
    assert parse(stream, cuts, fast=True) == parse(stream, [], fast=False)


def test_a_read_of_acks_goes_to_on_ack_in_order() -> None:
    """The common read: many acks back to back, then one cut in the middle of its payload."""
    stream = b"".join(ack(k, 100 + k) for k in range(50))
    got = parse(stream, [len(stream) - 3], fast=True)
    assert [g[1] for g in got] == [b"%s.%d" % (INBOX, k) for k in range(50)]
    assert got[-1][2] == b'{"stream":"S","seq":149}'


# --- a fast-ingest batch's answers ------------------------------------------------------------

PREFIX = b"_INBOX.abc.abc1.512.fail."


def flow_sink() -> tuple[NatsSink, _Acks]:
    sink = NatsSink(msgspec.convert({"name": "bus", "type": "nats"}, cfg.NatsSinkConfig))
    return sink, _Acks(0, 10, PREFIX)


def reply(n: int, op: int = 1) -> bytes:
    return PREFIX + b"%d.%d.$FI" % (n, op)


def test_flow_acks_move_what_is_stored_and_the_batch_ack_ends_it() -> None:
    sink, acks = flow_sink()
    sink._on_flow(acks, reply(1, 0), b'{"type":"ack","seq":0,"msgs":500}', None)
    sink._on_flow(acks, reply(4), b'{"type":"ack","seq":4,"msgs":4}', None)
    sink._on_flow(acks, reply(2), b'{"type":"ack","seq":2,"msgs":4}', None)  # late: no step back
    assert (acks.got, acks.failure) == (4, None)
    sink._on_flow(acks, reply(11, 3), b'{"stream":"S","seq":90,"batch":"abc1","count":10}', None)
    assert (acks.got, acks.failure, acks.refused) == (10, None, 0)


def test_another_batchs_answers_are_not_this_ones() -> None:
    sink, acks = flow_sink()
    other = b"_INBOX.abc.abc0.512.fail.11.3.$FI"
    sink._on_flow(acks, other, b'{"stream":"S","seq":9,"batch":"abc0","count":10}', None)
    assert (acks.got, acks.failure) == (0, None)


def test_a_refusal_ends_the_batch_at_its_message() -> None:
    sink, acks = flow_sink()
    sink._on_flow(acks, reply(4), b'{"type":"ack","seq":2,"msgs":2}', None)
    body = b'{"error":{"code":400,"err_code":10054,"description":"too big"},"stream":"S","seq":0}'
    sink._on_flow(acks, reply(3), body, None)
    sink._on_flow(acks, reply(4), b'{"type":"gap","last_seq":3,"seq":4}', None)  # the first says
    assert acks.failure is not None
    assert (acks.failure.description, acks.at, acks.refused, acks.got) == ("too big", 3, 8, 10)


@pytest.mark.parametrize(
    ("data", "headers", "why"),
    [
        (b"", b"NATS/1.0 503\r\n\r\n", "no stream takes this subject"),
        (b"not json", None, "unreadable ack"),
        (b'{"type":"gap","last_seq":3,"seq":5}', None, "gap at message 5"),
        (b'{"stream":"S","seq":7,"batch":"abc1","count":6}', None, "the batch ended short"),
    ],
)
def test_what_else_ends_a_batch_says_why(data: bytes, headers: bytes | None, why: str) -> None:
    sink, acks = flow_sink()
    sink._on_flow(acks, reply(5), data, headers)
    assert acks.failure is not None
    assert (acks.failure.description, acks.got) == (why, 10)


@pytest.mark.parametrize(
    ("version", "batches"),
    [("2.15.1", True), ("2.14.0", True), ("2.13.9", False), ("2.10.26", False), ("", False)],
)
def test_a_created_stream_asks_for_batches_only_from_a_server_that_has_them(
    version: str, batches: bool
) -> None:
    sink, _ = flow_sink()
    sink._nc = cast("_AckClient", SimpleNamespace(_server_info={"version": version}))
    assert sink._server_batches() is batches
