"""The table's rows. Each returns a ``Row``: its runs, or ``na`` saying why it cannot run yet."""

from __future__ import annotations

import contextlib
import importlib.util
import select
import statistics
import subprocess
import time
from array import array
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import msgspec

from benchmarks import latsink, procs
from benchmarks.harness import SenderSpec, Work, file_sink, run_daemon, start_sender, watch_lines
from benchmarks.procs import PYTHON
from benchmarks.result import Row, RunResult


class Sizes(msgspec.Struct, frozen=True):
    """How big each row's runs are: ``full`` for ``make bench``, ``tiny`` for the smoke test."""

    runs: int
    floor_events: int
    sse_events: int
    naive_events: int
    latency_seconds: float
    latency_loads: tuple[float, ...]
    timeout: float
    window: float  # seconds measured for the sources that never stop sending
    mixed_events: int  # what the SSE simulators script for row 5 (they pre-build it all)
    mix_frames: int  # frames of the TTMT simulator's own mix for rows 1b, 2b, 3b
    naive_mix_frames: int  # the first of them, for row 6b
    unpaired_runs: int = 1  # rows 5 and 6/6b: no ratio of theirs is paired run by run
    ws_runs: int = 1  # row 4's three rows, alternating
    # Rows 9-11 (benchmarks/sustain.py):
    probe_seconds: float = 3.0  # each probe of the sustainable rate
    probes: int = 3  # at most, for the four sinks' rate
    file_probes: int = 2  # at most, for the file sink alone (its target is probed first)
    # The first probes, 4 sinks and file alone: issue 25's targets, so the first probe says
    # whether the target holds. From lower guesses three probes could bracket a target without
    # telling (file alone: held at 180,000, not at 270,000, while 200,000 and 225,000 held).
    start_rates: tuple[float, float] = (90_000.0, 200_000.0)
    burst_rate: float = 120_000.0
    burst_seconds: float = 10.0
    catch_up: float = 10.0  # seconds a burst (or a sink alone) is watched after the feeds stop
    alone_rate: float = 20_000.0  # each sink alone (its CPU per event), below what each takes
    alone_seconds: float = 0.5
    alone_sinks: tuple[str, ...] = ("file", "stdout", "hook", "nats")
    reach_frames: int = 150_000  # per feed, sent as fast as it can into a bare reader
    # Row 7 again with delivery inline (the daemon runs the sink): at the target's load alone.
    latency_inline: tuple[float, ...] = (0.10,)
    # Row 12 (benchmarks/stall.py): the feeds' pace, the stall, the quiet stretch before it and
    # after it (each), the warm-up first: about 20 s in all with the daemon's start.
    stall_rate: float = 5_000.0
    stall_seconds: float = 8.0
    stall_quiet: float = 3.0
    stall_warm: float = 2.0


# Sized for ``make bench`` under 3 minutes: rows 1-3 at a million events took it to 382 s, at
# 400,000 to 190 s (2026-12-02); 300,000 still runs 1-3 s a row. Most of what is left is fixed:
# rows 4 and 5 are fixed windows (87 of 155 s at 2 s windows, 2026-12-03), hence 1.5 s windows
# and 1.5 s a latency load (125 s). Rows 9-11 take 60-100 s (11 daemon runs, a 10 s burst
# watched 10 s more), so the paired rows run 2 rounds and rows 5-6 once: 144 s on 2026-12-06
# with the host at load 1-3.7 (`make bench` prints each group's seconds); row 12 adds 18-19 s.
# A slower host (the floor at 290,000 events/s, not 480,000-520,000) took 215 s at 300,000
# events and an 8 s stall (rows 1-3b 48 s, row 5 34 s, rows 9-11 70 s), 206 s at 200,000: hence
# 150,000 events, row 5's simulators scripting 70,000 each, no row 7 at 1%, a 6 s stall, one
# round of row 4, two probes for the file sink alone and 0.5 s for each sink alone (row 11).
FULL = Sizes(
    2,
    150_000,
    150_000,
    60_000,
    1.5,
    (0.10, 0.30),
    90.0,
    1.5,
    70_000,
    50_000,
    20_000,
    stall_seconds=6.0,
)
TINY = Sizes(
    1,
    2_000,
    2_000,
    2_000,
    0.5,
    (0.01,),
    30.0,
    0.3,
    2_000,
    2_000,
    1_000,
    probe_seconds=0.3,
    probes=1,
    start_rates=(2_000.0, 2_000.0),
    burst_rate=4_000.0,
    burst_seconds=0.3,
    catch_up=10.0,
    alone_rate=2_000.0,
    alone_seconds=0.3,
    alone_sinks=("nats",),  # the one with the most parts; the others take the same path
    reach_frames=2_000,
    latency_inline=(0.01,),
    stall_rate=2_000.0,
    stall_seconds=0.5,
    stall_quiet=0.3,
    stall_warm=0.2,
)


