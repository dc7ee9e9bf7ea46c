"""Peer agreement: the harness's `tracin` against dattri-llm's TracInAttributor, an independent implementation.

`tests/test_gradient_methods.py` checks the harness's gradients against `torch.func` on the same loss; here a
separate library (dattri-llm, which captures per-example gradients with its own hooks and factorised inner
products) scores the same warm-up LM, the same MLP linear modules and the same per-example loss (mean next-token
cross-entropy over the labelled tokens, summed over a batch), so a harness-side slip that brute force would share
(the loss's reduction, a module left out, a row/column order) shows up as a disagreement. Unprojected gradients
are compared: as raw inner products (TracIn) and as cosines (normalize=True / dattri's GradCos). Then `ekfac`
(kronfluence) against dattri-llm's EK-FAC: one method through two libraries.
"""

import copy

import numpy as np
import pytest
import torch
from dattri_llm import AttributionArguments, AttributionTask, HookManagerConfig, TracInAttributor, hash_sample
from scipy.stats import pearsonr, spearmanr

from bench.api import methods

N_TRAIN, N_TEST = 12, 5


def harness_scores(ctx, normalize):
    """The `tracin` method's [n_train, n_test] scores without projection, and the modules it differentiates."""
    cls = methods.get("tracin")
    method = cls(cls.config_cls(batch_size=4, projection="none", normalize=normalize))
    method.setup(ctx.method_context())
    train, test = ctx.suite.split("train")[:N_TRAIN], ctx.suite.split("test")[:N_TEST]
    method.fit(train)
    f_train, f_test = method.featurize(train, "train"), method.featurize(test, "test")
    return np.asarray(method.score(f_test, f_train), dtype=np.float64).T, method.info()["modules"]


def harness_loss(model, batch):
    """Each example's mean next-token cross-entropy over its labelled tokens, summed over the batch, written
    here from the definition (not with the harness's `per_example_loss`), so a slip there shows up."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    labels = batch["labels"][:, 1:]
    total = 0.0
    for row_logits, row_labels in zip(logits, labels, strict=True):
        keep = row_labels != -100
        total = total + torch.nn.functional.cross_entropy(row_logits[keep], row_labels[keep])
    return total


def mlp_linears(model):
    """The MLP linear layers of a Llama model, chosen here (not with the harness's `tracked_modules`)."""
    return [n for n, m in model.named_modules() if type(m) is torch.nn.Linear and ".mlp." in n]


def padded_rows(ctx, lm):
    """The first train and test examples as dattri's datasets: dicts of rows padded to a common width (the
    harness's encoding, so the default collate stacks them)."""
    def rows(examples):
        enc = lm.encode(examples)
        return [{"input_ids": enc.input_ids[i], "attention_mask": enc.attention_mask[i], "labels": enc.labels[i]}
                for i in range(len(examples))]

    return rows(ctx.suite.split("train")[:N_TRAIN]), rows(ctx.suite.split("test")[:N_TEST])


def content_hashes(rows):
    """dattri's keys of the rows (padding stripped), to read its scores back in the rows' order."""
    return [hash_sample({k: row[k] for k in ("input_ids", "attention_mask")}) for row in rows]


def dattri_scores(ctx, modules, normalize, tmp_path):
    """dattri-llm's TracIn / GradCos [n_train, n_test] scores on a copy of the warm-up LM, rows and columns
    looked up by dattri's content hashes so that they are in the examples' order."""
    lm = ctx.warmup_lm()
    model = copy.deepcopy(lm.model)  # dattri moves the model, sets eval() and hooks it: leave the harness's alone
    train, test = padded_rows(ctx, lm)
    args = AttributionArguments(output_dir=str(tmp_path), per_device_train_batch_size=4,
                                per_device_eval_batch_size=4, use_cpu=True)
    attributor = TracInAttributor(args, task=AttributionTask(harness_loss, model))
    hooks = HookManagerConfig(hook_types=dict.fromkeys(modules, "linear_io"))  # default: every linear layer
    score = attributor.attribute(train, test, hook_config=hooks, normalized_grad=normalize)
    assert score.layer_name == modules
    return score.query(content_hashes(train), content_hashes(test)).double().numpy()


@pytest.mark.slow
@pytest.mark.parametrize("normalize", [False, True], ids=["dot", "cosine"])
def test_tracin_agrees_with_dattri_llm(square_ctx, normalize, tmp_path):
    ours, modules = harness_scores(square_ctx, normalize)
    assert modules == mlp_linears(square_ctx.warmup_lm().model)  # the harness tracks what dattri is given
    theirs = dattri_scores(square_ctx, mlp_linears(square_ctx.warmup_lm().model), normalize, tmp_path)
    assert ours.shape == theirs.shape == (N_TRAIN, N_TEST)
    scale = np.abs(theirs).max()
    agreement = (f"max |diff| {np.abs(ours - theirs).max():.2e} = {np.abs(ours - theirs).max() / scale:.1e} of the "
                 f"largest score {scale:.2e}, "
                 f"Pearson {pearsonr(ours.ravel(), theirs.ravel())[0]:.8f}, "
                 f"Spearman {spearmanr(ours.ravel(), theirs.ravel())[0]:.8f}")
    # float32 on both sides agrees to ~1e-6 of the largest score; a lost module is off by ~1e-1 of it, and so (dot
    # only: a cosine ignores each example's scale) is a loss summed over tokens or averaged over the batch
    print(f"tracin ({'cosine' if normalize else 'dot'}) against dattri-llm: {agreement}")
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5 * scale, err_msg=agreement)


