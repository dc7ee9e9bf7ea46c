"""`bench plan`: the work a run would do and its estimated compute, before spending any.

Harness work (warm-up LM, ground-truth retraining jobs) is read from the cache: what is there is done, the
mean measured cost of the finished jobs prices the missing ones; with nothing cached, the records of the same
regime price it, and with none of those `--probe` times a few optimiser steps of one job. Each cell is
priced from the newest record of that (suite, task, method) in the results directory: with today's cache
(phases at their wall time, cached ones at their load time) and cold (cached phases at what producing them
cost, a method's setup counted once although its cells share it). Nothing is written, and nothing trained
but `--probe`'s steps (and the start LM it needs, if the cache lacks it).
"""

from __future__ import annotations

import argparse
from pathlib import Path

HARNESS = ("warmup", "attributed_lm", "ground_truth")


def add_parser(sub) -> None:  # argparse._SubParsersAction
    """Register the subcommand."""
    p = sub.add_parser("plan", help="print the jobs a run would do and their estimated compute",
                       description=__doc__)
    p.add_argument("--method", required=True, help="method name, several separated by commas, or 'all'")
    p.add_argument("--task", required=True, help="task name, several separated by commas, or 'all'")
    p.add_argument("--suite", default="small", help="built-in suite name or path to a suite .toml")
    p.add_argument("--suite-set", dest="suite_options", action="append", default=[], metavar="KEY=VALUE",
                   help="override a suite value by dotted key (repeatable)")
    p.add_argument("--regime", default=None, metavar="NAME", help="price the suite in one of its named regimes")
    p.add_argument("--replicate", type=int, default=0, metavar="N", help="price the suite's replicate N")
    p.add_argument("--cache-dir", type=Path, default=None, help="artefact cache (default $BENCH_CACHE)")
    p.add_argument("--results-dir", type=Path, default=Path("leaderboard/results"),
                   help="records that price the cells (default leaderboard/results)")
    p.add_argument("--probe", action="store_true",
                   help="when no retraining job of the ground truth was measured (nothing cached, no record of this "
                        "regime), time a few optimiser steps of one job on --device and price the table from them "
                        "(loads the start LM, building it into the cache if it is not there, and trains it briefly)")
    p.add_argument("--device", default="cpu", help="where --probe trains (cpu, cuda, cuda:N; default cpu)")
    p.set_defaults(func=run)


def _fmt_s(s: float | None) -> str:
    from bench.costmodel import format_seconds

    return "?" if s is None else format_seconds(s)


def cell_cost(phases: list[dict], seen_setup: set[str]) -> tuple[float, float, float]:
    """A record's method phases priced: (seconds with today's cache, seconds cold, peak bytes).

    Only top-level phases are summed: `setup` holds its parts (`setup/datagen`, `setup/train`). Cold, a cached
    part counts at what producing it cost, once per method (`seen_setup`: the parts already counted).
    """
    from bench.costmodel import phase_cost_s

    top = [p for p in phases if p["name"] not in HARNESS and "/" not in p["name"]]
    parts = [p for p in phases if "/" in p["name"]]
    warm = sum(p["wall_s"] for p in top)
    cold = warm
    for p in parts if parts else top:  # without parts, a cached top-level phase counts at its production cost
        if p["name"] not in seen_setup:
            cold += phase_cost_s(p) - p["wall_s"]  # cached or resumed work at what producing it cost
        seen_setup.add(p["name"])
    peak = max([p.get("peak_bytes") or 0 for p in phases if p["name"] not in HARNESS], default=0)
    return warm, cold, float(peak)


