"""Incremental runs: a cell with an up-to-date record is not run again; --force, other options or a code
version bump run it."""

import pytest

from bench.api import methods


def _record_mtime(results):
    paths = sorted(results.rglob("*.json"))
    assert len(paths) == 1
    return paths[0], paths[0].stat().st_mtime_ns


def test_an_up_to_date_cell_is_skipped_and_force_or_a_version_bump_runs_it(run_cli, monkeypatch):
    args = ("run", "--method", "tfidf", "--task", "lds", "--suite", "tiny")
    code, out, err, results = run_cli(*args)
    assert code == 0, err
    path, mtime = _record_mtime(results)
    headline = next(line for line in out.splitlines() if line.strip().startswith("LDS ="))

    code, out, err, _ = run_cli(*args)
    assert code == 0 and out.startswith("up to date: lds = ") and str(path) in out
    assert f"{float(headline.split('=')[1].split()[0]):.4f}" in out  # the stored headline
    assert _record_mtime(results) == (path, mtime)  # nothing was rewritten

    code, out, _, _ = run_cli(*args, "--force")
    assert code == 0 and "up to date" not in out and _record_mtime(results)[1] != mtime

    mtime = _record_mtime(results)[1]
    monkeypatch.setattr(methods.get("tfidf"), "code_version", "bumped")
    code, out, _, _ = run_cli(*args)
    assert code == 0 and "up to date" not in out
    assert len(list(results.rglob("*.json"))) == 2  # a new fingerprint: the old record stays beside it


@pytest.mark.parametrize("change", [("--task-set", "bootstrap_resamples=500"), ("--set", "ngram_max=2"),
                                    ("--suite-set", "ground_truth.num_subsets=8"), ("--seed", "1")])
def test_any_change_to_the_cell_runs_it(run_cli, change):
    args = ("run", "--method", "tfidf", "--task", "lds", "--suite", "tiny")
    assert run_cli(*args)[0] == 0
    code, out, err, results = run_cli(*args, *change)
    assert code == 0 and "up to date" not in out, err
    assert len(list(results.rglob("*.json"))) == 2


def test_a_rerun_grid_runs_nothing(tmp_path):
    from bench.runner import RunRequest, run_grid

    request = RunRequest(method="", task="", suite="tiny", suite_options=(("ground_truth.num_subsets", 4),),
                         cache_dir=tmp_path / "cache", results_dir=tmp_path / "r")
    first = run_grid(request, ["random", "tfidf"], ["lds", "classification"])
    stamps = {str(p): p.stat().st_mtime_ns for _, p in first}
    again = run_grid(request, ["random", "tfidf"], ["lds", "classification"])
    assert [str(p) for _, p in again] == [str(p) for _, p in first]
    assert {str(p): p.stat().st_mtime_ns for _, p in again} == stamps


def test_git_state_ignores_the_harness_outputs(tmp_path):
    """Deleting committed records (as the leaderboard workflow does) leaves the code clean; editing code does not."""
    import subprocess

    from bench.runner import git_state

    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "code.py").write_text("x = 1\n")
    rec = tmp_path / "leaderboard" / "results" / "small" / "lds" / "tfidf"
    rec.mkdir(parents=True)
    (rec / "a.json").write_text("{}\n")
    (tmp_path / "LEADERBOARD.md").write_text("# x\n")
    git("add", "-A")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init")
    sha, dirty = git_state(tmp_path)
    assert len(sha) == 40 and dirty is False
    (rec / "a.json").unlink()
    (rec / "b.json").write_text("{}\n")  # a new record, untracked
    (tmp_path / "LEADERBOARD.md").write_text("# y\n")
    assert git_state(tmp_path)[1] is False
    (tmp_path / "bench" / "plugin.py").write_text("y = 1\n")  # a new module, not yet committed
    assert git_state(tmp_path)[1] is True
    (tmp_path / "bench" / "plugin.py").unlink()
    (tmp_path / "bench" / "code.py").write_text("x = 2\n")
    assert git_state(tmp_path)[1] is True
