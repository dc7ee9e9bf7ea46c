"""Linear datamodeling score (LDS): the AirRep paper's Table 1 metric."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bench.api import (
    ConfigError,
    Interval,
    Method,
    Metric,
    RunContext,
    Task,
    TaskConfig,
    TaskOutput,
    bootstrap_mean,
    lds,
    lds_replicates,
    main_label_kind,
    noise_ceiling,
    percentile_interval,
    register_task,
    replicate_means,
    resample_indices,
    split_half_reliability,
)


@dataclass(frozen=True, kw_only=True)
class LDSConfig(TaskConfig):
    """Options of the LDS task."""

    bootstrap_resamples: int = field(default=1000, metadata={
        "help": "Bootstrap resamples of the 95% CIs (the headline's: test examples and subsets resampled together)."})

    def __post_init__(self) -> None:
        if self.bootstrap_resamples < 100:
            raise ConfigError(f"lds.bootstrap_resamples must be >= 100, got {self.bootstrap_resamples}")


@register_task("lds", config=LDSConfig)
class LDS(Task):
    """LDS: Spearman over retrained subsets between group score and minus test loss (Park et al. 2023).

    Per test example, the method's `group_score` of each of the suite's M subsets is rank-correlated with
    minus the loss of the target LM fine-tuned on that subset; the headline is the mean over test examples.
    Its 95% CI is a two-way bootstrap (`bench.metrics.lds_replicates`): test examples and subsets are
    resampled together, since both are samples. The replicates are kept in the record (`extra.bootstrap`)
    and are paired across methods (every method of a suite gets the same draws), which is what paired
    comparisons (`bench compare`, the leaderboard's bold) use. A test example whose group scores or losses
    are constant over subsets has no Spearman value: it is excluded and counted, and `lds_nan_as_zero` gives
    the LDS under the AirRep authors' convention (such an example counts as 0).

    With two or more training seeds per subset the record also holds the noise ceiling
    (`bench.metrics.noise_ceiling`: the LDS a perfect attribution could reach against this ground truth)
    and the LDS as a fraction of it. The per-label LDS (mean over the test examples of each task, source
    or stance) shows where a method wins.
    """

    def run(self, method: Method, ctx: RunContext) -> TaskOutput:
        """Featurise the pool and the test split, group-score the subsets, correlate with the ground truth."""
        gt = ctx.ground_truth()
        train_features, test_features = ctx.featurize_suite(method)
        predicted = ctx.group_score(method, test_features, train_features, gt.masks)
        with ctx.acct.phase("eval"):
            per_example = lds(predicted, gt.losses)
            n_nan = int(np.isnan(per_example).sum())
            if n_nan == len(per_example):
                raise ConfigError(f"LDS is undefined for every test example of '{ctx.suite.name}': the group "
                                  f"scores or the losses are constant over subsets")
            replicates = lds_replicates(predicted, gt.losses, rng=ctx.rng(1),
                                        n_resamples=self.config.bootstrap_resamples)
            interval = percentile_interval(float(np.nanmean(per_example)), replicates)
            test_only = bootstrap_mean(per_example, rng=ctx.rng(7), n_resamples=self.config.bootstrap_resamples)
            as_zero = np.nan_to_num(per_example, nan=0.0)
            metrics = {
                "lds": Metric.from_interval(interval, n=len(per_example) - n_nan,
                                            note=f"{n_nan} test examples with constant scores or losses excluded; "
                                                 f"CI: two-way bootstrap over test examples and subsets"),
                "lds_nan_as_zero": Metric.from_interval(
                    percentile_interval(float(as_zero.mean()), replicate_means(
                        as_zero, resample_indices(len(as_zero), rng=ctx.rng(8),
                                                  n_resamples=self.config.bootstrap_resamples))),
                    n=len(per_example), note="the AirRep authors' convention: a constant row counts as 0"),
            }
            values = {"lds": per_example.tolist()}
            extra: dict = {"bootstrap": {"lds": _rounded(replicates)},
                           "pairing": _pairing(gt, ctx.seed, self.config.bootstrap_resamples),
                           "lds_ci_test_examples_only": [test_only.low, test_only.high]}
            if gt.seed_losses is not None and gt.seed_losses.shape[0] >= 2:
                ceiling = noise_ceiling(gt.seed_losses)
                reliability = split_half_reliability(gt.seed_losses)
                both = np.isfinite(ceiling) & np.isfinite(per_example)
                metrics["ceiling"] = Metric.from_interval(
                    bootstrap_mean(ceiling, rng=ctx.rng(5), n_resamples=self.config.bootstrap_resamples),
                    n=int(np.isfinite(ceiling).sum()),
                    note=f"sqrt of the Spearman-Brown reliability of the {gt.seed_losses.shape[0]}-seed mean")
                metrics["lds_of_ceiling"] = Metric.from_interval(_ratio_interval(
                    per_example[both], ceiling[both], rng=ctx.rng(6), n_resamples=self.config.bootstrap_resamples),
                    n=int(both.sum()), note="mean LDS / mean ceiling over the same test examples")
                values.update(ceiling=ceiling.tolist(), reliability=reliability.tolist())
                extra["seeds_per_subset"] = int(gt.seed_losses.shape[0])
            kind = main_label_kind(ctx.suite.split("test"))  # the label kind whose per-label LDS is kept
            if kind is not None:
                labels = np.array([e.labels[kind] for e in ctx.suite.split("test")])
                extra["per_label"] = {"kind": kind, "values": {
                    str(v): {"lds": float(np.nanmean(per_example[labels == v])), "n": int((labels == v).sum())}
                    for v in sorted(set(labels.tolist()))}}
        return TaskOutput(
            metrics=metrics,
            per_example=values,
            extra={"n_subsets": int(gt.masks.shape[0]), "subset_fraction": float(gt.masks.mean()),
                   "n_constant_excluded": n_nan, "n_train": int(gt.masks.shape[1]),
                   "n_test": int(gt.losses.shape[1]), "dim": method.dim(train_features), **extra},
        )


def _pairing(gt, seed: int, n_resamples: int) -> str:
    """What makes two LDS records' replicates paired: the same ground truth, run seed and resample count."""
    import hashlib

    h = hashlib.sha256()
    for array in (gt.masks, gt.losses):
        h.update(np.ascontiguousarray(array).tobytes())
    return f"{h.hexdigest()[:16]}/{seed}/{n_resamples}"


def _rounded(values: np.ndarray) -> list[float | None]:
    """Replicates for the record: 6 decimals are far below their spread, and keep the JSON small."""
    return [None if not np.isfinite(v) else round(float(v), 6) for v in values]


def _ratio_interval(num: np.ndarray, den: np.ndarray, *, rng: np.random.Generator, n_resamples: int):
    """mean(num) / mean(den) with a percentile-bootstrap 95% CI over the paired examples."""
    idx = rng.integers(0, len(num), size=(n_resamples, len(num)))
    boot = num[idx].mean(axis=1) / den[idx].mean(axis=1)
    return Interval(float(num.mean() / den.mean()), float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5)))