def adapter_missing(kind: str) -> str | None:
    """Why the daemon cannot run a ``kind`` source yet, or None if it can."""
    from tradebus.plugin import source_factory

    try:
        source_factory(kind)
    except KeyError:
        return f"no {kind} adapter yet"
    return None


def simulator_missing(kind: str) -> str | None:
    if importlib.util.find_spec(f"tradebus.simulators.{kind}") is None:
        return f"no {kind} simulator yet"
    return None


def alternate(pairs: Sequence[tuple[Row, Callable[[], RunResult]]], runs: int) -> None:
    """``runs`` rounds, each running every row once, in order; a failure makes a row n/a.

    Rows whose ratio is a target (row 2 and the floor, row 4 and its reference) are measured
    round by round rather than one after the other: a host that slows down mid-bench (this VM's
    floor moved 1.6-2.1 us an event within minutes) then moves both sides of the ratio.
    """
    for _ in range(runs):
        for row, once in pairs:
            if row.na is not None:
                continue
            try:
                row.runs.append(once())
            except (RuntimeError, TimeoutError, OSError, KeyError, ValueError) as exc:
                row.na = f"failed: {exc}"[:120]
                row.runs.clear()


def _repeat(row: Row, runs: int, once: Callable[[], RunResult]) -> Row:
    alternate([(row, once)], runs)
    return row


def paired(row: Row, base: Row) -> str:
    """The spread of ``row``'s rate over ``base``'s, run by run (their runs alternated)."""
    if len(row.runs) < 2 or len(row.runs) != len(base.runs):
        return ""
    ratios = [r.rate / b.rate for r, b in zip(row.runs, base.runs, strict=True)]
    return f"run by run {min(ratios):.0%}-{max(ratios):.0%}"


def ratio(row: Row, base: Row, what: str) -> str:
    """``row`` as a share of ``base``: the median of run-by-run ratios and their spread when
    the runs were paired (the figure a target is judged on), else the ratio of medians."""
    if not row.runs or not base.runs:
        return ""
    if len(row.runs) != len(base.runs):
        return f"{row.rate / base.rate:.0%} of {what}"
    ratios = [r.rate / b.rate for r, b in zip(row.runs, base.runs, strict=True)]
    text = f"{statistics.median(ratios):.0%} of {what}"
    return f"{text} ({paired(row, base)})" if len(ratios) > 1 else text


class MixFrames:
    """The TTMT simulator's own mix, built once in a file for every row that reads it."""

    def __init__(self, work: Work, sizes: Sizes) -> None:
        from benchmarks.frames import Mix

        mix = Mix(sizes.mix_frames)
        self.path = work.path("mix.sse")
        self.events = mix.write(self.path)
        self.naive_path = work.path("mix-naive.sse")
        self.naive_events = mix.write(self.naive_path, sizes.naive_mix_frames)
        # Per frame of the short file: rows 9-11's senders repeat it (it starts faster).
        self.naive_counts = mix.events[: sizes.naive_mix_frames]


class Floor:
    """Row 1's (or 1b's) process: it builds or reads its frames once, then runs one pass each
    time it is asked.

    It waits between passes (blocked on its stdin, on the daemon's core) so that its runs can
    alternate with row 2's. Use as a context manager; ``once`` is one run.
    """

    def __init__(self, work: Work, sizes: Sizes, mix: MixFrames | None = None) -> None:
        self._timeout = sizes.timeout
        out = work.path("floor.jsonl")
        if mix is None:
            self.row = Row(name="1 floor (parts alone)")
            cmd = [PYTHON, "-m", "benchmarks.floor", str(sizes.floor_events), "0", str(out)]
        else:
            self.row = Row(name="1b floor, real mix")
            cmd = [PYTHON, "-m", "benchmarks.floormix", str(mix.path), "0", str(out)]
        self._log = work.path("floor.log")
        with open(self._log, "ab") as err:
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err
            )
        procs.pin(self._proc.pid, procs.DAEMON_CORE)

    def __enter__(self) -> Floor:
        return self

    def __exit__(self, *exc: object) -> None:
        proc = self._proc
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()  # EOF: the process ends after its current pass
        try:
            proc.wait(self._timeout)
        except subprocess.TimeoutExpired:
            procs.stop(proc)
        if proc.stdout is not None:
            proc.stdout.close()

    def once(self) -> RunResult:
        stdin, stdout = self._proc.stdin, self._proc.stdout
        if stdin is None or stdout is None:
            raise RuntimeError("the floor process has no pipes")
        stdin.write(b"\n")
        stdin.flush()
        # The first pass also waits for the frames to be built: the row's timeout covers both.
        ready, _, _ = select.select([stdout], [], [], self._timeout)
        if not ready:
            raise TimeoutError(f"no floor result in {self._timeout:.0f} s")
        line = stdout.readline()
        if not line:
            tail = self._log.read_bytes()[-300:].decode(errors="replace")
            raise RuntimeError(f"the floor process ended: {tail}")
        return msgspec.json.decode(line, type=RunResult)


