"""`bench export` / `bench export-examples`: the authors' layout, and a round trip through released ground truth."""

import json

import numpy as np
import pytest

SEEDS = ["--suite-set", "ground_truth.seeds_per_subset=2"]


def _rows(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_export_examples_writes_the_splits_in_score_matrix_order(run_cli, tmp_path):
    from bench.suites import load_suite

    code, out, err, _ = run_cli("export-examples", "--suite", "tiny", "--out", str(tmp_path / "ex"))
    assert code == 0, err
    suite = load_suite("tiny")
    for split in ("train", "test"):
        rows = _rows(tmp_path / "ex" / f"{split}.jsonl")
        assert [r["id"] for r in rows] == [e.id for e in suite.split(split)]
        assert [r["index"] for r in rows] == list(range(len(rows)))
        example = suite.split(split)[3]
        assert rows[3]["text"] == example.text() and rows[3]["labels"] == dict(example.labels)
    assert sorted(p.name for p in (tmp_path / "ex").iterdir()) == ["test.jsonl", "train.jsonl"]


def test_export_is_the_authors_layout_and_round_trips_the_lds_exactly(run_cli, tmp_path):
    out = tmp_path / "export"
    code, _, err, _ = run_cli("export", "--suite", "tiny", *SEEDS, "--out", str(out))
    assert code == 0, err
    lds_rows = _rows(out / "lds.jsonl")  # plain json reads every file
    assert len(lds_rows) == 16 and set(lds_rows[0]) == {"train_subset", "test_loss", "test_loss_seeds"}
    assert len(lds_rows[0]["test_loss"]) == len(_rows(out / "test.jsonl")) == 64
    assert len(lds_rows[0]["train_subset"]) == 200 and max(max(r["train_subset"]) for r in lds_rows) < 400
    seeds = np.array(lds_rows[5]["test_loss_seeds"])
    np.testing.assert_allclose(seeds.mean(axis=0), lds_rows[5]["test_loss"], rtol=0, atol=1e-12)
    readme = (out / "README.md").read_text()
    assert "tda-bench 0.1.0" in readme and '"num_subsets": 16' in readme
    for method in ("tfidf", "random"):
        code, _, err, results = run_cli("run", "--method", method, "--task", "lds", "--suite", "tiny", *SEEDS)
        assert code == 0, err
        code, _, err, results = run_cli("run", "--method", method, "--task", "lds", "--suite",
                                        str(out / "suite.toml"))
        assert code == 0, err
        a = json.loads(next(results.rglob(f"tiny/lds/{method}/*.json")).read_text())
        b = json.loads(next(results.rglob(f"tiny-export/lds/{method}/*.json")).read_text())
        for metric in ("lds", "ceiling"):
            for key in ("value", "ci_low", "ci_high"):
                assert abs(a["metrics"][metric][key] - b["metrics"][metric][key]) <= 1e-12, (method, metric, key)
        np.testing.assert_allclose(np.array(a["per_example"]["lds"], float), np.array(b["per_example"]["lds"], float),
                                   rtol=0, atol=1e-12)


def test_released_seeds_must_be_consistent(tmp_path):
    from bench.errors import DataError
    from bench.released import load_released

    path = tmp_path / "lds.jsonl"
    good = {"train_subset": [0, 1], "test_loss": [1.0, 2.0], "test_loss_seeds": [[1.0, 2.0], [1.0, 2.0]]}
    path.write_text(json.dumps(good) + "\n" + json.dumps({"train_subset": [2], "test_loss": [1.0, 2.0]}) + "\n")
    with pytest.raises(DataError, match=":2: test_loss_seeds must be given on every row or on none"):
        load_released(path, 4, 2)
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "test_loss_seeds": [[1.0]] * 2}) + "\n")
    with pytest.raises(DataError, match=":2: test_loss_seeds must be 2 or more lists of 2 finite losses"):
        load_released(path, 4, 2)
    path.write_text(json.dumps(good) + "\n" + json.dumps(good) + "\n")
    table = load_released(path, 4, 2)
    assert table.seed_losses.shape == (2, 2, 2)


def test_export_to_a_file_is_one_line_and_writes_nothing(run_cli, tmp_path):
    target = tmp_path / "afile"
    target.write_text("x")
    code, _, err, _ = run_cli("export", "--suite", "tiny", "--out", str(target))
    assert code == 2 and err.strip().splitlines() == [f"error: --out '{target}' is a file; give a folder"]
    assert target.read_text() == "x"
