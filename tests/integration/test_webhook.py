"""The webhook sink against a real aiohttp receiver on 127.0.0.1: formats, signatures, retries."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import msgspec
import pytest
import trustme
from aiohttp import web
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError
from structlog.testing import capture_logs

from tests.integration.test_nats import free_ports
from tests.sinkctx import context
from tradebus.config import WebhookSinkConfig
from tradebus.errors import RetryableSinkError
from tradebus.plugin import sink_factory
from tradebus.schemas.events import (
    Event,
    QuoteData,
    QuoteUpdated,
    StatusConnected,
    StatusData,
)
from tradebus.secret import Secret
from tradebus.sinks.base import Batch
from tradebus.sinks.webhook import WebhookSink

# The secret of the Standard Webhooks spec's own examples.
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
HEADER_VALUE = "hdr-key-9d1c77aa03"
T = "2026-06-09T14:32:01.123Z"
_enc = msgspec.json.Encoder()


def quote(n: int, source: str = "sim") -> QuoteUpdated:
    return QuoteUpdated(
        id=f"{source}:{n}",
        seq=n,
        source=source,
        provider="ttmt",
        time=T,
        received=T,
        symbol="XAUUSD",
        data=QuoteData(bid=2300.0 + n, ask=2300.5 + n),
    )


def batch(events: Sequence[Event]) -> Batch:
    """A batch as the bus hands it to a sink that does not ask for the structs: lines only."""
    return Batch(b"".join(_enc.encode(e) + b"\n" for e in events), len(events))


def line(event: Event) -> bytes:
    return _enc.encode(event)


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    text: str = ""
    hang: bool = False


@dataclass
class Got:
    at: float
    headers: dict[str, str]
    body: bytes
    content_type: str
    status: int = 0  # what the receiver answered; 0 for a request it left hanging


class Receiver:
    """Answers POST /hook from a script (then ``default``), records every request it read."""

    def __init__(self) -> None:
        self.script: deque[Reply] = deque()
        self.default = Reply()
        self.got: list[Got] = []
        self.url = ""
        self.in_flight = 0
        self.peak = 0
        self.hold_until = 0  # with max_in_flight: answer only once this many are in flight
        self.release = asyncio.Event()  # lets hanging handlers go at teardown
        self._changed = asyncio.Condition()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        reply = self.script.popleft() if self.script else self.default
        got = Got(
            asyncio.get_running_loop().time(),
            dict(request.headers),
            body,
            request.content_type,
            0 if reply.hang else reply.status,  # a hung request is never answered in time
        )
        async with self._changed:
            self.got.append(got)
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            self._changed.notify_all()
        try:
            if reply.hang:
                await self.release.wait()
            if self.hold_until:
                async with self._changed:
                    await asyncio.wait_for(
                        self._changed.wait_for(lambda: self.peak >= self.hold_until), 5
                    )
        finally:
            self.in_flight -= 1
        return web.Response(status=reply.status, headers=reply.headers, text=reply.text)

    async def wait_for_requests(self, n: int) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: len(self.got) >= n), 5)

    def accepted(self) -> list[Got]:
        return [g for g in self.got if 200 <= g.status < 300]


@contextlib.asynccontextmanager
async def serving(tls: ssl.SSLContext | None = None, port: int = 0) -> AsyncIterator[Receiver]:
    r = Receiver()
    app = web.Application()
    app.router.add_post("/hook", r.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=tls)
    await site.start()
    r.url = f"{'https' if tls else 'http'}://127.0.0.1:{runner.addresses[0][1]}/hook"
    try:
        yield r
    finally:
        r.release.set()
        await runner.cleanup()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with serving() as r:
        yield r


@pytest.fixture
async def tls_receiver() -> AsyncIterator[Receiver]:
    """A receiver over HTTPS whose certificate comes from a CA the system does not trust."""
    cert = trustme.CA().issue_cert("127.0.0.1")
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(tls)
    async with serving(tls) as r:
        yield r


def config(url: str, **kw: Any) -> WebhookSinkConfig:
    settings: dict[str, Any] = {
        "secret": Secret(SECRET),
        "headers": {"X-Api-Key": Secret(HEADER_VALUE)},
        "retry_base": 0.01,
        "retry_cap": 0.02,
        "timeout": 5.0,
    }
    settings.update(kw)
    return WebhookSinkConfig(name="hook", url=url, **settings)


@pytest.fixture
async def sinks(tmp_path: Path) -> AsyncIterator[list[WebhookSink]]:
    opened: list[WebhookSink] = []
    yield opened
    for s in opened:
        await s.close()


async def open_sink(
    sinks: list[WebhookSink],
    url: str,
    state_dir: Path | None = None,
    told: list[str] | None = None,
    **kw: Any,
) -> WebhookSink:
    """A sink opened on ``url``, its dead letters written in ``state_dir`` and told to ``told``."""
    s = WebhookSink(config(url, **kw))
    await s.open(context(state_dir, told))
    sinks.append(s)
    return s


def verify(got: Got, secret: str = SECRET) -> Any:
    """What the spec's reference library makes of one received request."""
    return Webhook(secret).verify(got.body, got.headers)


