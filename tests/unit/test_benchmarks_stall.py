"""Row 12: what it prints of the quiet and stalled stretches, and how it tells a held client
from a dropped one (the numbers themselves are never checked)."""

from __future__ import annotations

import socket
import time

import pytest
from benchmarks import stall
from benchmarks.stall import Phase


def stretch(seconds: float, rate: float, rss: float, *, behind: int = 0) -> Phase:
    return Phase(
        seconds, rate * seconds, rate * seconds, 0.1 * seconds, rss, 30.0, rss, 30.0, behind
    )


def test_the_quiet_stretches_around_the_stall_cancel_a_steady_drift() -> None:
    """Memory rising 1 MB a second from 50 MB: the quiet stretches (0-3 s, 11-14 s) average
    what the stall (3-11 s) averages, so the ratio says 100%, not the drift."""
    before, after = stretch(3, 5_000, 51.5), stretch(3, 4_000, 62.5, behind=7)
    quiet = stall.around(before, after)
    assert quiet.seconds == 6
    assert quiet.file_rate == 4_500
    assert quiet.rss_daemon == 57.0
    assert quiet.peak_daemon == 62.5
    assert quiet.behind == 7  # at the end of the last stretch
    stalled = stretch(8, 4_500, 57.0)
    assert stall.ratios(quiet, stalled) == "file 100.0%, RSS daemon 100.0%, delivery 100.0%"
    assert stall.ratios(quiet, stretch(8, 4_050, 62.7)) == (
        "file 90.0%, RSS daemon 110.0%, delivery 100.0%"
    )


def test_the_rows_and_the_line_say_both_stretches_and_the_ratio() -> None:
    quiet, stalled = stretch(6, 5_000, 50.0, behind=12), stretch(8, 4_900, 51.0)
    client = "the client was held, not dropped"
    none, held = stall.table_rows(5_000, quiet, stalled, client)
    assert none.name == "12 5,000/s → file, no stream client"
    assert held.name == "12 5,000/s → file, a stalled stream client"
    assert (none.rate, held.rate) == (5_000, 4_900)
    assert held.rss_mb == 81.0  # the stretch's highest samples, both processes
    assert not none.relative
    assert none.note == (
        "6 s; file 5,000/s (feeds 5,000/s, 12 behind at the end), "
        "mean RSS daemon 50.0 MB, delivery 30.0 MB"
    )
    assert held.note.endswith(
        "; against none: file 98.0%, RSS daemon 102.0%, delivery 100.0%; " + client
    )
    line = stall.summary(5_000, quiet, stalled, client)
    assert line.startswith("  12 at 5,000/s: no stream client (6 s, before the stall and after")
    assert "one /api/v1/events client that stops reading (8 s): file 4,900/s" in line
    assert "stalled over none: file 98.0%, RSS daemon 102.0%" in line


def test_a_daemon_without_a_delivery_process_shows_one_rss() -> None:
    one = Phase(8, 40_000, 40_000, 1.0, 50.0, 0.0, 51.0, 0.0)
    assert "delivery" not in one.text()
    assert stall.ratios(one, one) == "file 100.0%, RSS daemon 100.0%"


def test_held_tells_an_open_stream_from_one_the_server_closed() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        conn, _ = server.accept()
        with client:
            conn.sendall(b"data: x\n\n")  # unread, as the stalled client leaves it
            assert stall.held(client) == "the client was held, not dropped"
            conn.close()
            deadline = time.monotonic() + 5
            while (said := stall.held(client)).startswith("the client was held"):
                if time.monotonic() > deadline:
                    pytest.fail("the close never reached the client")
                time.sleep(0.01)
            assert said.startswith("the daemon closed the client")
