"""The mislabel task: corruption, hand-computed AUC and top-k shares, random near 0.5, constant self-scores."""

import json

import numpy as np
import pytest

from bench.data import Example
from tasks.mislabel import auc, corrupt, detection_curve, found_in_top


def test_auc_and_top_shares_by_hand():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    positive = np.array([True, False, True, False, False, False])
    # positive pairs (p, n) with p above n: 0.9 beats all 4 negatives, 0.7 beats 3 of 4 -> 7 / 8
    assert auc(scores, positive) == pytest.approx(7 / 8)
    assert auc(-scores, positive) == pytest.approx(1 / 8)
    assert auc(np.array([1.0, 1.0, 0.0]), np.array([True, False, False])) == pytest.approx(0.75)  # a tie: 1/2
    assert found_in_top(scores, positive, 0.2) == 0.5  # ceil(1.2) = 2 inspected: one of the two found
    assert found_in_top(scores, positive, 0.5) == 1.0
    x, y = detection_curve(scores, positive)
    np.testing.assert_allclose(y, [0.5, 0.5, 1, 1, 1, 1])
    np.testing.assert_allclose(x, np.arange(1, 7) / 6)


def test_corruption_takes_another_labels_response_and_keeps_everything_else():
    pool = [Example(id=f"e{i}", prompt=f"p{i}", response=f"r{i}", labels={"task": "ab"[i % 2]}) for i in range(40)]
    out, mask = corrupt(pool, 0.1, 0, "task")
    assert mask.sum() == 4
    again, mask2 = corrupt(pool, 0.1, 0, "task")
    assert np.array_equal(mask, mask2) and [e.response for e in again] == [e.response for e in out]
    for i, (old, new) in enumerate(zip(pool, out, strict=True)):
        assert (new.id, new.prompt, dict(new.labels)) == (old.id, old.prompt, dict(old.labels))
        if mask[i]:
            donor = int(new.response[1:])
            assert new.response != old.response and pool[donor].labels["task"] != old.labels["task"]
        else:
            assert new.response == old.response
    assert not np.array_equal(mask, corrupt(pool, 0.1, 1, "task")[1])


def test_random_is_near_one_half_and_a_gradient_method_detects(run_cli):
    code, _, err, results = run_cli("run", "--method", "random,dsdm", "--task", "mislabel", "--suite", "tiny")
    assert code == 0, err
    rec = {m: json.loads(next(results.rglob(f"tiny/mislabel/{m}/*.json")).read_text()) for m in ("random", "dsdm")}
    r = rec["random"]["metrics"]["auc"]
    assert abs(r["value"] - 0.5) < 0.1 and r["ci_low"] < 0.5 < r["ci_high"]
    assert rec["dsdm"]["metrics"]["auc"]["ci_low"] > 0.6  # wrong responses have large gradients
    assert rec["random"]["extra"]["n_corrupted"] == 40 and len(rec["random"]["extra"]["corrupted"]) == 40
    assert rec["random"]["pairing"] == rec["dsdm"]["pairing"] is not None  # the same bootstrap draws
    png = next(results.rglob("tiny/mislabel/dsdm/*.detection.png"))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_constant_self_score_is_reported_as_such(run_cli):
    code, out, err, results = run_cli("run", "--method", "tfidf", "--task", "mislabel", "--suite", "tiny")
    assert code == 0, err
    record = json.loads(next(results.rglob("tiny/mislabel/tfidf/*.json")).read_text())
    assert record["extra"]["constant_self_score"] is True and "auc" not in record["metrics"]
    assert "self-scores constant" in out


def test_self_scores_equal_to_float32_rounding_are_constant(run_cli):
    """TracIn's unit vectors dotted with themselves are 1 +- 1e-5: noise, not a ranking."""
    code, out, err, results = run_cli("run", "--method", "tracin", "--task", "mislabel", "--suite", "tiny")
    assert code == 0, err
    record = json.loads(next(results.rglob("tiny/mislabel/tracin/*.json")).read_text())
    scores = np.array(record["per_example"]["self_score"])
    assert np.ptp(scores) > 0 and np.ptp(scores) < 1e-4  # not bit-equal, and still no ranking
    assert record["extra"]["constant_self_score"] is True and record["metrics"] == {}


def test_the_constant_rule_is_relative():
    from tasks.mislabel import is_constant

    assert not is_constant(np.linspace(1e-6, 2e-6, 50))  # small scores with a real spread rank
    assert is_constant(1.0 + np.random.default_rng(0).normal(scale=2e-6, size=50))  # unit cosines: rounding
    assert is_constant(np.zeros(5)) and is_constant(np.full(5, 3.0))
    assert not is_constant(np.array([0.1, 0.5, 0.2]))


