"""`bench curve`: a method's LDS at each of its sizes (storage per training example), for curves, not points."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from bench.config import parse_override
from bench.errors import ConfigError

EPILOG = """examples:
  bench curve --method logra --suite tiny
  bench curve --method logra,tracin,dsdm,trak_ens,trackstar,less --suite small
  bench curve --method airrep --budget --suite small     # AirRep's learning curve: 25 to 800 steps

Each method runs the LDS task once per value of its size option (`Method.size_option`: LoGra's rank, LESS's
projection dimension, ...), as `bench run --task lds --set OPTION=VALUE` would; the records are the points
of the leaderboard's LDS-against-storage lines and its storage-matched table (each method at the size
nearest AirRep's bytes per example). The suite's other settings (tuned or not) stay as they are.
"""


def add_parser(sub) -> None:  # argparse._SubParsersAction
    """Register the subcommand."""
    p = sub.add_parser("curve", help="run methods' LDS at each of their sizes (storage curves)", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Run the LDS task for each method at each value of its size option.")
    p.add_argument("--method", required=True, help="method name(s), separated by commas, or 'all' (every method "
                                                   "with a size option)")
    p.add_argument("--suite", default="small", help="built-in suite name or path to a suite .toml (default: small)")
    p.add_argument("--sizes", default=None, metavar="V1,V2,...",
                   help="the values to run (one method only; default the method's own `size_values`)")
    p.add_argument("--budget", action="store_true",
                   help="a learning curve instead: the method's training budget (`budget_option`, AirRep's steps) "
                        "at each of its `budget_values` (or --sizes)")
    p.add_argument("--regime", default=None, metavar="NAME", help="a named regime of the suite (default its own)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--executor", default="local", help="where retraining jobs run: local (default) or ray")
    p.add_argument("--cache-dir", type=Path, default=None, help="artefact cache (default $BENCH_CACHE or "
                                                                "~/.cache/tda-bench)")
    p.add_argument("--results-dir", type=Path, default=Path("results"), help="where records go (default ./results)")
    p.add_argument("--force", action="store_true", help="run again even when an up-to-date record exists")
    p.set_defaults(func=run)


def sized(names: str, budget: bool = False) -> list[str]:
    """The methods `--method` names; 'all': every registered method with a size (or budget) option."""
    from bench.api import methods
    from bench.cli.run_cmd import plugin_names

    attr = "budget_option" if budget else "size_option"
    out = plugin_names(names, methods)
    if names == "all":
        return [n for n in out if getattr(methods.get(n), attr) and not methods.get(n).ablation_of]
    for name in out:
        if not getattr(methods.get(name), attr):
            raise ConfigError(f"method '{name}' has no training budget to vary (a learned method's steps)" if budget
                              else f"method '{name}' has one size (no size option: a fixed encoder or full "
                                   f"gradients); its LDS record is its only point")
    return out


def run(args: argparse.Namespace) -> int:
    """Run each method at each size; print LDS against storage."""
    from bench.api import methods
    from bench.results import check_results_dir
    from bench.runner import RunRequest, run_grid

    check_results_dir(args.results_dir)
    names = sized(args.method, args.budget)
    values_of = {}
    for name in names:
        cls = methods.get(name)
        if args.sizes is not None:
            if len(names) > 1:
                raise ConfigError("--sizes applies to one method; name one, or leave --sizes out")
            values_of[name] = tuple(parse_override(f"v={v.strip()}")[1] for v in args.sizes.split(",") if v.strip())
        else:
            values_of[name] = cls.budget_values if args.budget else cls.size_values
    if args.budget:  # a method that loads a released model (AirRep's checkpoint on the paper's suites) trains nothing
        from bench.api import make_config, suite_method_options
        from bench.suites import load_suite

        suite = load_suite(args.suite, (("regime", args.regime),) if args.regime else ())
        for name in names:
            cls = methods.get(name)
            config = make_config(cls.config_cls, suite_method_options(suite, name, cls), where=name)
            if not cls.budget_applies(config):
                raise ConfigError(f"{name} on {args.suite} loads a released model (its checkpoint option): its "
                                  f"training budget changes nothing; run --budget on a suite that trains it")
    base = RunRequest(method=names[0], task="lds", suite=args.suite, device=args.device, executor=args.executor,
                      regime=args.regime, cache_dir=args.cache_dir, results_dir=args.results_dir, force=args.force)
    lines, failed = [], 0
    for name in names:
        option = methods.get(name).budget_option if args.budget else methods.get(name).size_option
        for value in values_of[name]:
            request = replace(base, method=name, method_options=((option, value),))
            for record, path in run_grid(request, [name], ["lds"]):
                if record.status != "ok":
                    failed += 1
                    lines.append(f"  {name:<10} {option}={value!s:<6} FAILED  {path}")
                    continue
                per = record.cost.get("storage_bytes_per_example") or 0
                lds = record.metrics["lds"]
                lines.append(f"  {name:<10} {option}={value!s:<6} {per:>10.0f} B/example  LDS {lds['value']:.4f} "
                             f"[{lds['ci_low']:.4f}, {lds['ci_high']:.4f}]")
    print(f"LDS against {'training budget' if args.budget else 'storage'} on {args.suite}:")
    print("\n".join(lines))
    return 1 if failed else 0
