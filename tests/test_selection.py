import json

import numpy as np
import pytest

from bench.metrics import unigram_f1
from bench.stats import draw_weights, replicate_macro_means
from tasks.selection import best_ranks, select_top_k


def test_best_ranks_and_max_rank_selection():
    scores = np.array([[0.9, 0.1, 0.5, 0.3],    # ranks: 0:0, 2:1, 3:2, 1:3
                       [0.0, 0.8, 0.7, 0.9]])   # ranks: 3:0, 1:1, 2:2, 0:3
    np.testing.assert_array_equal(best_ranks(scores), [0, 1, 1, 0])
    np.testing.assert_array_equal(select_top_k(scores, 3), [0, 3, 1])  # ties on rank: lower index first


def test_unigram_f1():
    assert unigram_f1("le chat noir", "le chat") == pytest.approx(2 * (2 / 3) * 1 / (2 / 3 + 1))
    assert unigram_f1("6 8", "6 8") == 1.0
    assert unigram_f1("", "x") == 0.0 and unigram_f1("", "") == 1.0
    assert unigram_f1("a a b", "a b b") == pytest.approx(2 / 3)  # multiset overlap 2 of 3


def test_macro_mean_weights_groups_equally():
    values = np.array([1.0, 1.0, 1.0, 0.0])
    groups = np.array(["a", "a", "a", "b"])
    # resampling examples within the groups (each group drawn once): no within-group variance, always 0.5
    reps = replicate_macro_means(values, groups, draw_weights(4, rng=np.random.default_rng(0), n_resamples=200,
                                                              clusters=["a", "a", "a", "b"]))
    assert np.all((reps == 0.5) | (reps == 1.0) | (reps == 0.0))
    # a replicate that drew group a twice and b never is 1.0; both once 0.5: the groups weigh by their draws
    assert 0.3 < np.mean(reps == 0.5) < 0.7


def test_selection_end_to_end_on_tiny(run_cli):
    records = {}
    for method in ("tfidf", "random"):
        code, out, err, results = run_cli("run", "--method", method, "--task", "selection", "--suite", "tiny")
        assert code == 0, err
        records[method] = json.loads(next(results.rglob(f"selection/{method}/*.json")).read_text())
    rec = records["tfidf"]
    assert rec["extra"]["k"] == 20 and len(rec["extra"]["tasks"]) == 14
    assert all(len(ids) == 20 and len(set(ids)) == 20 for ids in rec["extra"]["selected"].values())
    assert set(rec["metrics"]) == {"f1", "f1_random", "f1_full"}
    assert rec["extra"]["selection_cost_s"] > 0
    # the random and full-pool references do not depend on the method: identical in both records
    for name in ("f1_random", "f1_full"):
        assert records["tfidf"]["per_example"][name] == records["random"]["per_example"][name]
    assert records["tfidf"]["per_example"]["f1"] != records["random"]["per_example"]["f1"]
