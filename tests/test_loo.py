"""The leave-one-out task: a hand-computed LOO Spearman, determinism of a removal, batched = one by one."""

import json

import numpy as np
import pytest
from scipy.stats import spearmanr

from tasks.loo import loo_spearman, pick_tests, reference_removals

SMALL = ["--task-set", "n_test=4", "--task-set", "k_top=2", "--task-set", "k_random=2"]


def test_loo_spearman_by_hand():
    scores = np.array([[3.0, 1.0, 2.0, 0.0], [0.0, 1.0, 2.0, 3.0]])  # [n_test, R]
    increase = np.array([[0.3, 0.0], [0.1, 0.1], [0.2, 0.2], [0.0, 0.3]])  # [R, n_test]
    got = loo_spearman(scores, increase)
    assert got[0] == pytest.approx(1.0) and got[1] == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    s, d = rng.normal(size=(3, 7)), rng.normal(size=(7, 3))
    np.testing.assert_allclose(loo_spearman(s, d), [spearmanr(s[t], d[:, t]).statistic for t in range(3)])
    assert np.isnan(loo_spearman(np.ones((1, 4)), rng.normal(size=(4, 1))))[0]


def test_tests_spread_over_labels_and_removals_are_the_nearest_plus_random():
    labels = ["a"] * 10 + ["b"] * 3 + ["c"] * 1
    picked = pick_tests(labels, 6, 0)
    assert len(picked) == 6 and {labels[i] for i in picked} == {"a", "b", "c"}
    assert pick_tests(labels, 6, 0) == picked
    pool = ["red apple", "green apple", "blue sky", "grey sky", "cold water", "hot water"]
    removed = reference_removals(pool, ["an apple"], k_top=2, k_random=1, seed=0)
    assert {0, 1} <= set(removed) and len(removed) == 3


def _loo(cache, removed):
    from bench.api import RunContext
    from bench.cache import Cache
    from bench.suites import load_suite

    ctx = RunContext(load_suite("tiny"), cache=Cache(cache))
    return ctx.leave_one_out(removed, eval_ids=(0, 5, 9), seed=3)


def test_the_same_removal_retrained_twice_is_bit_identical(tmp_path):
    import shutil

    whole_a, without_a, _, ran_a = _loo(tmp_path / "a", [3, 7])
    shutil.copytree(tmp_path / "a" / "warmup", tmp_path / "b" / "warmup")  # the same warm-up; removals anew
    whole_b, without_b, _, ran_b = _loo(tmp_path / "b", [3, 7])
    assert ran_a == 3 and ran_b == 3
    assert np.array_equal(whole_a, whole_b) and np.array_equal(without_a, without_b)  # bit-identical
    assert np.abs(without_a - whole_a[None]).max() > 1e-4  # leaving one example out does change the losses
    assert _loo(tmp_path / "a", [3, 7])[3] == 0  # cached
    # in a group of another composition the same removal agrees to float rounding (the stacked matmuls)
    shutil.copytree(tmp_path / "a" / "warmup", tmp_path / "c" / "warmup")
    _, other, _, ran_c = _loo(tmp_path / "c", [7, 3, 11])
    assert ran_c == 4
    np.testing.assert_allclose(other[:2], without_a[::-1], rtol=0, atol=1e-5)


def test_a_left_out_example_changes_nothing_but_its_own_batch_slot(tiny_cache):
    """Batched and one-by-one training of a removal agree, and the whole pool's run is the plain fine-tuning."""
    import torch

    from bench.cache import Cache
    from bench.lm import Encoded, finetune_group
    from bench.retrain import warmup_lm
    from bench.suites import load_suite

    suite = load_suite("tiny")
    lm, _ = warmup_lm(suite, Cache(tiny_cache))
    start = lm.state_dict()
    pool, ev = lm.encode(suite.split("train")), lm.encode(suite.split("test")[:8])
    n = len(pool.lengths)
    idx = torch.tensor([5])
    data = Encoded(torch.cat([pool.input_ids, pool.input_ids[idx]]), torch.cat([pool.attention_mask,
                   pool.attention_mask[idx]]), torch.cat([pool.labels, torch.full_like(pool.labels[idx], -100)]),
                   torch.cat([pool.lengths, pool.lengths[idx]]))
    rows = np.arange(n)
    rows[5] = n
    one = finetune_group(lm, start, data, [rows], [1], evaluation=ev, batched=False).losses[0]
    both = finetune_group(lm, start, data, [rows, np.arange(n)], [1, 1], evaluation=ev).losses
    np.testing.assert_allclose(both[0], one, atol=1e-5)
    plain = finetune_group(lm, start, pool, [np.arange(n)], [1], evaluation=ev, batched=False).losses[0]
    np.testing.assert_allclose(both[1], plain, atol=1e-5)
    assert np.abs(both[0] - both[1]).max() > 1e-4


