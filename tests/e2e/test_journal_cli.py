"""``tradebus journal``: the state of a journal a daemon left, and its events replayed."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import msgspec

from tests.e2e.process import run_cli
from tests.integration.test_webhook import Reply, batch, serving
from tests.integration.test_webhook import config as hook_config
from tests.sinkctx import context
from tests.unit.deliverykit import RecordingSink, Rig, fill, quote
from tradebus.errors import RetryableSinkError
from tradebus.journal import cursors
from tradebus.journal.store import Journal
from tradebus.sinks.base import Batch, Sink, SinkContext
from tradebus.sinks.webhook import WebhookSink


async def make_journal(state: Path) -> None:
    state.mkdir()
    behind = asyncio.Event()  # never set: "slow" acknowledges nothing
    fast, slow = RecordingSink("fast"), RecordingSink("slow", behind)
    rig = await Rig(state, [fast, slow]).start()
    for n in range(5):
        await rig.publish([quote(n), fill(n)])
    await fast.wait_events(10)
    await rig.close(0.1)


def toml(tmp_path: Path, state: Path, sinks: str, *, api_key: str = "k") -> Path:
    """A config on ``state`` with one TTMT source and the ``sinks`` tables given."""
    path = tmp_path / "c.toml"
    path.write_text(
        f'[daemon]\nstate_dir = "{state}"\n[[sources]]\nname = "s1"\ntype = "ttmt"\n'
        f'url = "http://127.0.0.1:1/"\napi_key = "{api_key}"\n' + sinks
    )
    return path


def config_file(tmp_path: Path, state: Path) -> Path:
    stdout = '[[sinks]]\nname = "{}"\ntype = "stdout"\n'
    return toml(tmp_path, state, stdout.format("fast") + stdout.format("slow"))


async def test_journal_prints_segments_seqs_and_each_sinks_cursor(tmp_path: Path) -> None:
    state = tmp_path / "state"
    await make_journal(state)
    code, out, err = await run_cli("journal", "-c", str(config_file(tmp_path, state)))
    assert code == 0, err
    text = out.decode()
    assert "seq         1 .. 10" in text
    assert "sink fast: cursor 10, backlog 0 events" in text
    # It never acknowledged anything: all ten wait for it, since the first append.
    assert "sink slow: cursor 0, backlog 10 events, " in text
    assert " s behind" in text


async def test_journal_replays_a_range_with_filters(tmp_path: Path) -> None:
    state = tmp_path / "state"
    await make_journal(state)
    cfg = str(config_file(tmp_path, state))
    code, out, _ = await run_cli("journal", "-c", cfg, "--from-seq", "3", "--to-seq", "8")
    assert code == 0
    assert [msgspec.json.decode(x)["seq"] for x in out.splitlines()] == [3, 4, 5, 6, 7, 8]
    code, out, _ = await run_cli("journal", "-c", cfg, "--from-seq", "1", "--type", "order.")
    assert [msgspec.json.decode(x)["type"] for x in out.splitlines()] == ["order.filled"] * 5


async def test_journal_without_a_journal_names_the_state_dir(tmp_path: Path) -> None:
    state = tmp_path / "nothing"
    code, _, err = await run_cli("journal", "-c", str(config_file(tmp_path, state)))
    assert code == 2
    assert str(state) in err.decode()


def run_config(tmp_path: Path, state: Path) -> Path:
    return toml(tmp_path, state, '[[sinks]]\nname = "o"\ntype = "stdout"\n')


async def test_a_missing_parent_exits_2_naming_the_path(tmp_path: Path) -> None:
    state = tmp_path / "missing" / "state"
    code, _, err = await run_cli("run", "-c", str(run_config(tmp_path, state)), timeout=30)
    assert code == 2
    assert f"state_dir {state}: parent directory" in err.decode()


async def test_a_state_dir_that_is_a_file_exits_2(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.write_text("")
    code, _, err = await run_cli("run", "-c", str(run_config(tmp_path, state)), timeout=30)
    assert code == 2
    assert "is not a directory" in err.decode()


async def test_a_state_dir_held_by_another_tradebus_exits_2(tmp_path: Path) -> None:
    state = tmp_path / "state"
    holder, _ = Journal.open(state)  # as a running daemon holds it
    try:
        code, _, err = await run_cli("run", "-c", str(run_config(tmp_path, state)), timeout=30)
    finally:
        holder.close()
    assert code == 2
    assert f"state_dir {state}: is in use by another tradebus" in err.decode()


def secretive_config(tmp_path: Path, state: Path) -> Path:
    """Sources and sinks whose secrets come from variables this environment does not set."""
    return toml(
        tmp_path,
        state,
        '[[sinks]]\nname = "fast"\ntype = "stdout"\n'
        '[[sinks]]\nname = "hook"\ntype = "webhook"\nurl = "http://127.0.0.1:1/h"\n'
        'secret = "${TB_TEST_UNSET_SECRET}"\n',
        api_key="${TB_TEST_UNSET_KEY}",
    )


async def test_journal_needs_no_source_or_sink_secret(tmp_path: Path) -> None:
    """It reads only the state dir: unset secrets of sources and sinks do not stop it."""
    state = tmp_path / "state"
    await make_journal(state)
    code, out, err = await run_cli("journal", "-c", str(secretive_config(tmp_path, state)))
    assert (code, err) == (0, b"")
    assert "sink fast: cursor 10, backlog 0 events, last error: none\n" in out.decode()
    assert "sink hook: no cursor yet" in out.decode()


async def test_a_filter_without_from_seq_replays_from_the_first_seq(tmp_path: Path) -> None:
    """`--type order.` alone prints the matching events (from the journal's first seq), not
    the summary; so does `--to-seq` alone."""
    state = tmp_path / "state"
    await make_journal(state)
    cfg = str(config_file(tmp_path, state))
    code, out, _ = await run_cli("journal", "-c", cfg, "--type", "order.")
    assert code == 0
    assert [msgspec.json.decode(x)["seq"] for x in out.splitlines()] == [2, 4, 6, 8, 10]
    code, out, _ = await run_cli("journal", "-c", cfg, "--to-seq", "3")
    assert [msgspec.json.decode(x)["seq"] for x in out.splitlines()] == [1, 2, 3]


class Refusing(Sink):
    """A sink whose receiver is down: every write fails, retryably."""

    name = "down"
    needs_events = False
    max_batch = 0

    async def open(self, ctx: SinkContext) -> None:
        pass

    async def write(self, batch: Batch) -> None:
        raise RetryableSinkError("sink down: connection refused by 127.0.0.1:9")

    async def close(self) -> None:
        pass

    def reopen(self) -> None:
        pass


async def test_the_summary_shows_why_a_running_sink_stands_still(tmp_path: Path) -> None:
    """While the daemon runs, a sink failing at its cursor shows its last error (saved with
    the cursors although the cursor does not move)."""
    state = tmp_path / "state"
    state.mkdir()
    rig = await Rig(state, [Refusing()]).start()
    try:
        await rig.publish([quote(1), fill(1)])
        # What the command reads is the file, rewritten every 100 ms: nothing in the process
        # signals that write, so the file itself is watched.
        async with asyncio.timeout(10):
            while not (cursors.load(state)[0].get("down") or cursors.CursorEntry(seq=0)).error:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        path = tmp_path / "c.toml"
        path.write_text(f'[daemon]\nstate_dir = "{state}"\n[[sinks]]\nname = "down"\n')
        code, out, _ = await run_cli("journal", "-c", str(path))
    finally:
        await rig.close(0.1)
    assert code == 0
    line = next(x for x in out.decode().splitlines() if x.startswith("sink down:"))
    assert line.startswith("sink down: cursor 0, backlog 2 events, ")
    assert line.endswith(", last error: sink down: connection refused by 127.0.0.1:9")


async def test_the_summary_shows_a_webhook_sinks_dead_letters(tmp_path: Path) -> None:
    """A receiver refusing every request (400): the webhook sink goes on, so it has no error of
    its own, but the summary shows its dead letters and the last one's error."""
    state = tmp_path / "state"
    await make_journal(state)
    async with serving() as receiver:
        receiver.default = Reply(400, text="Extra data: line 2 column 1")
        hook = WebhookSink(hook_config(receiver.url, format="jsonl"))
        await hook.open(context(state_dir=state))
        try:
            await hook.write(batch([quote(1), quote(2)]))
            await hook.write(batch([quote(3)]))
        finally:
            await hook.close()
    code, out, _ = await run_cli("journal", "-c", str(secretive_config(tmp_path, state)))
    assert code == 0
    line = next(x for x in out.decode().splitlines() if x.startswith("sink hook:"))
    assert re.fullmatch(
        r"sink hook: no cursor yet \(starts at the journal's end\), dead letters: 2 \(last at "
        r"\S+Z: HTTP 400: Extra data: line 2 column 1\)",
        line,
    ), line
