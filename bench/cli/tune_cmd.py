"""`bench tune`: search each method's settings on the suite's dev split and make the winners its defaults there."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.config import parse_override
from bench.errors import ConfigError

EPILOG = """examples:
  bench tune --method tfidf --suite tiny --suite-set dev.share=0.25 --no-write
  bench tune --method logra,tracin,dsdm --suite small    # writes bench/suite_files/tuned/small.json
  bench tune --method all --suite my_suite.toml           # writes my_suite.tuned.json beside it

Each method's candidates (its declared search space: `bench list methods` names the options) are evaluated on the dev
split's LDS only; the test split is sealed while they run. The search is kept as a record of the task `tune`
(one per method) and the winner is written as the suite's tuned setting of the method, which `bench run`
then uses (the leaderboard says "tuned on dev, k configs"; --set still wins).
"""


DEFAULT_BUDGET = 8  # tasks.tune.TuneConfig's budget: passed on only when another one is asked for


def add_parser(sub) -> None:  # argparse._SubParsersAction
    """Register the subcommand."""
    p = sub.add_parser("tune", help="tune methods' settings on a suite's dev split", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Search each method's settings on the dev split's LDS, with one budget of "
                                   "configurations for every method, and write the winners as the suite's tuned "
                                   "settings.")
    p.add_argument("--method", required=True, help="method name(s), separated by commas, or 'all' (every method "
                                                   "with a search space)")
    p.add_argument("--suite", default="small", help="built-in suite name or path to a suite .toml (default: small)")
    p.add_argument("--suite-set", dest="suite_options", action="append", default=[], metavar="KEY=VALUE",
                   help="override a suite value by dotted key (repeatable), e.g. dev.share=0.25")
    p.add_argument("--budget", type=int, default=DEFAULT_BUDGET,
                   help=f"configurations per method, the default included (default {DEFAULT_BUDGET})")
    p.add_argument("--seed", type=int, default=0, help="run seed (default 0)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--executor", default="local", help="where retraining jobs run: local (default) or ray")
    p.add_argument("--cache-dir", type=Path, default=None, help="artefact cache (default $BENCH_CACHE or "
                                                                "~/.cache/tda-bench)")
    p.add_argument("--results-dir", type=Path, default=Path("results"), help="where records go (default ./results)")
    p.add_argument("--force", action="store_true", help="search again even when an up-to-date record exists")
    p.add_argument("--no-write", dest="write", action="store_false",
                   help="keep the records, but leave the suite's tuned settings as they are")
    p.set_defaults(func=run)


def tunable(names: str) -> list[str]:
    """The methods `--method` names; 'all': every registered method with a search space."""
    from bench.api import methods
    from bench.cli.run_cmd import plugin_names

    out = plugin_names(names, methods)
    if names == "all":
        return [n for n in out if methods.get(n).search_space]
    for name in out:
        if not methods.get(name).search_space:
            raise ConfigError(f"method '{name}' declares no settings to tune: the random baseline is a mean over "
                              f"seeds, and an ablation takes its parent's settings")
    return out


def run(args: argparse.Namespace) -> int:
    """Run the tuning task for each method, print the searches, write the winners."""
    from bench.results import check_results_dir
    from bench.runner import RunRequest, run_grid
    from bench.runner import run as run_one
    from bench.suites import load_suite

    check_results_dir(args.results_dir)
    if args.budget < 1:
        raise ConfigError(f"--budget must be >= 1, got {args.budget}")
    names = tunable(args.method)
    suite_options = tuple(parse_override(o) for o in args.suite_options)
    if suite_options and args.write:
        raise ConfigError("--suite-set makes another suite than the one its TOML declares, so its tuned settings "
                          "would apply to no run of it; declare the change (e.g. a [dev] table) in the TOML, or add "
                          "--no-write")
    load_suite(args.suite, suite_options).require("dev")  # before any work: a suite without a dev split fails now
    request = RunRequest(method=names[0], task="tune", suite=args.suite, suite_options=suite_options,
                         task_options=(("budget", args.budget),) if args.budget != DEFAULT_BUDGET else (),
                         seed=args.seed, device=args.device,
                         executor=args.executor, cache_dir=args.cache_dir, results_dir=args.results_dir,
                         force=args.force)
    if len(names) == 1:
        done = [run_one(request)]
    else:
        done = run_grid(request, names, ["tune"])
    rows, entries = [], {}
    for record, path in done:
        if record.status != "ok":
            rows.append(f"  {record.method:<12} failed: {record.error['message'] if record.error else ''}")
            continue
        x, m = record.extra, record.metrics
        outcome = "kept (no candidate beat it by one paired SE)" if x["kept_default"] else \
            f"-> {m['dev_lds']['value']:.4f}: {json.dumps(x['tuned_options'])}"
        failed = f", {x['failed']} failed" if x["failed"] else ""
        rows.append(f"  {record.method:<12} default {m['dev_lds_default']['value']:.4f} {outcome} "
                    f"({x['n_configs']} configs{failed})")
        entries[record.method] = {
            "options": x["tuned_options"], "default_options": x["default_options"], "n_configs": x["n_configs"],
            "kept_default": x["kept_default"], "tuning_key": x["tuning_key"],
            "budget": x["budget"], "dev_lds": m["dev_lds"]["value"], "dev_lds_default": m["dev_lds_default"]["value"],
            "record": f"{record.suite}/tune/{record.method}/{path.name}", "fingerprint": record.fingerprint,
            "commit": record.env.get("git_commit"), "suite_version": record.suite_version}
    print(f"dev LDS on {args.suite} (budget {args.budget}; a chosen value is the best of its configs, biased upward):")
    print("\n".join(rows))
    if args.write and entries:
        print(f"tuned settings: {write_tuned(args.suite, entries)}")
    return 0 if len(entries) == len(done) else 1


def write_tuned(suite: str, entries: dict[str, dict]) -> Path:
    """Merge `entries` into the suite's tuned-settings file (`bench.suites.tuned_path`), atomically."""
    from bench.cache import atomic_write_text
    from bench.suites import read_tuned, tuned_path

    path = tuned_path(suite)
    data = {**read_tuned(path), **entries}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(dict(sorted(data.items())), indent=1) + "\n")
    return path
