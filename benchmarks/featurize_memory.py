"""Peak memory of featurising a pool `k` times the suite's own, in a fresh process; prints one JSON line.

Usage: `python benchmarks/featurize_memory.py METHOD K [--suite small] [--cache-dir DIR]`. The pool is the
suite's training split repeated K times (the same rows, so every K does the same work per example). Peak
RSS is sampled by the harness's accountant during the `index` phase; `baseline` is the RSS just before it
(model loaded, set up), so `peak - baseline` is the featurisation's working memory.
"""

from __future__ import annotations

import argparse
import json

import psutil


def main(argv: list[str] | None = None) -> None:
    from bench.api import RunContext, methods
    from bench.cache import Cache, default_cache_dir
    from bench.suites import load_suite

    ap = argparse.ArgumentParser()
    ap.add_argument("method")
    ap.add_argument("k", type=int)
    ap.add_argument("--suite", default="small")
    ap.add_argument("--cache-dir", default=None)
    args = ap.parse_args(argv)
    suite = load_suite(args.suite)
    cls = methods.get(args.method)
    method = cls(cls.config_cls(**suite.spec.methods.get(args.method, {})))
    ctx = RunContext(suite, cache=Cache(args.cache_dir or default_cache_dir()))
    ctx.setup(method)
    pool = list(suite.split("train")) * args.k
    baseline = psutil.Process().memory_info().rss
    features = ctx.featurize(method, pool, "train")
    index = [p for p in ctx.acct.phases if p.name == "index"][-1]
    print(json.dumps({"method": args.method, "k": args.k, "n": len(pool), "dim": int(features.shape[1]),
                      "store_mib": method.storage_bytes(features) / 2**20, "baseline_mib": baseline / 2**20,
                      "peak_mib": index.peak_bytes / 2**20, "working_mib": (index.peak_bytes - baseline) / 2**20,
                      "wall_s": index.wall_s, "ex_per_s": len(pool) / index.wall_s}))


if __name__ == "__main__":
    main()