def verify_raw(got: Got) -> None:
    """The reference library's check of a body that is not one JSON document (jsonl)."""
    Webhook(SECRET).verify(got.body, got.headers, json_parse=False)


# --- formats ----------------------------------------------------------------------------------


async def test_factory_builds_the_webhook_sink(receiver: Receiver) -> None:
    """``type = "webhook"`` is registered with the sink factory."""
    assert sink_factory("webhook") is WebhookSink


async def test_json_is_one_signed_request_per_event(
    receiver: Receiver, sinks: list[WebhookSink]
) -> None:
    """json: each event's canonical line as the body, its id as webhook-id, verified by the
    reference library; static headers arrive."""
    events = [quote(1), quote(2), quote(3)]
    s = await open_sink(sinks, receiver.url)
    await s.write(batch(events))
    assert [g.body for g in receiver.got] == [line(e) for e in events]
    assert {g.content_type for g in receiver.got} == {"application/json"}
    assert [g.headers["webhook-id"] for g in receiver.got] == ["sim:1", "sim:2", "sim:3"]
    assert [verify(g)["id"] for g in receiver.got] == ["sim:1", "sim:2", "sim:3"]
    assert {g.headers["X-Api-Key"] for g in receiver.got} == {HEADER_VALUE}
    assert s.delivered == 3
    assert s.retries == 0


async def test_a_wrong_secret_does_not_verify(receiver: Receiver, sinks: list[WebhookSink]) -> None:
    """The signature depends on the secret: the reference library refuses another one."""
    s = await open_sink(sinks, receiver.url)
    await s.write(batch([quote(1)]))
    with pytest.raises(WebhookVerificationError):
        verify(receiver.got[0], "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY")


async def test_jsonl_splits_batches_across_chunks(
    receiver: Receiver, sinks: list[WebhookSink]
) -> None:
    """jsonl: batch_max_events lines per request, in order, across the chunks of a merged
    batch; webhook-id is first..last."""
    events = [quote(n) for n in range(1, 6)]
    merged = Batch.merge([batch(events[:3]), batch(events[3:])])
    s = await open_sink(sinks, receiver.url, format="jsonl", batch_max_events=2)
    await s.write(merged)
    assert [g.body for g in receiver.got] == [
        line(events[0]) + b"\n" + line(events[1]) + b"\n",
        line(events[2]) + b"\n" + line(events[3]) + b"\n",
        line(events[4]) + b"\n",
    ]
    assert {g.content_type for g in receiver.got} == {"application/x-ndjson"}
    assert [g.headers["webhook-id"] for g in receiver.got] == [
        "sim:1..sim:2",
        "sim:3..sim:4",
        "sim:5",
    ]
    for g in receiver.got:
        verify_raw(g)
    assert s.delivered == 5


def _status_event() -> StatusConnected:
    return StatusConnected(
        id="sim:status.connected:19a.1",
        seq=9,
        source="sim",
        provider="ttmt",
        time=T,
        received=T,
        data=StatusData(reason="connected"),
    )


async def test_cloudevents_structured_mode_maps_every_field(
    receiver: Receiver, sinks: list[WebhookSink]
) -> None:
    """cloudevents: one structured CloudEvent per request, the mapping of the issue; no
    subject without a symbol."""
    events: list[Event] = [quote(1), _status_event()]
    s = await open_sink(sinks, receiver.url, format="cloudevents")
    assert not s.needs_events  # the envelope is read from the lines: no structs kept for it
    await s.write(batch(events))
    assert {g.content_type for g in receiver.got} == {"application/cloudevents+json"}
    first, second = (verify(g) for g in receiver.got)
    assert first == {
        "specversion": "1.0",
        "id": "sim:1",
        "source": "tradebus/sim",
        "type": "tradebus.quote.updated",
        "time": T,
        "subject": "XAUUSD",
        "datacontenttype": "application/json",
        "data": json.loads(line(events[0])),
    }
    assert second["type"] == "tradebus.status.connected"
    assert "subject" not in second
    assert second["data"] == json.loads(line(events[1]))
    assert [g.headers["webhook-id"] for g in receiver.got] == ["sim:1", events[1].id]