def _corrupted_tiny(cache):
    """The tiny suite, its corrupted pool and mask as the task makes them, and a run context on `cache`."""
    from bench.api import RunContext
    from bench.cache import Cache
    from bench.suites import load_suite

    suite = load_suite("tiny")
    pool = suite.split("train")
    corrupted, positive = corrupt(pool, 0.1, 0, "task")
    return suite, corrupted, positive, RunContext(suite, cache=Cache(cache))


def test_the_attributed_model_is_the_start_lm_trained_on_the_corrupted_pool(run_cli, tiny_cache):
    """The loss row is the model's loss after the suite's fine-tuning recipe on the corrupted pool, by hand."""
    import torch

    from bench.api import TrainedOn

    code, _, err, results = run_cli("run", "--method", "loss", "--task", "mislabel", "--suite", "tiny")
    assert code == 0, err
    record = json.loads(next(results.rglob("tiny/mislabel/loss/*.json")).read_text())
    suite, corrupted, positive, ctx = _corrupted_tiny(tiny_cache)
    spec = suite.spec.lm
    lm = ctx.warmup_lm()
    before = lm.losses(lm.encode(corrupted))
    lm.train(lm.encode(corrupted), lr=spec.finetune_lr, seed=0, epochs=spec.finetune_epochs)
    after = lm.losses(lm.encode(corrupted))
    self_scores = np.array(record["per_example"]["self_score"])
    np.testing.assert_allclose(np.sqrt(self_scores), after, rtol=1e-5)  # the pair score is the values' product
    assert np.abs(after - before).max() > 1e-3  # told apart from the warm-up LM's losses
    steps = spec.finetune_epochs * int(np.ceil(len(corrupted) / spec.batch_size))
    assert record["extra"]["attributed_model"]["steps"] == steps
    assert np.array_equal(np.array(record["per_example"]["corrupted"], dtype=bool), positive)
    # what a gradient method's setup gets in the task: the same trained weights, cached
    trained = ctx.with_trained_on(TrainedOn(examples=tuple(corrupted), seed=0, what="t",
                                            epochs=spec.finetune_epochs, lr=spec.finetune_lr))
    got = trained.method_context().warmup_lm().model.state_dict()
    for name, weight in lm.model.state_dict().items():
        torch.testing.assert_close(got[name], weight, rtol=1e-5, atol=1e-6)
    # an ensemble member is its own warm-up LM trained the same way (its seed moved): checked by hand
    member = trained.method_context().warmup_lm(member=1).model.state_dict()
    assert any(not torch.equal(member[n], got[n]) for n in got)
    by_hand = ctx.method_context().warmup_lm(member=1)
    by_hand.train(by_hand.encode(corrupted), lr=spec.finetune_lr, seed=1000, epochs=spec.finetune_epochs)
    for name, weight in by_hand.model.state_dict().items():
        torch.testing.assert_close(member[name], weight, rtol=1e-5, atol=1e-6)
    # the task says which model a row attributed: the trained one here, none for a method without a target LM
    assert record["extra"]["attributed_model"]["members"] == [0]
    mean = record["extra"]["attributed_model"]["mean_loss"]
    assert mean["corrupted"] == pytest.approx(float(after[positive].mean()))
    assert mean["warmup_clean"] == pytest.approx(float(before[~positive].mean()))
    code, _, err, results = run_cli("run", "--method", "tfidf", "--task", "mislabel", "--suite", "tiny")
    assert code == 0, err
    tfidf = json.loads(next(results.rglob("tiny/mislabel/tfidf/*.json")).read_text())
    assert tfidf["extra"]["attributed_model"] is None


def test_model_derived_caches_are_keyed_by_the_attributed_model(tiny_cache):
    """LESS's LoRA adapters trained on the mislabel task's model are not the suite model's (nor the reverse)."""
    import torch

    from bench.api import TrainedOn
    from methods.less import LESS

    suite, corrupted, _, ctx = _corrupted_tiny(tiny_cache)
    assert ctx.method_context().model_key() is None
    trained = ctx.with_trained_on(TrainedOn(examples=tuple(corrupted), seed=0, what="t"))
    key = trained.method_context().model_key()
    assert key is not None and key == trained.method_context().model_key()
    other = ctx.with_trained_on(TrainedOn(examples=tuple(corrupted[::-1]), seed=0, what="t")).method_context()
    assert other.model_key() != key  # another pool: another model
    adapters = []
    for run in (ctx, trained):
        method = LESS(LESS.smoke_config())
        run.setup(method)
        adapters.append({n: p.detach().clone() for n, p in method._lm.model.named_parameters() if "lora_" in n})
    assert any(not torch.equal(adapters[0][n], adapters[1][n]) for n in adapters[0])