def dattri_ekfac(ctx, modules, damping, tmp_path):
    """dattri-llm's EK-FAC [n_train, n_test] scores (empirical Fisher) on a copy of the warm-up LM, in example order."""
    from dattri_llm import EKFACAttributor

    lm = ctx.warmup_lm()
    train, test = padded_rows(ctx, lm)

    args = AttributionArguments(output_dir=str(tmp_path), per_device_train_batch_size=4,
                                per_device_eval_batch_size=4, use_cpu=True)
    attributor = EKFACAttributor(args, task=AttributionTask(harness_loss, copy.deepcopy(lm.model)))
    hooks = HookManagerConfig(hook_types=dict.fromkeys(modules, "linear_io"))
    score = attributor.attribute(train, test, hook_config=hooks, damping=damping)
    return score.query(content_hashes(train), content_hashes(test)).double().numpy()


@pytest.mark.slow
@pytest.mark.parametrize(("damping", "least"), [(1e-5, 0.98), (1e-8, 0.75)])
def test_ekfac_through_kronfluence_and_dattri_llm(square_ctx, damping, least, tmp_path):
    """The `ekfac` method (kronfluence) and dattri-llm's EKFACAttributor on the same model, modules, loss and
    damping (empirical Fisher on both sides). They agree closely once damping covers the factors' near-null
    directions (1e-5), loosely at kronfluence's default 1e-8: dattri leaves token positions whose gradient is
    exactly zero out of its Kronecker factors, kronfluence keeps every unmasked position, and a tiny damping lets
    the directions where the two differ dominate. The README quotes both figures."""
    cls = methods.get("ekfac")
    method = cls(cls.config_cls(batch_size=4, query_batch_size=N_TEST, empirical_fisher=True, damping=damping))
    method.setup(square_ctx.method_context())
    train, test = square_ctx.suite.split("train")[:N_TRAIN], square_ctx.suite.split("test")[:N_TEST]
    method.fit(train)
    ours = np.asarray(method.score(method.featurize(test, "test"), method.featurize(train, "train"))).T
    assert method.info()["modules"] == mlp_linears(square_ctx.warmup_lm().model)
    theirs = dattri_ekfac(square_ctx, mlp_linears(square_ctx.warmup_lm().model), damping, tmp_path)
    r = pearsonr(ours.ravel(), theirs.ravel())[0]
    print(f"ekfac damping {damping:g}: Pearson {r:.3f}, Spearman {spearmanr(ours.ravel(), theirs.ravel())[0]:.3f}")
    assert ours.shape == theirs.shape == (N_TRAIN, N_TEST)
    assert r > least, r
    # the same scale, not only the same order: no factor of the loss's reduction lost on either side
    assert 0.5 < np.abs(ours).max() / np.abs(theirs).max() < 2.0
