"""`bench compare A B --task T --suite S`: is A's metric really above B's? Paired, from the stored records.

Reads the newest successful record of each method (default configs; `--results-dir`), pairs their
per-example values (the same test examples) and their bootstrap replicates (the same draws, so on LDS
the test examples and the retrained subsets are resampled together), and prints the mean difference A - B
with its 95% CI and a two-sided Wilcoxon signed-rank p-value of the per-example differences. Nothing is
recomputed.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub) -> None:  # argparse._SubParsersAction
    """Register the subcommand."""
    p = sub.add_parser("compare", help="paired comparison of two methods' stored records", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a", help="method A")
    p.add_argument("b", help="method B")
    p.add_argument("--task", required=True, help="task of the records (lds, classification, selection)")
    p.add_argument("--suite", default="small", help="suite name of the records (default small)")
    p.add_argument("--metric", default=None, help="metric to compare (default: the records' headline)")
    p.add_argument("--results-dir", type=Path, default=Path("leaderboard/results"),
                   help="records to read (default leaderboard/results)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Find the two records, pair them, print the difference."""
    import numpy as np

    from bench.errors import DataError
    from bench.metrics import paired_difference
    from bench.results import comparable, default_records

    if not args.results_dir.is_dir():
        raise DataError(f"no result records at {args.results_dir}")
    records = default_records(args.results_dir)
    pair = []
    for name in (args.a, args.b):
        record = records.get((args.suite, args.task, name))
        if record is None:
            raise DataError(f"no successful {args.task} record of '{name}' on suite '{args.suite}' in "
                            f"{args.results_dir} (run 'bench run --method {name} --task {args.task} --suite "
                            f"{args.suite} --results-dir {args.results_dir}')")
        pair.append(record)
    a, b = pair
    metric = args.metric or a.extra.get("headline") or next(iter(a.metrics))
    problem = comparable(a, b, metric)
    if problem:
        raise DataError(f"cannot pair {args.a} and {args.b}: {problem}")

    def values(record):
        return np.array([np.nan if v is None else v for v in record.per_example[metric]], dtype=np.float64)

    def reps(record):
        return np.array([np.nan if v is None else v for v in record.extra["bootstrap"][metric]], dtype=np.float64)

    d = paired_difference(values(a), values(b), reps(a), reps(b))
    ma, mb = a.metrics[metric], b.metrics[metric]
    verdict = ("A is higher" if d["ci_low"] > 0 else "B is higher" if d["ci_high"] < 0
               else "no difference the data can show")
    print(f"{args.task} / {metric} on {args.suite} ({d['n']} paired test examples)")
    print(f"  A {args.a:<12} {ma['value']:.4f} [{ma['ci_low']:.4f}, {ma['ci_high']:.4f}]")
    print(f"  B {args.b:<12} {mb['value']:.4f} [{mb['ci_low']:.4f}, {mb['ci_high']:.4f}]")
    n_reps = len(reps(a))
    p_text = f"p < {2 / n_reps:.2g}" if d["p_bootstrap"] == 0 else f"p = {d['p_bootstrap']:.3g}"
    print(f"  A - B = {d['mean']:+.4f}, 95% CI [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}], {p_text} "
          f"(paired bootstrap, {n_reps} replicates): {verdict}")
    print(f"  Wilcoxon signed-rank p = {d['p_wilcoxon']:.3g} over the per-example differences (conditional on "
          f"these subsets: it does not resample them)")
    return 0
