"""`bench plan`: the work a run would do and its estimated compute, before spending any.

Harness work (warm-up LM, ground-truth retraining jobs) is read from the cache: what is there is done, the
mean measured cost of the finished jobs prices the missing ones. Each cell is priced from the newest
record of that (suite, task, method) in the results directory: with today's cache (phases at their wall
time, cached ones at their load time) and cold (cached phases at what producing them cost, a method's
setup counted once although its cells share it). Nothing is trained, featurised or written.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HARNESS = ("warmup", "ground_truth")


def add_parser(sub) -> None:  # argparse._SubParsersAction
    """Register the subcommand."""
    p = sub.add_parser("plan", help="print the jobs a run would do and their estimated compute",
                       description=__doc__)
    p.add_argument("--method", required=True, help="method name or 'all'")
    p.add_argument("--task", required=True, help="task name or 'all'")
    p.add_argument("--suite", default="small", help="built-in suite name or path to a suite .toml")
    p.add_argument("--suite-set", dest="suite_options", action="append", default=[], metavar="KEY=VALUE",
                   help="override a suite value by dotted key (repeatable)")
    p.add_argument("--cache-dir", type=Path, default=None, help="artefact cache (default $BENCH_CACHE)")
    p.add_argument("--results-dir", type=Path, default=Path("leaderboard/results"),
                   help="records that price the cells (default leaderboard/results)")
    p.set_defaults(func=run)


def _fmt_s(s: float | None) -> str:
    from bench.costmodel import format_seconds

    return "?" if s is None else format_seconds(s)


def run(args: argparse.Namespace) -> int:
    """Print the plan."""
    from bench.api import methods, tasks
    from bench.cache import Cache, default_cache_dir
    from bench.config import parse_override
    from bench.errors import DataError
    from bench.results import read_records
    from bench.retrain import RetrainSpec, plan_table
    from bench.suites import load_suite

    suite = load_suite(args.suite, [parse_override(o) for o in args.suite_options])
    method_names = [n for n in methods.names() if not methods.get(n).precomputed] if args.method == "all" \
        else [methods.get(args.method).name]
    task_names = tasks.names() if args.task == "all" else [tasks.get(args.task).name]
    cache = Cache(args.cache_dir or default_cache_dir())
    print(f"plan: suite {suite.name} (v{suite.spec.version}), {len(method_names)} method(s) x {len(task_names)} "
          f"task(s) = {len(method_names) * len(task_names)} cell(s); cache {cache.root}")

    gt = suite.spec.ground_truth
    harness_s: float | None = 0.0
    if gt.released is not None:
        print(f"  ground truth: released table {gt.released} (no retraining)")
    elif "lds" in task_names:
        try:  # the cache key needs the pool's size, i.e. the data
            table = plan_table(RetrainSpec(suite_ref=suite.ref, cache_root=str(cache.root)), suite, cache,
                               num_subsets=gt.num_subsets, fraction=gt.fraction, seed=gt.seed)
        except DataError as exc:
            table = {"jobs": gt.num_subsets, "cached": 0, "mean_job_s": None, "warmup_cached": False}
            print(f"  (data not available here, so nothing is known cached: {exc})")
        missing = table["jobs"] - table["cached"]
        est = None if table["mean_job_s"] is None else missing * table["mean_job_s"]
        harness_s = est if missing else 0.0
        per_job = "" if table["mean_job_s"] is None else f", {table['mean_job_s']:.2f} s/job measured"
        print(f"  warm-up LM: {'cached' if table['warmup_cached'] else 'to train'}")
        print(f"  ground truth: {table['jobs']} retraining jobs, {table['cached']} cached, {missing} to run"
              f"{per_job} -> {_fmt_s(harness_s) if missing else 'nothing to run'}")

    latest = {}
    if args.results_dir.is_dir():
        for r in sorted(read_records(args.results_dir), key=lambda r: r.created_at):
            if r.suite == suite.name and r.status == "ok":
                latest[(r.task, r.method)] = r
    warm_total, cold_total, unknown, seen_setup = 0.0, 0.0, 0, set()
    print(f"  cells (priced from {args.results_dir}; '?' = no record yet):")
    for m in method_names:
        for t in task_names:
            r = latest.get((t, m))
            if r is None:
                unknown += 1
                print(f"    {m:<12} {t:<15} ?")
                continue
            phases = [p for p in r.cost["phases"] if p["name"] not in HARNESS]
            warm = sum(p["wall_s"] for p in phases)
            cold = 0.0
            for p in phases:
                produced = p["original_wall_s"] if p.get("cached") and p.get("original_wall_s") else p["wall_s"]
                shared_setup = p["name"].startswith("setup/") and p.get("cached")
                if shared_setup and (m, p["name"]) in seen_setup:
                    produced = p["wall_s"]
                seen_setup.add((m, p["name"]))
                cold += produced
            warm_total += warm
            cold_total += cold
            print(f"    {m:<12} {t:<15} {_fmt_s(warm):>10} with this cache, {_fmt_s(cold):>10} cold")
    harness = "?" if harness_s is None else _fmt_s(harness_s)
    print(f"  total: {_fmt_s(warm_total)} of cells with this cache (+ harness {harness}); {_fmt_s(cold_total)} "
          f"of cells cold; {unknown} cell(s) without a measurement")
    return 0
