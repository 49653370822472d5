"""The paced sender repeats a file of frames as one endless stream, every frame with a new id."""

from __future__ import annotations

import pytest
from benchmarks.frames import Mix
from benchmarks.sender import Renumbered


def test_renumbered_frames_repeat_the_mix_with_new_ids() -> None:
    """The file's own frames first, then the same frames again with ids that go on."""
    mix = Mix(50)
    data = b"".join(mix.frames)
    again = Renumbered(data)
    assert again.frames(0, 50) == data
    second = again.frames(50, 50).split(b"\n\n")[:-1]
    assert second[0].startswith(b"id: 51\n")
    assert b'"eventId":51,' in second[0]
    assert second[0].replace(b"51", b"1", 2) == mix.frames[0].rstrip(b"\n")
    assert second[-1].startswith(b"id: 100\n")
    with pytest.raises(ValueError, match="without an id"):
        Renumbered(b'data: {"eventId":1,"type":"x"}\n\n')
