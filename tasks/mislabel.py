"""Mislabel detection: does a method's self-influence single out the training examples with a wrong response?

dattri and quanda evaluate noisy-label detection; the AirRep paper does not. A known fraction of the
training pool gets another example's response, and each method ranks the pool by self-influence.
"""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass, field, replace

import numpy as np
from scipy.stats import binomtest

from bench.api import (
    MAIN_LABEL_KINDS,
    Accountant,
    ConfigError,
    DataError,
    Example,
    Method,
    Metric,
    RunContext,
    Task,
    TaskConfig,
    TaskOutput,
    TrainedOn,
    main_label_kind,
    register_task,
)


@dataclass(frozen=True, kw_only=True)
class MislabelConfig(TaskConfig):
    """Options of the mislabel task."""

    fraction: float = field(default=0.1, metadata={
        "help": "Share of the pool whose response is replaced (dattri: 10%)."})
    seed: int = field(default=0, metadata={"help": "Seed of which examples are corrupted and by which donor (fixed)."})
    label_kind: str | None = field(default=None, metadata={
        "help": "The label a donor must differ in (default: task, source, stance or safety, the first all carry)."})
    bootstrap_resamples: int = field(default=1000, metadata={"help": "Bootstrap resamples for the 95% CIs."})
    epochs: int | None = field(default=None, metadata={
        "help": "Epochs of training the attributed model on the corrupted pool (default: the suite's "
                "lm.finetune_epochs)."})
    lr: float | None = field(default=None, metadata={
        "help": "Learning rate of that training (default: the suite's lm.finetune_lr)."})

    def __post_init__(self) -> None:
        if not 0.0 < self.fraction < 0.5:
            raise ConfigError(f"mislabel.fraction must be in (0, 0.5), got {self.fraction}")
        if self.epochs is not None and self.epochs < 1:
            raise ConfigError(f"mislabel.epochs must be >= 1, got {self.epochs}")
        if self.lr is not None and not self.lr > 0:
            raise ConfigError(f"mislabel.lr must be > 0, got {self.lr}")
        if self.bootstrap_resamples < 100:
            raise ConfigError(f"mislabel.bootstrap_resamples must be >= 100, got {self.bootstrap_resamples}")


def corrupt(pool: list[Example], fraction: float, seed: int, kind: str) -> tuple[list[Example], np.ndarray]:
    """A copy of `pool` in which round(fraction * n) examples carry the response of an example of another label.

    The corrupted examples and each one's donor are drawn from (seed, n) alone; a donor is any pool example
    whose `kind` label differs (its own response stays). Ids, prompts and labels are kept, so nothing but
    the response tells a corrupted example apart.

    Returns:
        (the corrupted pool, bool [n] marking the corrupted examples).
    """
    n = len(pool)
    rng = np.random.default_rng([seed, n])
    chosen = np.sort(rng.choice(n, size=max(1, round(fraction * n)), replace=False))
    labels = np.array([e.labels[kind] for e in pool])
    responses = np.array([e.response for e in pool], dtype=object)
    out = list(pool)
    mask = np.zeros(n, dtype=bool)
    for i in chosen:
        donors = np.flatnonzero((labels != labels[i]) & (responses != responses[i]))
        if donors.size == 0:
            raise DataError(f"mislabel: no example of another '{kind}' label to take a response from")
        out[i] = replace(pool[i], response=pool[int(rng.choice(donors))].response)
        mask[i] = True
    return out, mask


def is_constant(scores: np.ndarray) -> bool:
    """Whether scores are equal up to float32 rounding: a spread under 1e-4 of their largest magnitude.

    A unit vector's dot product with itself is 1 +- 1e-5 at 24,576 dimensions (TracIn); ranking by that
    noise gave an AUC of 0.65 on small that meant nothing. Relative: small scores with a real spread rank.
    """
    return bool(np.ptp(scores) <= 1e-4 * float(np.max(np.abs(scores))))


def auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of `scores` separating `positive` (Mann-Whitney U / (n1 n0), ties count 1/2)."""
    from scipy.stats import rankdata

    n1, n0 = int(positive.sum()), int((~positive).sum())
    if n1 == 0 or n0 == 0:
        raise ValueError("AUC needs both classes")
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def found_in_top(scores: np.ndarray, positive: np.ndarray, share: float) -> float:
    """Share of the positives among the ceil(share * n) highest scores (ties broken by position)."""
    k = math.ceil(share * len(scores))
    top = np.argsort(-scores, kind="stable")[:k]
    return float(positive[top].sum() / positive.sum())


def detection_curve(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(share of the pool inspected, share of the corrupted examples found), best self-scores first."""
    order = np.argsort(-scores, kind="stable")
    found = np.cumsum(positive[order]) / positive.sum()
    return np.arange(1, len(scores) + 1) / len(scores), found


