"""`tradebus replay` as a user runs it: lines on stdout, bad recordings said once and skipped,
what cannot be replayed refused in one line, a config's sinks filled."""

from __future__ import annotations

import asyncio
import json
import shlex
import shutil
from pathlib import Path

import msgspec

from tests.e2e.process import TRADEBUS, run_cli
from tests.recorded import framed, records_of, renumbered
from tradebus import times
from tradebus.recording import format as fmt

KEPT = Path(__file__).resolve().parents[1] / "recordings"
TTMT = KEPT / "ttmt-recycle.jsonl.zst"


def kept(name: str) -> list[bytes]:
    return (KEPT / f"{name}.jsonl").read_bytes().splitlines()


async def test_replay_writes_the_kept_lines_on_stdout() -> None:
    """The main path: the canonical lines, exactly, on stdout; one summary line on stderr."""
    code, out, err = await run_cli("replay", str(TTMT))
    assert code == 0, err
    assert out.splitlines() == kept("ttmt-recycle")
    assert err.decode().splitlines()[-1] == "tradebus replay: 20 events from 1 run(s)"


async def test_a_directory_stands_for_its_files_and_source_picks_one(tmp_path: Path) -> None:
    """A source's recordings directory is taken whole; --source keeps one source's runs."""
    for name in ("ttmt-recycle", "mt4-reconcile"):
        shutil.copy(KEPT / f"{name}.jsonl.zst", tmp_path)
    code, out, err = await run_cli("replay", str(tmp_path), "--source", "mt4")
    assert code == 0, err
    assert out.splitlines() == kept("mt4-reconcile")
    code, out, _ = await run_cli("replay", str(tmp_path))
    assert code == 0
    assert len(out.splitlines()) == len(kept("mt4-reconcile")) + len(kept("ttmt-recycle"))


async def test_damage_is_said_once_each_with_its_offset_and_the_rest_replays(
    tmp_path: Path,
) -> None:
    """A frame of bytes gone bad, a hand-edited line, a file cut mid-frame: each reported once
    with its offset; the replay goes on with every record that reads."""
    records = records_of(TTMT)
    # The read holding trade 4 and 5 (whole SSE events): the one frame to damage.
    index, bad = next(
        (i, r)
        for i, r in enumerate(records)
        if isinstance(r, fmt.Recv) and r.text is not None and '"eventId":4,' in r.text
    )
    assert isinstance(bad, fmt.Recv)
    assert bad.text is not None
    assert bad.text.endswith("\n\n")
    data, offsets = framed(records)
    broken = bytearray(data)
    middle = (offsets[index] + offsets[index + 1]) // 2
    broken[middle : middle + 4] = b"\xff\x00\xff\x00"
    cut = len(broken) - 3  # inside the last frame (the End record)
    path = tmp_path / "damaged.jsonl.zst"
    path.write_bytes(bytes(broken[:cut]))
    code, out, err = await run_cli("replay", str(path))
    assert code == 0
    lost = {f"ttmt-main:{n}" for n in range(1, 100) if f'"eventId":{n},' in (bad.text or "")}
    assert lost
    expected = renumbered(
        [line for line in kept("ttmt-recycle") if json.loads(line)["id"] not in lost]
    )
    assert out.splitlines() == expected
    said = err.decode().splitlines()
    assert said[:2] == [
        f"tradebus replay: {path}: offset {offsets[index]}: frame does not decompress: "
        + said[0].split("frame does not decompress: ", 1)[1],
        f"tradebus replay: {path}: offset {offsets[-1]}: "
        "frame cut short (the file ends inside it); skipped",
    ]
    assert (
        said[2] == f"tradebus replay: {len(expected)} events from 1 run(s); "
        "2 unreadable frame(s) or line(s) skipped"
    )


async def test_an_unreadable_line_is_said_with_its_frame_and_index(tmp_path: Path) -> None:
    """A hand-edited line that is no record: reported by offset and line, the rest replays."""
    records = records_of(TTMT)
    lines = fmt.encode_lines(records).splitlines(keepends=True)
    where = next(i for i, line in enumerate(lines) if b'"by":"us"' in line)
    lines[where] = b'{"k":"close","conn":\n'  # a close of ours: the replay does not need it
    path = tmp_path / "edited.jsonl.zst"
    path.write_bytes(fmt.frame(b"".join(lines), fmt.compressor()))
    code, out, err = await run_cli("replay", str(path))
    assert code == 0
    assert out.splitlines() == kept("ttmt-recycle")
    first = err.decode().splitlines()[0]
    assert first.startswith(f"tradebus replay: {path}: offset 0, line {where}: unreadable line")


