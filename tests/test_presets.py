"""The FLAN data recipe on a local mirror in the published layout of Muennighoff/flan."""

import json
from pathlib import Path

from bench.suites import load_suite

FIXTURE = Path(__file__).parent / "data" / "presets"


def test_flan_recipe_draws_a_seeded_pool_disjoint_warmup_and_the_first_test_rows_of_each_task():
    suite = load_suite(str(FIXTURE / "flan.toml"))
    train, test, warm = suite.split("train"), suite.split("test"), suite.split("warmup")
    assert len(train) == 30 and len(warm) == 12 and suite.split("airrep_train") == []
    assert not {e.id for e in train} & {e.id for e in warm}
    assert {e.labels["task"] for e in train} <= {"sst2", "trivia_qa", "wmt16_translate_deen"}
    # the first 3 rows of each task's test file, tasks in file-name order
    assert [e.id for e in test] == [f"{t}_test:{i}" for t in ("sst2", "trivia_qa", "wmt16_translate_deen")
                                    for i in (1, 2, 3)]
    again = load_suite(str(FIXTURE / "flan.toml"))
    assert [e.id for e in again.split("train")] == [e.id for e in train]  # seeded
    other = load_suite(str(FIXTURE / "flan.toml"), [("data.preset.seed", 1)])
    assert [e.id for e in other.split("train")] != [e.id for e in train]


def test_flan_preset_gives_an_lds_result_through_the_cli(run_cli, tmp_path):
    code, out, err, results = run_cli("run", "--method", "tfidf", "--task", "lds",
                                      "--suite", str(FIXTURE / "flan.toml"), cache=tmp_path / "cache")
    assert code == 0, err
    record = json.loads(next(results.rglob("*.json")).read_text())
    assert record["status"] == "ok" and record["extra"]["n_train"] == 30 and record["extra"]["n_test"] == 9
    assert -1 <= record["metrics"]["lds"]["value"] <= 1 and record["extra"]["n_subsets"] == 4


def test_a_bad_mirror_row_is_one_line_with_file_and_line(run_cli, tmp_path):
    import shutil

    shutil.copytree(FIXTURE, tmp_path / "s")
    bad = tmp_path / "s" / "flan_mirror" / "test" / "sst2_test.jsonl"
    lines = bad.read_text().splitlines()
    lines[1] = '{"inputs": "x", "task": "sst2"}'
    bad.write_text("\n".join(lines) + "\n")
    code, _, err, results = run_cli("run", "--method", "tfidf", "--task", "lds",
                                    "--suite", str(tmp_path / "s" / "flan.toml"), cache=tmp_path / "cache")
    assert code == 2 and err.count("\n") == 1 and "sst2_test.jsonl:2: missing targets" in err


def test_the_hub_source_without_the_hub_says_what_to_do(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    code, _, err, _ = run_cli("run", "--method", "tfidf", "--task", "lds", "--suite", str(FIXTURE / "flan.toml"),
                              "--suite-set", "data.preset.source=hf://Muennighoff/flan", cache=tmp_path / "cache")
    assert code == 2 and "cannot fetch hf://Muennighoff/flan" in err and "local mirror" in err
