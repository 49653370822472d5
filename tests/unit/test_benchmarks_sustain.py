"""Rows 9-11: the rate search, counting the feeds' events, finding the delivery process, and
one paced run against a real daemon (numbers are printed by the bench, never checked)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec
from benchmarks import harness, procs, rows, sustain
from benchmarks.delivery import Scrape


def test_the_search_goes_up_while_probes_hold_then_halves_the_bracket() -> None:
    """Up by 1.5x from the first guess while probes hold, then between the highest that held
    and the lowest that did not, until they are within 10% of each other."""
    assert sustain.next_rate(60_000, [], []) == 60_000
    assert sustain.next_rate(60_000, [60_000], []) == 90_000
    assert sustain.next_rate(60_000, [60_000, 90_000], []) == 140_000  # 135,000 to 2 digits
    assert sustain.next_rate(60_000, [60_000], [90_000]) == 75_000
    assert sustain.next_rate(60_000, [60_000, 75_000], [90_000]) == 82_000
    assert sustain.next_rate(60_000, [75_000, 82_000], [90_000]) is None  # within 10%


def test_the_search_goes_down_while_no_probe_holds() -> None:
    assert sustain.next_rate(60_000, [], [60_000]) == 40_000
    assert sustain.next_rate(60_000, [], [60_000, 40_000]) == 27_000
    # A noisy host: a rate that held above one that did not ends the search.
    assert sustain.next_rate(60_000, [90_000], [75_000]) is None


def test_the_delivery_process_comes_from_readyz_else_from_the_daemons_children() -> None:
    """``/readyz``'s ``delivery`` object names the process; without it (a daemon that predates
    it) the daemon's children are taken, and none means one process does everything."""
    no_kids: list[int] = []

    def kids(_pid: int) -> list[int]:
        return list(no_kids)

    state: dict[str, Any] = {"delivery": {"pid": 42, "mode": "process", "restarts": 2}}
    assert sustain.pids_of(state, 7, kids) == sustain.Pids(7, (42,), "process", 2)
    inline = {"delivery": {"pid": 7, "mode": "inline", "restarts": 0}}
    assert sustain.pids_of(inline, 7, kids) == sustain.Pids(7, (), "inline", 0)
    assert sustain.pids_of({"ready": True}, 7, kids) == sustain.Pids(7, (), "one process")
    no_kids.append(43)
    assert sustain.pids_of({"ready": True}, 7, kids) == sustain.Pids(7, (43,), "process")
    # The pid given is the daemon's own: the child is looked for instead.
    odd = {"delivery": {"pid": 7, "mode": "process", "restarts": 0}}
    assert sustain.pids_of(odd, 7, kids).delivery == (43,)


def test_children_lists_a_process_started_here() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert child.pid in procs.children(os.getpid())
    finally:
        child.kill()
        child.wait()


def test_pss_counts_pages_shared_with_a_child_once_between_them() -> None:
    """Two interpreters map the same libpython: their PSS adds up to less than their RSS."""
    script = "import time; print('up', flush=True); time.sleep(30)"
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)  # noqa: S603 - ours
    with child:
        try:
            assert child.stdout is not None
            assert child.stdout.readline() == b"up\n"  # started: its memory holds still
            me = os.getpid()
            rss = procs.status_kib(me, "VmRSS") + procs.status_kib(child.pid, "VmRSS")
            pss = procs.pss_kib(me) + procs.pss_kib(child.pid)
            assert 0 < procs.pss_kib(me) <= procs.status_kib(me, "VmRSS")
            assert pss < rss
        finally:
            child.kill()
    assert procs.pss_kib(child.pid) == 0  # gone


def test_a_sinks_backlog_counts_what_was_not_ingested_and_what_it_did_not_acknowledge() -> None:
    s = Scrape(at=0.0, cpu=0.0, bus=102.0, sinks={"a": 102.0, "b": 60.0}, buckets={}, feed=100.0)
    # 2 status events beside 100 of the feeds' 110: 10 unread, and b 42 behind the bus.
    assert sustain.backlogs(s, 110, ["a", "b"]) == {"a": 10, "b": 52}
    assert sustain.backlogs(s, 100, ["a", "b"]) == {"a": 0, "b": 42}


def test_feeds_count_the_events_of_any_number_of_frames(tmp_path: Path) -> None:
    # A batch update gives one event per position.
    mixed = SimpleNamespace(naive_path=tmp_path / "mix.sse", naive_counts=[1, 3, 1, 2])
    feeds = sustain.Feeds(mixed)  # type: ignore[arg-type]
    assert feeds.frames == 4
    assert feeds.per_frame == 7 / 4
    assert [feeds.events_in(n) for n in (0, 1, 2, 4, 5, 9)] == [0, 1, 4, 7, 8, 7 + 7 + 1]


def test_a_paced_run_counts_every_event_it_sent_into_the_sink() -> None:
    """Two paced feeds repeating the mix (more frames than the file holds) into a real daemon:
    every event sent is ingested and held by the file sink, as the daemon's /metrics say."""
    sizes = rows.TINY
    with harness.workdir() as work:
        mix = rows.MixFrames(work, sizes)
        bench = sustain.Bench(work, sizes, sustain.Feeds(mix))
        sent_frames = 4_000 * 0.5 / bench.feeds.per_frame
        assert sent_frames > bench.feeds.frames  # the feeds repeat the file
        sink = harness.file_sink(work.path("out.jsonl"))
        w = bench.run([sink], 4_000, 0.5, limit=10.0)
    assert w.sent == bench.feeds.events_in(int(sent_frames / 2)) * 2
    assert w.last.feed == w.sent
    assert w.backlog == {"file": 0}
    assert w.held or w.slowed
    assert w.pids.daemon > 0
    assert w.rss_daemon > 0
    msgspec.json.encode(w)  # a plain record: what the row prints comes from it


def _watch(seconds: float, blocked: float, caught: list[str]) -> sustain.Watch:
    s = Scrape(at=0.0, cpu=0.0, bus=0.0, sinks={}, buckets={})
    return sustain.Watch(
        asked=100.0,
        sent=300,
        start=10.0,
        end=10.0 + seconds,
        blocked=blocked,
        first=s,
        stopped=s,
        last=s,
        backlog={"a": 0 if "a" in caught else 5, "b": 0 if "b" in caught else 5},
        caught=dict.fromkeys(caught, (11.0 + seconds, 300.0)),
        cpu_daemon=1.0,
        cpu_delivery=0.0,
        rss_daemon=50.0,
        rss_delivery=0.0,
        pids=sustain.Pids(1, (), "one process"),
    )


def test_a_probe_holds_when_every_sink_caught_up_and_the_daemon_never_held_the_feeds_back() -> None:
    """300 events asked at 100/s: on time and every sink caught up holds; a sink behind does
    not; feeds late because their writes waited for the daemon do not hold, feeds late for want
    of CPU on their own core hold at the rate they sent."""
    assert _watch(3.0, 0.0, ["a", "b"]).held
    assert not _watch(3.0, 0.0, ["a"]).held
    held_back = _watch(4.0, 0.8, ["a", "b"])
    assert held_back.late
    assert held_back.slowed
    assert not held_back.held
    assert held_back.pace() == "the daemon slowed the feeds: 75/s sent"
    busy_core = _watch(4.0, 0.1, ["a", "b"])
    assert busy_core.late
    assert not busy_core.slowed
    assert busy_core.held
    assert busy_core.pace().startswith("the sender's core fell behind: 75/s sent")