def _figure(name: str, suite: str, x: np.ndarray, y: np.ndarray, value: float | None) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.8, 4.0), dpi=120)
    label = f"{name} (AUC {value:.3f})" if value is not None else f"{name} (constant self-score)"
    ax.plot(x, y, label=label)
    ax.plot([0, 1], [0, 1], ":", color="grey", label="random ranking")
    ax.set_xlabel("share of the pool inspected (highest self-influence first)")
    ax.set_ylabel("share of the corrupted examples found")
    ax.set_title(f"Mislabel detection, suite {suite}")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


@register_task("mislabel", config=MislabelConfig)
class Mislabel(Task):
    """Mislabel detection: rank a corrupted pool by self-influence, on a model trained on it, as dattri and quanda do.

    A copy of the pool has `fraction` (10%) of its responses replaced by the response of an example with
    another label (`corrupt`, fixed seed; the donor keeps its own, so that response appears twice); the
    suite's own pool, and every other task's ground truth, stay clean (the corruption is this task's
    option, not the suite's: no other task ever sees it). As in dattri's and quanda's noisy-label
    benchmarks, the attributed model has seen the corruption: the suite's start LM (the model every
    retraining job starts from) is fine-tuned on the corrupted pool with the suite's fine-tuning recipe
    (`epochs` / `lr` to change it; batch order from `seed`), cached, and every model-based method takes that
    model where it would take the warm-up LM (`bench.api.TrainedOn`; TRAK's ensemble members are their own
    warm-up LMs fine-tuned the same way; LESS warms its LoRA adapters up on that model, on the suite's `warmup`
    split as everywhere). Methods without a target LM (TF-IDF, BM25, DSIR, GTE, random) and
    AirRep, whose encoder is trained on the suite's clean retraining data, score as they do everywhere.
    Two reference rows are the trained model's own loss (`loss`) and gradient norm (`grad_norm`) on each
    example (`methods.selfscore`): what self-influence must beat to be worth its cost.
    The method is set up, fitted on the corrupted pool and featurises it both as training and as test
    examples; an example's self-influence is its score against itself (the diagonal).
    Reported: the AUC of separating corrupted from clean examples by self-influence (bootstrap CI,
    resampling corrupted and clean examples separately, the same draws for every method), the share of
    corrupted examples in the top 10% and 20% (Wilson interval over the corrupted examples: a percentile
    bootstrap of a top-k share is biased, as resampled copies crowd the top), and the detection curve as a
    PNG beside the record. A method whose self-scores are all equal up to float32 rounding (relative spread
    under 1e-4: the unit-normalised cosines of TF-IDF and TracIn are 1 for every example) ranks nothing: it
    is reported as constant, with no AUC, not as 0.5.
    """

    needs_features = True  # a score file holds no scores of the pool against itself
    # 2: float32-constant self-scores; 3: relative only; 4: pairing by the harness; 5: the attributed model is
    # trained on the corrupted pool; 6: its phase `attributed_lm`, the record's `attributed_model` facts
    code_version = "6"
    requires = ("train",)

    @staticmethod
    def _attributed(trained_on: TrainedOn, clean_ctx: RunContext, corrupted: list[Example], positive: np.ndarray,
                    start: str) -> dict | None:
        """What the method attributed: None (its own model: no target LM, or AirRep's encoder), or the trained model.

        For the trained model: its recipe and metadata, and the mean loss of corrupted and clean examples under it
        and under the warm-up LM, which shows how far the training fitted the wrong responses.
        """
        if 0 not in trained_on.used:
            return None
        meta = dict(trained_on.used[0])
        aside = clean_ctx.with_accountant(Accountant(device=clean_ctx.device))  # not the method's phases
        trained = aside.with_trained_on(trained_on).warmup_lm()  # cached: loaded, not trained again
        after = trained.losses(trained.encode(corrupted))
        warm = aside.warmup_lm()
        before = warm.losses(warm.encode(corrupted))
        return {"start": start, "trained_on": "corrupted pool", "epochs": trained_on.epochs, "lr": trained_on.lr,
                "steps": meta.get("steps"), "final_loss": meta.get("final_loss"),
                "members": sorted(trained_on.used),
                "mean_loss": {"corrupted": float(after[positive].mean()), "clean": float(after[~positive].mean()),
                              "warmup_corrupted": float(before[positive].mean()),
                              "warmup_clean": float(before[~positive].mean())}}

    def run(self, method: Method, ctx: RunContext) -> TaskOutput:
        """Corrupt, featurise the corrupted pool as train and as test, take the diagonal, rank."""
        cfg = self.config
        pool = ctx.suite.split("train")
        kind = cfg.label_kind or main_label_kind(pool)
        if kind is None or not all(kind in e.labels for e in pool):
            raise DataError(f"suite '{ctx.suite.name}' has no label kind ({', '.join(MAIN_LABEL_KINDS)}) on every "
                            f"pool example to draw donors of another label from; set --task-set label_kind=...")
        corrupted, positive = corrupt(pool, cfg.fraction, cfg.seed, kind)
        lm = ctx.suite.spec.lm
        epochs = lm.finetune_epochs if cfg.epochs is None else cfg.epochs
        lr = lm.finetune_lr if cfg.lr is None else cfg.lr
        clean_ctx = ctx
        trained_on = TrainedOn(examples=tuple(corrupted), seed=cfg.seed, epochs=epochs, lr=lr,
                               what=f"fine-tune on the corrupted {ctx.suite.name} pool")
        ctx = ctx.with_trained_on(trained_on)
        ctx.setup(method)
        train = ctx.featurize(method, corrupted, "train")
        as_test = ctx.featurize(method, corrupted, "test")
        self_scores = np.empty(len(pool))
        chunk = 256  # the diagonal of [n, n] scores, a block of rows at a time
        for start in range(0, len(pool), chunk):
            rows = slice(start, start + chunk)
            block = ctx.score(method, as_test[rows], train)
            self_scores[rows] = block[np.arange(block.shape[0]), np.arange(start, start + block.shape[0])]
        with ctx.acct.phase("eval"):
            if not np.isfinite(self_scores).all():
                raise RuntimeError(f"method '{method.name}' gave non-finite self-scores")
            constant = is_constant(self_scores)
            rng = ctx.rng(11)
            pos, neg = np.flatnonzero(positive), np.flatnonzero(~positive)
            draws = [np.concatenate([rng.choice(pos, pos.size), rng.choice(neg, neg.size)])
                     for _ in range(cfg.bootstrap_resamples)]
            metrics: dict[str, Metric] = {}
            if not constant:
                value = auc(self_scores, positive)
                reps = np.array([auc(self_scores[d], positive[d]) for d in draws])
                metrics["auc"] = Metric.from_replicates(value, reps, n=len(pool),
                                                        draws="corrupted and clean examples, each independently")
                for share in (0.1, 0.2):  # a top-k share does not bootstrap (resampled copies crowd the top)
                    value = found_in_top(self_scores, positive, share)
                    hits = round(value * positive.sum())
                    ci = binomtest(hits, int(positive.sum())).proportion_ci(method="wilson")
                    metrics[f"found_top{round(100 * share)}"] = Metric(
                        value, float(ci.low), float(ci.high), n=int(positive.sum()),
                        note=f"Wilson interval over the corrupted examples; chance {share:g}")
            x, y = detection_curve(self_scores, positive)
        extra = {"attributed_model": self._attributed(trained_on, clean_ctx, corrupted, positive, lm.retrain_from),
                 "constant_self_score": constant,
                 **({"summary": ["self-scores constant (up to rounding): the method ranks nothing, no AUC"]}
                    if constant else {}), "label_kind": kind, "n_corrupted": int(positive.sum()),
                 "corrupted": [e.id for e, p in zip(pool, positive, strict=True) if p],
                 "dim": method.dim(train), "n_train": len(pool)}
        figure = _figure(method.name, ctx.suite.name, x, y, metrics["auc"].value if "auc" in metrics else None)
        return TaskOutput(metrics=metrics, headline="auc" if "auc" in metrics else None,
                          pairing={"corrupted": hashlib.sha256(positive.tobytes()).hexdigest()[:16],
                                   "label_kind": kind, "n_resamples": cfg.bootstrap_resamples},
                          per_example={"self_score": self_scores.tolist(),
                                       "corrupted": positive.astype(float).tolist()},
                          extra=extra, artifacts={"detection.png": figure})
