"""Wall time of the main job, `bench run --method tfidf --task lds`, cold (empty cache) and warm.

Run: `python -m pytest benchmarks --benchmark-only` (or `tox -e bench`). Targets on a 2-core CPU for the
`small` suite: cold <= 5 min, warm <= 20 s. `BENCH_SUITE=tiny` runs the same on the tiny suite.
Each round is a fresh process, as a user would run it.
"""

import itertools
import os
import subprocess
import sys

SUITE = os.environ.get("BENCH_SUITE", "small")
METHOD = os.environ.get("BENCH_METHOD", "tfidf")


def _run(cache, results):
    subprocess.run([sys.executable, "-m", "bench.cli.main", "run", "--method", METHOD, "--task", "lds",
                    "--suite", SUITE, "--cache-dir", str(cache), "--results-dir", str(results)],
                   check=True, capture_output=True, env={**os.environ, "BENCH_PROGRESS": "0"})


def test_cold(benchmark, tmp_path):
    counter = itertools.count()

    def fresh():
        i = next(counter)
        return (tmp_path / f"cache{i}", tmp_path / f"results{i}"), {}

    benchmark.extra_info.update(suite=SUITE, method=METHOD, cache="empty")
    benchmark.pedantic(_run, setup=fresh, rounds=2, iterations=1)


def test_warm(benchmark, tmp_path):
    _run(tmp_path / "cache", tmp_path / "results")  # fill the cache
    benchmark.extra_info.update(suite=SUITE, method=METHOD, cache="warm")
    benchmark.pedantic(_run, args=(tmp_path / "cache", tmp_path / "results"), rounds=3, iterations=1)
