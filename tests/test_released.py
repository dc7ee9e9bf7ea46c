"""Released ground truth (the AirRep authors' lds.jsonl layout): validation and LDS against a hand computation."""

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

FIXTURE = Path(__file__).parent / "data" / "released"


def test_lds_on_the_released_table_equals_an_independent_computation(run_cli):
    code, out, err, results = run_cli("run", "--method", "tfidf", "--task", "lds",
                                      "--suite", str(FIXTURE / "flan.toml"))
    assert code == 0, err
    record = json.loads(next(results.rglob("*.json")).read_text())

    # independent: masks and losses straight from the JSON, scores from scikit-learn, Spearman from scipy
    from sklearn.feature_extraction.text import TfidfVectorizer

    rows = [json.loads(line) for line in (FIXTURE / "flan" / "lds.jsonl").read_text().splitlines()]
    train = [json.loads(line) for line in (FIXTURE / "flan" / "train.jsonl").read_text().splitlines()]
    test = [json.loads(line) for line in (FIXTURE / "flan" / "test.jsonl").read_text().splitlines()]
    text = [f"Question: {r['inputs']}\nAnswer: {r['targets']}" for r in train + test]
    vec = TfidfVectorizer(token_pattern=r"(?u)\b\w+\b").fit(text[: len(train)])
    x = vec.transform(text).toarray()
    scores = x[len(train):] @ x[: len(train)].T
    masks = np.zeros((len(rows), len(train)))
    for j, r in enumerate(rows):
        masks[j, r["train_subset"]] = 1
    group = scores @ masks.T
    losses = np.array([r["test_loss"] for r in rows])
    expected = np.mean([spearmanr(group[i], -losses[:, i]).statistic for i in range(len(test))])
    assert record["metrics"]["lds"]["value"] == pytest.approx(expected, abs=1e-9)
    assert record["cost"]["phases"][0]["name"] == "ground_truth" and record["cost"]["phases"][0]["count"] == len(rows)


@pytest.mark.parametrize(("line", "message"), [
    ('{"train_subset": [0, 1], "test_loss": [1, 2, 3, 4]', "invalid JSON"),
    ('{"train_subset": [0, 99], "test_loss": [1, 2, 3, 4]}', "index 99 is outside the pool of 12 rows"),
    ('{"train_subset": [0, 0], "test_loss": [1, 2, 3, 4]}', "repeats an index"),
    ('{"train_subset": [0, 1], "test_loss": [1, 2, 3]}', "test_loss has 3 values, the test split has 4 rows"),
    ('{"train_subset": [0, 1], "test_loss": [1, 2, 3, NaN]}', "finite numbers"),
    ('{"subset": [0, 1], "test_loss": [1, 2, 3, 4]}', "needs 'train_subset' and 'test_loss'"),
])
def test_a_bad_released_file_is_one_line_with_file_and_line(run_cli, tmp_path, line, message):
    suite = tmp_path / "suite"
    (suite / "flan").mkdir(parents=True)
    for name in ("train.jsonl", "test.jsonl"):
        (suite / "flan" / name).write_text((FIXTURE / "flan" / name).read_text())
    good = (FIXTURE / "flan" / "lds.jsonl").read_text().splitlines()
    (suite / "flan" / "lds.jsonl").write_text("\n".join([good[0], line, *good[2:]]) + "\n")
    (suite / "flan.toml").write_text((FIXTURE / "flan.toml").read_text())
    code, out, err, results = run_cli("run", "--method", "tfidf", "--task", "lds", "--suite", str(suite / "flan.toml"))
    assert code == 2
    assert err.strip().count("\n") == 0 and "lds.jsonl:2: " in err and message in err
    assert not results.exists() or not any(results.rglob("*.json"))


def test_a_released_file_with_one_subset_is_refused(run_cli, tmp_path):
    suite = tmp_path / "suite"
    (suite / "flan").mkdir(parents=True)
    for name in ("train.jsonl", "test.jsonl"):
        (suite / "flan" / name).write_text((FIXTURE / "flan" / name).read_text())
    (suite / "flan" / "lds.jsonl").write_text((FIXTURE / "flan" / "lds.jsonl").read_text().splitlines()[0] + "\n")
    (suite / "flan.toml").write_text((FIXTURE / "flan.toml").read_text())
    code, _, err, _ = run_cli("run", "--method", "tfidf", "--task", "lds", "--suite", str(suite / "flan.toml"))
    assert code == 2 and "at least 2" in err


def test_a_hub_reference_without_the_hub_says_what_to_do(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    code, _, err, _ = run_cli("run", "--method", "tfidf", "--task", "lds", "--suite", str(FIXTURE / "flan.toml"),
                              "--suite-set", "ground_truth.released=hf://sunweiwei/airrep-test/flan/lds.jsonl")
    assert code == 2 and "cannot fetch hf://sunweiwei/airrep-test/flan/lds.jsonl" in err and "local copy" in err
