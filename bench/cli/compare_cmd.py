"""`bench compare A B --task T --suite S`: is A's metric really above B's? Paired, from the stored records.

Reads the newest successful record of each method (default configs; `--results-dir`) and judges the pair
with the metric's own test (`bench.stats.compare`, the same function the leaderboard's bold and ranks come
from): the paired bootstrap of the difference (the same draws, so on LDS the test examples, within their
clusters, and the retrained subsets are resampled together) or, for 0/1 outcomes, McNemar's test. It
prints the difference A - B with its 95% CI and the pair's p-value, then the Holm-adjusted p-value of the
pair among every method of that suite's column (what the leaderboard uses), and, for per-example values,
the Wilcoxon signed-rank p-value (conditional on what the per-example values do not resample). Nothing is
recomputed.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub) -> None:  # argparse._SubParsersAction
    """Register the subcommand."""
    p = sub.add_parser("compare", help="paired comparison of two methods' stored records", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a", help="method A (or a --label row)")
    p.add_argument("b", help="method B (or a --label row)")
    p.add_argument("--task", required=True, help="task of the records (lds, classification, selection, ...)")
    p.add_argument("--suite", default="small", help="suite name of the records (default small)")
    p.add_argument("--regime", default=None, help="the suite's regime of the records (default: the suite's own)")
    p.add_argument("--replicate", type=int, default=0, help="the suite's replicate N of the records (default 0)")
    p.add_argument("--suite-set", dest="suite_options", action="append", default=[], metavar="KEY=VALUE",
                   help="records run with these --suite-set options (repeatable; as given to bench run)")
    p.add_argument("--metric", default=None, help="metric to compare (default: the records' headline)")
    p.add_argument("--results-dir", type=Path, default=Path("leaderboard/results"),
                   help="records to read (default leaderboard/results)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Find the two records, pair them, print the difference."""
    from bench import stats
    from bench.errors import DataError
    from bench.results import read_records
    from leaderboard.select import latest

    if not args.results_dir.is_dir():
        raise DataError(f"no result records at {args.results_dir}")
    from bench.config import parse_override, to_jsonable

    def in_regime(r) -> bool:
        regime = r.regime_default if args.regime is None else r.regime == args.regime
        return regime and r.replicate == args.replicate

    if args.suite_options:  # a variant of the suite: the newest such record of each row
        wanted = to_jsonable(dict(parse_override(o) for o in args.suite_options))
        rows = {}
        for r in sorted(read_records(args.results_dir), key=lambda r: (r.created_at, r.fingerprint)):
            if (r.suite == args.suite and r.task == args.task and r.status == "ok" and in_regime(r)
                    and r.options.get("suite") == wanted and not r.options.get("method") and r.seed == 0):
                rows[r.row] = r
    else:
        rows = {row: r for (_, task, row), r in latest(read_records(args.results_dir)).items()
                if r.suite == args.suite and task == args.task and r.status == "ok" and in_regime(r)}
    pair = []
    for name in (args.a, args.b):
        if name not in rows:
            extra = "".join([f" --regime {args.regime}" if args.regime else "",
                             f" --replicate {args.replicate}" if args.replicate else "",
                             *(f" --suite-set {o}" for o in args.suite_options)])
            raise DataError(f"no successful {args.task} record of '{name}' on suite '{args.suite}'{extra} in "
                            f"{args.results_dir} (run 'bench run --method {name} --task {args.task} --suite "
                            f"{args.suite}{extra} --results-dir {args.results_dir}')")
        pair.append(rows[name])
    a, b = pair
    metric = args.metric or a.headline or next(iter(a.metrics))
    try:
        c = stats.compare(a, b, metric)
    except stats.NotComparable as exc:
        raise DataError(f"cannot pair {args.a} and {args.b} on '{metric}': {exc}") from exc
    col = stats.column(rows, metric)
    key = (args.a, args.b) if args.a < args.b else (args.b, args.a)
    adjusted = col.adjusted.get(key)
    verdict = ("A is higher" if stats.better(col, args.a, args.b) else "B is higher"
               if stats.better(col, args.b, args.a) else "no difference the data can show")
    ma, mb = a.metrics[metric], b.metrics[metric]
    draws = ma.get("draws") or "draws unrecorded"
    test = {"bootstrap": f"paired bootstrap, {c.n_replicates} replicates of {draws}",
            "mcnemar": f"the larger of the paired bootstrap's ({c.n_replicates} replicates of {draws}) and the "
                       f"exact McNemar test's"}[c.test]
    print(f"{args.task} / {metric} on {args.suite} ({a.regime}) ({c.n} paired examples)")
    print(f"  A {args.a:<12} {ma['value']:.4f} [{ma['ci_low']:.4f}, {ma['ci_high']:.4f}]")
    print(f"  B {args.b:<12} {mb['value']:.4f} [{mb['ci_low']:.4f}, {mb['ci_high']:.4f}]")
    print(f"  A - B = {c.diff:+.4f}, 95% CI [{c.ci_low:+.4f}, {c.ci_high:+.4f}], p = {c.p:.3g} ({test})")
    if adjusted is not None:
        print(f"  Holm-adjusted over the {len(col.adjusted)} pairs of the {len(rows)} rows of this column: "
              f"p = {adjusted:.3g}: {verdict} (what the leaderboard's bold and ranks say)")
    if metric in a.per_example and metric in b.per_example and c.test == "bootstrap":
        p = stats.wilcoxon_p([float("nan") if v is None else v for v in a.per_example[metric]],
                             [float("nan") if v is None else v for v in b.per_example[metric]])
        print(f"  Wilcoxon signed-rank p = {p:.3g} over the per-example differences (conditional on what they do "
              f"not resample: on LDS, these subsets)")
    return 0