async def test_cloudevents_batch_is_an_array(receiver: Receiver, sinks: list[WebhookSink]) -> None:
    """cloudevents-batch: a JSON array of CloudEvents, batch_max_events per request."""
    events = [quote(n) for n in range(1, 4)]
    s = await open_sink(sinks, receiver.url, format="cloudevents-batch", batch_max_events=2)
    await s.write(batch(events))
    assert {g.content_type for g in receiver.got} == {"application/cloudevents-batch+json"}
    bodies = [verify(g) for g in receiver.got]
    assert [[ce["id"] for ce in b] for b in bodies] == [["sim:1", "sim:2"], ["sim:3"]]
    assert bodies[1][0]["data"] == json.loads(line(events[2]))
    assert [g.headers["webhook-id"] for g in receiver.got] == ["sim:1..sim:2", "sim:3"]


# --- retries ----------------------------------------------------------------------------------


async def test_500_is_retried_with_one_webhook_id(
    receiver: Receiver, sinks: list[WebhookSink]
) -> None:
    """500s are retried, at least a Retry-After apart when the receiver sends one (as any
    retried status); every attempt carries the same webhook-id and its own valid signature."""
    receiver.script.extend([Reply(500, {"Retry-After": "1"}), Reply(500), Reply(200)])
    s = await open_sink(sinks, receiver.url)
    started = time.monotonic()
    await s.write(batch([quote(1)]))
    assert 1.0 <= time.monotonic() - started < 5
    assert [g.status for g in receiver.got] == [500, 500, 200]
    assert {g.headers["webhook-id"] for g in receiver.got} == {"sim:1"}
    for g in receiver.got:
        assert verify(g)["id"] == "sim:1"
    assert (s.retries, s.delivered, s.dead_letters) == (2, 1, 0)
    assert s.last_error == "HTTP 500"
    assert s.failing is None  # the last request went through


async def test_429_waits_retry_after_seconds_and_re_signs(
    receiver: Receiver, sinks: list[WebhookSink]
) -> None:
    """429 with Retry-After: 1 waits a second; the retry has a later timestamp, a fresh valid
    signature and the same webhook-id."""
    receiver.script.append(Reply(429, {"Retry-After": "1"}))
    s = await open_sink(sinks, receiver.url)
    await s.write(batch([quote(1)]))
    first, second = receiver.got
    assert second.at - first.at >= 1.0
    assert int(second.headers["webhook-timestamp"]) > int(first.headers["webhook-timestamp"])
    assert second.headers["webhook-signature"] != first.headers["webhook-signature"]
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    verify(second)


async def test_503_waits_retry_after_http_date(
    receiver: Receiver, sinks: list[WebhookSink]
) -> None:
    """503 with Retry-After as an HTTP-date waits until that date."""
    when = email.utils.formatdate(time.time() + 2, usegmt=True)  # floored: 1 to 2 s away
    receiver.script.append(Reply(503, {"Retry-After": when}))
    s = await open_sink(sinks, receiver.url)
    await s.write(batch([quote(1)]))
    first, second = receiver.got
    assert second.at - first.at >= 0.9
    assert second.status == 200
    verify(second)


async def test_a_hanging_receiver_is_cut_by_the_timeout(
    receiver: Receiver, sinks: list[WebhookSink]
) -> None:
    """A request that hangs is cut after ``timeout`` and sent again with the same webhook-id."""
    receiver.script.append(Reply(hang=True))
    s = await open_sink(sinks, receiver.url, timeout=0.3)
    started = time.monotonic()
    await s.write(batch([quote(1)]))
    assert time.monotonic() - started < 3
    assert len(receiver.got) == 2
    assert receiver.got[0].headers["webhook-id"] == receiver.got[1].headers["webhook-id"]
    assert s.last_error == "timed out after 0.3s"
    assert (s.delivered, s.retries) == (1, 1)


