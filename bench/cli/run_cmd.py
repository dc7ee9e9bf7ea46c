"""`bench run`: one task with one method on one suite; prints the metric, the cost, the record path."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from bench.config import parse_override
from bench.errors import ConfigError

EPILOG = """examples:
  bench run --method airrep --task lds                # the main job: the embedded 'small' suite, offline, CPU
  bench run --method tfidf --task classification
  bench run --method random --task lds --suite tiny
  bench run --method tfidf --task lds --set ngram_max=2
  bench run --method tfidf --task lds --suite my_suite.toml
  bench run --method tfidf --task lds --suite-set ground_truth.num_subsets=128
  bench run --method all --task all --suite small      # the grid; a failing cell is recorded, the grid goes on
"""


def add_parser(sub) -> None:  # argparse._SubParsersAction
    """Register the subcommand."""
    p = sub.add_parser("run", help="run a task with a method", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Run one task with one method on one suite and write a result record.")
    p.add_argument("--method", required=True,
                   help="method name (see 'bench list methods'), several separated by commas, or 'all'")
    p.add_argument("--task", required=True, help="task name (see 'bench list tasks'), several, or 'all'")
    p.add_argument("--suite", default="small", help="built-in suite name or path to a suite .toml (default: small)")
    p.add_argument("--suite-set", dest="suite_options", action="append", default=[], metavar="KEY=VALUE",
                   help="override a suite value by dotted key, e.g. ground_truth.num_subsets=32 (repeatable)")
    p.add_argument("--regime", default=None, metavar="NAME",
                   help="run the suite in one of its named regimes (where retraining starts, lr, epochs, subset "
                        "fraction; 'bench list suites' names them); default the suite's own")
    p.add_argument("--replicate", type=int, default=0, metavar="N",
                   help="replicate N of a generated suite: its data and target LM drawn again (generator and "
                        "initialisation seeds moved by N); default 0, the suite itself")
    p.add_argument("--set", dest="method_options", action="append", default=[], metavar="KEY=VALUE",
                   help="method option (repeatable; value parsed as JSON when possible)")
    p.add_argument("--task-set", dest="task_options", action="append", default=[], metavar="KEY=VALUE",
                   help="task option (repeatable)")
    p.add_argument("--seed", type=int, default=0,
                   help="run seed (default 0): the method's own randomness (its `seed` option) and the task's "
                        "(random selections, bootstrap draws); the suite's ground truth does not change")
    p.add_argument("--seeds", default=None, metavar="S1,S2,...",
                   help="run the cell (or grid) once per seed; the leaderboard shows mean and sd over seeds")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--executor", default="local",
                   help="where retraining jobs run: local (default) or ray (RAY_ADDRESS, else a local Ray)")
    p.add_argument("--shard", default=None, metavar="I/N",
                   help="run only retraining jobs with index = I mod N (e.g. a SLURM array task), then stop")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="train retraining jobs in N forked processes sharing the CPU threads (local executor, "
                        "CPU; default 1). Results agree to float rounding, not bit for bit")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="artefact cache (default $BENCH_CACHE or ~/.cache/tda-bench)")
    p.add_argument("--label", default=None,
                   help="name this run as a variant: the leaderboard shows it as its own row (default runs only "
                        "otherwise; a run with --set options and no label is kept but not shown)")
    p.add_argument("--force", action="store_true",
                   help="run even when an up-to-date record of the cell exists (same fingerprint and code versions)")
    p.add_argument("--result-json", type=Path, default=None, metavar="PATH",
                   help="also write {status, record} of a single cell as JSON to PATH (what the grid reads)")
    p.add_argument("--record-failures", action="store_true", help=argparse.SUPPRESS)  # used by the grid
    p.add_argument("--results-dir", type=Path, default=Path("results"), help="where records go (default ./results)")
    p.set_defaults(func=run)


def _fmt_bytes(n: float | None) -> str:
    if n is None:
        return "n/a"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def request_of(args: argparse.Namespace):  # -> (RunRequest, seeds)
    """The `RunRequest` (at the first seed) and the seeds that parsed `bench run` arguments ask for."""
    from bench.runner import RunRequest

    method_options = tuple(parse_override(o) for o in args.method_options)
    task_options = tuple(parse_override(o) for o in args.task_options)
    suite_options = tuple(parse_override(o) for o in args.suite_options)
    for options in (method_options, task_options, suite_options):
        keys = [k for k, _ in options]
        if len(set(keys)) != len(keys):
            raise ConfigError(f"an option is given twice: {', '.join(sorted({k for k in keys if keys.count(k) > 1}))}")
    seeds = [args.seed]
    if args.seeds is not None:
        try:
            seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
        except ValueError as exc:
            raise ConfigError(f"--seeds '{args.seeds}': expected integers separated by commas, e.g. 0,1,2") from exc
        if not seeds or len(set(seeds)) != len(seeds):
            raise ConfigError(f"--seeds '{args.seeds}': give distinct seeds, e.g. --seeds 0,1,2")
    request = RunRequest(method=args.method, task=args.task, suite=args.suite, suite_options=suite_options,
                         method_options=method_options,
                         task_options=task_options, seed=seeds[0], device=args.device, executor=args.executor,
                         shard=args.shard, workers=args.workers, regime=args.regime, replicate=args.replicate,
                         cache_dir=args.cache_dir,
                         results_dir=args.results_dir,
                         record_failures=args.record_failures, force=args.force, label=args.label)
    return request, seeds


def run(args: argparse.Namespace) -> int:
    """Parse options, run, print the summary."""
    from bench.results import check_results_dir

    check_results_dir(args.results_dir)  # before any work: a path that cannot hold records fails now
    request, seeds = request_of(args)
    status = 0
    for seed in seeds:
        status = max(status, _run_seed(args, replace(request, seed=seed), request.method_options,
                                       request.task_options))
    return status


def plugin_names(value: str, registry) -> list[str]:
    """'all', one name, or several separated by commas, as `bench run --method/--task` take them.

    'all': every plugin, less the scores of a file (`--method scores` needs its file) and a task that is not an
    evaluation (`Task.in_all`: the tuning search). A name the registry does not know fails in one line.
    """
    if value == "all":
        return [n for n in registry.names() if not getattr(registry.get(n), "precomputed", False)
                and getattr(registry.get(n), "in_all", True)]
    return [registry.get(n.strip()).name for n in value.split(",")]


def _run_seed(args: argparse.Namespace, request, method_options, task_options) -> int:
    """One cell or the grid at one seed; prints what it did."""
    from bench.runner import run as run_request

    if "all" in (args.method, args.task) or "," in args.method + args.task:
        from bench.api import methods, tasks

        if args.shard is not None:
            raise ConfigError("--shard applies to one method and task; run each cell's shards on their own")
        from bench.runner import _now, run_grid

        method_names, task_names = plugin_names(args.method, methods), plugin_names(args.task, tasks)
        from bench.runner import answers, refusal

        dropped = [refusal(methods.get(m), t) for t in task_names for m in method_names
                   if not answers(methods.get(m), t)]
        if dropped and args.method != "all":  # named, yet no cell: say so (`Method.tasks`)
            print("\n".join(f"not run: {why}" for why in dropped), file=sys.stderr)
        if (method_options or task_options) and len(method_names) * len(task_names) > 1:
            raise ConfigError("--set / --task-set apply to one method or task; drop them with 'all'")
        failed = 0
        started = _now()
        for record, path in run_grid(request, method_names, task_names):
            if record.status == "ok":
                fresh = "" if record.created_at >= started else "  (up to date)"
                print(f"{record.method:<12} {record.task:<15} {headline(record)}  {path}{fresh}")
            else:
                failed += 1
                print(f"{record.method:<12} {record.task:<15} FAILED ({record.error['kind']}: "
                      f"{record.error['message'][:80]})  {path}")
        return 1 if failed else 0
    from bench.runner import CellFailed, existing_record

    found = None if args.force else existing_record(request)
    if found is not None:
        record, path = found
        print(f"up to date: {headline(record)}  (from {record.created_at}; --force to run again)")
        print(f"record: {path}")
        _result_json(args, "up_to_date", path)
        return 0
    try:
        record, path = run_request(request)
    except CellFailed as failed:
        error = failed.record.error or {}
        print(f"error: {args.method} on {args.task} failed ({error.get('kind')}: {error.get('message')})",
              file=sys.stderr)
        print(f"record: {failed.path}")
        _result_json(args, "failed", failed.path)
        return 1
    print(summary(record))
    print(f"record: {path}")
    _result_json(args, "ok", path)
    _warn_overlap(record)
    return 0


def _result_json(args: argparse.Namespace, status: str, path: Path) -> None:
    """The cell's outcome for a program (the grid): {"status", "record"}, written atomically."""
    if args.result_json is None:
        return
    import json

    from bench.cache import atomic_write_text

    atomic_write_text(args.result_json, json.dumps({"status": status, "record": str(path)}) + "\n")