async def test_an_unknown_format_version_is_refused(tmp_path: Path) -> None:
    """A recording of a format this version does not read: one line saying which, exit 2."""
    records = records_of(TTMT)
    header = records[0]
    assert isinstance(header, fmt.Header)
    future = msgspec.structs.replace(header, format=99, tradebus="9.0.0")
    path = tmp_path / "future.jsonl.zst"
    path.write_bytes(framed([future, *records[1:]])[0])
    code, out, err = await run_cli("replay", str(path))
    assert (code, out) == (2, b"")
    assert err.decode() == (
        f"tradebus replay: {path}: recording format 99 is not one this tradebus reads "
        "(it reads format 1; it was written by tradebus 9.0.0)\n"
    )


async def test_a_file_that_is_no_recording_is_refused(tmp_path: Path) -> None:
    """Not zstd, or zstd without a header: refused by name, exit 2, no traceback."""
    path = tmp_path / "notes.jsonl.zst"
    path.write_bytes(b"just some text\n")
    code, _, err = await run_cli("replay", str(path))
    assert code == 2
    assert err.decode() == (
        f"tradebus replay: {path}: no recording header at its start (is it a tradebus recording?)\n"
    )


async def test_a_recording_given_as_a_source_of_another_type_is_refused(tmp_path: Path) -> None:
    """A TTMT recording where the config's source of that name is a Trader WS one: refused,
    naming both types, before anything is written."""
    out_file = tmp_path / "events.jsonl"
    config = tmp_path / "tradebus.toml"
    config.write_text(
        f'[daemon]\nstate_dir = "{tmp_path / "state"}"\n'
        '[[sources]]\nname = "ttmt-main"\ntype = "traderws"\nurl = "http://127.0.0.1:1"\n'
        'username = "u"\npassword = "p"\n'
        f'[[sinks]]\nname = "file"\ntype = "file"\npath = "{out_file}"\n'
    )
    code, _, err = await run_cli("replay", str(TTMT), "-c", str(config))
    assert code == 2
    assert err.decode() == (
        f"tradebus replay: {TTMT}: a ttmt recording of 'ttmt-main', and 'ttmt-main' in the "
        "config is a traderws source: refused (a recording replays only through the adapter "
        "it came from)\n"
    )
    assert not out_file.exists()


async def test_replay_into_a_configs_sinks(tmp_path: Path) -> None:
    """-c: the config's file sink gets the lines stdout would have had (a fresh journal numbers
    them from 1 too); the config's own state dir is never touched."""
    out_file = tmp_path / "events.jsonl"
    state = tmp_path / "state"
    config = tmp_path / "tradebus.toml"
    config.write_text(
        f'[daemon]\nstate_dir = "{state}"\n'
        '[[sources]]\nname = "other"\ntype = "ttmt"\nurl = "http://127.0.0.1:1/s"\napi_key = "k"\n'
        f'[[sinks]]\nname = "file"\ntype = "file"\npath = "{out_file}"\n'
    )
    code, out, err = await run_cli(
        "replay", str(TTMT), str(KEPT / "mt4-reconcile.jsonl.zst"), "-c", str(config)
    )
    assert code == 0, err
    assert out == b""
    lines = out_file.read_bytes().splitlines()
    by_source = {
        name: renumbered([line for line in lines if json.loads(line)["source"] == name])
        for name in ("ttmt-main", "mt4")
    }
    assert by_source == {"ttmt-main": kept("ttmt-recycle"), "mt4": kept("mt4-reconcile")}
    assert not state.exists()


async def test_from_and_to_keep_a_window_of_the_recording() -> None:
    """--from/--to: only events received within the window, the replay stopping at its end."""
    lines = kept("ttmt-recycle")
    received = [json.loads(line)["received"] for line in lines]
    since, until = received[5], received[14]
    code, out, err = await run_cli("replay", str(TTMT), "--from", since, "--to", until)
    assert code == 0, err
    inside = [line for line, r in zip(lines, received, strict=True) if since <= r <= until]
    assert out.splitlines() == renumbered(inside)
    assert times.to_epoch(since) < times.to_epoch(until)


async def test_a_bad_time_is_one_line() -> None:
    """--from that is no time: the flag and what was expected, exit 2."""
    code, _, err = await run_cli("replay", str(TTMT), "--from", "yesterday")
    assert code == 2
    assert err.decode() == (
        "config error: --from: expected an RFC 3339 time (2026-06-09T14:30:00Z), got 'yesterday'\n"
    )


async def test_a_reader_that_goes_away_ends_the_replay_quietly(tmp_path: Path) -> None:
    """`tradebus replay FILE | head -1`: exit 0, no traceback, nothing on stderr."""
    err = tmp_path / "stderr"
    # --speed 1: the recording's events come over a second after the first line, so head is
    # gone well before the replay's end even on a loaded host (at 50 they came within 20 ms,
    # and a replay that ended first printed its summary).
    command = (
        f"set -o pipefail; {shlex.join([*TRADEBUS, 'replay', str(TTMT), '--speed', '1'])}"
        f" 2>{shlex.quote(str(err))} | head -1"
    )
    proc = await asyncio.create_subprocess_exec(
        "bash", "-c", command, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0
    assert out.startswith(b'{"type":"status.connected"')
    assert len(out.splitlines()) == 1
    assert err.read_bytes() == b""
