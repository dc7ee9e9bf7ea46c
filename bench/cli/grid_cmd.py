"""`bench grid`: run (or price, or list) the leaderboard's grid, the steps of `leaderboard/layout.toml`.

One definition serves the leaderboard's header line, the workflow and a user: the workflow runs one shard per
suite (`bench grid --suite S`) on parallel runners and merges their records before `bench leaderboard`.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from bench.errors import ConfigError


def add_parser(sub) -> None:  # argparse._SubParsersAction
    """Register the subcommand."""
    p = sub.add_parser("grid", help="run the leaderboard's grid (every suite, or one shard by suite)",
                       description=__doc__.splitlines()[0].split(": ", 1)[1])
    p.add_argument("--suite", action="append", default=None,
                   help="only this suite's steps (repeatable; default every suite of the grid)")
    p.add_argument("--results-dir", type=Path, default=Path("leaderboard/results"),
                   help="where records go (default leaderboard/results)")
    p.add_argument("--cache-dir", default=None, help="artefact cache (default $BENCH_CACHE or ~/.cache/tda-bench)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--plan", action="store_true", help="price each step with `bench plan` instead of running")
    mode.add_argument("--list", action="store_true", help="print each step's `bench run` command and exit")
    mode.add_argument("--suites", action="store_true", help="print the grid's suites, one per line (the shards)")
    p.set_defaults(func=run)


_UNPRICED = ("--seeds", "--set", "--label")  # a grid run's flags (each with a value) that `bench plan` has not


def steps(suites: list[str] | None = None) -> list[tuple[str, list[str]]]:
    """The grid's `bench run` argument lists, in order, as (suite, argv); only `suites` when given.

    Raises:
        ConfigError: a requested suite is not in the grid.
    """
    from leaderboard.fmt import grid_runs, step_argv

    out = [(run[1], step_argv(*run)) for run in grid_runs()]
    known = list(dict.fromkeys(s for s, _ in out))
    for name in suites or []:
        if name not in known:
            raise ConfigError(f"suite '{name}' is not in the leaderboard's grid (leaderboard/layout.toml); "
                              f"its suites: {', '.join(known)}")
    return [(s, a) for s, a in out if not suites or s in suites]


def run(args: argparse.Namespace) -> int:
    """Run, price or list the steps."""
    from bench.cli.main import main as bench_main

    todo = steps(args.suite)
    if args.suites:
        print("\n".join(dict.fromkeys(s for s, _ in todo)))
        return 0
    cache = ["--cache-dir", args.cache_dir] if args.cache_dir else []
    if args.list:
        for _, argv in todo:
            print(shlex.join(["bench", "run", *argv, "--results-dir", str(args.results_dir)]))
        return 0
    if args.plan:
        _plan(todo, args.results_dir, cache)
        return 0
    failed = []
    for n, (suite, argv) in enumerate(todo, 1):
        command = ["run", *argv, "--results-dir", str(args.results_dir), *cache]
        print(f"[grid {n}/{len(todo)}] bench {shlex.join(command)}", file=sys.stderr, flush=True)
        rc = bench_main(command)
        if rc:
            failed.append((suite, rc))
    if failed:
        print(f"error: {len(failed)} grid step(s) failed: " + ", ".join(f"{s} (exit {rc})" for s, rc in failed),
              file=sys.stderr)
        return 1
    return 0


def _plan(todo: list[tuple[str, list[str]]], results_dir: Path, cache: list[str]) -> dict:
    """`bench plan` of each step, then the grid's totals (a suite's harness work counted once)."""
    from bench.cli import plan_cmd
    from bench.costmodel import format_seconds

    parser = argparse.ArgumentParser()
    plan_cmd.add_parser(parser.add_subparsers())
    cells = {"warm_s": 0.0, "cold_s": 0.0}
    harness: dict[tuple[str, str | None, str], tuple[float | None, float | None]] = {}
    peak, peak_cell, unknown = 0.0, "", 0
    for n, (suite, argv) in enumerate(todo, 1):
        # plan prices a cell once whatever its seeds, and each further seed as much again
        seeds = argv[argv.index("--seeds") + 1].split(",") if "--seeds" in argv else ["0"]
        # a labelled variant is priced as its method: plan takes neither its options nor its label
        priced = [a for i, a in enumerate(argv)
                  if a not in _UNPRICED and (i == 0 or argv[i - 1] not in _UNPRICED)]
        command = ["plan", *priced, "--results-dir", str(results_dir), *cache]
        print(f"[grid {n}/{len(todo)}] bench {shlex.join(command)}" + (f" (x {len(seeds)} seeds)"
                                                                        if len(seeds) > 1 else ""), flush=True)
        out = plan_cmd.plan(parser.parse_args(command))
        cells["warm_s"] += len(seeds) * out["warm_s"]
        cells["cold_s"] += len(seeds) * out["cold_s"]
        unknown += out["unknown"]
        regime = " ".join(f"{flag} {argv[argv.index(flag) + 1]}" for flag in ("--regime", "--replicate")
                          if flag in argv) or None
        for name, value in out["harness"].items():  # the steps of a suite (in one regime) share its harness work
            harness.setdefault((suite, regime, name), value)
        if out["peak_bytes"] > peak:
            peak, peak_cell = out["peak_bytes"], f"{suite}: {out['peak_cell']}"
    warm_h, cold_h = plan_cmd.harness_sum(harness)

    def total(cell_s: float, harness_s: float | None) -> str:
        if harness_s is None:
            return f"{format_seconds(cell_s)} of cells + harness not priced"
        return f"{format_seconds(cell_s)} of cells + harness {format_seconds(harness_s)} = " \
            f"{format_seconds(cell_s + harness_s)}"

    print(f"grid: {len(todo)} step(s); with this cache {total(cells['warm_s'], warm_h)}; cold "
          f"{total(cells['cold_s'], cold_h)}; {unknown} cell(s) without a measurement; peak memory of a cell "
          f"{peak / 2**30:.2f} GiB ({peak_cell or 'no record'})")
    return {"cells": cells, "harness": harness, "warm_harness_s": warm_h, "cold_harness_s": cold_h}