def plan(args: argparse.Namespace) -> dict:
    """Print the plan of one suite's cells; return its totals (seconds, bytes; None where unknown)."""
    from bench.api import methods, tasks
    from bench.cache import Cache, default_cache_dir
    from bench.config import parse_override
    from bench.errors import DataError
    from bench.results import read_records
    from bench.retrain import RetrainSpec, plan_table, warmup_cost
    from bench.runner import answers
    from bench.suites import load_suite

    suite = load_suite(args.suite, [parse_override(o) for o in args.suite_options]
                       + ([("regime", args.regime)] if args.regime else [])
                       + ([("replicate", args.replicate)] if args.replicate else []))
    from bench.cli.run_cmd import plugin_names

    method_names, task_names = plugin_names(args.method, methods), plugin_names(args.task, tasks)
    # a task's own baselines (`Method.tasks`) have cells of that task only
    method_names = [m for m in method_names if any(answers(methods.get(m), t) for t in task_names)]
    n_cells = sum(answers(methods.get(m), t) for m in method_names for t in task_names)
    cache = Cache(args.cache_dir or default_cache_dir())
    replicate = f", replicate {suite.spec.replicate}" if suite.spec.replicate else ""
    print(f"plan: suite {suite.name} (v{suite.spec.version}, regime {suite.spec.regime_name}{replicate}), "
          f"{len(method_names)} method(s) x {len(task_names)} task(s) = {n_cells} cell(s); cache {cache.root}")

    latest = {}
    if args.results_dir.is_dir():
        # records of this suite price its cells, those of this regime before any other's
        for r in sorted(read_records(args.results_dir),
                        key=lambda r: (r.regime == suite.spec.regime_name, r.replicate == suite.spec.replicate,
                                       r.created_at)):
            if r.suite == suite.name and r.status == "ok":
                latest[(r.task, r.method)] = r

    def produced(phase: str, task: str | None = None) -> float | None:
        """What producing a harness phase cost, the median over these records' measures (None: no record)."""
        import statistics

        # another regime's retraining is another recipe (full fine-tuning against top layers: ~20x): not a price
        costs = [p.get("original_wall_s") or p["wall_s"] for (t, _), r in latest.items()
                 if (task is None or t == task) and r.regime == suite.spec.regime_name
                 for p in r.cost["phases"] if p["name"] == phase]
        return statistics.median(costs) if costs else None

    # the harness's work, shared by the cells of a suite: name -> (seconds with this cache, seconds cold)
    harness: dict[str, tuple[float | None, float | None]] = {}
    gt = suite.spec.ground_truth
    warmup_cached, probe = None, None
    if gt.released is not None:
        print(f"  ground truth: released table {gt.released} (no retraining)")
    elif "lds" in task_names:
        try:  # the cache key needs the pool's size, i.e. the data
            table = plan_table(RetrainSpec(suite_ref=suite.ref, cache_root=str(cache.root)), suite, cache,
                               num_subsets=gt.num_subsets, fraction=gt.fraction, seed=gt.seed,
                               seeds_per_subset=gt.seeds_per_subset)
        except DataError as exc:
            table = {"jobs": gt.num_subsets * gt.seeds_per_subset, "cached": 0, "mean_job_s": None,
                     "warmup_cached": False}
            print(f"  (data not available here, so nothing is known cached: {exc})")
        warmup_cached = table["warmup_cached"]
        missing, mean = table["jobs"] - table["cached"], table["mean_job_s"]
        cold = None if mean is None else table["jobs"] * mean
        source = "" if mean is None else f"{mean:.2f} s/job measured"
        if cold is None and produced("ground_truth", "lds") is not None:  # nothing cached: the records' cost
            cold, source = produced("ground_truth", "lds"), "priced from the LDS records' cost of building it"
        if cold is None and args.probe:
            from bench.retrain import probe_table

            probe = probe_table(RetrainSpec(suite_ref=suite.ref, cache_root=str(cache.root),
                                            suite_overrides=suite.overrides_json, device=args.device),
                                suite, fraction=gt.fraction)
            cold = table["jobs"] * probe["job_s"]
            source = (f"probed on {args.device}: {probe['step_s']:.3g} s per step of {probe['group_size']} job(s) at "
                      f"once, {probe['steps_per_job']} steps per job, evaluation {probe['eval_s']:.3g} s, "
                      f"{probe['job_s']:.3g} s/job")
        warm = 0.0 if not missing else (None if cold is None else cold * missing / table["jobs"])
        harness["ground truth (lds)"] = (warm, cold)
        print(f"  ground truth: {table['jobs']} retraining jobs, {table['cached']} cached, {missing} to run"
              f"{'' if cold is None else ', ' + source} -> {_fmt_s(warm) if missing else 'nothing to run'}; "
              f"cold {_fmt_s(cold)}")
    if suite.spec.lm.model is None or suite.spec.lm.warmup_steps:
        try:  # the cached model's build time, else the records'
            cost = warmup_cost(suite, cache) or produced("warmup")
        except DataError:  # its key needs the data
            cost = produced("warmup")
        if cost is None and probe is not None:  # its steps at the probe's rate of one job's step
            cost = suite.spec.lm.warmup_steps * probe["warmup_step_s"]
        state = "cached" if warmup_cached else "to train" if warmup_cached is False else "not checked"
        harness["warm-up LM"] = (0.0 if warmup_cached else cost, cost)
        print(f"  warm-up LM: {state}; cold {_fmt_s(cost)}")
    for t in task_names:  # other tasks' own retraining (leave-one-out, selection fine-tunings), one per suite
        cost = produced("ground_truth", t) if t != "lds" else None
        if cost:
            harness[f"retraining ({t})"] = (cost, cost)
            print(f"  retraining for {t}: {_fmt_s(cost)} cold, priced from its records (its cache not checked)")
        cost = produced("attributed_lm", t)  # a task's own model to attribute (mislabel's corrupted-pool LM)
        if cost:
            harness[f"attributed LM ({t})"] = (cost, cost)
            print(f"  attributed LM for {t}: {_fmt_s(cost)} cold, priced from its records (its cache not checked)")
    warm_total, cold_total, unknown, peak, peak_cell = 0.0, 0.0, 0, 0.0, ""
    print(f"  cells (priced from {args.results_dir}; '?' = no record yet):")
    for m in method_names:
        seen_setup: set[str] = set()  # a method's setup is shared by its cells: produced once
        for t in task_names:
            if not answers(methods.get(m), t):  # a task's own baseline: no cell elsewhere
                continue
            r = latest.get((t, m))
            if r is None:
                unknown += 1
                print(f"    {m:<12} {t:<15} ?")
                continue
            warm, cold, cell_peak = cell_cost(r.cost["phases"], seen_setup)
            warm_total += warm
            cold_total += cold
            if cell_peak > peak:
                peak, peak_cell = cell_peak, f"{m} {t}"
            other = "" if r.regime == suite.spec.regime_name else f" (priced from regime {r.regime}: another recipe)"
            print(f"    {m:<12} {t:<15} {_fmt_s(warm):>10} with this cache, {_fmt_s(cold):>10} cold, "
                  f"peak {cell_peak / 2**30:.2f} GiB{other}")
    harness_s, harness_cold = harness_sum(harness)
    print(f"  total: {_fmt_s(warm_total)} of cells with this cache (+ harness {_fmt_s(harness_s)}); "
          f"{_fmt_s(cold_total)} of cells cold (+ harness {_fmt_s(harness_cold)}); {unknown} cell(s) without a "
          f"measurement; peak memory {peak / 2**30:.2f} GiB ({peak_cell or 'no record'})")
    return {"suite": suite.name, "warm_s": warm_total, "cold_s": cold_total, "harness": harness,
            "unknown": unknown, "peak_bytes": peak, "peak_cell": peak_cell}


def harness_sum(harness: dict[str, tuple[float | None, float | None]]) -> tuple[float | None, float | None]:
    """Total (with this cache, cold) of harness parts; None when any part is unpriced."""
    warm = [w for w, _ in harness.values()]
    cold = [c for _, c in harness.values()]
    return (None if None in warm else sum(warm)), (None if None in cold else sum(cold))


def run(args: argparse.Namespace) -> int:
    """Print the plan."""
    plan(args)
    return 0
