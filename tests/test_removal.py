"""The removal task: its arithmetic by hand, its retraining against LOO's and one-by-one runs, the task."""

import json

import numpy as np
import pytest

from tasks.removal import (
    random_rows,
    removal_effects,
    removal_size,
    share_name,
    share_text,
    specificity,
    top_rows,
    two_way_replicates,
)

SMALL = ["--task-set", "n_test=16", "--task-set", "fractions=[0.05, 0.1]", "--task-set", "random_draws=2"]


def test_effects_by_hand():
    whole = np.array([[1.0, 2.0], [1.5, 2.5]])  # [S=2, n=2]
    method = np.array([[1.4, 2.0], [1.7, 2.9]])
    random = np.array([[[1.1, 2.1], [1.0, 1.9]], [[1.5, 2.6], [1.6, 2.5]]])  # [S, R=2, n]
    got = removal_effects(method, random, whole)
    # example 0: increases 0.4, 0.2 -> 0.3; random 0.1, 0.0 | 0.0, 0.1 -> 0.05; gain 0.25
    # example 1: increases 0.0, 0.4 -> 0.2; random 0.1, -0.1 | 0.1, 0.0 -> 0.025; gain 0.175
    np.testing.assert_allclose(got["increase"], [0.3, 0.2])
    np.testing.assert_allclose(got["increase_random"], [0.05, 0.025])
    np.testing.assert_allclose(got["gain"], [0.25, 0.175])
    np.testing.assert_allclose(got["seed_gain"], [[0.35, 0.0], [0.15, 0.35]])
    # beats: the method's seed-mean increase against each draw's seed-mean (draw means 0.05, 0.05 | 0.1, -0.05)
    np.testing.assert_array_equal(got["beats"], [1.0, 1.0])
    got = removal_effects(method, random + np.array([0.0, 0.3])[None, :, None], whole)  # draw 1 now larger
    np.testing.assert_array_equal(got["beats"], [0.0, 0.0])


def test_two_way_replicates_resample_the_draws_as_well_as_the_examples():
    increase = np.array([0.3, 0.2])
    random_increase = np.array([[0.0, 0.1], [0.4, 0.0]])  # [R=2, n=2]
    weights = np.array([[1, 1], [2, 0], [1, 1]])  # [B=3, n]
    draw_idx = np.array([[0, 1], [0, 0], [1, 1]])  # replicate 0: both draws; 1: draw 0 twice; 2: draw 1 twice
    got = two_way_replicates(increase, random_increase, weights, draw_idx)
    # replicate 0: references (0.2, 0.05) -> gains (0.1, 0.15), mean 0.125; beats: 0.3 > 0.4? no; 0.2 > 0.1 yes
    # replicate 1: only example 0 (twice), reference 0.0 -> gain 0.3, beats 1; replicate 2: references (0.4, 0.0)
    np.testing.assert_allclose(got["gain"], [0.125, 0.3, ((0.3 - 0.4) + 0.2) / 2])
    np.testing.assert_allclose(got["beats"], [0.5, 1.0, 0.5])
    np.testing.assert_allclose(got["increase_random"], [0.125, 0.0, 0.2])


def test_specificity_compares_with_other_labels_removals():
    cross = np.array([[1.0, 2.0, 3.0], [1.5, 2.5, 3.5], [0.5, 1.0, 4.0]])  # row j's removal, column i's loss
    # example 0 (label a): own 1.0; other label: example 2's removal gives 0.5 -> 0.5 (example 1 shares label a)
    # example 1 (a): own 2.5, example 2's removal 1.0 -> 1.5; example 2 (b): own 4.0, rows 0 and 1: 3.25 -> 0.75
    np.testing.assert_allclose(specificity(cross, ["a", "a", "b"]), [0.5, 1.5, 0.75])
    np.testing.assert_allclose(specificity(cross, ["a", "a", "a"]), [1.0 - 1.0, 2.5 - 1.5, 4.0 - 3.25])
    assert np.isnan(specificity(np.ones((1, 1)), ["a"]))[0]
    # within the label: example 0 against example 1's removal (1.5), example 1 against example 0's (2.0)
    np.testing.assert_allclose(specificity(cross, ["a", "a", "b"], same_label=True), [1.0 - 1.5, 2.5 - 2.0, np.nan])


