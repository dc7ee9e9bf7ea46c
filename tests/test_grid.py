import json
import sys

import pytest

import bench.runner as runner
from bench.api import methods, register_method
from bench.runner import CellFailed, RunRequest, run, run_grid
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


def test_a_failing_run_writes_a_failed_record(tmp_path, tiny_cache, failing_method):
    request = RunRequest(method=failing_method, task="lds", suite="tiny", cache_dir=tiny_cache,
                         results_dir=tmp_path / "r", record_failures=True)
    with pytest.raises(CellFailed) as info:
        run(request)
    failed = json.loads(info.value.path.read_text())
    assert failed["status"] == "failed" and failed["metrics"] == {}
    assert failed["error"] == {"kind": "RuntimeError", "message": "featurizer exploded"}
    with pytest.raises(RuntimeError):  # a single run outside the grid keeps the traceback and writes nothing
        run(RunRequest(method=failing_method, task="lds", suite="tiny", cache_dir=tiny_cache,
                       results_dir=tmp_path / "single"))
    assert not (tmp_path / "single").exists()


def test_grid_records_a_dead_cell_and_goes_on(tmp_path, tiny_cache, monkeypatch):
    real_argv = runner.cell_argv

    def argv(request):  # the tfidf/lds cell's process dies without writing anything, as if killed
        if (request.method, request.task) == ("tfidf", "lds"):
            return [sys.executable, "-c", "import sys; sys.stderr.write('Killed\\n'); sys.exit(137)"]
        return real_argv(request)

    monkeypatch.setattr(runner, "cell_argv", argv)
    request = RunRequest(method="", task="", suite="tiny", cache_dir=tiny_cache, results_dir=tmp_path / "r")
    out = run_grid(request, ["random", "tfidf"], ["lds", "classification"])
    assert [(r.method, r.task, r.status) for r, _ in out] == [
        ("random", "lds", "ok"), ("tfidf", "lds", "failed"),
        ("random", "classification", "ok"), ("tfidf", "classification", "ok")]
    assert out[1][0].error == {"kind": "ProcessDied", "message": "Killed"}
    assert all(path.exists() for _, path in out)


def test_grid_stops_on_a_user_error(tmp_path, tiny_cache):
    request = RunRequest(method="", task="", suite="tiny", cache_dir=tiny_cache, results_dir=tmp_path / "r",
                         method_options=(("no_such_option", 1),))
    with pytest.raises(runner.BenchError, match="unknown option 'no_such_option'"):
        run_grid(request, ["tfidf"], ["lds"])


@pytest.mark.slow
def test_cli_all_prints_each_cell(run_cli):
    code, out, err, results = run_cli("run", "--method", "all", "--task", "lds", "--suite", "tiny")
    assert code == 0, err
    lines = [line for line in out.splitlines() if line.strip()]
    assert {line.split()[0] for line in lines} >= {"random", "tfidf", "dsir", "rds", "gte", "airrep"}
    assert all(" lds " in line and "lds = " in line for line in lines)


def test_a_cells_command_line_asks_for_exactly_its_request(tmp_path):
    """Every field of a RunRequest reaches the cell's process (a field left out of cell_argv ran another cell)."""
    import dataclasses
    import sys as _sys

    from bench.cli.main import build_parser
    from bench.cli.run_cmd import request_of
    from bench.runner import RunRequest, cell_argv

    request = RunRequest(method="tfidf", task="lds", suite="tiny", suite_options=(("ground_truth.num_subsets", 8),),
                         method_options=(("ngram", 2),), task_options=(("x", "y"),), seed=3, device="cpu",
                         executor="local", shard="1/2", workers=2, regime="base-start", replicate=2,
                         cache_dir=tmp_path / "c",
                         results_dir=tmp_path / "r", record_failures=True, force=True, label="mine")
    defaults = RunRequest(method="tfidf", task="lds")
    unset = [f.name for f in dataclasses.fields(RunRequest) if f.name not in ("method", "task", "device", "executor")
             and getattr(request, f.name) == getattr(defaults, f.name)]
    assert not unset, f"give these fields a non-default value here: {unset}"
    argv = cell_argv(request)
    assert argv[:3] == [_sys.executable, "-m", "bench.cli.main"]
    parsed, seeds = request_of(build_parser().parse_args(argv[3:]))
    assert parsed == request and seeds == [3]