async def test_order_is_kept_while_retrying(receiver: Receiver, sinks: list[WebhookSink]) -> None:
    """Event N+1 is never sent before N was acknowledged, whatever fails in between."""
    receiver.script.extend(
        [Reply(500), Reply(200), Reply(408), Reply(503), Reply(200), Reply(502), Reply(200)]
    )
    events = [quote(n) for n in range(1, 7)]
    s = await open_sink(sinks, receiver.url)
    await s.write(batch(events[:3]))
    await s.write(batch(events[3:]))
    ids = [g.headers["webhook-id"] for g in receiver.got]
    assert ids == [f"sim:{n}" for n in (1, 1, 2, 2, 2, 3, 3, 4, 5, 6)]
    assert [g.body for g in receiver.accepted()] == [line(e) for e in events]


async def test_max_in_flight_sends_in_parallel(
    receiver: Receiver, sinks: list[WebhookSink]
) -> None:
    """max_in_flight > 1: that many requests are open at once, and write still returns only
    once every one of them was acknowledged."""
    receiver.hold_until = 3
    events = [quote(n) for n in range(1, 7)]
    s = await open_sink(sinks, receiver.url, max_in_flight=3)
    await s.write(batch(events))
    assert receiver.peak == 3
    assert sorted(g.body for g in receiver.accepted()) == sorted(line(e) for e in events)
    assert s.delivered == 6


async def test_cancellation_stops_a_write_at_once(
    receiver: Receiver, sinks: list[WebhookSink]
) -> None:
    """Shutdown cancels a write stuck on a hanging receiver promptly; nothing counts as sent."""
    receiver.default = Reply(hang=True)
    s = await open_sink(sinks, receiver.url, timeout=60.0)
    task = asyncio.create_task(s.write(batch([quote(1)])))
    await receiver.wait_for_requests(1)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 1
    assert s.delivered == 0


async def test_unsigned_without_a_secret(receiver: Receiver, sinks: list[WebhookSink]) -> None:
    """No secret: webhook-id and webhook-timestamp still go, no signature; a warning at open."""
    with capture_logs() as logs:
        s = await open_sink(sinks, receiver.url, secret=None)
    await s.write(batch([quote(1)]))
    (got,) = receiver.got
    assert got.headers["webhook-id"] == "sim:1"
    assert "webhook-timestamp" in got.headers
    assert "webhook-signature" not in got.headers
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["webhook_unsigned"]


# --- TLS --------------------------------------------------------------------------------------


async def test_tls_is_verified_by_default(
    tls_receiver: Receiver, sinks: list[WebhookSink], tmp_path: Path
) -> None:
    """An untrusted certificate is refused: nothing reaches the receiver, it ends dead."""
    s = await open_sink(sinks, tls_receiver.url, state_dir=tmp_path, give_up_after=0.2)
    await s.write(batch([quote(1)]))
    assert tls_receiver.got == []
    assert s.dead_letters == 1
    assert "certificate" in str(s.last_error).lower()


async def test_verify_tls_false_delivers_and_warns(
    tls_receiver: Receiver, sinks: list[WebhookSink]
) -> None:
    """verify_tls = false takes the same certificate, and says so at start."""
    with capture_logs() as logs:
        s = await open_sink(sinks, tls_receiver.url, verify_tls=False)
    await s.write(batch([quote(1)]))
    assert verify(tls_receiver.got[0])["id"] == "sim:1"
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["webhook_tls_unverified"]


async def test_a_sink_that_cannot_deliver_says_so_until_it_delivers(
    sinks: list[WebhookSink], tmp_path: Path
) -> None:
    """Receiver down: requests sent again are counted and ``failing`` holds the connection
    error; the receiver back but refusing with 400: ``failing`` says so; a 2xx at last:
    ``failing`` is cleared, ``last_error`` still tells what happened."""
    (port,) = free_ports(1)
    s = await open_sink(
        sinks, f"http://127.0.0.1:{port}/hook", state_dir=tmp_path, give_up_after=0.3
    )
    await s.write(batch([quote(1)]))  # nothing listens: retried until given up on
    down = health(s)
    assert down.retries > 0
    assert "Connect" in str(down.failing)
    assert down.last_error == down.failing
    async with serving(port=port) as back:
        back.default = Reply(400, text="no")
        await s.write(batch([quote(2)]))
        assert health(s) == Health("HTTP 400: no", "HTTP 400: no", down.retries, 0, 2)
        back.default = Reply(200)
        await s.write(batch([quote(3)]))
        assert health(s) == Health(None, "HTTP 400: no", down.retries, 1, 2)


