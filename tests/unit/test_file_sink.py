"""The file sink: JSONL flushed per batch, rotation by size, reopen after logrotate."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from tests.sinkctx import context
from tradebus.config import FileSinkConfig, StdoutSinkConfig
from tradebus.errors import FatalSinkError, RetryableSinkError
from tradebus.journal.store import Journal
from tradebus.sinks import file
from tradebus.sinks.base import Batch
from tradebus.sinks.file import FileSink
from tradebus.sinks.stdout import StdoutSink


def batch(*lines: str) -> Batch:
    return Batch(b"".join(line.encode() + b"\n" for line in lines), len(lines))


def sink(path: Path, **kw: object) -> FileSink:
    return FileSink(FileSinkConfig(name="archive", path=str(path), **kw))  # type: ignore[arg-type]


async def test_each_batch_is_on_disk_when_write_returns(tmp_path: Path) -> None:
    """A reader sees every line of a batch as soon as write() returns (flushed per batch)."""
    path = tmp_path / "sub" / "events.jsonl"
    s = sink(path)
    await s.open(context())
    await s.write(batch('{"a":1}', '{"a":2}'))
    assert path.read_bytes() == b'{"a":1}\n{"a":2}\n'
    await s.write(batch('{"a":3}'))
    assert path.read_bytes().count(b"\n") == 3
    await s.close()


async def test_appends_to_an_existing_file(tmp_path: Path) -> None:
    """A restart appends; nothing already written is truncated."""
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"old":1}\n')
    s = sink(path)
    await s.open(context())
    await s.write(batch('{"new":1}'))
    await s.close()
    assert path.read_bytes() == b'{"old":1}\n{"new":1}\n'


async def test_rotation_by_size_keeps_whole_batches_and_n_backups(tmp_path: Path) -> None:
    """Past max_bytes the file rotates to .1, .2 …; no batch is split; old ones beyond N go."""
    path = tmp_path / "events.jsonl"
    s = sink(path, max_bytes=20, backups=2)
    await s.open(context())
    for n in range(5):
        await s.write(batch(f'{{"n":{n}}}', f'{{"n":{n}}}'))  # 16 bytes a batch
    await s.close()
    assert path.read_text() == '{"n":4}\n{"n":4}\n'
    assert (tmp_path / "events.jsonl.1").read_text() == '{"n":3}\n{"n":3}\n'
    assert (tmp_path / "events.jsonl.2").read_text() == '{"n":2}\n{"n":2}\n'
    assert not (tmp_path / "events.jsonl.3").exists()


async def test_rotation_without_backups_starts_afresh(tmp_path: Path) -> None:
    """With backups = 0 the full file goes; only the new one is left, and nothing beside it."""
    path = tmp_path / "events.jsonl"
    s = sink(path, max_bytes=20, backups=0)
    await s.open(context())
    for n in range(3):
        await s.write(batch(f'{{"n":{n}}}', f'{{"n":{n}}}'))
    await s.close()
    assert path.read_text() == '{"n":2}\n{"n":2}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == [".events.jsonl.lock", "events.jsonl"]


@pytest.mark.parametrize("backups", [0, 2])
async def test_rotation_deletes_the_dropped_file_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backups: int
) -> None:
    """write() returns while the dropped file is still being deleted; close() waits for it."""
    order: list[str] = []
    release = threading.Event()

    def slow_drop(path: Path) -> None:  # a deletion that takes as long as the test wants
        release.wait(timeout=2)
        order.append("deleted")
        path.unlink()

    monkeypatch.setattr(file, "_drop", slow_drop)
    path = tmp_path / "events.jsonl"
    s = sink(path, max_bytes=20, backups=backups)
    await s.open(context())
    for n in range(backups + 2):  # the last write rotates one file out
        await s.write(batch(f'{{"n":{n}}}', f'{{"n":{n}}}'))
    order.append("written")
    assert path.read_text() == f'{{"n":{backups + 1}}}\n' * 2
    release.set()
    await s.close()
    assert order == ["written", "deleted"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [
            ".events.jsonl.lock",
            "events.jsonl",
            *(f"events.jsonl.{n}" for n in range(1, backups + 1)),
        ]
    )


async def test_a_file_left_aside_by_a_crash_is_deleted_at_open(tmp_path: Path) -> None:
    """A rotation cut short by a crash left a dropped file: the next open deletes it."""
    path = tmp_path / "events.jsonl"
    (tmp_path / ".events.jsonl.3.dropped").write_text('{"old":1}\n')
    (tmp_path / "other.jsonl").write_text("kept\n")
    s = sink(path)
    await s.open(context())
    await s.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".events.jsonl.lock",
        "events.jsonl",
        "other.jsonl",
    ]


async def test_reopen_after_logrotate_writes_to_the_new_file(tmp_path: Path) -> None:
    """After logrotate renames the file, reopen() (SIGHUP) makes later writes go to a new one."""
    path = tmp_path / "events.jsonl"
    s = sink(path)
    await s.open(context())
    await s.write(batch('{"before":1}'))
    path.rename(tmp_path / "events.jsonl.rotated")
    await s.write(batch('{"still-old":1}'))
    s.reopen()
    await s.write(batch('{"after":1}'))
    await s.close()
    assert (tmp_path / "events.jsonl.rotated").read_text() == '{"before":1}\n{"still-old":1}\n'
    assert path.read_text() == '{"after":1}\n'


async def test_unwritable_path_is_retryable(tmp_path: Path) -> None:
    """A path that cannot be opened raises RetryableSinkError naming the sink, not OSError."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    s = sink(blocker / "events.jsonl")
    with pytest.raises(RetryableSinkError, match="sink archive: cannot open"):
        await s.open(context())


