"""``tradebus journal``: the state of a journal a daemon left, and its events replayed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec

from tests.e2e.process import run_cli
from tests.unit.deliverykit import RecordingSink, Rig, fill, quote
from tradebus.journal.store import Journal


async def make_journal(state: Path) -> None:
    state.mkdir()
    behind = asyncio.Event()  # never set: "slow" acknowledges nothing
    fast, slow = RecordingSink("fast"), RecordingSink("slow", behind)
    rig = await Rig(state, [fast, slow]).start()
    for n in range(5):
        await rig.publish([quote(n), fill(n)])
    await fast.wait_events(10)
    await rig.close(0.1)


def config_file(tmp_path: Path, state: Path) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(
        f'[daemon]\nstate_dir = "{state}"\n[[sources]]\nname = "s1"\ntype = "ttmt"\n'
        'url = "http://127.0.0.1:1/"\napi_key = "k"\n'
        '[[sinks]]\nname = "fast"\ntype = "stdout"\n[[sinks]]\nname = "slow"\ntype = "stdout"\n'
    )
    return path


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
    path = tmp_path / "run.toml"
    path.write_text(
        f'[daemon]\nstate_dir = "{state}"\n[[sources]]\nname = "s1"\ntype = "ttmt"\n'
        'url = "http://127.0.0.1:1/"\napi_key = "k"\n[[sinks]]\nname = "o"\ntype = "stdout"\n'
    )
    return path


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