class Health(NamedTuple):
    """What a webhook sink says of its health, read at one moment."""

    failing: str | None
    last_error: str | None
    retries: int
    delivered: int
    dead_letters: int


def health(s: WebhookSink) -> Health:
    return Health(s.failing, s.last_error, s.retries, s.delivered, s.dead_letters)


# --- dead letters -----------------------------------------------------------------------------


async def test_400_is_dead_lettered_at_once_and_the_next_goes_on(
    receiver: Receiver, sinks: list[WebhookSink], tmp_path: Path
) -> None:
    """A 400 is not retried: the event goes to the dead-letter file with status, error and
    attempts, the counter rises, the callback hears of it, the next event is delivered."""
    receiver.script.append(Reply(400, text="unknown field 'bid'"))
    told: list[str] = []
    s = await open_sink(sinks, receiver.url, state_dir=tmp_path, told=told)
    await s.write(batch([quote(1), quote(2)]))
    assert [g.status for g in receiver.got] == [400, 200]
    assert (s.dead_letters, s.delivered, s.retries) == (1, 1, 0)
    records = (tmp_path / "dead-letter-hook.jsonl").read_text().splitlines()
    assert len(records) == 1
    record = json.loads(records[0])
    assert record["events"] == [json.loads(line(quote(1)))]
    assert record["status"] == 400
    assert record["error"] == "HTTP 400: unknown field 'bid'"
    assert record["attempts"] == 1
    assert record["webhook_id"] == "sim:1"
    assert record["sink"] == "hook"
    assert record["time"].endswith("Z")
    assert told == [
        "webhook sink hook: 1 event(s) dead-lettered after 1 attempt(s): HTTP 400: "
        "unknown field 'bid'"
    ]


async def test_a_redirect_is_not_followed(
    receiver: Receiver, sinks: list[WebhookSink], tmp_path: Path
) -> None:
    """A 3xx is not followed (its Location is never asked): the batch is dead-lettered."""
    receiver.script.append(Reply(307, {"Location": receiver.url}))
    s = await open_sink(sinks, receiver.url, state_dir=tmp_path)
    await s.write(batch([quote(1)]))
    assert [g.status for g in receiver.got] == [307]
    assert s.dead_letters == 1


async def test_give_up_after_dead_letters_and_moves_on(
    receiver: Receiver, sinks: list[WebhookSink], tmp_path: Path
) -> None:
    """A receiver failing past give_up_after: dead-lettered with its last status, counted,
    told; the next batch is delivered once the receiver is back."""
    receiver.default = Reply(500)
    told: list[str] = []
    s = await open_sink(
        sinks, receiver.url, state_dir=tmp_path, told=told, format="jsonl", give_up_after=0.2
    )
    await s.write(batch([quote(1), quote(2)]))
    assert len(receiver.got) > 2
    assert s.dead_letters == 2
    assert len(told) == 1
    record = json.loads((tmp_path / "dead-letter-hook.jsonl").read_text())
    assert record["status"] == 500
    assert record["attempts"] == len(receiver.got)
    assert record["webhook_id"] == "sim:1..sim:2"
    assert [e["id"] for e in record["events"]] == ["sim:1", "sim:2"]
    receiver.default = Reply(200)
    await s.write(batch([quote(3)]))
    assert receiver.got[-1].headers["webhook-id"] == "sim:3"
    assert s.delivered == 1


