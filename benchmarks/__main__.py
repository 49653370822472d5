"""``python -m benchmarks`` prints the table; ``--soak`` runs the 10-minute soak instead."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time

import msgspec

from benchmarks import delivery, rows, soak
from benchmarks.harness import workdir
from benchmarks.report import environment, table
from benchmarks.result import Row


def bench(sizes: rows.Sizes, only: set[str]) -> list[Row]:
    """Every row in order; ``only`` (row numbers) narrows it for a quick look at one."""
    done: list[Row] = []

    def want(n: str) -> bool:
        return not only or n in only

    with workdir() as work:
        row2: Row | None = None
        pairs = []
        floor = rows.Floor(work, sizes) if want("1") else None
        if floor is not None:
            pairs.append((floor.row, floor.once))
        if want("2") or want("7"):
            row2, once = rows.ttmt_file(work, sizes)
            pairs.append((row2, once))
        row3 = None
        if want("3"):
            row3, once3 = rows.ttmt_durable(work, sizes)
            pairs.append((row3, once3))
        with floor or contextlib.nullcontext():
            rows.alternate(pairs, sizes.runs)
        if floor is not None:
            done.append(floor.row)
        if row2 is not None and want("2"):
            if floor is not None and (spread := rows.paired(row2, floor.row)):
                row2.note = f"{spread} of the floor"
            done.append(row2)
        if row3 is not None:
            spread = rows.paired(row3, floor.row) if floor is not None else ""
            cost = rows.journal_append_cost(work, sizes)
            row3.note = f"{spread} of the floor; {cost}" if spread else cost
            done.append(row3)
        if want("4"):
            done.extend(rows.traderws(work, sizes))
        if want("5"):
            done.append(rows.all_sources(work, sizes))
            done.extend(delivery.rows(work, rows.all_sources_specs(sizes), sizes))
        if want("6"):
            naive = rows.naive(work, sizes)
            if row2 is not None and row2.runs and naive.runs:
                naive.note = f"tradebus row 2 = {row2.rate / naive.rate:.1f}x naive"
            done.append(naive)
        if want("7"):
            rate = row2.rate if row2 is not None else 0.0
            done.extend(rows.latency(work, sizes, load, rate) for load in sizes.latency_loads)
    return done


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--soak", action="store_true", help="the soak (row 8) alone")
    parser.add_argument(
        "--soak-sink-down", action="store_true", help="the soak with one sink down (row 8b)"
    )
    parser.add_argument("--tiny", action="store_true", help="tiny runs: proves the harness works")
    parser.add_argument("--rows", default="", help="comma-separated row numbers (default: all)")
    parser.add_argument("--runs", type=int, default=0, help="runs per row (default: 3)")
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
        sizes = msgspec.structs.replace(sizes, runs=args.runs)
    result = bench(sizes, {r.strip() for r in args.rows.split(",") if r.strip()})
    floor = next((r for r in result if r.name.startswith("1 ")), None)
    print(table(result, floor, {}))
    print(f"({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
