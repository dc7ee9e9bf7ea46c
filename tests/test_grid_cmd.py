"""`bench grid`: the leaderboard's grid as one definition (layout.toml) for the header, the workflow and users."""

import json
from pathlib import Path

import yaml

import leaderboard.fmt as fmt
from bench.cli.grid_cmd import steps
from bench.cli.main import main
from leaderboard.render import regenerate_line

ROOT = Path(__file__).resolve().parent.parent


def test_the_workflow_shards_are_the_grids_suites_and_run_bench_grid():
    workflow = yaml.safe_load((ROOT / ".github/workflows/leaderboard.yml").read_text(encoding="utf-8"))
    shard = workflow["jobs"]["shard"]
    assert shard["strategy"]["matrix"]["suite"] == list(dict.fromkeys(s for s, _ in steps()))
    script = "\n".join(step.get("run", "") for step in shard["steps"])
    assert "bench grid --suite ${{ matrix.suite }}" in script
    assert workflow["jobs"]["render"]["needs"] == "shard"


def test_grid_list_is_the_leaderboards_regenerate_line(capsys):
    assert main(["grid", "--list"]) == 0
    listed = capsys.readouterr().out.strip().splitlines()
    line = regenerate_line("leaderboard/results")
    assert len(listed) == line.count("`bench run") and len(listed) >= 2
    for command in listed:  # the same options, in the header's order of words
        assert set(command.split()) <= set(line.replace("`", " ").replace(";", " ").split())


def test_an_unknown_suite_is_a_one_line_error(capsys):
    assert main(["grid", "--suite", "nope", "--list"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not in the leaderboard's grid" in err[0] and "small" in err[0]


def test_a_shard_runs_its_suites_steps_only(tmp_path, tiny_cache, monkeypatch, capsys):
    grid = [{"suites": ["tiny"], "methods": "random", "tasks": "lds"},
            {"suites": ["tiny"], "methods": "random", "tasks": "lds", "seeds": "1"},
            {"suites": ["small"], "methods": "random", "tasks": "lds"}]
    monkeypatch.setattr(fmt, "layout", lambda: {"grid": grid})
    assert main(["grid", "--suites"]) == 0 and capsys.readouterr().out.split() == ["tiny", "small"]
    results = tmp_path / "records"
    assert main(["grid", "--suite", "tiny", "--results-dir", str(results), "--cache-dir", str(tiny_cache)]) == 0
    records = [json.loads(p.read_text()) for p in results.rglob("*.json")]
    assert sorted(r["seed"] for r in records) == [0, 1]  # both tiny steps, nothing of small
    assert {r["suite"] for r in records} == {"tiny"} and all(r["status"] == "ok" for r in records)


def test_a_labelled_step_runs_its_options_under_its_label():
    step = {"methods": "tfidf", "tasks": "classification", "set": {"fields": "response"}, "label": "tfidf_response"}
    assert fmt.step_argv(step, "bbq", None, 0) == ["--method", "tfidf", "--task", "classification", "--suite", "bbq",
                                                  "--set", "fields=response", "--label", "tfidf_response"]
    assert ["--set", "fields=response", "--label", "tfidf_response"] == \
        next(a for s, a in steps() if s == "bbq" and "--label" in a)[-4:]