async def test_stdout_sink_writes_and_flushes() -> None:
    """The stdout sink writes the batch bytes as they are."""
    out = io.BytesIO()
    s = StdoutSink(StdoutSinkConfig(name="console"), stream=out)
    await s.open(context())
    await s.write(batch('{"a":1}'))
    assert out.getvalue() == b'{"a":1}\n'


async def test_stdout_broken_pipe_is_fatal() -> None:
    """A closed reader of stdout retires the sink (FatalSinkError), it does not crash."""

    class Closed(io.BytesIO):
        def write(self, _data: object) -> int:
            raise BrokenPipeError

    s = StdoutSink(StdoutSinkConfig(name="console"), stream=Closed())
    await s.open(context())
    with pytest.raises(FatalSinkError):
        await s.write(batch('{"a":1}'))


def test_merge_keeps_the_parts_and_joins_only_on_demand() -> None:
    """A merged batch holds its parts' own bytes; data is their join, size their total."""
    parts = [batch('{"a":1}'), batch('{"b":2}', '{"c":3}'), batch('{"d":4}')]
    merged = Batch.merge(parts)
    assert all(c is p.data for c, p in zip(merged.chunks, parts, strict=True))
    assert merged.size == sum(len(p.data) for p in parts)
    assert merged.data == b'{"a":1}\n{"b":2}\n{"c":3}\n{"d":4}\n'
    assert merged.chunks == (merged.data,)


async def test_merged_batch_is_written_whole_and_counted_for_rotation(tmp_path: Path) -> None:
    """The parts of a merged batch land in order in one file; rotation sees their total size."""
    path = tmp_path / "m.jsonl"
    s = sink(path, max_bytes=39, backups=1)
    await s.open(context())
    await s.write(Batch.merge([batch('{"n":1}'), batch('{"n":2}', '{"n":3}')]))  # 24 bytes
    await s.write(Batch.merge([batch('{"n":4}'), batch('{"n":5}')]))  # 40 > 39: rotate first
    await s.close()
    assert (tmp_path / "m.jsonl.1").read_bytes() == b'{"n":1}\n{"n":2}\n{"n":3}\n'
    assert path.read_bytes() == b'{"n":4}\n{"n":5}\n'


def seq_line(seq: int, run: str = "s") -> bytes:
    return b'{"type":"quote.updated","id":"%s:%d","seq":%d}\n' % (run.encode(), seq, seq)


def seq_batch(first: int, last: int, run: str = "s") -> Batch:
    data = b"".join(seq_line(s, run) for s in range(first, last + 1))
    return Batch(data, last - first + 1, first_seq=first, last_seq=last)


def journaled(state: Path, first: int, last: int, run: str = "s", *, keep_from: int = 1) -> Path:
    """A real journal in ``state`` holding seqs ``first``..``last`` of ``run``, one record
    each, and nothing before ``keep_from`` (retention deleted it)."""
    journal, _ = Journal.open(state, segment_bytes=1, min_next_seq=first)
    for seq in range(first, last + 1):
        journal.append([seq_line(seq, run)], 1, 1)
    journal.enforce_retention(keep_from - 1, 1 << 30, 1e9, 0.0)
    journal.close()
    return state


@pytest.mark.parametrize("cut", [0, 1, 7, 20])
async def test_a_restart_cuts_a_torn_line_and_skips_what_the_file_holds(
    tmp_path: Path, cut: int
) -> None:
    """A crash mid-line, then this journal replays from an older cursor: no line twice."""
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(seq_line(s) for s in range(1, 6)) + seq_line(6)[:cut])
    s = sink(path)
    await s.open(context(journal=journaled(tmp_path / "state", 1, 9)))
    assert s.have == 5
    await s.write(seq_batch(2, 4))  # wholly written before the crash
    await s.write(seq_batch(4, 8))  # partly
    await s.write(seq_batch(9, 9))
    await s.close()
    assert path.read_bytes() == b"".join(seq_line(s) for s in range(1, 10))