def ttmt_file(work: Work, sizes: Sizes) -> tuple[Row, Callable[[], RunResult]]:
    """Row 2: pre-built TTMT frames → daemon → file sink; the row, and one run of it."""
    row = Row(name="2 TTMT SSE → file")
    row.na = adapter_missing("ttmt")
    n = sizes.sse_events

    def once() -> RunResult:
        out = work.path("out.jsonl")
        spec = SenderSpec("ttmt-bench", ("ttmt", "--events", str(n)))
        return run_daemon(work, [spec], [file_sink(out)], out, n, timeout=sizes.timeout)

    return row, once


def ttmt_recorded(work: Work, sizes: Sizes) -> tuple[Row, Callable[[], RunResult]]:
    """Row 2r: row 2 with ``record = true`` on its source: every read also goes to the
    recorder's queue, and its thread redacts, encodes, compresses and writes it (on the same
    tmpfs, on the daemon's core: the recording's whole cost is in the row)."""
    row = Row(name="2r TTMT SSE → file, recorded")
    row.na = adapter_missing("ttmt")
    n = sizes.sse_events

    def once() -> RunResult:
        out = work.path("out.jsonl")
        spec = SenderSpec("ttmt-bench", ("ttmt", "--events", str(n)), {"record": True})
        return run_daemon(work, [spec], [file_sink(out)], out, n, timeout=sizes.timeout)

    return row, once


def ttmt_durable(work: Work, sizes: Sizes) -> tuple[Row, Callable[[], RunResult]]:
    """Row 3: row 2's frames with the default durability (fsync every 100 ms of the journal).

    The scratch dir is a tmpfs when there is one, where fsync costs next to nothing: the row
    measures the journal's CPU cost, which is what the daemon's core pays whatever the disk."""
    row = Row(name="3 TTMT SSE → file, durable")
    row.na = adapter_missing("ttmt")
    n = sizes.sse_events

    def once() -> RunResult:
        out = work.path("out.jsonl")
        spec = SenderSpec("ttmt-bench", ("ttmt", "--events", str(n)))
        return run_daemon(
            work,
            [spec],
            [file_sink(out)],
            out,
            n,
            timeout=sizes.timeout,
            daemon_settings={"fsync": "interval"},
        )

    return row, once


def ttmt_mix(
    work: Work, sizes: Sizes, mix: MixFrames, *, durable: bool
) -> tuple[Row, Callable[[], RunResult]]:
    """Row 2b (or 3b, ``durable``: fsync every 100 ms): the TTMT simulator's own mix,
    pre-built → daemon → file sink; the row, and one run of it."""
    row = Row(name="3b TTMT real mix → file, durable" if durable else "2b TTMT real mix → file")
    row.na = adapter_missing("ttmt")
    settings = {"fsync": "interval"} if durable else None

    def once() -> RunResult:
        out = work.path("mix.jsonl")
        spec = SenderSpec("ttmt-mix", ("ttmt", "--frames", str(mix.path)))
        return run_daemon(
            work,
            [spec],
            [file_sink(out)],
            out,
            mix.events,
            timeout=sizes.timeout,
            daemon_settings=settings,
        )

    return row, once


