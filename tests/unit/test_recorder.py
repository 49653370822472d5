"""The recorder's files: a header per file, rotation by size, retention by size and age, a
bounded queue that says what it dropped, and everything queued written at close."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tradebus.recording import files
from tradebus.recording import format as fmt
from tradebus.recording.recorder import SUFFIX, Recorder


def recorder(path: Path, **options: object) -> Recorder:
    settings: dict[str, object] = {
        "max_bytes": 1 << 20,
        "retention_bytes": 1 << 30,
        "retention_age": 86400.0,
        "flush_every": 0.05,
        **options,
    }
    rec = Recorder(path, source="src", type_="ttmt", config={"name": "src"}, **settings)  # type: ignore[arg-type]
    rec.open(boot=1_796_000_000.123, seed=42)
    return rec


def read_all(path: Path) -> list[fmt.Record]:
    out: list[fmt.Record] = []
    for p in sorted(path.glob(f"*{SUFFIX}")):
        out += [i.record for i in files.items(p) if isinstance(i, fmt.Line)]
    return out


def test_every_file_starts_with_a_header_and_parts_follow_on(tmp_path: Path) -> None:
    """Past max_bytes a new file begins, with its own header (part 2, 3…); read in order the
    files give back every record, in order."""
    rec = recorder(tmp_path, max_bytes=4096)
    payloads = [os.urandom(700) for _ in range(60)]  # incompressible: the files fill up
    for i, data in enumerate(payloads):
        rec.recv(float(i), 1, data, binary=True)
        if i % 6 == 5:
            time.sleep(0.06)  # let a flush happen: frames of a few records each
    rec.close()
    names = sorted(tmp_path.glob(f"*{SUFFIX}"))
    assert len(names) > 3
    headers = [files.header(p) for p in names]
    assert [h.part for h in headers] == list(range(1, len(names) + 1))
    assert {(h.source, h.type, h.run, h.seed) for h in headers} == {
        ("src", "ttmt", f"{1_796_000_000_123:x}", 42)
    }
    records = [r for r in read_all(tmp_path) if isinstance(r, fmt.Recv)]
    assert [fmt.payload(r) for r in records] == payloads
    assert all(p.stat().st_size <= 4096 + 2048 for p in names)  # one frame past at most


def test_retention_deletes_the_oldest_files_past_the_bytes_allowed(tmp_path: Path) -> None:
    """Whole files go, oldest first, once the directory holds more than retention_bytes; the
    newest are kept."""
    rec = recorder(tmp_path, max_bytes=4096, retention_bytes=12_000)
    for i in range(80):
        rec.recv(float(i), 1, os.urandom(700), binary=True)
        if i % 5 == 4:
            time.sleep(0.06)
    rec.close()
    names = sorted(tmp_path.glob(f"*{SUFFIX}"))
    total = sum(p.stat().st_size for p in names)
    assert total <= 12_000 + 4096 + 2048  # the file being written is never deleted
    assert files.header(names[0]).part > 1  # the first files went
    assert [files.header(p).part for p in names] == sorted(files.header(p).part for p in names)


def test_retention_deletes_files_older_than_the_age_allowed(tmp_path: Path) -> None:
    """A file older than retention_age goes when the next file opens; a young one stays."""
    old = tmp_path / f"20200101T000000Z-1-0001{SUFFIX}"
    young = tmp_path / f"20200101T000001Z-2-0001{SUFFIX}"
    for p in (old, young):
        p.write_bytes(b"")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    rec = recorder(tmp_path, retention_age=3600.0)
    rec.recv(1.0, 1, b"x", binary=False)
    rec.close()
    assert not old.exists()
    assert young.exists()


def test_a_queue_past_its_bound_drops_and_says_so(tmp_path: Path) -> None:
    """The source never waits: past max_pending, events are dropped, counted, and a ``lost``
    record marks the place."""
    rec = recorder(tmp_path, max_pending=10_000, flush_every=60.0)
    for i in range(30):
        rec.recv(float(i), 1, b"y" * 1000, binary=False)
    dropped = rec.lost
    rec.close()
    assert dropped == 20  # 10 fit in 10,000 bytes
    kinds = [type(r).__name__ for r in read_all(tmp_path)]
    assert kinds.count("Recv") == 10
    lost = [r for r in read_all(tmp_path) if isinstance(r, fmt.Lost)]
    assert [r.records for r in lost] == [20]


def test_close_writes_what_is_queued_and_an_end(tmp_path: Path) -> None:
    """Nothing queued is lost at shutdown; the recording says the adapter stopped there."""
    rec = recorder(tmp_path, flush_every=60.0)
    rec.add(fmt.Wake(t=5.0, label="backoff"))
    rec.close()
    assert [type(r).__name__ for r in read_all(tmp_path)] == ["Header", "Wake", "End"]
    assert rec.bytes_written == sum(p.stat().st_size for p in tmp_path.glob(f"*{SUFFIX}"))
