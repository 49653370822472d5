"""`tradebus status`'s table, rendered from /readyz bodies (pure: no endpoint needed)."""

from __future__ import annotations

from typing import Any

from tradebus.probe import render

AUTH = "status.auth_failed:unauthorized:401"


def body(**changes: Any) -> dict[str, Any]:
    source = {
        "connected": True,
        "since": 1.0,
        "last_event_age": 0.25,
        "events": 1200,
        "reconnects": 2,
        "gaps": 1,
        "last_error": None,
        "required": True,
        "ready": True,
    }
    sink = {
        "written": 5000,
        "failed": False,
        "retries": 0,
        "backlog": 1234,
        "dead_letters": 3,
        "state": "writing",
        "lag_seconds": 0.5,
        "error": None,
        "last_error": None,
        "ready": True,
    }
    state: dict[str, Any] = {
        "ready": True,
        "sources": {"ttmt": dict(source), "alerts": {**source, "last_event_age": None}},
        "sinks": {"archive": dict(sink)},
    }
    for key, value in changes.items():
        section, name, field = key.split("__")
        state[section][name][field] = value
    return state


def test_a_row_per_source_and_sink_with_rates_from_two_readings() -> None:
    """Events/s is the difference of two readings over the time between them."""
    before = body(sources__ttmt__events=1000, sinks__archive__written=4000)
    assert render(body(), before, 2.0).splitlines() == [
        "SOURCE  STATE      EV/S   LAST EVENT  RECONNECTS  GAPS  ERROR",
        "ttmt    connected  100.0  0.2s        2           1",
        "alerts  connected  0.0    -           2           1",
        "SINK     STATE    EV/S   BACKLOG  LAG   RETRIES  DEAD  ERROR",
        "archive  writing  500.0  1,234    0.5s  0        3",
        "ready",
    ]


def test_one_reading_gives_no_rates_and_states_say_what_is_wrong() -> None:
    """Without a first reading the rate reads '-'; a down source and a failing sink say so."""
    state = body(
        sources__alerts__connected=False,
        sources__alerts__ready=False,
        sources__alerts__last_error=AUTH,
        sinks__archive__error="RetryableSinkError: disk full",
        sinks__archive__last_error="RetryableSinkError: disk full",
        sinks__archive__retries=3,
    )
    state["ready"] = False
    lines = render(state).splitlines()
    assert lines[1].split()[:3] == ["ttmt", "connected", "-"]
    assert lines[2].split() == ["alerts", "down", "-", "-", "2", "1", AUTH]
    assert lines[4].split()[:7] == ["archive", "retrying", "-", "1,234", "0.5s", "3", "3"]
    assert lines[4].endswith("RetryableSinkError: disk full")
    assert lines[-1] == "NOT READY"


def test_optional_and_reconnecting_sources_are_not_called_down() -> None:
    """A source between planned reconnects, or not required, is shown for what it is."""
    state = body(
        sources__alerts__connected=False,
        sources__alerts__required=False,
        sources__ttmt__connected=False,
    )
    lines = render(state).splitlines()
    assert lines[1].split()[1] == "reconnecting"
    assert lines[2].split()[1:3] == ["down", "(optional)"]


def test_a_sink_behind_is_catching_up_and_past_its_max_lag_is_lagging() -> None:
    """A sink a second or more behind is "catching up"; past its max_lag (not ready) it says
    so in red, and a sink whose delivery process restarts says that."""
    lines = render(body(sinks__archive__lag_seconds=4.0)).splitlines()
    assert lines[4].split()[:3] == ["archive", "catching", "up"]
    lines = render(body(sinks__archive__lag_seconds=90.0, sinks__archive__ready=False)).split("\n")
    assert lines[4].split()[:2] == ["archive", "lagging"]
    lines = render(body(sinks__archive__state="restarting")).splitlines()
    assert lines[4].split()[:2] == ["archive", "restarting"]


def test_colour_only_when_asked_and_columns_stay_aligned() -> None:
    """On a TTY the state is coloured; the escape codes do not shift the columns."""
    plain = render(body()).splitlines()
    coloured = render(body(), color=True).splitlines()
    assert "\033[" not in "".join(plain)
    assert coloured[1] == plain[1].replace("connected", "\033[32mconnected\033[0m", 1)
    assert coloured[-1] == "\033[32mready\033[0m"


def test_a_recording_source_gets_a_line_with_its_path_and_size() -> None:
    """`tradebus status` names each recording under the table, with what it wrote."""
    state = body(
        sources__ttmt__recording="/var/lib/tradebus/recordings/ttmt/x.jsonl.zst",
        sources__ttmt__recorded_bytes=2_500_000,
        sources__alerts__recording=None,
    )
    lines = render(state).splitlines()
    assert lines[-2:] == [
        "recording ttmt: /var/lib/tradebus/recordings/ttmt/x.jsonl.zst (2.5 MB written)",
        "ready",
    ]
    assert sum(line.startswith("recording ") for line in lines) == 1


def test_a_sink_a_reload_could_not_open_is_marked_and_named_until_one_applies() -> None:
    """A partial reload's failed sink: its row says so in words (colour aside), a line under
    the generation names it and why; a refused reload since keeps it there, after its own
    problems; with none failed, neither shows."""
    why = "sink archive: cannot open /srv/out/x.jsonl: Permission denied"
    state = body()
    state["reload"] = {
        "generation": 3,
        "last_result": "refused",
        "last_problems": ["daemon.log_format: restart only"],
        "failed_sinks": {"archive": why},
    }
    lines = render(state).splitlines()
    assert lines[4].split()[:4] == ["archive", "writing", "(reload", "failed)"]
    assert lines[-4:] == [
        "config generation 3, last reload: refused",
        "  daemon.log_format: restart only",
        "  not applied: sink archive (cannot open /srv/out/x.jsonl: Permission denied)",
        "ready",
    ]
    coloured = render(state, color=True).splitlines()
    assert "\033[33mwriting (reload failed)" in coloured[4]
    # Right after the partial reload its problem is the failed sink's: said once.
    state["reload"] |= {"last_result": "partial", "last_problems": [f"sinks.archive: {why}"]}
    lines = render(state).splitlines()
    assert lines[-3:] == [
        "config generation 3, last reload: partial",
        "  not applied: sink archive (cannot open /srv/out/x.jsonl: Permission denied)",
        "ready",
    ]
    state["reload"] |= {"last_result": "applied", "last_problems": [], "failed_sinks": {}}
    lines = render(state).splitlines()
    assert lines[4].split()[:2] == ["archive", "writing"]
    assert "reload failed" not in lines[4]
    assert not any("not applied" in line for line in lines)
