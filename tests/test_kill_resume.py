"""SIGKILL a ground-truth run part-way; the rerun resumes, redoes only the missing jobs, same numbers."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

M = 40


def _cmd(cache, results):
    return [sys.executable, "-m", "bench.cli.main", "run", "--method", "tfidf", "--task", "lds", "--suite", "tiny",
            "--suite-set", f"ground_truth.num_subsets={M}", "--cache-dir", str(cache), "--results-dir",
            str(results)]


def _job_files(cache):
    return sorted(cache.glob("retrain/*/jobs/*.npz"))


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted(tmp_path):
    env = {**os.environ, "BENCH_PROGRESS": "0"}
    cache, results = tmp_path / "cache", tmp_path / "results"
    proc = subprocess.Popen(_cmd(cache, results), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(_job_files(cache)) < 8 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = {p.name: p.stat().st_mtime_ns for p in _job_files(cache)}
    assert 8 <= len(done) < M, "the kill must land part-way through the jobs"
    assert not results.exists() or not any(results.rglob("*.json")), "no record from a killed run"

    subprocess.run(_cmd(cache, results), env=env, check=True, capture_output=True)
    after = {p.name: p.stat().st_mtime_ns for p in _job_files(cache)}
    assert len(after) == M
    assert all(after[name] == mtime for name, mtime in done.items()), "finished jobs must not rerun"

    fresh_cache, fresh_results = tmp_path / "fresh-cache", tmp_path / "fresh-results"
    subprocess.run(_cmd(fresh_cache, fresh_results), env=env, check=True, capture_output=True)
    resumed = json.loads(next(results.rglob("*.json")).read_text())
    uninterrupted = json.loads(next(fresh_results.rglob("*.json")).read_text())
    assert resumed["metrics"]["lds"]["value"] == uninterrupted["metrics"]["lds"]["value"]
    assert resumed["per_example"]["lds"] == uninterrupted["per_example"]["lds"]
    for a, b in zip(_job_files(cache), _job_files(fresh_cache), strict=True):
        np.testing.assert_array_equal(np.load(a)["losses"], np.load(b)["losses"])
