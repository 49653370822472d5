"""The webhook sink: events POSTed over HTTP(S), signed per Standard Webhooks, retried in order.

``write`` returns only once every event of the batch was accepted (2xx) or dead-lettered, so the
cursor behind it moves only past what the receiver has: at-least-once, the event ``id`` being the
idempotency key (the ``webhook-id`` of a single event, the CloudEvents ``id``). Retries happen
here, not in the bus, because only the sink knows Retry-After and when to give up.

Requests go one at a time in batch order (``max_in_flight = 1``): a later request never leaves
before the earlier one was acknowledged, so order per source holds through retries. A request
given up on (refused with a 4xx, or still failing after ``give_up_after``) is appended to
``dead-letter-<name>.jsonl`` in the state dir, counted, reported through the context's
``dead_letter``, and delivery moves on.

The sink says how it fares: ``retries`` (requests sent again), ``failing`` (the latest error
while the latest request has not succeeded: a receiver down, or one refusing every request;
cleared by the next success) and ``last_error`` (kept after a recovery).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import random
import time
from base64 import b64encode
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import aiohttp
import msgspec
import yarl

import tradebus
from tradebus import log, secret, times
from tradebus.backoff import Backoff, Failure, Kind, classify_http
from tradebus.config import WebhookSinkConfig, webhook_key
from tradebus.errors import RetryableSinkError
from tradebus.plugin import SinkPlugin
from tradebus.sinks.base import Batch, Sink, SinkContext

CONTENT_TYPES: Final = {
    "json": "application/json",
    "jsonl": "application/x-ndjson",
    "cloudevents": "application/cloudevents+json",
    "cloudevents-batch": "application/cloudevents-batch+json",
}
_BATCHED: Final = frozenset({"jsonl", "cloudevents-batch"})
_CLOUDEVENTS: Final = frozenset({"cloudevents", "cloudevents-batch"})
# What of a response body is read: enough to keep the connection reusable and to quote an error.
_DRAIN_LIMIT: Final = 64 * 1024
_EXCERPT: Final = 200
_RETRY: Final = Failure(Kind.RETRYABLE, "webhook_failed")


# --- pure parts: ids, signatures, CloudEvents, Retry-After, status classes ------------------


class Head(msgspec.Struct):
    """The envelope fields a request needs, decoded from an event's line (the rest is skipped).

    Reading them from the line rather than the struct spares the bus keeping every batch's
    structs for this sink (as much memory again as the lines).
    """

    id: str
    source: str
    type: str
    time: str
    symbol: str | None = None


_head: Final = msgspec.json.Decoder(Head)


class CloudEvent(msgspec.Struct, frozen=True, omit_defaults=True):
    """CloudEvents 1.0 in structured mode; ``data`` is the canonical event's line as encoded.

    Only ``subject`` has a default, so only it is left out (an event without a symbol).
    """

    specversion: str
    id: str
    source: str
    type: str
    time: str
    datacontenttype: str
    data: msgspec.Raw
    subject: str | None = None


_encoder: Final = msgspec.json.Encoder()


def cloudevent(line: bytes) -> CloudEvent:
    """The CloudEvent of the canonical event ``line`` (its bytes reused as ``data``)."""
    head = _head.decode(line)
    return CloudEvent(
        specversion="1.0",
        id=head.id,
        source=f"tradebus/{head.source}",
        type=f"tradebus.{head.type}",
        time=head.time,
        datacontenttype="application/json",
        subject=head.symbol,
        data=msgspec.Raw(line),
    )


def header_id(event_id: str) -> str:
    """``event_id`` as a header value; one that could not be sent as is becomes its digest."""
    if event_id.isascii() and event_id.isprintable():
        return event_id
    return "sha256:" + hashlib.sha256(event_id.encode()).hexdigest()


def batch_id(first: str, last: str) -> str:
    """The deterministic webhook-id of a request: its one event's id, or ``first..last``."""
    return header_id(first if first == last else f"{first}..{last}")


def signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """Standard Webhooks: ``v1,`` + base64 HMAC-SHA256 of ``{msg_id}.{timestamp}.{body}``."""
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode(), hashlib.sha256)
    mac.update(body)
    return "v1," + b64encode(mac.digest()).decode()


def classify(status: int, retry_after: str | None, now: float) -> tuple[bool, bool, float | None]:
    """(delivered, retry, wait) for a receiver's answer: ``backoff.classify_http``'s table.

    A 409 is final here (the receiver will never take that request); 401/403 and other 4xx are
    dropped too, since asking again changes nothing until someone fixes the receiver or the
    config. A Retry-After (seconds or an HTTP-date) is honoured on any status that is retried.
    """
    if 200 <= status < 300:
        return True, False, None
    failure = classify_http(status, retry_after, now=now, conflict_retries=False)
    if failure.kind is Kind.RETRYABLE:
        return False, True, failure.retry_after
    return False, False, None


def split_lines(chunks: Sequence[bytes]) -> list[bytes]:
    """The event lines (without their ``\\n``) of a batch's chunks, in order."""
    lines: list[bytes] = []
    for chunk in chunks:
        parts = chunk.split(b"\n")
        if parts[-1]:
            raise ValueError("a batch chunk does not end with a newline")
        lines.extend(parts[:-1])
    return lines


@dataclass(frozen=True, slots=True)
class Request:
    """One POST: its body, its webhook-id and the canonical lines of the events it carries."""

    webhook_id: str
    body: bytes
    lines: Sequence[bytes]


def requests(fmt: str, lines: Sequence[bytes], max_events: int) -> Iterator[Request]:
    """The requests of one batch in order; bodies are built as they are asked for."""
    step = max_events if fmt in _BATCHED else 1
    for start in range(0, len(lines), step):
        part = lines[start : start + step]
        if fmt in _CLOUDEVENTS:
            ces = [cloudevent(line) for line in part]
            wid = batch_id(ces[0].id, ces[-1].id)
            body = _encoder.encode(ces if fmt == "cloudevents-batch" else ces[0])
        else:
            wid = batch_id(_head.decode(part[0]).id, _head.decode(part[-1]).id)
            body = b"\n".join(part) + b"\n" if fmt == "jsonl" else part[0]
        yield Request(wid, body, part)


# --- dead letters -----------------------------------------------------------------------------


class DeadLetter(msgspec.Struct, frozen=True):
    time: str
    sink: str
    webhook_id: str
    status: int | None
    error: str
    attempts: int
    events: list[msgspec.Raw]


def _cut_torn_tail(path: Path) -> None:
    """Drop a last line a crash left without its ``\\n``: its batch is sent (and dead) again."""
    try:
        with open(path, "r+b") as f:
            end = f.seek(0, os.SEEK_END)
            pos = end
            while pos > 0:
                step = min(pos, 64 * 1024)
                f.seek(pos - step)
                block = f.read(step)
                if pos == end and block.endswith(b"\n"):
                    return
                nl = block.rfind(b"\n")
                if nl >= 0:
                    f.truncate(pos - step + nl + 1)
                    return
                pos -= step
            f.truncate(0)
    except FileNotFoundError:
        return


# --- the sink ---------------------------------------------------------------------------------


@dataclass(slots=True)
class _Attempt:
    ok: bool
    retry: bool
    status: int | None
    error: str
    wait: float | None = None  # what a Retry-After asked for


def _register_userinfo(url: str) -> None:
    """Credentials in the URL go out as ``Authorization: Basic``: a receiver that echoes its
    request in an error would show them, base64 and all, in the sink's ``last_error``, the
    status page and the log. Both forms are scrubbed there like any secret."""
    auth = aiohttp.BasicAuth.from_url(yarl.URL(url))
    if auth is not None:
        secret.register(auth.password)
        secret.register(auth.encode().removeprefix("Basic "))