def journal_append_cost(work: Work, sizes: Sizes) -> str:
    """The journal's own cost per event: appends of row 2's already-encoded lines, in batches
    of the size a busy read gives, timed in this process (interval fsync is off the path)."""
    import time

    import msgspec

    from benchmarks.frames import ttmt_frame
    from tradebus import times
    from tradebus.adapters.ttmt import wire
    from tradebus.adapters.ttmt.normalize import normalize
    from tradebus.journal.store import Journal

    encoder = msgspec.json.Encoder()
    lines = []
    for n in range(1, min(sizes.sse_events, 200_000) + 1):
        data = ttmt_frame(n).split(b"data: ", 1)[1].rstrip()
        lines.append(
            encoder.encode_lines(
                normalize(wire.decode(data), "bench", "2026-06-09T14:32:01.123Z", times.Refusals())
            )
        )
    batch = 256
    chunks = [b"".join(lines[i : i + batch]) for i in range(0, len(lines), batch)]
    state = work.path("journal-cost")
    journal, _ = Journal.open(state, fsync="never")
    try:
        started = time.perf_counter()
        for i, chunk in enumerate(chunks):
            journal.append((chunk,), min(batch, len(lines) - i * batch), 0)
        elapsed = time.perf_counter() - started
    finally:
        journal.close()
        import shutil

        shutil.rmtree(state, ignore_errors=True)
    return f"journal append {elapsed / len(lines) * 1e6:.2f} µs/event"


def naive(work: Work, sizes: Sizes, mix: MixFrames | None = None) -> Row:
    """Row 6: the same sender, read by ``benchmarks.naive`` on the daemon's core (row 6b: the
    first frames of the real mix)."""
    if mix is None:
        row = Row(name="6 naive (aiohttp+json)")
        n = sizes.naive_events
        args: tuple[str, ...] = ("ttmt", "--events", str(n))
        extra: list[str] = []
    else:
        row = Row(name="6b naive, real mix")
        n = mix.naive_events
        args = ("ttmt", "--frames", str(mix.naive_path))
        extra = ["--mix"]

    def once() -> RunResult:
        out = work.path("naive.jsonl")
        sender, info = start_sender(work, SenderSpec("naive", args))
        reader = None
        try:
            table = info["table"]
            reader = procs.spawn(
                [
                    PYTHON,
                    "-m",
                    "benchmarks.naive",
                    table["url"],
                    str(out),
                    table["api_key"],
                    *extra,
                ],
                core=procs.DAEMON_CORE,
                log=work.path("naive.log"),
            )
            return watch_lines(out, reader, n, sizes.timeout)
        finally:
            if reader is not None:
                procs.stop(reader)
            procs.stop(sender)
            out.unlink(missing_ok=True)

    return _repeat(row, sizes.unpaired_runs, once)


def latency(
    work: Work,
    sizes: Sizes,
    load: float,
    full_rate: float,
    delivery: Literal["process", "inline"] = "process",
) -> Row:
    """Row 7 at ``load`` times row 2's rate: stamped, paced frames into the timed file sink
    (``benchmarks/latsink.py``), a plugin run by the delivery process (``delivery =
    "process"``, on either core) or by the daemon itself (``"inline"``)."""
    inline = delivery == "inline"
    row = Row(name=f"7 latency @ {load:.0%}{', inline' if inline else ''}", relative=False)
    if why := adapter_missing("ttmt"):
        row.na = why
        return row
    if full_rate <= 0:
        row.na = "row 2 has no rate"
        return row
    rate = load * full_rate
    n = max(int(rate * sizes.latency_seconds), 200)
    stamps, appends = work.path("latency.bin"), work.path("latency-append.bin")
    out = work.path("lat.jsonl")
    spec = SenderSpec("ttmt-lat", ("ttmt", "--events", str(n), "--rate", f"{rate:.1f}", "--hold"))
    sink = {
        **file_sink(out),
        "type": latsink.TYPE,
        "stamps": str(stamps),
        "appends": str(appends),
    }
    env = latsink.env(work.path("latsink-site"))

    def once() -> RunResult:
        return run_daemon(
            work,
            [spec],
            [sink],
            out,
            n,
            timeout=sizes.timeout,
            daemon_settings={"delivery": delivery},
            env=env,
            unpin_delivery=not inline,
            hold=True,
        )

    _repeat(row, 1, once)
    if row.na is None:
        legs = (("sender stamp", stamps), ("append", appends))
        row.note = f"{rate:,.0f}/s paced, to the sink's write returned; " + "; ".join(
            f"from {what}: {_percentiles(path)}" for what, path in legs
        )
    return row