async def test_without_state_dir_dead_letters_are_counted_only(
    receiver: Receiver, sinks: list[WebhookSink], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No state_dir: nothing is written anywhere (not the current directory), still counted."""
    monkeypatch.chdir(tmp_path)
    receiver.script.append(Reply(422))
    s = await open_sink(sinks, receiver.url)
    await s.write(batch([quote(1)]))
    assert s.dead_letters == 1
    assert s.dead_letter_path is None
    assert list(tmp_path.iterdir()) == []


async def test_a_torn_dead_letter_tail_is_cut_at_open(
    receiver: Receiver, sinks: list[WebhookSink], tmp_path: Path
) -> None:
    """A last line cut by a crash is dropped at open, so every line of the file stays whole."""
    path = tmp_path / "dead-letter-hook.jsonl"
    path.write_bytes(b'{"whole":1}\n{"torn":')
    receiver.script.append(Reply(404))
    s = await open_sink(sinks, receiver.url, state_dir=tmp_path)
    await s.write(batch([quote(1)]))
    lines = path.read_text().splitlines()
    assert json.loads(lines[0]) == {"whole": 1}
    assert json.loads(lines[1])["status"] == 404
    assert len(lines) == 2


async def test_a_dead_letter_that_cannot_be_written_is_not_given_up(
    receiver: Receiver, sinks: list[WebhookSink], tmp_path: Path
) -> None:
    """If the dead-letter file cannot be written, write raises RetryableSinkError (the bus
    sends the batch again): nothing is counted or reported as dead."""
    told: list[str] = []
    s = await open_sink(sinks, receiver.url, state_dir=tmp_path, told=told)
    (tmp_path / "dead-letter-hook.jsonl").mkdir()  # a directory where the file should be
    receiver.script.append(Reply(400))
    with pytest.raises(RetryableSinkError, match="cannot write"):
        await s.write(batch([quote(1)]))
    assert (s.dead_letters, told) == (0, [])


# --- the issue's fault script ---------------------------------------------------------------


async def test_fault_script_delivers_everything_in_order(
    receiver: Receiver, sinks: list[WebhookSink]
) -> None:
    """500 three times, a 429 with Retry-After, a hang past the timeout, then recovery: every
    event arrives, in order per source, every request verifies, and the retries of one batch
    carry one webhook-id."""
    receiver.script.extend([Reply(500)] * 3 + [Reply(429, {"Retry-After": "1"}), Reply(hang=True)])
    events = [quote(n, source) for n in range(1, 7) for source in ("ttmt-a", "mt4-b")]
    s = await open_sink(sinks, receiver.url, format="jsonl", batch_max_events=4, timeout=0.3)
    await s.write(batch(events[:8]))
    await s.write(batch(events[8:]))
    assert [g.status for g in receiver.got][:6] == [500, 500, 500, 429, 0, 200]
    assert len({g.headers["webhook-id"] for g in receiver.got[:6]}) == 1
    for g in receiver.got:
        verify_raw(g)
    arrived = [json.loads(x) for g in receiver.accepted() for x in g.body.splitlines()]
    assert arrived == [json.loads(line(e)) for e in events]
    for source in ("ttmt-a", "mt4-b"):
        assert [e["seq"] for e in arrived if e["source"] == source] == list(range(1, 7))
    assert (s.delivered, s.retries, s.dead_letters) == (12, 5, 0)


# --- secrets ----------------------------------------------------------------------------------


async def test_no_secret_in_logs_errors_or_dead_letters(
    receiver: Receiver,
    sinks: list[WebhookSink],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Across retries, timeouts, refused connections and dead letters, neither the whsec
    secret, nor its key, nor a header value, nor the URL's password or query token shows up
    in any log event (as passed, before any scrubbing), error, callback message or file."""
    caplog.set_level(logging.DEBUG)
    hidden = [SECRET, SECRET.removeprefix("whsec_"), HEADER_VALUE, "pw-9f8e7d6c", "qtok-5a4b3c2d"]
    port = receiver.url.split(":")[2].split("/")[0]
    url = f"http://user:pw-9f8e7d6c@127.0.0.1:{port}/hook?token=qtok-5a4b3c2d"
    receiver.script.extend([Reply(500), Reply(hang=True), Reply(429), Reply(401)])
    told: list[str] = []
    seen: list[str] = []
    with capture_logs() as logs:
        s = await open_sink(sinks, url, state_dir=tmp_path, told=told, timeout=0.3)
        await s.write(batch([quote(1)]))
        seen.append(str(s.last_error))
        # A port nobody listens on: connection refused until give_up_after.
        refused = await open_sink(
            sinks,
            "http://u:pw-9f8e7d6c@127.0.0.1:1/h?token=qtok-5a4b3c2d",
            state_dir=tmp_path,
            told=told,
            give_up_after=0.1,
        )
        await refused.write(batch([quote(2)]))
        seen.append(str(refused.last_error))
    assert s.dead_letters == 1
    assert refused.dead_letters == 1
    assert "Cannot connect" in str(refused.last_error) or "Connect" in str(refused.last_error)
    assert len(told) == 2
    text = "\n".join(
        [
            repr(logs),
            # The receiver's own access log is the other side's: it shows its query string.
            *(r.getMessage() for r in caplog.records if r.name != "aiohttp.access"),
            *told,
            *seen,
            (tmp_path / "dead-letter-hook.jsonl").read_text(),
            repr(s),
        ]
    )
    assert "webhook_retry" in text
    assert "webhook_dead_letter" in text
    for value in hidden:
        assert value not in text
