"""TTMT's event sequence without a socket: dedupe, the first cursor, gaps after a resume."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from tradebus import times
from tradebus.adapters.ttmt import wire
from tradebus.adapters.ttmt.normalize import normalize
from tradebus.adapters.ttmt.session import Session
from tradebus.schemas.events import Event
from tradebus.sse import SSEMessage

SOURCE = "t"
RECEIVED = "2026-06-09T14:50:00.007Z"


def raw(data: str, event_id: str | None) -> SSEMessage:
    return SSEMessage(event="message", data=data, id=event_id, retry=None)


def frame(event_id: int) -> SSEMessage:
    data = (
        f'{{"type":"tp_hit","eventId":{event_id},"timestamp":"2026-06-09T14:34:00.000Z",'
        f'"data":{{"tradeId":"t{event_id}","tpLevel":"TP1"}}}}'
    )
    return raw(data, str(event_id))


def control(kind: str) -> SSEMessage:
    data = (
        '{"type":"recycle","eventId":0}'
        if kind == "recycle"
        else '{"type":"auth_revoked","eventId":0,"data":{"reason":"key_revoked"}}'
    )
    return raw(data, None)


def journaled(*ids: int) -> list[Event]:
    events: list[Event] = []
    for event_id in ids:
        message = wire.decode(frame(event_id).data)
        events += normalize(message, SOURCE, RECEIVED, times.Refusals())
    return events


def read(session: Session, messages: Sequence[SSEMessage]) -> list[str]:
    """One read as the adapter does it: the batch, then its ids marked seen (published)."""
    events: list[Event] = []
    fresh: set[int] = set()
    session.read(messages, RECEIVED, times.Refusals(), events, fresh)
    session.seen.update(fresh)
    return [e.id for e in events]


def test_the_first_cursor_is_the_highest_id_journaled_else_the_start() -> None:
    session = Session(SOURCE)
    assert session.resume_from([*journaled(3, 7, 5), *journaled(7)]) == 3
    assert (session.cursor, session.highest) == ("7", 7)
    assert all(n in session.seen for n in (3, 5, 7))
    assert Session(SOURCE).cursor == "0"
    assert Session(SOURCE, start="latest").cursor == ""


def test_replays_and_repeats_within_a_read_are_dropped_and_counted() -> None:
    session = Session(SOURCE)
    session.resume_from(journaled(1, 2))
    session.connected()
    assert read(session, [frame(n) for n in (1, 2, 3, 3, 4)]) == ["t:3", "t:4"]
    assert read(session, [frame(4), frame(5)]) == ["t:5"]
    assert session.duplicates == 4
    assert session.gap is None


def test_a_resume_past_the_replay_buffer_notes_the_missing_range_once() -> None:
    session = Session(SOURCE)
    session.resume_from(journaled(10))
    session.connected()
    assert read(session, [frame(15), frame(30)]) == ["t:15", "t:30"]
    assert session.gap == (11, 14)  # ids within one connection are the server's to order
    session.gap = None
    session.connected()
    read(session, [frame(31)])
    assert session.gap is None


def test_no_gap_is_told_when_ids_skip_other_accounts_events() -> None:
    session = Session(SOURCE, gap_detection=False)
    session.resume_from(journaled(10))
    session.connected()
    assert read(session, [frame(15)]) == ["t:15"]
    assert session.gap is None


def test_a_first_start_reveals_no_gap_and_bad_input_is_noted_with_its_id_tracked() -> None:
    session = Session(SOURCE)
    session.connected()
    broken = raw('{"type":"tp_hit","eventId":', "9")
    unknown = raw('{"type":"brand_new","eventId":10}', "10")
    assert read(session, [frame(5), broken, unknown, control("recycle")]) == ["t:5"]
    assert session.gap is None
    assert session.highest == 10
    assert [kind for kind, _, _ in session.problems] == ["malformed"]
    assert session.unknown == ["brand_new"]
    assert isinstance(session.control, wire.Recycle)
    session.connected()
    assert noted_control(session) is None
    read(session, [control("auth_revoked")])
    assert isinstance(noted_control(session), wire.AuthRevoked)


def noted_control(session: Session) -> object:
    return session.control


def test_an_undecodable_first_message_after_a_resume_still_tells_the_gap() -> None:
    session = Session(SOURCE)
    session.resume_from(journaled(3))
    session.connected()
    broken = raw("{", "8")
    assert read(session, [broken, frame(9)]) == ["t:9"]
    assert session.gap == (4, 7)


@settings(max_examples=200, deadline=None)
@given(
    history=st.lists(st.integers(0, 40), max_size=8),
    ids=st.lists(st.integers(0, 60), max_size=40),
    cuts=st.lists(st.integers(0, 40), max_size=6),
)
def test_any_split_of_a_stream_into_reads_publishes_the_same_ids_and_gap(
    history: list[int], ids: list[int], cuts: list[int]
) -> None:
    """However the socket cuts one connection's stream into reads, the ids published (each
    once, none journaled) and the gap are the same, and they are what the upstream doc says."""
    messages = [frame(n) for n in ids]

    def run(bounds: list[int]) -> tuple[list[str], tuple[int, int] | None]:
        session = Session(SOURCE)
        session.resume_from(journaled(*history))
        session.connected()
        published: list[str] = []
        for start, end in itertools.pairwise(bounds):
            published += read(session, messages[start:end])
        return published, session.gap

    whole = run([0, len(messages)])
    split = run(sorted({0, len(messages), *(c for c in cuts if c < len(messages))}))
    assert split == whole
    expected: list[str] = []
    for n in ids:
        if n not in history and f"t:{n}" not in expected:
            expected.append(f"t:{n}")
    gap = None
    if history and ids and ids[0] > max(history) + 1:
        gap = (max(history) + 1, ids[0] - 1)
    assert whole == (expected, gap)