class WebhookSink(Sink):
    """POSTs each batch as the configured format; see the module docstring for the guarantees."""

    def __init__(self, config: WebhookSinkConfig) -> None:
        self.name = config.name
        self.needs_events = False  # every format reads the encoded lines only
        # A write is one request (or ``max_in_flight`` of them): acknowledged, the cursor moves.
        per_request = config.batch_max_events if config.format in _BATCHED else 1
        self.max_batch = per_request * config.max_in_flight
        self.delivered = 0  # events the receiver acknowledged
        self.retries = 0  # requests sent again after a failure
        self.dead_letters = 0  # events given up on
        self.last_error: str | None = None  # the latest failure, kept after a recovery
        # The latest failure while the latest request has not succeeded (a receiver down, or
        # refusing every request with a 4xx): what says this sink is not delivering right now.
        self.failing: str | None = None
        # Where given-up requests are written, in the state dir (from open): None, nowhere.
        self.dead_letter_path: Path | None = None
        self._told: Callable[[str], None] = _nobody
        self._config = config
        self.linger = config.batch_linger_ms / 1000
        self._url = config.url
        self._shown_url = log.redact_url(config.url)
        _register_userinfo(config.url)
        self._key = webhook_key(config.secret) if config.secret is not None else None
        self._headers = {k: v.reveal() for k, v in config.headers.items()}
        self._headers["Content-Type"] = CONTENT_TYPES[config.format]
        self._headers["User-Agent"] = f"tradebus/{tradebus.__version__}"
        self._timeout = aiohttp.ClientTimeout(total=config.timeout)
        self._session: aiohttp.ClientSession | None = None
        self._rng = random.Random()
        self._log = log.get(sink=config.name)

    def __repr__(self) -> str:
        return f"WebhookSink(name={self.name!r}, url={self._shown_url!r})"

    async def open(self, ctx: SinkContext) -> None:
        self._told = ctx.dead_letter
        if ctx.state_dir is not None:
            self.dead_letter_path = ctx.state_dir / f"dead-letter-{self.name}.jsonl"
        if self.dead_letter_path is not None:
            try:
                self.dead_letter_path.parent.mkdir(parents=True, exist_ok=True)
                _cut_torn_tail(self.dead_letter_path)
            except OSError as exc:
                raise RetryableSinkError(
                    f"sink {self.name}: cannot open {self.dead_letter_path}: {exc.strerror}"
                ) from exc
        connector = aiohttp.TCPConnector(ssl=self._config.verify_tls)
        self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        self._log.info("webhook_open", url=self._shown_url, format=self._config.format)
        if not self._config.verify_tls:
            self._log.warning("webhook_tls_unverified", url=self._shown_url)
        if self._key is None:
            self._log.warning("webhook_unsigned", url=self._shown_url)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def reopen(self) -> None:
        pass  # the dead-letter file is opened per record

    def metrics(self) -> dict[str, float]:
        return {
            "delivered": self.delivered,
            "retries": self.retries,
            "dead_letters": self.dead_letters,
        }

    def errors(self) -> tuple[str | None, str | None]:
        return self.failing, self.last_error

    async def write(self, batch: Batch) -> None:
        if not batch.count:
            return
        lines = split_lines(batch.chunks)
        reqs = requests(self._config.format, lines, self._config.batch_max_events)
        if self._config.max_in_flight == 1:
            for req in reqs:
                await self._deliver(req)
            return
        # Parallel requests, by the operator's choice: order across them is not kept.
        slots = asyncio.Semaphore(self._config.max_in_flight)

        async def one(req: Request) -> None:
            try:
                await self._deliver(req)
            finally:
                slots.release()

        async with asyncio.TaskGroup() as tg:
            for req in reqs:
                await slots.acquire()  # the next body is built only once a slot is free
                tg.create_task(one(req))

    async def _deliver(self, req: Request) -> None:
        """Send ``req`` until the receiver takes it, a 4xx refuses it, or ``give_up_after``."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        backoff = Backoff(base=self._config.retry_base, cap=self._config.retry_cap, rng=self._rng)
        attempts = 0
        while True:
            attempts += 1
            result = await self._attempt(req)
            if log.DEBUG:
                self._log.debug(
                    "webhook_request",
                    webhook_id=req.webhook_id,
                    events=len(req.lines),
                    bytes=len(req.body),
                    status=result.status,
                    attempt=attempts,
                )
            if result.ok:
                self.delivered += len(req.lines)
                self.failing = None
                return
            self.last_error = self.failing = result.error
            if not result.retry:
                await self._dead_letter(req, result, attempts)
                return
            delay = backoff.delay(_RETRY, floor=result.wait or 0.0)
            if loop.time() - started + delay > self._config.give_up_after:
                await self._dead_letter(req, result, attempts)
                return
            self.retries += 1
            self._log.warning(
                "webhook_retry",
                webhook_id=req.webhook_id,
                status=result.status,
                error=result.error,
                attempt=attempts,
                retry_in=round(delay, 3),
            )
            await asyncio.sleep(delay)

    async def _attempt(self, req: Request) -> _Attempt:
        assert self._session is not None, "write before open"
        # Re-signed on every attempt: receivers refuse timestamps older than a few minutes.
        now = int(time.time())
        headers = {**self._headers, "webhook-id": req.webhook_id, "webhook-timestamp": str(now)}
        if self._key is not None:
            headers["webhook-signature"] = signature(self._key, req.webhook_id, now, req.body)
        try:
            async with self._session.post(
                self._url, data=req.body, headers=headers, allow_redirects=False
            ) as resp:
                status = resp.status
                head = await _drain(resp)
                delivered, retry, wait = classify(
                    status, resp.headers.get("Retry-After"), time.time()
                )
                if delivered:
                    return _Attempt(True, False, status, "")
                error = f"HTTP {status}"
                if head:
                    error += ": " + log.excerpt(head, _EXCERPT)
                return _Attempt(False, retry, status, error, wait)
        except TimeoutError:
            return _Attempt(False, True, None, f"timed out after {self._config.timeout:g}s")
        except aiohttp.ClientError as exc:
            return _Attempt(False, True, None, log.scrub_text(f"{type(exc).__name__}: {exc}"))

    async def _dead_letter(self, req: Request, result: _Attempt, attempts: int) -> None:
        """Write ``req`` down as given up on, then count it, log it and tell the daemon."""
        count = len(req.lines)
        if self.dead_letter_path is not None:
            record = DeadLetter(
                time=times.now(),
                sink=self.name,
                webhook_id=req.webhook_id,
                status=result.status,
                error=result.error,
                attempts=attempts,
                events=[msgspec.Raw(line) for line in req.lines],
            )
            # fsync takes milliseconds: on a thread, so no source or sink waits for it.
            try:
                await asyncio.to_thread(
                    _append, self.dead_letter_path, _encoder.encode(record) + b"\n"
                )
            except OSError as exc:
                # Not written down, so not given up on: the bus sends the batch again later.
                raise RetryableSinkError(
                    f"sink {self.name}: cannot write {self.dead_letter_path}: {exc.strerror}"
                ) from exc
        self.dead_letters += count
        self._log.error(
            "webhook_dead_letter",
            webhook_id=req.webhook_id,
            events=count,
            status=result.status,
            error=result.error,
            attempts=attempts,
            path=str(self.dead_letter_path) if self.dead_letter_path else None,
        )
        self._told(
            f"webhook sink {self.name}: {count} event(s) dead-lettered after {attempts} "
            f"attempt(s): {result.error}"
        )


def _nobody(_message: str) -> None:
    """Where dead letters are told before ``open``: nowhere."""


async def _drain(resp: aiohttp.ClientResponse) -> bytes:
    """The start of a response body, read to its end (up to a bound) so the connection is
    reused."""
    head = b""
    read = 0
    while read < _DRAIN_LIMIT:
        chunk = await resp.content.read(_DRAIN_LIMIT - read)
        if not chunk:
            break
        if len(head) < _EXCERPT:
            head += chunk[: _EXCERPT - len(head)]
        read += len(chunk)
    return head


def _append(path: Path, line: bytes) -> None:
    # One write of a whole line on an O_APPEND descriptor, then fsync: a cut leaves whole lines
    # before it and at most one torn tail, which the next open cuts away.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        view = memoryview(line)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


PLUGIN = SinkPlugin("webhook", WebhookSinkConfig, WebhookSink)
