import json

import numpy as np
import pytest

from bench.metrics import unigram_f1
from bench.stats import draw_weights, replicate_macro_means
from tasks.selection import best_ranks, select_top_k, split_queries


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


def test_queries_and_evaluated_examples_are_disjoint_and_cover_every_task():
    labels = np.array(["a"] * 5 + ["b"] * 2 + ["c"] * 4)
    queries, evaluated = split_queries(labels, 0.5, np.random.default_rng(0))
    assert not set(queries) & set(evaluated) and sorted(queries + evaluated) == list(range(11))
    for task in "abc":
        assert any(labels[i] == task for i in queries) and any(labels[i] == task for i in evaluated)
    assert [int((labels[queries] == t).sum()) for t in "abc"] == [2, 1, 2]  # round(0.5 n), 1 left to evaluate
    assert split_queries(labels, 0.5, np.random.default_rng(0)) == (queries, evaluated)
    assert split_queries(labels, 0.5, np.random.default_rng(1)) != (queries, evaluated)
    from bench.errors import DataError

    with pytest.raises(DataError, match="task 'x' has 1 test example"):
        split_queries(np.array(["x", "y", "y"]), 0.5, np.random.default_rng(0))


def test_selection_end_to_end_on_tiny(run_cli, tiny_cache):
    records = {}
    for method in ("tfidf", "random"):
        code, out, err, results = run_cli("run", "--method", method, "--task", "selection", "--suite", "tiny")
        assert code == 0, err
        records[method] = json.loads(next(results.rglob(f"selection/{method}/*.json")).read_text())
    rec = records["tfidf"]
    extra = rec["extra"]
    assert extra["k"] == 20 and len(extra["tasks"]) == 14
    assert all(len(ids) == 20 and len(set(ids)) == 20 for ids in extra["selected"].values())
    assert set(rec["metrics"]) == {"f1", "f1_random", "f1_full", "f1_zero"}
    assert extra["selection_cost_s"] > 0
    # the selection never sees the examples it is evaluated on
    assert not set(extra["queries"]) & set(extra["evaluated"]) and len(rec["per_example"]["f1"]) == len(
        extra["evaluated"]) and len(extra["queries"]) >= 14
    # three seeds, averaged; they enter the interval (the two-way draws are declared)
    assert len(extra["seed_f1"]["method"]) == 3 and rec["metrics"]["f1"]["draws"].endswith("x fine-tuning seeds")
    assert rec["metrics"]["f1"]["value"] == pytest.approx(np.mean(extra["seed_f1"]["method"]))
    # the random, full-pool and zero-step references do not depend on the method: identical in both records
    for name in ("f1_random", "f1_full", "f1_zero"):
        assert records["tfidf"]["per_example"][name] == records["random"]["per_example"][name]
    assert records["tfidf"]["per_example"]["f1"] != records["random"]["per_example"]["f1"]
    # the zero-step row is the start LM's own answers
    from bench.api import RunContext, unigram_f1
    from bench.cache import Cache
    from bench.suites import load_suite

    suite = load_suite("tiny")
    lm = RunContext(suite, cache=Cache(tiny_cache)).start_lm()
    test = suite.split("test")
    refs = lm.tokenizer.batch_decode(lm.tokenizer([e.response for e in test], add_special_tokens=False)["input_ids"])
    answers = lm.generate([test[i].prompt for i in extra["evaluated"]], max_new_tokens=32)
    np.testing.assert_allclose(rec["per_example"]["f1_zero"],
                               [unigram_f1(a, refs[i]) for a, i in zip(answers, extra["evaluated"], strict=True)])
    from leaderboard.render import render

    text = render(results)
    assert "*zero steps*" in text and "judged on the examples it was chosen for" in text
