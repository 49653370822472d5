"""The journal's segments on disk: append, reopen, torn tails, damage, retention, locking."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tradebus.journal import store
from tradebus.journal.records import HEADER_SIZE, Record
from tradebus.journal.store import Gap, Journal, StateDirError, event_id_at, iter_records


def lines(first: int, count: int) -> list[bytes]:
    return [f'{{"seq":{s}}}\n'.encode() for s in range(first, first + count)]


def read_all(journal: Journal, from_seq: int = 1) -> list[Record | Gap]:
    return list(iter_records(journal, from_seq))


def seqs_of(items: list[Record | Gap]) -> list[int]:
    out: list[int] = []
    for item in items:
        if isinstance(item, Record):
            out.extend(range(item.first_seq, item.last_seq + 1))
    return out


def test_appends_read_back_in_order_across_segments_and_a_reopen(tmp_path: Path) -> None:
    journal, _ = Journal.open(tmp_path, segment_bytes=100)
    for n in (1, 3, 2, 5, 1):
        journal.append(lines(journal.next_seq, n), n, 1_000)
    assert len(journal.segments) > 1
    journal.close()
    journal, report = Journal.open(tmp_path, segment_bytes=100)
    assert report.torn_offset is None
    assert journal.next_seq == 13
    got = read_all(journal)
    assert seqs_of(got) == list(range(1, 13))
    assert all(isinstance(i, Record) for i in got)
    payload = b"".join(i.payload for i in got if isinstance(i, Record))
    assert payload == b"".join(lines(1, 12))
    journal.append(lines(13, 1), 1, 2_000)
    assert seqs_of(read_all(journal, 12)) == [12, 13]
    journal.close()


def test_a_torn_tail_is_cut_and_reported_with_its_offset(tmp_path: Path) -> None:
    journal, _ = Journal.open(tmp_path)
    journal.append(lines(1, 2), 2, 1)
    journal.append(lines(3, 2), 2, 1)
    seg = journal.segments[-1].path
    whole = journal.segments[-1].size
    journal.close()
    with open(seg, "r+b") as f:
        f.truncate(whole - 3)
    journal, report = Journal.open(tmp_path)
    assert report.torn_path == seg
    first_size = HEADER_SIZE + len(b"".join(lines(1, 2)))
    assert report.torn_offset == first_size
    assert seg.stat().st_size == first_size
    assert journal.next_seq == 3  # the cut record's seqs were never delivered: reused
    assert seqs_of(read_all(journal)) == [1, 2]
    journal.close()


def test_a_corrupt_record_in_the_middle_is_a_gap_and_the_rest_is_read(tmp_path: Path) -> None:
    journal, _ = Journal.open(tmp_path)
    for first in (1, 3, 5):
        journal.append(lines(first, 2), 2, 1)
    seg = journal.segments[-1].path
    journal.close()
    data = bytearray(seg.read_bytes())
    rec = HEADER_SIZE + len(b"".join(lines(1, 2)))
    data[rec + HEADER_SIZE + 2] ^= 0x20  # a flipped bit in the second record's payload
    seg.write_bytes(bytes(data))
    journal, report = Journal.open(tmp_path)
    assert report.corrupt
    assert report.torn_offset is None
    items = read_all(journal)
    assert seqs_of(items) == [1, 2, 5, 6]
    assert Gap(3, 4, "corrupt") in items
    journal.close()


def test_damage_at_the_very_end_of_a_closed_segment_is_a_gap_not_a_stall(tmp_path: Path) -> None:
    journal, _ = Journal.open(tmp_path, segment_bytes=1)
    journal.append(lines(1, 2), 2, 1)
    journal.append(lines(3, 2), 2, 1)  # a new segment
    first = journal.segments[0].path
    data = bytearray(first.read_bytes())
    data[-2] ^= 0x20
    first.write_bytes(bytes(data))
    items = read_all(journal)
    assert items[0] == Gap(1, 2, "corrupt")
    assert seqs_of(items) == [3, 4]
    journal.close()


def test_retention_drops_passed_segments_and_reports_forced_drops(tmp_path: Path) -> None:
    journal, _ = Journal.open(tmp_path, segment_bytes=1)
    for first in range(1, 9, 2):
        journal.append(lines(first, 2), 2, 1)
    assert [s.first_seq for s in journal.segments] == [1, 3, 5, 7]
    dropped = journal.enforce_retention(2, 10**9, 10**9, now=0)
    assert [(d.first, d.last, d.forced) for d in dropped] == [(1, 2, False)]
    dropped = journal.enforce_retention(2, 1, 10**9, now=0)
    assert [(d.first, d.last, d.forced) for d in dropped] == [(3, 4, True), (5, 6, True)]
    assert [s.first_seq for s in journal.segments] == [7]  # the active one stays
    items = read_all(journal, 3)
    assert items[0] == Gap(3, 6, "retention")
    assert seqs_of(items) == [7, 8]
    journal.close()


def test_a_segment_deleted_between_the_listing_and_its_stat_is_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Retention deletes off the loop (and in the daemon while the delivery process lists):
    a listing that races a delete leaves the segment out instead of raising."""
    journal, _ = Journal.open(tmp_path, segment_bytes=1)
    for first in range(1, 7, 2):
        journal.append(lines(first, 2), 2, 1)
    directory = journal.segments[0].path.parent
    real = store._segment_paths

    def racing(where: Path) -> list[tuple[int, Path]]:
        found = real(where)
        found[0][1].unlink()
        return found

    monkeypatch.setattr(store, "_segment_paths", racing)
    assert [s.first_seq for s in store.list_segments(directory)] == [3, 5]
    journal.close()


