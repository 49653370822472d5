"""Row 7's timed sink: a plugin found by its entry point and loaded alone by its reference, as
the delivery process does, and the two latencies it records per event."""

from __future__ import annotations

import os
import time
from array import array
from importlib.metadata import distributions
from pathlib import Path

import msgspec
from benchmarks import latsink
from benchmarks.frames import STAMP_PREFIX

from tests.sinkctx import context
from tradebus.plugin import SinkPlugin
from tradebus.registry import Registry
from tradebus.schemas.events import PositionData, PositionUpdated
from tradebus.sinks.base import Batch
from tradebus.times import now


def test_the_plugin_is_an_entry_point_of_its_site_and_loads_alone(tmp_path: Path) -> None:
    env = latsink.env(tmp_path / "site")
    site = env["PYTHONPATH"].split(os.pathsep)[0]
    eps = [ep for d in distributions(path=[site]) for ep in d.entry_points]
    assert [(ep.group, ep.name, ep.value) for ep in eps] == [
        ("tradebus.sinks", "bench_latency", "benchmarks.latsink:PLUGIN")
    ]
    assert str(latsink.REPO) in env["PYTHONPATH"].split(os.pathsep)
    alone: Registry[SinkPlugin] = Registry("tradebus.sinks", SinkPlugin)
    assert alone.load(eps[0].name, eps[0].value) is latsink.PLUGIN
    assert latsink.PLUGIN.factory is latsink.TimedFileSink


async def test_each_event_gets_its_stamp_and_append_latency(tmp_path: Path) -> None:
    """The stamped event gives a stamp sample, both give an append sample from the batch's
    ``t0``; the lines are in the file, the samples whole in theirs after ``close``."""
    stamps, appends = tmp_path / "stamps.bin", tmp_path / "appends.bin"
    config = latsink.TimedFileConfig(
        name="lat", path=str(tmp_path / "out.jsonl"), stamps=str(stamps), appends=str(appends)
    )
    sink = latsink.PLUGIN.factory(config)
    await sink.open(context())
    sent = time.monotonic_ns() - 5_000_000
    t = now()
    events = [
        PositionUpdated(
            id=f"s:{i}",
            source="s",
            provider="ttmt",
            time=t,
            received=t,
            data=PositionData(position_id=pid),
        )
        for i, pid in enumerate((f"{STAMP_PREFIX}{sent}", "plain"))
    ]
    batch = Batch(
        msgspec.json.encode(events[0]) + b"\n" + msgspec.json.encode(events[1]) + b"\n",
        2,
        events,
        first_seq=1,
        last_seq=2,
    )
    batch.t0 = time.time() - 0.002
    await sink.write(batch)
    assert not stamps.exists()
    await sink.close()
    from_stamp, from_append = array("q", stamps.read_bytes()), array("q", appends.read_bytes())
    assert len(from_stamp) == 1
    assert 5_000_000 <= from_stamp[0] < 5_000_000_000
    assert len(from_append) == 2
    assert all(2_000_000 <= s < 2_000_000_000 for s in from_append)
    assert len((tmp_path / "out.jsonl").read_bytes().splitlines()) == 2