def _warn_overlap(record) -> None:  # RunRecord
    """One line on stderr when the suite's test split overlaps a training split (or repeats examples)."""
    from bench.hygiene import describe

    line = describe(record.extra["hygiene"]) if record.extra.get("hygiene") else None
    if line:
        print(f"warning: suite '{record.suite}': {line}", file=sys.stderr)


def headline(record) -> str:  # RunRecord
    """The record's headline metric with its CI, one line."""
    name = record.headline or next(iter(record.metrics), None)  # JSON keys come back sorted
    if name is None:  # a task may have no metric to give (e.g. a method whose self-scores are constant)
        return "; ".join(record.extra.get("summary") or ["no metric"])
    m = record.metrics[name]
    return f"{name} = {m['value']:.4f} [{m['ci_low']:.4f}, {m['ci_high']:.4f}]"


def summary(record) -> str:  # RunRecord
    """Human-readable lines: metrics with CIs, phases, memory, storage."""
    from bench.results import still_improving

    lines = [f"{record.task} | {record.method} | suite {record.suite} (v{record.suite_version}, "
             f"regime {record.regime}{f', replicate {record.replicate}' if record.replicate else ''})"]
    for name, m in record.metrics.items():
        n = f", n={m['n']}" if m.get("n") is not None else ""
        ci = f"  95% CI [{m['ci_low']:.4f}, {m['ci_high']:.4f}]" if m["ci_low"] != m["ci_high"] else ""
        lines.append(f"  {name.upper()} = {m['value']:.4f}{ci}{n}")
        if m.get("note"):
            lines.append(f"    ({m['note']})")
    lines += [f"  {line}" for line in record.extra.get("summary", [])]
    if still_improving(record):
        info = record.extra.get("method_info", {})
        lines.append(f"  note: still improving: its best held-out step is its last ({info.get('best_step')} of "
                     f"{record.method_config.get('steps')}); more steps would likely raise it (bench tune searches "
                     f"steps)")
    lines.append("  cost:")
    for p in record.cost["phases"]:
        rate = f", {p['count'] / p['wall_s']:.0f} ex/s" if p["name"] in ("index", "query") and p["wall_s"] > 0 else ""
        count = f" ({p['count']} {'jobs' if p['name'] == 'ground_truth' else 'items'}{rate})" if p["count"] else ""
        produced = f"; produced in {p['original_wall_s']:.1f} s" if p.get("original_wall_s") is not None else ""
        cached = f" [cached{produced}]" if p["cached"] else ""
        if not p["cached"] and p.get("cached_count"):
            cached = f" [{p['cached_count']} of {p['count']} from the cache]"
        lines.append(f"    {p['name']:<13} {p['wall_s']:8.2f} s  peak {_fmt_bytes(p['peak_bytes'])}{count}{cached}")
    c = record.cost
    lines.append(f"  storage: {_fmt_bytes(c['storage_bytes_per_example'])} per train example "
                 f"({_fmt_bytes(c['storage_bytes'])} total), dim {c['dim']}")
    return "\n".join(lines)
