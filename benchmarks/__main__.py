"""``python -m benchmarks`` prints the table; ``--soak`` runs the 10-minute soak instead."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable

import msgspec

from benchmarks import delivery, rows, soak, stall, sustain
from benchmarks.harness import Work, workdir
from benchmarks.report import environment, table
from benchmarks.result import Row


class Paired(msgspec.Struct):
    """Rows 1, 2, 2r, 3, 1b, 2b, 3b (those asked for), measured round by round: their ratios are
    targets. ``row2`` runs for row 7's rate even when not shown; ``mix`` feeds row 6b."""

    done: list[Row]
    row2: Row | None
    row2b: Row | None
    mix: rows.MixFrames | None


def paired_rows(work: Work, sizes: rows.Sizes, want: Callable[[str], bool]) -> Paired:
    pairs = []
    floor = rows.Floor(work, sizes) if want("1") else None
    if floor is not None:
        pairs.append((floor.row, floor.once))
    row2 = row2r = row3 = None
    if want("2") or want("2r") or want("7"):
        row2, once = rows.ttmt_file(work, sizes)
        pairs.append((row2, once))
    if want("2r"):
        row2r, once = rows.ttmt_recorded(work, sizes)
        pairs.append((row2r, once))
    if want("3"):
        row3, once = rows.ttmt_durable(work, sizes)
        pairs.append((row3, once))
    mix = rows.MixFrames(work, sizes) if any(map(want, ("1b", "2b", "3b", "6b"))) else None
    floor_b = rows.Floor(work, sizes, mix) if mix is not None and want("1b") else None
    if floor_b is not None:
        pairs.append((floor_b.row, floor_b.once))
    mixed: dict[str, Row] = {}
    for n, durable in (("2b", False), ("3b", True)):
        if mix is not None and want(n):
            mixed[n], once = rows.ttmt_mix(work, sizes, mix, durable=durable)
            pairs.append((mixed[n], once))
    with floor or contextlib.nullcontext(), floor_b or contextlib.nullcontext():
        rows.alternate(pairs, sizes.runs)
    done = []
    if floor is not None:
        done.append(floor.row)
        for row in (row2 if want("2") else None, row3):
            if row is not None:
                row.note = rows.ratio(row, floor.row, "the floor")
    if row2 is not None and want("2"):
        done.append(row2)
    if row2r is not None and row2 is not None:
        # The figure: row 2 with record = true as a share of row 2, run by run.
        row2r.note = rows.ratio(row2r, row2, "row 2")
        done.append(row2r)
    if row3 is not None:
        cost = rows.journal_append_cost(work, sizes)
        row3.note = "; ".join(n for n in (row3.note, cost) if n)
        done.append(row3)
    if floor_b is not None:
        done.append(floor_b.row)
    for row in mixed.values():
        if floor_b is not None:
            row.note = rows.ratio(row, floor_b.row, "1b")
        done.append(row)
    return Paired(done, row2, mixed.get("2b"), mix)


class Laps:
    """Seconds each group of rows took: what to cut when ``make bench`` outgrows 3 minutes."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._at = time.monotonic()

    def lap(self, name: str) -> None:
        now = time.monotonic()
        if now - self._at >= 0.5:  # a group not asked for takes no time worth a mention
            self.seconds[name] = now - self._at
        self._at = now

    def __str__(self) -> str:
        return ", ".join(f"{name} {s:.0f} s" for name, s in self.seconds.items())


def bench(sizes: rows.Sizes, only: set[str], laps: Laps) -> list[Row]:
    """Every row in order; ``only`` (row numbers) narrows it for a quick look at one."""

    def want(n: str) -> bool:
        return not only or n in only

    with workdir() as work:
        first = paired_rows(work, sizes, want)
        laps.lap("rows 1-3b")
        done, row2, row2b = first.done, first.row2, first.row2b
        if want("4"):
            done.extend(rows.traderws(work, sizes))
        laps.lap("4")
        if want("5"):
            done.append(rows.all_sources(work, sizes))
            done.extend(delivery.rows(work, rows.all_sources_specs(sizes), sizes))
        laps.lap("5")
        if want("6"):
            naive = rows.naive(work, sizes)
            if row2 is not None and row2.runs and naive.runs:
                naive.note = f"tradebus row 2 = {row2.rate / naive.rate:.1f}x naive"
            done.append(naive)
        if first.mix is not None and want("6b"):
            naive_b = rows.naive(work, sizes, first.mix)
            if row2b is not None and row2b.runs and naive_b.runs:
                multiple = f"{row2b.rate / naive_b.rate:.1f}x naive"
                naive_b.note = f"tradebus row 2b = {multiple}"
                row2b.note = "; ".join(n for n in (row2b.note, multiple) if n)
            done.append(naive_b)
        laps.lap("6")
        if want("7"):
            rate = row2.rate if row2 is not None else 0.0
            done.extend(rows.latency(work, sizes, load, rate) for load in sizes.latency_loads)
            done.extend(
                rows.latency(work, sizes, load, rate, delivery="inline")
                for load in sizes.latency_inline
            )
        laps.lap("7")
        mix = first.mix
        if any(map(want, ("9", "10", "11"))):
            mix = mix or rows.MixFrames(work, sizes)
            done.extend(sustain.rows(work, sizes, mix, want))
        laps.lap("9-11")
        if want("12"):
            done.extend(stall.rows(work, sizes, mix or rows.MixFrames(work, sizes)))
        laps.lap("12")
    return done


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--soak", action="store_true", help="the soak (row 8) alone")
    parser.add_argument(
        "--soak-sink-down", action="store_true", help="the soak with one sink down (row 8b)"
    )
    parser.add_argument("--tiny", action="store_true", help="tiny runs: proves the harness works")
    parser.add_argument("--rows", default="", help="comma-separated row numbers (default: all)")
    parser.add_argument("--runs", type=int, default=0, help="runs per row (default: 2, 1)")
    parser.add_argument("--soak-seconds", type=float, default=600.0)
    parser.add_argument("--soak-rate", type=float, default=5000.0)
    args = parser.parse_args(argv)
    # The harness itself is left unpinned: pinned beside the senders it halved what a busy
    # sender (row 4's) could send, and it sleeps between 2 ms polls, so it barely competes.
    print("\n".join(environment()), flush=True)
    if args.soak_sink_down:
        with workdir() as work:
            print(soak.run_sink_down(work, args.soak_seconds, args.soak_rate, sample_every=10.0))
        return 0
    if args.soak:
        with workdir() as work:
            print(soak.run(work, args.soak_seconds, args.soak_rate, sample_every=10.0))
        return 0
    started = time.monotonic()
    sizes = rows.TINY if args.tiny else rows.FULL
    if args.runs:
        sizes = msgspec.structs.replace(sizes, runs=args.runs, unpaired_runs=args.runs)
    laps = Laps()
    result = bench(sizes, {r.strip() for r in args.rows.split(",") if r.strip()}, laps)
    floor = next((r for r in result if r.name.startswith("1 ")), None)
    print(table(result, floor, {}))
    print(f"({time.monotonic() - started:.0f} s: {laps})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
