"""docs/sinks.md's signature check, run as written, on the webhook sink's requests."""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from tests.integration.test_webhook import SECRET, batch, config, quote, serving
from tests.sinkctx import context
from tradebus.sinks.webhook import WebhookSink

PAGE = Path(__file__).resolve().parents[2] / "docs" / "sinks.md"
FORMATS = ["json", "jsonl", "cloudevents", "cloudevents-batch"]
Verify = Callable[[str, bytes, dict[str, str]], list[dict[str, Any]]]


def documented_check() -> Verify:
    """The first Python block under "Verifying a request", executed as a receiver would paste it."""
    section = PAGE.read_text("utf-8").split("### Verifying a request", 1)[1]
    match = re.search(r"^```python\n(.*?)^```$", section, re.M | re.S)
    assert match is not None, "docs/sinks.md lost its verification snippet"
    namespace: dict[str, Any] = {}
    exec(compile(match.group(1), str(PAGE), "exec"), namespace)  # noqa: S102 - our own docs
    check: Verify = namespace["verified_events"]
    return check


@pytest.mark.parametrize("fmt", FORMATS)
async def test_the_documented_check_verifies_and_reads_every_format(
    fmt: str, tmp_path: Path
) -> None:
    """Each request the sink sends, in each format (batches of two), passes the documented check
    and yields the events in order (CloudEvents carry them as ``data``); a body changed by one
    byte fails it."""
    verified_events = documented_check()
    events = [quote(n) for n in range(1, 6)]
    async with serving() as receiver:
        sink = WebhookSink(config(receiver.url, format=fmt, batch_max_events=2))
        await sink.open(context(state_dir=tmp_path))
        try:
            await sink.write(batch(events))
        finally:
            await sink.close()
    assert [g.status for g in receiver.got] == [200] * (5 if fmt in ("json", "cloudevents") else 3)
    documents = [d for g in receiver.got for d in verified_events(SECRET, g.body, g.headers)]
    assert [d["id"] for d in documents] == [e.id for e in events]
    if fmt.startswith("cloudevents"):
        assert [d["data"]["id"] for d in documents] == [e.id for e in events]
    first = receiver.got[0]
    with pytest.raises(WebhookVerificationError):
        verified_events(SECRET, first.body.replace(b"sim:", b"sam:", 1), first.headers)


def test_the_library_default_alone_fails_a_jsonl_body() -> None:
    """Why the page says json_parse=False: the reference library's default parses the body as
    one JSON document, which a jsonl body of two events is not."""
    body = b'{"id":"a:1"}\n{"id":"a:2"}\n'
    hook = Webhook(SECRET)
    now = datetime.datetime.now(datetime.UTC)
    headers = {
        "Content-Type": "application/x-ndjson",
        "webhook-id": "a:1..a:2",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": hook.sign("a:1..a:2", now, body),
    }
    with pytest.raises(ValueError, match="Extra data"):
        hook.verify(body, headers)
    assert documented_check()(SECRET, body, headers) == [{"id": "a:1"}, {"id": "a:2"}]