def _percentiles(path: Path) -> str:
    samples = array("q")
    deadline = time.monotonic() + 10
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    samples.frombytes(path.read_bytes())
    # The first tenth is warm-up: the connection is new and the caches are cold.
    ms = sorted(s / 1e6 for s in samples[len(samples) // 10 :])
    if not ms:
        return "no samples"

    def q(p: float) -> float:
        return ms[min(len(ms) - 1, int(p * len(ms)))]

    return (
        f"p50 {q(0.5):.3f} ms, p99 {q(0.99):.3f} ms, p99.9 {q(0.999):.3f} ms ({len(ms):,} samples)"
    )


TRADER_USER = ("--username", "bench", "--password", "bench-pass")
QUOTES_ONLY: dict[str, Any] = {
    "events": ["quoteEvent"],
    "depth": [],
    "depth_levels": None,
    "metrics_accounts": [],
}


def traderws(work: Work, sizes: Sizes) -> list[Row]:
    """Row 4: Trader WS quotes → daemon → file, beside the WebSocket floor (the parts alone, on
    the same sender: ``benchmarks.wsref`` with a sink file) and the bare ``ws_connect`` reader;
    the three alternate round by round."""
    row = Row(name="4 Trader WS quotes → file")
    ref = Row(name="4 ref: WebSocket floor")
    bare = Row(name="4 bare ws_connect reader")
    if why := simulator_missing("traderws"):
        row.na = ref.na = bare.na = why
        return [row, ref, bare]
    spec = SenderSpec(
        "trader-bench", ("sim", "traderws", "--rate", "0", "--no-fills", *TRADER_USER), QUOTES_ONLY
    )
    row.na = adapter_missing("traderws")

    def once() -> RunResult:
        out = work.path("trader.jsonl")
        return run_daemon(
            work,
            [spec],
            [file_sink(out)],
            out,
            None,
            timeout=sizes.timeout,
            duration=sizes.window,
            warmup=sizes.window / 5,
        )

    alternate(
        [
            (ref, lambda: _ws_reference(work, spec, sizes, floor=True)),
            (bare, lambda: _ws_reference(work, spec, sizes, floor=False)),
            (row, once),
        ],
        sizes.ws_runs,
    )
    notes = []
    for base, what in ((ref, "the WebSocket floor"), (bare, "the bare reader")):
        if row.runs and base.runs:
            spread = paired(row, base)
            notes.append(
                f"{row.rate / base.rate:.0%} of {what}" + (f" ({spread})" if spread else "")
            )
    row.note = "; ".join(notes)
    return [row, ref, bare]


def _ws_reference(work: Work, spec: SenderSpec, sizes: Sizes, *, floor: bool) -> RunResult:
    sender, info = start_sender(work, spec)
    reader = None
    out = work.path("wsref.json")
    sink = [str(work.path("wsfloor.jsonl"))] if floor else []
    try:
        table = info["table"]
        reader = procs.spawn(
            [
                PYTHON,
                "-m",
                "benchmarks.wsref",
                table["url"],
                table["username"],
                table["password"],
                ",".join(table["symbols"]),
                str(sizes.window),
                str(out),
                *sink,
            ],
            core=procs.DAEMON_CORE,
            log=work.path("wsref.log"),
        )
        return msgspec.json.decode(procs.wait_file(out, reader, sizes.timeout), type=RunResult)
    finally:
        if reader is not None:
            procs.stop(reader)
        procs.stop(sender)


def all_sources_specs(sizes: Sizes) -> list[SenderSpec]:
    many = str(sizes.mixed_events)
    return [
        SenderSpec("ttmt-all", ("sim", "ttmt", "--rate", "0", "--events", many)),
        SenderSpec("alerts-all", ("sim", "tpalerts", "--rate", "0", "--events", many)),
        SenderSpec("trader-all", ("sim", "traderws", "--rate", "0", *TRADER_USER)),
        SenderSpec("mt4-all", ("sim", "mt4bridge", "--rate", "0")),
    ]


def all_sources(work: Work, sizes: Sizes) -> Row:
    """Row 5: every simulator at once (on the sender core) → daemon → file + stdout."""
    row = Row(name="5 all sources → file+stdout")
    kinds = ("ttmt", "tpalerts", "traderws", "mt4bridge")
    missing = [k for k in kinds if adapter_missing(k) or simulator_missing(k)]
    if missing:
        row.na = "missing: " + ", ".join(missing)
        return row
    specs = all_sources_specs(sizes)

    def once() -> RunResult:
        out = work.path("all.jsonl")
        sinks = [file_sink(out), {"name": "stdout", "type": "stdout"}]
        return run_daemon(
            work,
            specs,
            sinks,
            out,
            None,
            timeout=sizes.timeout,
            duration=sizes.window,
            warmup=sizes.window / 5,
        )

    return _repeat(row, sizes.unpaired_runs, once)
