import json

import numpy as np
import pytest

from bench.metrics import unigram_f1
from bench.splits import content_groups, split_groups
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


def test_queries_and_evaluated_examples_are_disjoint_and_cover_every_task():
    labels = np.array(["a"] * 5 + ["b"] * 2 + ["c"] * 4)
    queries, evaluated = split_groups(labels, 0.5, np.random.default_rng(0), what="selection")
    assert not set(queries) & set(evaluated) and sorted(queries + evaluated) == list(range(11))
    for task in "abc":
        assert any(labels[i] == task for i in queries) and any(labels[i] == task for i in evaluated)
    assert [int((labels[queries] == t).sum()) for t in "abc"] == [3, 1, 2]  # floor(0.5 n + 0.5), 1 left to evaluate
    assert split_groups(labels, 0.5, np.random.default_rng(0), what="selection") == (queries, evaluated)
    assert split_groups(labels, 0.5, np.random.default_rng(1), what="selection") != (queries, evaluated)
    from bench.errors import DataError

    with pytest.raises(DataError, match="task 'x' has 1 test example"):
        split_groups(np.array(["x", "y", "y"]), 0.5, np.random.default_rng(0), what="selection")


def test_content_groups_keep_an_item_on_one_side():
    labels = np.array(["capital"] * 8 + ["sentiment"] * 8)
    prompts = ["Capital of Iraq?", "Name the capital of Iraq.", "Capital of Peru?", "Capital of Chad?",
               "Capital of Oman?", "Capital of Fiji?", "Capital of Laos?", "Capital of Mali?",
               *[f"Review {i}" for i in range(7)], "review 0"]  # the last repeats a prompt (normalised)
    responses = ["Baghdad", "baghdad", "Lima", "N'Djamena", "Muscat", "Suva", "Vientiane", "Bamako",
                 *(["positive"] * 4 + ["negative"] * 4)]
    groups = content_groups(labels, prompts, responses)
    assert groups[0] == groups[1]  # one item (a rare answer) under two templates
    assert len({groups[i] for i in range(2, 8)}) == 6 and groups[2] != groups[0]
    assert groups[8] == groups[15]  # the same prompt
    assert groups[9] != groups[10]  # a common answer (a sentiment) links nothing
    for seed in range(20):  # the item never straddles the split
        queries, _ = split_groups(labels, 0.5, np.random.default_rng(seed), groups, what="selection")
        assert (0 in queries) == (1 in queries) and (8 in queries) == (15 in queries)


@pytest.mark.slow  # 2 x 42 fine-tunings with generation, plus the shared references: about a minute
def test_selection_end_to_end_on_tiny(run_cli, tiny_cache, tmp_path):
    """A score file selects (its evaluated rows are never read), against random; references shared, seeds distinct."""
    from bench.suites import load_suite

    suite = load_suite("tiny")
    test = suite.split("test")
    scores = np.random.default_rng(0).normal(size=(len(test), len(suite.split("train"))))
    np.save(tmp_path / "s.npy", scores)
    records = {}
    for method, extra_args in (("scores", ["--set", f"path={tmp_path / 's.npy'}", "--set", "name=stub"]),
                               ("random", [])):
        code, out, err, results = run_cli("run", "--method", method, *extra_args, "--task", "selection",
                                          "--suite", "tiny", "--task-set", "random_seeds=1")
        assert code == 0, err
    for path in results.rglob("selection/*/*.json"):
        rec = json.loads(path.read_text())
        records[rec["method"]] = rec
    rec = records["scores"]
    extra = rec["extra"]
    assert extra["k"] == 20 and len(extra["tasks"]) == 14
    assert set(rec["metrics"]) == {"f1", "f1_random", "f1_full", "f1_zero"}
    assert not set(extra["queries"]) & set(extra["evaluated"]) and len(rec["per_example"]["f1"]) == len(
        extra["evaluated"])
    labels = np.array([e.labels["task"] for e in test])
    for task, chosen in extra["selected"].items():  # selected from the task's queries alone
        query_ids = [i for i in extra["queries"] if labels[i] == task]
        assert chosen == select_top_k(scores[query_ids], 20).tolist()
        assert chosen != select_top_k(scores[labels == task], 20).tolist()  # all of the task's rows select otherwise
    # three distinct fine-tuning seeds per task, averaged; the per-task rows resample whole tasks (their seed means)
    assert all(len(set(seeds)) == 3 for seeds in extra["seeds"].values())
    assert rec["metrics"]["f1"]["value"] == pytest.approx(np.mean(extra["seed_f1"]["method"]))
    assert rec["metrics"]["f1"]["draws"].endswith("(each task's seed mean)")
    assert rec["metrics"]["f1_full"]["draws"].endswith("x fine-tuning seeds")
    # the random, full-pool and zero-step references do not depend on the method: identical in both records
    for name in ("f1_random", "f1_full", "f1_zero"):
        assert records["scores"]["per_example"][name] == records["random"]["per_example"][name]
        assert records["scores"]["metrics"][name]["replicates"] == records["random"]["metrics"][name]["replicates"]
    assert records["scores"]["extra"]["selected"] != records["random"]["extra"]["selected"]
    # the zero-step row is the start LM's own answers, generated per task
    from bench.api import RunContext, unigram_f1
    from bench.cache import Cache

    lm = RunContext(suite, cache=Cache(tiny_cache)).start_lm()
    refs = lm.tokenizer.batch_decode(lm.tokenizer([e.response for e in test], add_special_tokens=False)["input_ids"])
    zero = {}
    for task in extra["tasks"]:
        ids = [int(i) for i in np.flatnonzero(labels == task)]
        zero.update(zip(ids, lm.generate([test[i].prompt for i in ids], max_new_tokens=32), strict=True))
    np.testing.assert_allclose(rec["per_example"]["f1_zero"],
                               [unigram_f1(zero[i], refs[i]) for i in extra["evaluated"]])
    from leaderboard.render import render

    text = render(results)
    assert "*zero steps*" in text and "judged on the examples it was chosen for" in text