async def test_the_last_seq_is_found_in_the_rotated_file_when_the_new_one_is_empty(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.jsonl"
    path.with_name("events.jsonl.1").write_bytes(seq_line(1) + seq_line(2))
    path.write_bytes(b"")
    s = sink(path)
    await s.open(context())
    assert s.have == 2
    await s.close()


def test_last_line_reads_backwards_across_blocks(tmp_path: Path) -> None:
    path = tmp_path / "f"
    long = b"x" * (file._TAIL_BLOCK + 10)
    path.write_bytes(b"first\n" + long + b"\n" + b"torn")
    assert file.last_line(path) == long
    assert path.read_bytes().endswith(long + b"\n")
    path.write_bytes(b"only partial")
    assert file.last_line(path) is None
    assert path.read_bytes() == b""
    path.write_bytes(b"one\n")
    assert file.last_line(path) == b"one"


async def test_a_file_from_an_earlier_journal_gets_every_new_line(tmp_path: Path) -> None:
    """The state dir was lost: the new journal numbers from 1 again. The file's last seq (5)
    is not this journal's event, so nothing is skipped: every line is appended, and a warning
    naming the file and the seq says so, once."""
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(seq_line(s, "old") for s in range(1, 6)))
    s = sink(path)
    with capture_logs() as logs:
        await s.open(context(journal=journaled(tmp_path / "state", 1, 7, "new")))
        await s.write(seq_batch(1, 3, "new"))
        await s.write(seq_batch(4, 7, "new"))
        await s.close()
    old = [seq_line(n, "old") for n in range(1, 6)]
    assert path.read_bytes() == b"".join(old + [seq_line(n, "new") for n in range(1, 8)])
    said = [e for e in logs if e["event"] == "file_holds_other_journal"]
    assert len(said) == 1
    assert (said[0]["path"], said[0]["last_seq"], said[0]["log_level"]) == (str(path), 5, "warning")


async def test_a_journal_not_yet_at_the_files_last_seq_is_not_the_files(tmp_path: Path) -> None:
    """A new journal that holds nothing at the file's last seq yet: its events are appended."""
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(seq_line(s) for s in range(1, 645)))
    s = sink(path)
    await s.open(context(journal=journaled(tmp_path / "state", 1, 2)))
    await s.write(seq_batch(1, 2))
    await s.close()
    assert path.read_bytes().endswith(seq_line(644) + seq_line(1) + seq_line(2))


async def test_a_seq_retention_dropped_is_not_taken_for_another_journal(tmp_path: Path) -> None:
    """This journal no longer holds the file's last seq (retention, once every sink passed it):
    what follows is appended and nothing is said of another journal."""
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(seq_line(s) for s in range(1, 6)))
    s = sink(path)
    with capture_logs() as logs:
        await s.open(context(journal=journaled(tmp_path / "state", 1, 8, keep_from=6)))
        await s.write(seq_batch(6, 8))
        await s.close()
    assert path.read_bytes() == b"".join(seq_line(s) for s in range(1, 9))
    assert [e for e in logs if e["event"] == "file_holds_other_journal"] == []


async def test_a_second_sink_on_the_same_file_is_refused_while_the_first_has_it(
    tmp_path: Path,
) -> None:
    """Two sinks (two daemons) on one path: the second gets a FatalSinkError naming the file
    and saying another tradebus writes it, and writes nothing; once the first closed, the
    path can be taken again. The lock survives the first one's rotations."""
    path = tmp_path / "events.jsonl"
    first, second = sink(path, max_bytes=10, backups=1), sink(path)
    await first.open(context())
    await first.write(batch('{"n":1}'))
    await first.write(batch('{"n":2}'))  # rotates: the file the lock was taken beside moved
    assert (tmp_path / "events.jsonl.1").exists()
    with pytest.raises(FatalSinkError) as refused:
        await second.open(context())
    assert str(refused.value) == (
        f"sink archive: {path} is being written by another tradebus process "
        "(it holds .events.jsonl.lock); give each daemon a file of its own"
    )
    await second.close()
    await first.write(batch('{"n":3}'))
    await first.close()
    assert (tmp_path / "events.jsonl.1").read_bytes() == b'{"n":2}\n'
    assert path.read_bytes() == b'{"n":3}\n'
    third = sink(path)
    await third.open(context())
    await third.write(batch('{"n":4}'))
    await third.close()
    assert path.read_bytes().endswith(b'{"n":4}\n')


async def test_a_failed_open_keeps_its_lock_for_the_retry(tmp_path: Path) -> None:
    """An open that failed after taking the lock (the file cannot be created) is retried by
    the same sink without refusing itself."""
    path = tmp_path / "events.jsonl"
    path.mkdir()  # a directory where the file should be: open fails, retryably
    s = sink(path)
    with pytest.raises(RetryableSinkError, match="cannot open"):
        await s.open(context())
    path.rmdir()
    await s.open(context())
    await s.write(batch('{"a":1}'))
    await s.close()
    assert path.read_bytes() == b'{"a":1}\n'
