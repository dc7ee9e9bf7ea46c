import json

import pytest

from bench.api import methods, register_method
from bench.runner import RunRequest, run_grid
from bench.testing import ToyMethod


@pytest.fixture
def failing_method():
    @register_method("test_failing")
    class Failing(ToyMethod):
        """Always fails in featurize."""

        def featurize(self, examples, role):
            raise RuntimeError("featurizer exploded")

    yield "test_failing"
    methods._entries.pop("test_failing")


def test_grid_records_a_failing_cell_and_goes_on(tmp_path, tiny_cache, failing_method):
    request = RunRequest(method="", task="", suite="tiny", cache_dir=tiny_cache, results_dir=tmp_path / "r")
    out = run_grid(request, ["test_failing", "tfidf"], ["lds", "classification"])
    assert [(r.method, r.task, r.status) for r, _ in out] == [
        ("test_failing", "lds", "failed"), ("tfidf", "lds", "ok"),
        ("test_failing", "classification", "failed"), ("tfidf", "classification", "ok")]
    failed = json.loads(out[0][1].read_text())
    assert failed["error"] == {"kind": "RuntimeError", "message": "featurizer exploded"}
    assert failed["metrics"] == {} and failed["status"] == "failed"


@pytest.mark.slow
def test_cli_all_prints_each_cell(run_cli):
    code, out, err, results = run_cli("run", "--method", "all", "--task", "lds", "--suite", "tiny")
    assert code == 0, err
    lines = [line for line in out.splitlines() if line.strip()]
    assert {line.split()[0] for line in lines} >= {"random", "tfidf", "dsir", "rds", "gte", "airrep"}
    assert all(" lds " in line and "lds = " in line for line in lines)
