"""Does batched retraining change any method's LDS? Every method against both ground truths, in one run.

Usage: `python benchmarks/gt_equivalence.py [--suite small] [--methods all|a,b] [--cache-dir DIR] [--json F]`.

The suite's ground truth is built twice: as `bench run` builds it (jobs trained K at once by
`bench.batched`, `ground_truth.group_size` = 0, automatic) and one job at a time
(`ground_truth.group_size=1`, the plain `transformers` training loop), each cached like any table. Each
method (its default configuration, as the grid runs it) is featurised and group-scored once, and its mean
LDS is computed against both tables; the difference is what batching changes. Also printed: the largest
difference of a test loss between the two tables. Methods' setups are cached as for `bench run`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time


def main(argv: list[str] | None = None) -> dict:
    import numpy as np

    from bench.api import RunContext, make_config, methods
    from bench.cache import Cache, default_cache_dir
    from bench.metrics import lds
    from bench.runner import answers
    from bench.suites import load_suite

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="small")
    ap.add_argument("--methods", default="all")
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args(argv)

    cache = Cache(args.cache_dir or default_cache_dir())
    batched = load_suite(args.suite)
    single = load_suite(args.suite, [("ground_truth.group_size", 1)])
    tables = {}
    for name, suite in (("batched", batched), ("one_by_one", single)):
        t0 = time.perf_counter()
        tables[name] = RunContext(suite, cache=cache).ground_truth()
        print(f"ground truth {name}: {tables[name].losses.shape[0]} subsets x {tables[name].losses.shape[1]} test "
              f"examples ({time.perf_counter() - t0:.0f} s here, {tables[name].wall_s.sum():.0f} s when trained)")
    a, b = tables["batched"], tables["one_by_one"]
    if not np.array_equal(a.masks, b.masks):
        raise SystemExit("the two tables hold different subsets")
    loss_diff = float(np.abs(a.losses - b.losses).max())
    seed_diff = float(np.abs(a.seed_losses - b.seed_losses).max()) if a.seed_losses is not None else None
    print(f"largest test-loss difference: {loss_diff:.2e} (mean over seeds), {seed_diff:.2e} (one seed)")

    # LDS rows: not a file's scores, not another task's own baselines (`Method.tasks`)
    names = [n for n in methods.names() if not methods.get(n).precomputed and answers(methods.get(n), "lds")] \
        if args.methods == "all" else args.methods.split(",")
    rows = []
    for name in names:
        cls = methods.get(name)
        options = dict(batched.spec.methods.get(name, {}))
        if "seed" in {f.name for f in dataclasses.fields(cls.config_cls)}:
            options["seed"] = 0
        method = cls(make_config(cls.config_cls, options, where=name))
        method.check()
        ctx = RunContext(batched, cache=cache)
        t0 = time.perf_counter()
        train, test = ctx.featurize_suite(method)
        scores = method.group_score(test, train, a.masks)
        values = {k: float(np.nanmean(lds(scores, t.losses))) for k, t in tables.items()}
        row = {"method": name, **values, "difference": values["batched"] - values["one_by_one"],
               "seconds": time.perf_counter() - t0}
        rows.append(row)
        print(f"{name:12s} LDS batched {values['batched']:.4f}  one by one {values['one_by_one']:.4f}  "
              f"difference {row['difference']:+.4f}", flush=True)
    worst = max(abs(r["difference"]) for r in rows)
    print(f"largest LDS difference over {len(rows)} methods: {worst:.4f}")
    out = {"suite": args.suite, "max_loss_difference": loss_diff, "max_seed_loss_difference": seed_diff,
           "methods": rows, "max_lds_difference": worst}
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(out, fh, indent=1)
    return out


if __name__ == "__main__":
    main()
