"""The paced sender repeats a file of frames as one endless stream, every frame with a new id."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import msgspec
import pytest
from benchmarks.frames import Mix
from benchmarks.procs import wait_file
from benchmarks.sender import Renumbered

ROOT = Path(__file__).resolve().parents[2]


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


def test_a_held_sender_sends_nothing_until_told(tmp_path: Path) -> None:
    """With --hold, each feed answers its client (the headers) and sends its frames only
    after SIGUSR1; then every feed reports its frames and its end."""
    frames = tmp_path / "mix.sse"
    Mix(20).write(frames)
    info, done = tmp_path / "info.json", [tmp_path / "a.done", tmp_path / "b.done"]
    args = ["--frames", str(frames), "--rate", "2000", "--events", "30", "--feeds", "2"]
    args += ["--hold", "--done", str(done[0]), "--done", str(done[1])]
    sender = subprocess.Popen(  # noqa: S603 - our own sender
        [sys.executable, "-m", "benchmarks.sender", "--info", str(info), "ttmt", *args],
        cwd=ROOT,
    )
    socks: list[socket.socket] = []
    try:
        tables = msgspec.json.decode(wait_file(info, sender))["tables"]
        assert [t["name"] for t in tables] == ["bench-1", "bench-2"]
        for t in tables:
            sock = socket.create_connection(("127.0.0.1", urlsplit(t["url"]).port))
            sock.sendall(b"GET /api/v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            sock.settimeout(10)
            socks.append(sock)
        heads = [sock.recv(65536) for sock in socks]
        assert all(h.startswith(b"HTTP/1.1 200") for h in heads)
        assert all(b"id: " not in h for h in heads)
        for sock in socks:  # a sender that did not hold sends 2,000 frames a second
            sock.settimeout(0.3)
            with pytest.raises(TimeoutError):
                sock.recv(65536)
            sock.settimeout(10)
        assert not any(done_path.exists() for done_path in done)
        sender.send_signal(signal.SIGUSR1)
        reports = [msgspec.json.decode(wait_file(p, sender)) for p in done]
        assert [r["frames"] for r in reports] == [30, 30]
        assert all(r["end"] > r["start"] for r in reports)
        body = b"".join(heads[:1])
        while body.count(b"\n\n") < 30:
            body += socks[0].recv(65536)
        assert b"id: 30\n" in body
        assert b"id: 21\n" in body  # past the file's 20 frames: repeated with new ids
    finally:
        for sock in socks:
            sock.close()
        sender.terminate()
        sender.wait()