def test_a_second_journal_on_the_same_state_dir_is_refused(tmp_path: Path) -> None:
    journal, _ = Journal.open(tmp_path)
    with pytest.raises(StateDirError, match=str(tmp_path)):
        Journal.open(tmp_path)
    journal.close()
    Journal.open(tmp_path)[0].close()


def test_state_dir_problems_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(StateDirError, match=r"parent directory .* does not exist"):
        Journal.open(tmp_path / "no" / "state")
    (tmp_path / "file").write_text("x")
    with pytest.raises(StateDirError, match="not a directory"):
        Journal.open(tmp_path / "file")
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    if os.geteuid() == 0:
        return  # root writes anywhere; the unwritable case is covered in e2e as another user
    with pytest.raises(StateDirError, match="not writable"):
        Journal.open(ro)


def test_min_next_seq_never_reuses_a_delivered_seq(tmp_path: Path) -> None:
    journal, _ = Journal.open(tmp_path, min_next_seq=500)
    assert journal.append(lines(500, 1), 1, 1) == 500
    journal.close()


def test_a_failed_append_leaves_nothing_behind(tmp_path: Path) -> None:
    journal, _ = Journal.open(tmp_path)
    journal.append(lines(1, 1), 1, 1)
    size = journal.segments[-1].size
    fd = journal._fd
    assert fd is not None
    os.close(fd)
    journal._fd = os.open(os.devnull, os.O_RDONLY)  # every write now fails
    with pytest.raises(OSError, match="Bad file descriptor"):
        journal.append(lines(2, 1), 1, 1)
    assert journal.next_seq == 2
    assert journal.segments[-1].size == size
    os.close(journal._fd)
    journal._fd = os.open(journal.segments[-1].path, os.O_WRONLY | os.O_APPEND)
    assert journal.append(lines(2, 1), 1, 1) == 2
    assert seqs_of(read_all(journal)) == [1, 2]
    journal.close()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    steps=st.lists(
        st.tuples(st.lists(st.integers(1, 5), min_size=1, max_size=6), st.floats(0, 1)),
        min_size=1,
        max_size=5,
    ),
    segment_bytes=st.sampled_from([1, 200, 10_000]),
)
def test_appends_crashes_and_restarts_read_back_exactly_the_whole_records(
    tmp_path_factory: pytest.TempPathFactory,
    steps: list[tuple[list[int], float]],
    segment_bytes: int,
) -> None:
    state = tmp_path_factory.mktemp("j")
    expected: list[int] = []
    for batches, cut in steps:
        journal, _ = Journal.open(state, segment_bytes=segment_bytes)
        assert journal.next_seq == (expected[-1] + 1 if expected else 1)
        records = []
        for n in batches:
            first = journal.append(lines(journal.next_seq, n), n, 1)
            records.append((first, n, journal.segments[-1].path, journal.segments[-1].size))
        journal.close()
        # SIGKILL mid-append: the last segment is cut at any byte of its last record (or not).
        first, n, path, end = records[-1]
        rec_size = HEADER_SIZE + len(b"".join(lines(first, n)))
        at = end - int(cut * rec_size)
        with open(path, "r+b") as f:
            f.truncate(at)
        for f_, n_, _, _ in records:
            expected.extend(range(f_, f_ + n_))
        if at < end:
            del expected[-n:]
    journal, _ = Journal.open(state, segment_bytes=segment_bytes)
    items = read_all(journal)
    assert all(isinstance(i, Record) for i in items)
    assert seqs_of(items) == expected
    journal.close()


