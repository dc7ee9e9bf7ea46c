"""Bad input: one clear line, exit code 2, no result file written."""

import json
import subprocess
import sys

import pytest

SUITE = """name = "mine"
version = "1"
[data]
prompt_column = "inputs"
response_column = "targets"
label_columns = {{ task = "task" }}
train = {{ source = "train.jsonl" }}
test = {{ source = "{test}" }}
[lm]
hidden_size = 32
num_heads = 2
intermediate_size = 64
warmup_steps = 0
[ground_truth]
num_subsets = {m}
fraction = {fraction}
"""


def _user_suite(tmp_path, *, test_rows=None, train_rows=None, m=4, fraction=0.5, raw_train=None):
    rows = [{"inputs": f"What is {i} + 1?", "targets": str(i + 1), "task": "add"} for i in range(8)]
    train = tmp_path / "train.jsonl"
    train.write_text(raw_train if raw_train is not None else
                     "".join(json.dumps(r) + "\n" for r in (train_rows or rows)))
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in (rows if test_rows is None
                                                                                 else test_rows)))
    path = tmp_path / "mine.toml"
    path.write_text(SUITE.format(test="test.jsonl", m=m, fraction=fraction))
    return str(path)


def _assert_user_error(result, pattern):
    code, out, err, results = result
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert pattern in lines[0], lines[0]
    assert not results.exists() or not any(results.rglob("*.json"))


@pytest.mark.parametrize("argv, pattern", [
    (["--method", "tfidd", "--task", "lds"], "no method 'tfidd'. Did you mean 'tfidf'?"),
    (["--method", "tfidf", "--task", "lsd"], "no task 'lsd'. Did you mean 'lds'?"),
    (["--method", "tfidf", "--task", "lds", "--suite", "tinny"], "no suite 'tinny'. Did you mean 'tiny'?"),
    (["--method", "tfidf", "--task", "lds", "--suite", "tiny", "--suite-set", "ground_truth.fraction=1.0"],
     "fraction must be in (0, 1), got 1.0"),
    (["--method", "tfidf", "--task", "lds", "--suite", "tiny", "--suite-set", "ground_truth.fraction=0"],
     "fraction must be in (0, 1), got 0.0"),
    (["--method", "tfidf", "--task", "lds", "--suite", "tiny", "--suite-set", "ground_truth.num_subsets=1"],
     "num_subsets must be >= 2"),
    (["--method", "tfidf", "--task", "lds", "--suite", "tiny", "--set", "ngram=2"],
     "unknown option 'ngram'. Did you mean 'ngram_max'?"),
    (["--method", "tfidf", "--task", "lds", "--suite", "tiny", "--set", "ngram_max=0"], "ngram_max must be >= 1"),
    (["--method", "tfidf", "--task", "lds", "--suite", "tiny", "--device", "cuda"], "no CUDA device"),
])
def test_bad_arguments(run_cli, argv, pattern):
    _assert_user_error(run_cli("run", *argv), pattern)


def test_malformed_dataset_row(run_cli, tmp_path):
    raw = '{"inputs": "a", "targets": "b", "task": "t"}\n{"inputs": "a", "targets": }\n'
    suite = _user_suite(tmp_path, raw_train=raw)
    _assert_user_error(run_cli("run", "--method", "tfidf", "--task", "lds", "--suite", suite),
                       "train.jsonl:2: invalid JSON")


def test_missing_column(run_cli, tmp_path):
    suite = _user_suite(tmp_path, train_rows=[{"inputs": "a", "answer": "b", "task": "t"}])
    _assert_user_error(run_cli("run", "--method", "tfidf", "--task", "lds", "--suite", suite),
                       "missing column 'targets'")


def test_empty_test_split(run_cli, tmp_path):
    suite = _user_suite(tmp_path, test_rows=[])
    _assert_user_error(run_cli("run", "--method", "tfidf", "--task", "lds", "--suite", suite),
                       "the test split is empty")


def test_m_below_two_in_a_suite_file(run_cli, tmp_path):
    _assert_user_error(run_cli("run", "--method", "tfidf", "--task", "lds", "--suite",
                               _user_suite(tmp_path, m=1)), "num_subsets must be >= 2")


def test_user_suite_runs_end_to_end(run_cli, tmp_path):
    code, out, err, results = run_cli("run", "--method", "tfidf", "--task", "lds", "--suite",
                                      _user_suite(tmp_path), cache=tmp_path / "cache")
    assert code == 0, err
    assert len(list((results / "mine" / "lds" / "tfidf").glob("*.json"))) == 1


def test_subprocess_exit_code_and_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "bench.cli.main", "run", "--method", "nope", "--task", "lds",
                           "--results-dir", str(tmp_path / "r")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    assert not (tmp_path / "r").exists()


def test_a_data_file_that_is_not_utf8(run_cli, tmp_path):
    raw = '{"inputs": "a", "targets": "b", "task": "t"}\n{"inputs": "caf\xe9", "targets": "c", "task": "t"}\n'
    suite = _user_suite(tmp_path)
    (tmp_path / "train.jsonl").write_bytes(raw.encode("latin-1"))
    result = run_cli("run", "--method", "tfidf", "--task", "lds", "--suite", suite, cache=tmp_path / "cache")
    _assert_user_error(result, "train.jsonl:2: not UTF-8 (byte 0xe9 at column 16)")
    assert not result[3].exists()


def test_a_results_dir_under_a_file_fails_before_any_work(tmp_path, capsys):
    from bench.cli.main import main

    (tmp_path / "afile").write_text("x")
    cache = tmp_path / "cache"
    code = main(["run", "--method", "tfidf", "--task", "lds", "--suite", "tiny", "--cache-dir", str(cache),
                 "--results-dir", str(tmp_path / "afile" / "results")])
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: --results-dir '{tmp_path / 'afile' / 'results'}' is under '{tmp_path / 'afile'}', which is a file; "
        f"give a folder"]
    assert not cache.exists()  # nothing was trained or cached: the check came first
    assert (tmp_path / "afile").read_text() == "x"


def test_a_damaged_retraining_job_is_named_and_recomputed(run_cli, tmp_path, capsys):
    cache = tmp_path / "cache"
    code, _, err, results = run_cli("run", "--method", "tfidf", "--task", "lds", "--suite", "tiny", cache=cache)
    assert code == 0, err
    first = json.loads(next(results.rglob("tfidf/*.json")).read_text())
    job = sorted(cache.glob("retrain/*/jobs/00003.npz"))[0]
    job.write_bytes(job.read_bytes()[:300])  # cut short, as a full disk leaves it
    code, _, err, _ = run_cli("run", "--method", "tfidf", "--task", "lds", "--suite", "tiny", "--force", cache=cache)
    assert code == 0, err
    assert f"damaged cache entry {job} (BadZipFile" in err and "recomputing that job" in err
    again = json.loads(next(results.rglob("tfidf/*.json")).read_text())
    assert again["metrics"] == first["metrics"]  # the recomputed job is the same job
    assert len(job.read_bytes()) > 300
