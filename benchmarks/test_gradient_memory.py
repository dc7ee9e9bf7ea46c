"""Featurising a pool 10x larger must not need 10x the memory: gradient stores are streamed to disk.

Run: `python -m pytest benchmarks/test_gradient_memory.py --benchmark-only` (`BENCH_GRAD_METHODS`, default
`logra,less`, picks the methods; `BENCH_SUITE` the suite, default small). Each size runs in a fresh
process (`benchmarks/featurize_memory.py`); the figures go to the benchmark's extra_info. Target: the
featurisation's working memory (peak RSS minus RSS before it) grows by less than 10% of the growth of the
gradient store itself when the pool grows 10x, i.e. the store is not held in memory.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SUITE = os.environ.get("BENCH_SUITE", "small")
METHODS = os.environ.get("BENCH_GRAD_METHODS", "logra,less").split(",")
SCRIPT = Path(__file__).with_name("featurize_memory.py")


def _measure(method, k, cache):
    out = subprocess.run([sys.executable, str(SCRIPT), method, str(k), "--suite", SUITE, "--cache-dir", str(cache)],
                         check=True, capture_output=True, text=True, env={**os.environ, "BENCH_PROGRESS": "0"})
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("method", METHODS)
def test_featurize_memory_is_bounded_when_the_pool_grows_10x(benchmark, method, tmp_path):
    cache = os.environ.get("BENCH_CACHE", str(tmp_path / "cache"))
    small = _measure(method, 1, cache)
    large = benchmark.pedantic(_measure, args=(method, 10, cache), rounds=1, iterations=1)
    benchmark.extra_info.update({"1x": small, "10x": large})
    growth = large["working_mib"] - small["working_mib"]
    store_growth = large["store_mib"] - small["store_mib"]
    print(f"\n{method}: store {small['store_mib']:.0f} -> {large['store_mib']:.0f} MiB, working memory "
          f"{small['working_mib']:.0f} -> {large['working_mib']:.0f} MiB, {large['ex_per_s']:.0f} ex/s")
    assert growth < 0.1 * store_growth, (small, large)
