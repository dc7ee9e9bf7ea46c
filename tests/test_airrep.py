import json

import numpy as np
import pytest
import torch

from bench.api import attention_group_score, methods
from bench.testing import tiny_method_context, toy_examples
from methods import airrep as ar


def test_label_normalisation_eq8():
    losses = np.array([[1.0, 2.0], [3.0, 2.0]])  # [K=2, n_dev=2]; dev 1 has constant losses
    t = ar.normalise_losses(losses)
    np.testing.assert_allclose(t, [[1.0, -1.0], [0.0, 0.0]])  # (mean - loss) / std; std 0 -> 1
    assert ar.normalise_losses(np.array([[0.0], [1000.0]])).min() == -1.0
    big = ar.normalise_losses(np.array([[0.0]] * 200 + [[1e6]]))
    assert big.min() == -10.0  # clipped


def test_ranking_loss_eq9_hand_computed():
    pred = torch.tensor([[2.0, 0.0, 1.0]])
    target = torch.tensor([[1.0, 0.05, 8.0]])
    # kept ordered pairs (t_j - t_k > 0.1): (0,1) dt .95; (2,0) dt 7 -> w 5; (2,1) dt 7.95 -> w 5
    expected = (0.95 * np.log1p(np.exp(-2.0)) + 5 * np.log1p(np.exp(1.0)) + 5 * np.log1p(np.exp(-1.0))) / 3
    got = ar.ranking_loss(pred, target, tau_min=0.1, tau_max=5.0)
    assert float(got) == pytest.approx(expected, rel=1e-6)
    assert float(ar.ranking_loss(pred, torch.zeros(1, 3), 0.1, 5.0)) == 0.0


def test_attention_pooling_numpy_and_torch_agree():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(3, 10))
    members = np.array([[0, 2, 5], [1, 2, 9]])
    masks = np.zeros((2, 10), dtype=bool)
    for k, m in enumerate(members):
        masks[k, m] = True
    a = attention_group_score(scores, masks)
    b = ar.attention_pool(torch.tensor(scores), torch.tensor(members)).numpy()
    np.testing.assert_allclose(a, b, rtol=1e-12)
    s = scores[0, [0, 2, 5]]
    w = np.exp(np.abs(s)) / np.exp(np.abs(s)).sum()
    assert a[0, 0] == pytest.approx((w * s).sum())


def _bert():
    from bench.encoders import OFFLINE_DEFAULT, load_encoder

    return load_encoder(OFFLINE_DEFAULT)


def test_frozen_bottom_plus_trained_top_equals_the_full_forward():
    tok, bert = _bert()
    model = ar.new_model(bert).eval()
    batch = tok(["Question: a b\nAnswer: c", "Question: what is 3 + 4 ?\nAnswer: 7"], padding=True,
                return_tensors="pt")
    with torch.no_grad():
        full = model(**batch)
        for n_frozen in (0, 3, 5):
            hidden = model.bottom(batch["input_ids"], batch["attention_mask"], n_frozen)
            split = model.top(hidden, batch["attention_mask"], n_frozen)
            torch.testing.assert_close(split, full, rtol=1e-5, atol=1e-5)


def test_save_and_load_in_the_published_layout(tmp_path):
    tok, bert = _bert()
    model = ar.new_model(bert).eval()
    ar.save_airrep(model, tok, tmp_path / "mine")
    config = json.loads((tmp_path / "mine" / "config.json").read_text())
    assert config["model_type"] == "airrep" and config["hidden_size"] == 384
    tok2, loaded = ar.load_airrep(str(tmp_path / "mine"))
    batch = tok(["Question: x\nAnswer: y"], return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch), model(**batch))


def test_loads_a_directory_laid_out_like_airrep_flan_small(tmp_path):
    """The authors' checkpoint: BERT config with model_type airrep, bf16 weights, `bert.`/`projector.` keys."""
    from safetensors.torch import save_file

    tok, bert = _bert()
    d = tmp_path / "AirRep-Flan-Small"
    d.mkdir()
    cfg = {**bert.config.to_dict(), "model_type": "airrep", "architectures": ["AirRepModel"],
           "torch_dtype": "bfloat16"}
    (d / "config.json").write_text(json.dumps(cfg))
    proj = torch.nn.Linear(384, 384)
    state = {f"bert.{k}": v.to(torch.bfloat16).contiguous() for k, v in bert.state_dict().items()
             if not k.startswith("pooler.")}
    state["projector.weight"] = proj.weight.detach().to(torch.bfloat16).contiguous()
    state["projector.bias"] = proj.bias.detach().to(torch.bfloat16).contiguous()
    save_file(state, str(d / "model.safetensors"))
    tok.save_pretrained(str(d))
    method = methods.get("airrep")(methods.get("airrep").config_cls(checkpoint=str(d)))
    method.setup(tiny_method_context(tmp_path / "cache"))
    feats = method.featurize(toy_examples(3), "train")
    assert feats.shape == (3, 384) and np.isfinite(feats).all()