def id_lines(first: int, count: int) -> list[bytes]:
    return [f'{{"id":"feed:{s}","seq":{s}}}\n'.encode() for s in range(first, first + count)]


def test_event_id_at_finds_each_seq_across_segments_from_either_dir(tmp_path: Path) -> None:
    """Every seq gives its own event's id, in every segment, asked by state dir or journal dir,
    while the daemon holds the journal open."""
    journal, _ = Journal.open(tmp_path, segment_bytes=60)
    for n in (1, 3, 2, 4):
        journal.append(id_lines(journal.next_seq, n), n, 1)
    assert len(journal.segments) > 2
    got = [event_id_at(tmp_path, s) for s in range(1, 11)]
    assert got == [f"feed:{s}" for s in range(1, 11)]
    assert event_id_at(tmp_path / "journal", 7) == "feed:7"
    journal.close()


def test_event_id_at_is_none_where_the_journal_holds_nothing(tmp_path: Path) -> None:
    """Past the end, before the oldest segment (retention), seq 0, and no journal at all."""
    assert event_id_at(tmp_path, 1) is None
    journal, _ = Journal.open(tmp_path, segment_bytes=1)
    for first in (1, 3, 5):
        journal.append(id_lines(first, 2), 2, 1)
    journal.enforce_retention(2, 1 << 30, 1e9, 0.0)
    assert journal.first_seq == 3
    assert [event_id_at(tmp_path, s) for s in (0, 1, 2, 3, 6, 7, 644)] == [
        None,
        None,
        None,
        "feed:3",
        "feed:6",
        None,
        None,
    ]
    journal.close()


def test_event_id_at_a_damaged_record_or_a_line_without_an_id_is_none(tmp_path: Path) -> None:
    """A record whose checksum fails gives no id (the records around it still do); so does a
    torn last record and a line that is not an event."""
    journal, _ = Journal.open(tmp_path)
    for first in (1, 3, 5):
        journal.append(id_lines(first, 2), 2, 1)
    journal.append([b'{"seq":7}\n', b"[]\n"], 2, 1)
    journal.append(id_lines(9, 2), 2, 1)
    seg = journal.segments[-1].path
    journal.close()
    data = bytearray(seg.read_bytes())
    rec = HEADER_SIZE + len(b"".join(id_lines(1, 2)))
    data[rec + HEADER_SIZE + 2] ^= 0x20  # a flipped bit in the second record's payload
    seg.write_bytes(bytes(data[:-3]))  # and the last record torn
    got = {s: event_id_at(tmp_path, s) for s in range(1, 11)}
    assert got == {
        1: "feed:1",
        2: "feed:2",
        3: None,
        4: None,
        5: "feed:5",
        6: "feed:6",
        7: None,
        8: None,
        9: None,
        10: None,
    }
