"""Wall time of the main job, `bench run --method M --task lds`, cold (empty cache) and warm.

Run: `python -m pytest benchmarks --benchmark-only` (or `tox -e bench`). `BENCH_METHOD` (default airrep)
and `BENCH_SUITE` (default small) choose the job. Targets on a 2-core CPU, `small`: tfidf cold <= 5 min
and warm <= 20 s; airrep setup (data generation + training) cold <= 15 min. Each round is a fresh
process, as a user would run it; the phases of the last record (setup/datagen, setup/train, index, ...)
are attached to the benchmark's extra_info.
"""

import itertools
import json
import os
import subprocess
import sys

SUITE = os.environ.get("BENCH_SUITE", "small")
METHOD = os.environ.get("BENCH_METHOD", "airrep")
ROUNDS_COLD = int(os.environ.get("BENCH_COLD_ROUNDS", "1"))


def _run(cache, results):
    subprocess.run([sys.executable, "-m", "bench.cli.main", "run", "--method", METHOD, "--task", "lds",
                    "--suite", SUITE, "--cache-dir", str(cache), "--results-dir", str(results)],
                   check=True, capture_output=True, env={**os.environ, "BENCH_PROGRESS": "0"})


def _phases(results):
    record = json.loads(max(results.rglob("*.json"), key=lambda p: p.stat().st_mtime).read_text())
    return {p["name"]: round(p["wall_s"], 2) for p in record["cost"]["phases"]}


def test_cold(benchmark, tmp_path):
    counter = itertools.count()

    def fresh():
        i = next(counter)
        fresh.last = tmp_path / f"results{i}"
        return (tmp_path / f"cache{i}", fresh.last), {}

    benchmark.pedantic(_run, setup=fresh, rounds=ROUNDS_COLD, iterations=1)
    benchmark.extra_info.update(suite=SUITE, method=METHOD, cache="empty", phases_s=_phases(fresh.last))


def test_warm(benchmark, tmp_path):
    _run(tmp_path / "cache", tmp_path / "results")  # fill the cache
    benchmark.pedantic(_run, args=(tmp_path / "cache", tmp_path / "results"), rounds=3, iterations=1)
    benchmark.extra_info.update(suite=SUITE, method=METHOD, cache="warm", phases_s=_phases(tmp_path / "results"))
