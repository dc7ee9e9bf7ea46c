"""AirRep's optimisation: the weighted pairwise ranking loss (Eq. 9) and the resumable training loop."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.api import ConfigError, MethodContext, lds, load_encoder, progress
from methods.airrep.checkpoint import load_best, load_checkpoint, save_checkpoint, trainable_state
from methods.airrep.config import AirRepConfig
from methods.airrep.data import Split
from methods.airrep.model import StepEncoder, new_model


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


def train(c: AirRepConfig, ctx: MethodContext, splits: list[Split], ckpt_dir: Path):
    """Optimise the encoder on the training splits (Eq. 9), resumable; keep the best held-out step.

    Returns:
        (the trained model, its tokenizer, training seconds, the history, the step resumed from).
    """
    import time

    import torch

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
    encoder = StepEncoder(model, tokenizer, examples, n_frozen, c.train_layers == -1, c.max_length,
                           ctx.device, np.unique(np.concatenate([np.r_[s.pool_ids, s.dev_ids] for s in splits])))

    state = load_checkpoint(ckpt_dir, model, opt)
    start = state["step"] if state else 0
    history = state["history"] if state else []
    best = state["best"] if state else None
    train_s = state["train_s"] if state else 0.0
    if best is None:
        best = {"step": 0, "lds": heldout_lds(encoder, heldout, c.pooling), "state": trainable_state(model)}
        history.append({"step": 0, "heldout_lds": best["lds"]})
    else:
        best["state"] = load_best(ckpt_dir)

    t0 = time.perf_counter()
    bar = progress(total=c.steps, desc="airrep training", unit="step", initial=start)
    for step in range(start, c.steps):
        rng = np.random.default_rng([c.seed, step, 29])
        sp = train_splits[rng.integers(len(train_splits))]
        chosen = np.sort(rng.choice(len(sp.members), size=min(c.subsets_per_step, len(sp.members)),
                                    replace=False))
        pred = encoder.group_scores(sp, chosen, grad=True, pooling=c.pooling)
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
            record["heldout_lds"] = heldout_lds(encoder, heldout, c.pooling)
            if record["heldout_lds"] > best["lds"]:
                best = {"step": step + 1, "lds": record["heldout_lds"], "state": trainable_state(model)}
        history.append(record)
        bar.update(1)
        bar.set_postfix(loss=f"{record['loss']:.3f}", best=f"{best['lds']:.3f}@{best['step']}", refresh=False)
        if (step + 1) % c.checkpoint_every == 0 or step + 1 == c.steps:
            save_checkpoint(ckpt_dir, model, opt, step + 1, history, best,
                             train_s + time.perf_counter() - t0)
    bar.close()
    train_s += time.perf_counter() - t0
    if heldout:  # keep the step with the best held-out LDS (never the evaluated test split)
        model.load_state_dict(best["state"], strict=False)
    return model.eval(), tokenizer, train_s, history, start

def heldout_lds(encoder: StepEncoder, heldout: list[Split], pooling: str = "attention") -> float:
    """Mean LDS of the current encoder on the held-out splits' own retraining tables."""
    if not heldout:
        return float("nan")
    values = []
    for sp in heldout:
        pred = encoder.group_scores(sp, np.arange(len(sp.members)), grad=False, pooling=pooling)
        values.append(lds(pred.double().cpu().numpy(), sp.losses))
    return float(np.nanmean(np.concatenate(values)))