def test_bad_checkpoint_is_a_clear_error(run_cli, tmp_path):
    (tmp_path / "ckpt").mkdir()
    code, _, err, results = run_cli("run", "--method", "airrep", "--task", "lds", "--suite", "tiny",
                                    "--set", f"checkpoint={tmp_path / 'ckpt'}")
    assert code == 2 and "expected config.json and model.safetensors" in err
    assert not results.exists()


def test_pool_larger_than_the_split_is_a_clear_error(run_cli):
    code, _, err, _ = run_cli("run", "--method", "airrep", "--task", "lds", "--suite", "tiny",
                              "--set", "pool_size=5000")
    assert code == 2 and "fewer than pool_size + dev_size" in err


@pytest.mark.slow
def test_interrupted_training_resumes_from_its_checkpoint_with_identical_results(tmp_path, monkeypatch):
    cls = methods.get("airrep")
    config = cls.config_cls(**{**ar.AirRep.smoke_config().__dict__, "steps": 6, "checkpoint_every": 2})
    ctx = tiny_method_context(tmp_path / "a")
    calls = {"n": 0}
    real_loss = ar.ranking_loss

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:  # step 4 of 6: the checkpoint of step 2 is the last one written
            raise KeyboardInterrupt
        return real_loss(*args, **kwargs)

    from methods.airrep import training

    monkeypatch.setattr(training, "ranking_loss", failing)
    with pytest.raises(KeyboardInterrupt):
        cls(config).setup(ctx)
    ckpt = next((tmp_path / "a").glob("airrep/*/checkpoints/state.json"))
    assert json.loads(ckpt.read_text())["step"] == 2
    monkeypatch.setattr(training, "ranking_loss", real_loss)

    resumed = cls(config)
    resumed.setup(tiny_method_context(tmp_path / "a"))
    fresh = cls(config)
    fresh.setup(tiny_method_context(tmp_path / "b"))
    assert [h["step"] for h in resumed.training_history] == list(range(0, 7))
    assert resumed.training_history == fresh.training_history
    ex = toy_examples(4)
    np.testing.assert_array_equal(resumed.featurize(ex, "test"), fresh.featurize(ex, "test"))


@pytest.mark.slow
def test_a_longer_run_continues_from_a_shorter_cached_one_with_identical_results(tmp_path, monkeypatch):
    cls = methods.get("airrep")
    base = {**ar.AirRep.smoke_config().__dict__, "eval_every": 2, "checkpoint_every": 2}
    short, odd, long = (cls.config_cls(**{**base, "steps": s}) for s in (4, 5, 6))
    cls(short).setup(tiny_method_context(tmp_path / "a"))
    cls(odd).setup(tiny_method_context(tmp_path / "a"))  # 5 is not a multiple of eval_every: never resumed from
    steps = []
    from methods.airrep import training

    real_train = training.train

    def spy(c, ctx, splits, ckpt_dir):
        out = real_train(c, ctx, splits, ckpt_dir)
        steps.append(out[4])  # the step it resumed from
        return out

    monkeypatch.setattr(ar, "train", spy)
    continued, ctx = cls(long), tiny_method_context(tmp_path / "a")
    continued.setup(ctx)
    trained = next(p for p in ctx._acct.phases if p.name == "setup/train")
    states = [json.loads(f.read_text()) for f in (tmp_path / "a").glob("airrep/*/checkpoints/state.json")]
    four = next(s["train_s"] for s in states if s["step"] == 4)
    # charged this phase's time plus the training loop of the 4 steps it continued from
    assert trained.cached_count == 4 and four < trained.cost_s <= trained.wall_s + four + 1e-9
    fresh = cls(long)
    fresh.setup(tiny_method_context(tmp_path / "b"))
    assert steps == [4, 0]
    assert continued.training_history == fresh.training_history
    assert [h["step"] for h in continued.training_history] == list(range(0, 7))
    ex = toy_examples(4)
    np.testing.assert_array_equal(continued.featurize(ex, "test"), fresh.featurize(ex, "test"))