def test_grad_norm_is_each_examples_own_gradient_norm(tiny_cache):
    """grad_norm's values equal brute force: each example's loss gradient taken out of one padded batch."""
    import torch

    from bench.api import per_example_loss
    from methods.selfscore import GradNormBaseline

    suite, corrupted, _, ctx = _corrupted_tiny(tiny_cache)
    method = GradNormBaseline()
    ctx.setup(method)
    got = method.featurize(corrupted[:12], "train")[:, 0]
    assert np.array_equal(method.featurize(corrupted[:12], "test")[:, 0], got)  # the same set: read back
    assert method.featurize(corrupted[1:13], "test")[0, 0] == pytest.approx(got[1], rel=1e-5)  # another set
    lm = ctx.warmup_lm()
    params = list(lm.model.parameters())
    batch = lm.encode(corrupted[:12]).batch(torch.arange(12))  # padded to the longest of the 12
    losses = per_example_loss(lm.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits,
                              batch["labels"])
    for i in range(12):
        grads = torch.autograd.grad(losses[i], params, retain_graph=True)
        assert got[i] == pytest.approx(float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads))), rel=1e-4)
    assert np.ptp(got) > 0


def test_grad_norm_takes_the_trained_layers_only(tmp_path):
    """Under a top-layers recipe the norm is over the trained layers (and final norm), not the frozen ones."""
    import torch

    from bench.api import RunContext, per_example_loss
    from bench.cache import Cache
    from bench.suites import load_suite
    from methods.selfscore import GradNormBaseline

    suite = load_suite("tiny", [("lm.train_layers", 1), ("lm.warmup_steps", 5)])
    ctx = RunContext(suite, cache=Cache(tmp_path))
    method = GradNormBaseline()
    ctx.setup(method)
    examples = suite.split("train")[:6]
    got = method.featurize(examples, "train")[:, 0]
    lm = ctx.warmup_lm()
    trained = set(lm.trainable_names())
    assert trained and len(trained) < len(list(lm.model.parameters()))
    for i, example in enumerate(examples):
        batch = lm.encode([example]).batch(torch.arange(1))
        loss = per_example_loss(lm.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits,
                                batch["labels"])[0]
        names, params = zip(*lm.model.named_parameters(), strict=True)
        grads = dict(zip(names, torch.autograd.grad(loss, params, allow_unused=True), strict=True))
        top = float(torch.sqrt(sum((grads[n].double() ** 2).sum() for n in trained)))
        every = float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads.values() if g is not None)))
        assert got[i] == pytest.approx(top, rel=1e-4) and every > top * (1 + 1e-3)


def test_the_self_score_rows_belong_to_the_mislabel_task_alone(run_cli, capsys):
    from bench.api import methods
    from bench.runner import answers

    assert answers(methods.get("loss"), "mislabel") and not answers(methods.get("loss"), "lds")
    assert not answers(methods.get("grad_norm"), "classification") and answers(methods.get("logra"), "lds")
    code, _, err, _ = run_cli("run", "--method", "grad_norm", "--task", "lds", "--suite", "tiny")
    assert code == 2 and "baseline of the mislabel task only" in err and len(err.strip().splitlines()) == 1
    from bench.cli.main import main

    code = main(["list", "methods"])
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.split()[:1] == ["loss"])
    logra = next(x for x in out.splitlines() if x.split()[:1] == ["logra"])
    assert code == 0 and line.endswith("(mislabel task only)") and "task only" not in logra


def test_the_attributed_models_cost_is_the_harness_and_a_members_the_methods(run_cli):
    """attributed_lm is harness work (not in the method's setup cost); a member's fine-tuning is the method's."""
    from bench.costmodel import nested_in_setup, setup_cost_s

    code, _, err, results = run_cli("run", "--method", "trak_ens", "--task", "mislabel", "--suite", "tiny",
                                    "--set", "members=2")
    assert code == 0, err
    phases = json.loads(next(results.rglob("tiny/mislabel/trak_ens/*.json")).read_text())["cost"]["phases"]
    by_name = {p["name"]: p for p in phases}
    assert "attributed_lm" in by_name and "warmup" not in by_name and "setup/attributed_lm_1" in by_name
    member = by_name["setup/attributed_lm_1"]
    assert member["original_wall_s"] > 0
    nested = {p["name"] for p in nested_in_setup(phases)}
    assert {"attributed_lm", "setup/attributed_lm_1"} <= nested
    setup = by_name["setup"]
    # charged: the member at its production cost, plus what of setup no nested phase covers; never attributed_lm
    expected = max(0.0, setup["wall_s"] - sum(p["wall_s"] for p in nested_in_setup(phases))) + \
        (member["original_wall_s"] if member.get("cached") else member["wall_s"])
    assert setup_cost_s(phases) == pytest.approx(expected, abs=1e-6)


def test_named_cells_of_another_tasks_baseline_are_reported_not_run(run_cli):
    code, _, err, results = run_cli("run", "--method", "loss,random", "--task", "lds", "--suite", "tiny")
    assert code == 0, err
    assert "not run: method 'loss' is a baseline of the mislabel task only (not lds)" in err
    assert not list(results.rglob("tiny/lds/loss/*.json")) and list(results.rglob("tiny/lds/random/*.json"))
