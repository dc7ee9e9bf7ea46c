import json

import numpy as np
import pytest

from tasks.classification import chance_levels, top_k


def test_top_k_orders_best_first():
    scores = np.array([[0.1, 0.9, 0.5, 0.7], [3.0, 1.0, 2.0, 0.0]])
    np.testing.assert_array_equal(top_k(scores, 2), [[1, 3], [0, 2]])
    np.testing.assert_array_equal(top_k(scores, 10), [[1, 3, 2, 0], [0, 2, 1, 3]])


def test_chance_levels_hand_computed():
    train = np.array(["a", "a", "b", "c"])
    test = np.array(["a", "c", "z"])
    top1, top2 = chance_levels(train, test, 2)
    assert top1 == pytest.approx((2 / 4 + 1 / 4 + 0) / 3)
    # any of 2 distinct draws: label a: 1 - (2/4)(1/3) = 5/6; label c: 1 - (3/4)(2/3) = 1/2; z: 0
    assert top2 == pytest.approx((5 / 6 + 1 / 2 + 0) / 3)


def test_tfidf_beats_chance_and_random_does_not(run_cli):
    code, out, err, results = run_cli("run", "--method", "tfidf", "--task", "classification", "--suite", "tiny")
    assert code == 0, err
    rec = json.loads(next(results.rglob("tfidf/*.json")).read_text())
    m, chance = rec["metrics"], rec["extra"]["chance"]
    assert set(m) == {"top1_task", "top10_task", "top1_family", "top10_family"}
    # lexical overlap finds same-task examples on templated data: far above chance (~0.08)
    assert m["top1_task"]["ci_low"] > chance["task"]["top1"] + 0.3
    assert m["top10_task"]["value"] >= m["top1_task"]["value"]
    code, out, err, results = run_cli("run", "--method", "random", "--task", "classification", "--suite", "tiny")
    rec = json.loads(next(results.rglob("random/*.json")).read_text())
    for kind in ("task", "family"):
        lds = rec["metrics"][f"top1_{kind}"]
        assert lds["ci_low"] - 0.02 <= rec["extra"]["chance"][kind]["top1"] <= lds["ci_high"] + 0.02


def test_a_label_kind_kept_out_of_the_pool_is_not_classified_and_answer_matching_is_a_control(run_cli):
    """bbq's `template` label (its clusters) never occurs in both the pool and the test split: no metric; the
    answer label is classified, and TF-IDF on the responses alone matches the answer type."""
    code, out, err, results = run_cli("run", "--method", "tfidf", "--task", "classification", "--suite", "bbq",
                                      "--set", "fields=response", "--label", "tfidf_response")
    assert code == 0, err
    rec = json.loads(next(results.rglob("*.json")).read_text())
    assert set(rec["metrics"]) == {"top1_answer", "top10_answer"} and rec["extra"]["label_kinds"] == ["answer"]
    assert rec["extra"]["skipped_label_kinds"] == ["template"]
    assert rec["label"] == "tfidf_response" and rec["method_config"]["fields"] == "response"
    assert rec["metrics"]["top1_answer"]["value"] > 0.9  # the abstaining answers are a few set phrases