def test_the_task_runs_and_random_is_not_the_best(run_cli):
    code, _, err, results = run_cli("run", "--method", "random,dsdm", "--task", "loo", "--suite", "tiny", *SMALL,
                                    "--label", "loo-small")
    assert code == 2 and "--set / --task-set apply to one method or task" in err  # several cells: no options
    for m in ("random", "dsdm"):
        code, _, err, results = run_cli("run", "--method", m, "--task", "loo", "--suite", "tiny", *SMALL,
                                        "--label", f"{m}-small")
        assert code == 0, err
    rec = {m: json.loads(next(results.rglob(f"tiny/loo/{m}/*.json")).read_text()) for m in ("random", "dsdm")}
    assert rec["random"]["extra"]["removed"] == rec["dsdm"]["extra"]["removed"]  # the same removals for all
    assert rec["random"]["pairing"] == rec["dsdm"]["pairing"] is not None
    assert 4 <= rec["dsdm"]["extra"]["n_removed"] <= 16
    assert len(rec["dsdm"]["per_example"]["loo"]) == 4
    assert rec["dsdm"]["metrics"]["loo"]["value"] > rec["random"]["metrics"]["loo"]["value"]
    increase = np.array(rec["dsdm"]["extra"]["increase"])  # the record keeps every removal's loss change
    assert increase.shape == (rec["dsdm"]["extra"]["n_removed"], 4) and np.abs(increase).max() > 0
    from leaderboard.render import render

    assert "## Leave-one-out" in render(results) and "dsdm-small" in render(results)


def test_two_seeds_give_the_mean_increase_and_a_ceiling(run_cli, tiny_cache):
    """The target is the seeds' mean increase, each seed's own runs read back; the ceiling is the seeds' agreement."""
    from bench.api import RunContext, noise_ceiling, split_half_reliability
    from bench.cache import Cache
    from bench.metrics import spearman_rows
    from bench.suites import load_suite

    code, _, err, results = run_cli("run", "--method", "dsdm", "--task", "loo", "--suite", "tiny", *SMALL,
                                    "--label", "dsdm-2seeds")
    assert code == 0, err
    rec = json.loads(next(results.rglob("tiny/loo/dsdm/*.json")).read_text())
    extra = rec["extra"]
    seed_increase = np.array(extra["seed_increase"])
    assert extra["seeds"] == [0, 1] and seed_increase.shape == (2, extra["n_removed"], 4)
    np.testing.assert_allclose(np.array(extra["increase"]), seed_increase.mean(0))
    assert np.abs(seed_increase[0] - seed_increase[1]).max() > 1e-6  # another batch order: another run
    # seed 1's increases are its own runs, read back from the cache
    ctx = RunContext(load_suite("tiny"), cache=Cache(tiny_cache))
    whole, without, _, ran = ctx.leave_one_out(extra["removed"], eval_ids=tuple(extra["test_rows"]), seed=1)
    assert ran == 0 and np.allclose(without - whole[None], seed_increase[1])
    reliability = split_half_reliability(seed_increase)
    ceiling = np.sqrt(np.clip(np.nanmean(reliability), 0, 1))  # the mean first, the root after
    assert rec["metrics"]["ceiling"]["value"] == pytest.approx(ceiling)
    per_example = noise_ceiling(seed_increase)  # LDS's way: per-example roots of clipped reliabilities
    assert ceiling != pytest.approx(np.nanmean(per_example))  # told apart on these values
    loo = np.array(rec["per_example"]["loo"], dtype=float)
    ok = np.isfinite(reliability) & np.isfinite(loo)
    if np.nanmean(reliability[ok]) > 0:
        assert rec["metrics"]["loo_of_ceiling"]["value"] == pytest.approx(
            loo[ok].mean() / np.sqrt(min(1.0, reliability[ok].mean())))
    else:  # no ratio of a zero ceiling
        assert "loo_of_ceiling" not in rec["metrics"]
    seed_r = spearman_rows(seed_increase[0].T, seed_increase[1].T)
    assert rec["metrics"]["seed_spearman"]["value"] == pytest.approx(np.nanmean(seed_r))
    np.testing.assert_allclose(np.array(extra["reliability"], dtype=float), reliability)
    assert 0 <= extra["sign_agreement"] <= 1 and rec["task_config"]["seeds"] == 2


def test_one_seed_has_no_ceiling(run_cli):
    code, _, err, results = run_cli("run", "--method", "random", "--task", "loo", "--suite", "tiny", *SMALL,
                                    "--task-set", "seeds=1", "--label", "one-seed")
    assert code == 0, err
    rec = json.loads(next(results.rglob("tiny/loo/random/*.json")).read_text())
    assert set(rec["metrics"]) == {"loo"} and rec["extra"]["seeds"] == [0]
    code, _, err, _ = run_cli("run", "--method", "random", "--task", "loo", "--suite", "tiny", "--task-set", "seeds=0")
    assert code == 2 and "loo.seeds must be >= 1" in err
