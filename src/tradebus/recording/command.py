"""``tradebus replay FILE... [-c CONFIG] [--source NAME] [--speed N] [--from T] [--to T]``.

To standard output (the main path) the canonical events go as JSON lines, numbered from 1 as a
fresh journal would number them, in the order the adapter published them: the lines the live
run wrote for that source, ``seq`` aside. With ``-c`` they go to that config's sinks instead
(``into_sinks``). Everything else (what was skipped, where the replay diverged) is one line on
standard error.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from tradebus import config as config_mod
from tradebus import times
from tradebus.errors import ConfigError

# The CLI builds its parser from ``add_arguments`` on every start (``tradebus health`` too):
# the replay's modules (aiohttp under the adapters, zstandard) load only when it runs.
if TYPE_CHECKING:
    from tradebus.recording import files
    from tradebus.recording.replay import Stats
    from tradebus.schemas.events import Event

SUFFIX = ".jsonl.zst"  # recorder.SUFFIX, without importing the recorder here


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "files", nargs="+", metavar="FILE", help="recording files, or a source's directory"
    )
    parser.add_argument("-c", "--config", help="write to this config's sinks, not stdout")
    parser.add_argument("--source", help="replay only the recordings of this source")
    parser.add_argument(
        "--speed",
        type=float,
        default=0.0,
        help="0: as fast as possible (default); 1: real time; N: N times faster",
    )
    parser.add_argument("--from", dest="since", help="only events from this time (RFC 3339)")
    parser.add_argument("--to", dest="until", help="stop after this time (RFC 3339)")


def _time(value: str | None, flag: str) -> float | None:
    if value is None:
        return None
    canonical = times.canonical(value)
    if canonical is None:
        raise ConfigError(
            [f"{flag}: expected an RFC 3339 time (2026-06-09T14:30:00Z), got {value!r}"]
        )
    return times.to_epoch(canonical)


def paths(given: Sequence[str]) -> list[Path]:
    """The files named, a directory standing for the recordings in it."""
    from tradebus.recording import files

    out: list[Path] = []
    for name in given:
        path = Path(name)
        if path.is_dir():
            out.extend(sorted(path.glob(f"*{SUFFIX}")))
        elif not path.exists():
            raise files.RecordingError(f"{name}: no such file")
        else:
            out.append(path)
    if not out:
        raise files.RecordingError(f"{' '.join(given)}: no recording files ({SUFFIX}) there")
    return out


def select(
    runs: list[files.Run], source: str | None, cfg: config_mod.Config | None
) -> list[files.Run]:
    """The runs to replay; a recording of one type given as a source of another is refused."""
    from tradebus.recording.replay import ReplayError

    if source is not None:
        kept = [r for r in runs if r.source == source]
        if not kept:
            held = ", ".join(sorted({r.source for r in runs}))
            raise ReplayError(
                f"--source {source}: no recording of it among the files (they hold: {held})"
            )
        runs = kept
    if cfg is not None:
        by_name = {s.name: s for s in cfg.sources}
        for run in runs:
            named = by_name.get(run.source)
            if named is not None and config_mod.kind(named) != run.type:
                raise ReplayError(
                    f"{run.parts[0].path}: a {run.type} recording of {run.source!r}, and "
                    f"{run.source!r} in the config is a {config_mod.kind(named)} source: "
                    "refused (a recording replays only through the adapter it came from)"
                )
    return runs


def run(args: argparse.Namespace) -> int:
    """The command; errors that stop it are one line each and exit 2."""
    from tradebus.recording import files

    def report(line: str) -> None:
        print(f"tradebus replay: {line}", file=sys.stderr)

    try:
        since, until = _time(args.since, "--from"), _time(args.until, "--to")
        cfg = config_mod.load(args.config) if args.config else None
        runs = select(files.runs(paths(args.files)), args.source, cfg)
        if cfg is not None:
            stats = into_sinks(cfg, runs, speed=args.speed, since=since, until=until, report=report)
        else:
            stats = to_stdout(runs, speed=args.speed, since=since, until=until, report=report)
    except files.RecordingError as exc:
        report(str(exc))
        return 2
    if stats.closed:
        return 0
    summary = f"{stats.events:,} events from {len(runs)} run(s)"
    if stats.damage:
        summary += f"; {stats.damage} unreadable frame(s) or line(s) skipped"
    if stats.skipped:
        summary += (
            f"; {stats.skipped} record(s) of connections opened before the first file skipped"
        )
    if stats.divergences:
        summary += f"; the adapter diverged from the recording {stats.divergences} time(s)"
    report(summary)
    return 1 if stats.crashed else 0


def to_stdout(runs: Sequence[files.Run], **options: Any) -> Stats:
    """The main path: JSON lines on standard output, as the stdout sink writes them."""
    from tradebus.recording.replay import Stats, encoder, replay

    fd = sys.stdout.fileno()
    lines = encoder()
    seq = [0]

    def emit(events: Sequence[Event]) -> None:
        data, seq[0] = lines(events, seq[0])
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]

    try:
        return replay(runs, emit, **options)
    except BrokenPipeError:  # `| head`: the reader has what it wanted
        return Stats(closed=True)


def into_sinks(
    cfg: config_mod.Config,
    runs: Sequence[files.Run],
    *,
    report: Callable[[str], None],
    **options: Any,
) -> Stats:
    """Replay into ``cfg``'s sinks: a daemon of that config whose sources are the replays, its
    state in a directory of its own (a running daemon's journal is never touched).

    Kept to this one function: it builds on ``daemon.app`` as it is and changes with it."""
    import asyncio
    import tempfile

    from tradebus.adapters.base import SourceContext
    from tradebus.daemon.app import Daemon
    from tradebus.recording.replay import Stats, replay, source_config

    total = Stats()
    sources = {r.source: source_config(r) for r in runs}

    async def main(state: str) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        left = set(sources)

        async def replayed(ctx: SourceContext) -> None:
            async def publish(events: list[Event]) -> None:
                await ctx.publish(events)

            def emit(events: Sequence[Event]) -> None:
                # The replay's thread waits until the bus has the batch: order and no pile-up.
                asyncio.run_coroutine_threadsafe(publish(list(events)), loop).result()

            mine = [r for r in runs if r.source == ctx.name]
            done = await asyncio.to_thread(replay, mine, emit, report=report, **options)
            for name in ("events", "damage", "divergences", "skipped"):
                setattr(total, name, getattr(total, name) + getattr(done, name))
            left.discard(ctx.name)
            if not left:
                stop.set()
            await asyncio.Event().wait()  # an adapter runs until the daemon stops it

        class Replayer:
            def __init__(self, source: config_mod.SourceConfig, ctx: SourceContext) -> None:
                self.name = source.name
                self.ctx = ctx

            async def run(self) -> None:
                await replayed(self.ctx)

        daemon_cfg = msgspec.structs.replace(cfg.daemon, state_dir=state, http=None)
        replay_cfg = config_mod.with_overrides(
            cfg, sources=list(sources.values()), daemon=daemon_cfg
        )
        daemon = Daemon(
            replay_cfg, factories={config_mod.kind(s): Replayer for s in sources.values()}
        )
        await daemon.run(stop)

    with tempfile.TemporaryDirectory(prefix="tradebus-replay-") as state:
        asyncio.run(main(state))
    return total
