"""The Python API: the README's example runs as written, and evaluate() matches `bench run --method scores`."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def _readme_example() -> str:
    match = re.search(r"<!-- api-example -->\n```python\n(.*?)```\n<!-- /api-example -->", README.read_text(),
                      re.S)
    assert match, "README lost its api-example block"
    return match.group(1)


def test_the_readme_example_runs_and_writes_nothing(tmp_path, tiny_cache, monkeypatch, capsys):
    code = _readme_example()
    assert len([line for line in code.splitlines() if line.strip()]) <= 11  # "a ten-line example"
    monkeypatch.setenv("BENCH_CACHE", str(tiny_cache))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md:api-example", "exec"), namespace)  # noqa: S102 - the README's own code
    result, truth = namespace["result"], namespace["truth"]
    assert truth.masks.shape == (16, 400) and truth.losses.shape == (16, 64)
    lds = result.metrics["lds"]
    assert lds.ci_low <= lds.value <= lds.ci_high and lds.value > 0.05  # word overlap carries signal on tiny
    assert len(result.per_example["lds"]) == 64
    assert "Evaluation(lds=" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []  # no record, no file


@pytest.mark.parametrize("task", ["lds", "classification"])
def test_evaluate_equals_the_cli_and_writes_a_record_when_asked(run_cli, tmp_path, tiny_cache, task):
    import dataclasses

    import bench

    scores = np.random.default_rng(0).normal(size=(64, 400)) + np.arange(400)[None] * 1e-3
    np.save(tmp_path / "s.npy", scores)
    in_memory = bench.evaluate(scores, suite="tiny", task=task, cache_dir=tiny_cache)
    code, _, err, results = run_cli("run", "--method", "scores", "--set", f"path={tmp_path / 's.npy'}",
                                    "--task", task, "--suite", "tiny")
    assert code == 0, err
    record = json.loads(next(results.rglob(f"tiny/{task}/scores/*.json")).read_text())
    assert record["metrics"] == {k: dataclasses.asdict(m) for k, m in in_memory.metrics.items()}
    assert record["per_example"] == in_memory.per_example
    assert all(record["metrics"][k]["replicates"] for k in record["metrics"] if k.startswith(("lds", "top")))
    if task != "classification":
        return
    written = bench.evaluate(scores, suite="tiny", task="classification", cache_dir=tiny_cache,
                             results_dir=tmp_path / "res", name="noise")
    assert not (tmp_path / "res2").exists()
    from bench.errors import ConfigError

    with pytest.raises(ConfigError, match="do not fit"):  # nothing saved for a bad matrix
        bench.evaluate(scores[:, :10], suite="tiny", task="classification", cache_dir=tiny_cache,
                       results_dir=tmp_path / "res2", name="bad")
    assert not (tmp_path / "res2").exists()
    assert written.record_path.is_file() and written.metrics["top1_task"].value == in_memory["top1_task"]
    assert json.loads(written.record_path.read_text())["label"] == "noise (external)"


def test_evaluate_rejects_a_bad_matrix_and_a_feature_task(tiny_cache):
    import bench
    from bench.errors import ConfigError

    with pytest.raises(ConfigError, match=r"do not fit suite 'tiny': expected \[n_test, n_train\] = \[64, 400\]"):
        bench.evaluate(np.zeros((64, 10)), suite="tiny", cache_dir=tiny_cache)
    with pytest.raises(ConfigError, match="non-finite"):
        bench.evaluate(np.full((64, 400), np.inf), suite="tiny", cache_dir=tiny_cache)
    with pytest.raises(ConfigError, match="measures a method's own features"):
        bench.evaluate(np.zeros((64, 400)), suite="tiny", task="crossover", cache_dir=tiny_cache)