def test_top_rows_breaks_ties_by_the_permutation_not_the_pool_order():
    scores = np.array([0.1, 0.9, 0.5, 0.9, 0.2])
    assert top_rows(scores, 1, np.arange(5)) == [1]
    assert top_rows(scores, 1, np.array([4, 3, 2, 1, 0])) == [3]  # the tie 1 / 3 goes by the permutation
    assert top_rows(scores, 3, np.arange(5)) == [1, 2, 3]
    constant = np.zeros(6)
    tiebreak = np.array([5, 4, 3, 2, 1, 0])
    assert top_rows(constant, 2, tiebreak) == [4, 5]  # not the first rows of the pool
    assert removal_size(2000, 0.05) == 100 and removal_size(10, 0.01) == 1
    assert share_name(0.05) == "5pct" and share_name(0.005) == "0.5pct" and share_text(0.07) == "7%"
    a = random_rows(100, 5, 0, 0)
    assert a == random_rows(100, 5, 0, 0) and a != random_rows(100, 5, 0, 1) and len(set(a)) == 5


def _ctx(cache):
    from bench.api import RunContext
    from bench.cache import Cache
    from bench.suites import load_suite

    return RunContext(load_suite("tiny"), cache=Cache(cache))


def test_one_row_removed_is_leave_one_out_and_requests_train_once(tiny_cache):
    ctx = _ctx(tiny_cache)
    eval_ids = (0, 5, 9)
    whole, without, _, _ = ctx.leave_one_out([3, 7], eval_ids=eval_ids, seed=3)
    losses, wall, ran, distinct = ctx.retrain_without([([], 3), ([3], 3), ([7], 3), ([7], 3)], eval_ids=eval_ids)
    assert ran == distinct == 3 and wall > 0  # the repeated request trained once
    np.testing.assert_allclose(losses[0], whole, rtol=0, atol=1e-5)
    np.testing.assert_allclose(losses[1:3], without, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(losses[2], losses[3])
    again, _, ran, distinct = ctx.retrain_without([([11, 3, 7], 3), ([3, 7, 11], 3)], eval_ids=eval_ids)
    assert ran == distinct == 1 and np.array_equal(again[0], again[1])  # a set, in any order, is one job
    assert ctx.retrain_without([([3, 7, 11], 3)], eval_ids=eval_ids)[2] == 0  # cached
    assert np.abs(again[0] - whole).max() > 1e-4
    with pytest.raises(ValueError, match="outside the pool"):
        ctx.retrain_without([([400], 3)], eval_ids=eval_ids)
    with pytest.raises(ValueError, match="twice"):
        ctx.retrain_without([([3, 3], 3)], eval_ids=eval_ids)


def test_removed_rows_are_silenced_in_place_as_one_by_one_training(tiny_cache):
    """Batched removals equal training one model on the pool with those rows' labels masked, in the same order."""
    from bench.cache import Cache
    from bench.lm import finetune_group
    from bench.retrain import warmup_lm
    from bench.suites import load_suite

    suite = load_suite("tiny")
    lm, _ = warmup_lm(suite, Cache(tiny_cache))
    start = lm.state_dict()
    pool, ev = lm.encode(suite.split("train")), lm.encode(suite.split("test"))
    n = len(pool.lengths)
    gone = [2, 40, 41, 300]
    masked = pool.labels.clone()
    masked[gone] = -100
    silenced = pool.take(np.arange(n), labels=masked)
    by_hand = finetune_group(lm, start, silenced, [np.arange(n)], [3], evaluation=ev, batched=False).losses[0]
    got, _, _, _ = _ctx(tiny_cache).retrain_without([(gone, 3), ([5], 3)], eval_ids=tuple(range(len(ev.lengths))))
    np.testing.assert_allclose(got[0], by_hand, atol=1e-5)
    assert np.abs(got[0] - got[1]).max() > 1e-4


def test_the_task_runs_pairs_and_recomputes(run_cli, tiny_cache):
    code, _, err, _ = run_cli("run", "--method", "random", "--task", "removal", "--suite", "tiny",
                              "--task-set", "headline_fraction=0.2")
    assert code == 2 and "not one of the fractions" in err and "Traceback" not in err
    for m in ("random", "dsdm"):
        code, _, err, results = run_cli("run", "--method", m, "--task", "removal", "--suite", "tiny", *SMALL,
                                        "--label", f"{m}-small")
        assert code == 0, err
    rec = {m: json.loads(next(results.rglob(f"tiny/removal/{m}/*.json")).read_text()) for m in ("random", "dsdm")}
    r, d = rec["random"], rec["dsdm"]
    from bench.suites import load_suite

    suite_labels = [e.labels["task"] for e in load_suite("tiny").split("test")]
    assert r["pairing"] == d["pairing"] is not None
    assert r["extra"]["random_removed"] == d["extra"]["random_removed"] and r["extra"]["whole_loss"] == \
        d["extra"]["whole_loss"]  # the references are shared
    assert d["extra"]["sizes"] == [20, 40] and len(d["extra"]["removed"]["5pct"]) == 16
    assert all(len(rows) == 20 for rows in d["extra"]["removed"]["5pct"])
    # the headline recomputed from the record's losses
    whole = np.array(d["extra"]["whole_loss"])  # [S, n]
    own = np.array(d["extra"]["method_loss"])[:, 0]  # [S, n] at 5%
    rnd = np.array(d["extra"]["random_loss"])[:, 0]  # [S, R, n]
    gain = ((own - whole) - (rnd - whole[:, None]).mean(axis=1)).mean(axis=0)
    np.testing.assert_allclose(d["per_example"]["gain"], gain)
    assert d["metrics"]["gain"]["value"] == pytest.approx(gain.mean())
    assert d["metrics"]["gain_5pct"]["value"] == d["metrics"]["gain"]["value"] and "gain_10pct" in d["metrics"]
    assert d["metrics"]["gain"]["draws"].endswith("x random draws")
    cross0 = np.array(d["extra"]["cross_loss"])[0]  # 5%: row j's removal, column i's loss
    labels = [suite_labels[t] for t in d["extra"]["test_rows"]]
    within = [cross0[i, i] - np.mean([cross0[j, i] for j in range(16) if j != i and labels[j] == labels[i]])
              if sum(lab == labels[i] for lab in labels) > 1 else np.nan for i in range(16)]
    assert np.isfinite(within).sum() >= 2  # 16 test examples over 14 tasks: some share a label
    np.testing.assert_allclose(np.array(d["per_example"]["within_label"], dtype=float), within)
    # each test example's own loss is the run without *its* removal: read back from the cache, column by column
    ctx = _ctx(tiny_cache)
    rows, seeds = d["extra"]["test_rows"], d["extra"]["seeds"]
    for s, seed in enumerate(seeds):
        back, _, ran, _ = ctx.retrain_without([(r, seed) for r in d["extra"]["removed"]["5pct"]], eval_ids=tuple(rows))
        assert ran == 0
        np.testing.assert_allclose(np.diagonal(back), own[s])
    cross = np.mean([ctx.retrain_without([(r, seed) for r in d["extra"]["removed"]["5pct"]], eval_ids=tuple(rows))[0]
                     for seed in seeds], axis=0)
    np.testing.assert_allclose(np.array(d["extra"]["cross_loss"])[0], cross)
    # the removals' make-up: the share of removed rows with the test example's label, recomputed
    from bench.suites import load_suite

    suite = load_suite("tiny")
    pool_labels = np.array([e.labels["task"] for e in suite.split("train")])
    test_labels = [suite.split("test")[t].labels["task"] for t in rows]
    share = np.mean([np.mean(pool_labels[r] == lab) for r, lab in zip(d["extra"]["removed"]["5pct"], test_labels,
                                                                           strict=True)])
    assert d["extra"]["same_label_share"]["5pct"] == pytest.approx(share)
    assert r["extra"]["same_label_share"]["5pct"] < share  # random rows rarely share the label
    # the eval phase counts distinct jobs (a set that two test examples share trains once)
    sets = {tuple(r) for f in ("5pct", "10pct") for r in d["extra"]["removed"][f]}
    phase = next(p for p in d["cost"]["phases"] if p["name"] == "eval")
    assert phase["count"] == len(sets) * len(seeds)
    # dsdm's top rows raise the test loss more than random ones; the random method's do not
    assert d["metrics"]["gain"]["ci_low"] > 0 and d["metrics"]["gain"]["value"] > r["metrics"]["gain"]["value"]
    assert d["metrics"]["beats_random"]["value"] > r["metrics"]["beats_random"]["value"]
    from leaderboard.render import render

    assert "## Counterfactual removal" in render(results) and "dsdm-small" in render(results)
