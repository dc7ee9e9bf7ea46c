"""Linear datamodeling score (LDS): the AirRep paper's Table 1 metric."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from bench.api import (
    ConfigError,
    Method,
    Metric,
    RunContext,
    Task,
    TaskConfig,
    TaskOutput,
    ceiling_subset_variance,
    draws_label,
    lds,
    lds_replicates,
    main_label_kind,
    noise_ceiling,
    percentile_interval_of,
    register_task,
    replicate_means,
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
    resampled together, since both are samples; where the suite declares clusters (`clusters = "task"`),
    whole clusters are drawn, each with all its test examples (`bench.stats.draw_weights`), since
    examples of one task are not independent. The replicates are kept in the record (`Metric.replicates`)
    and are paired across methods (every method of a suite gets the same draws), which is what paired
    comparisons (`bench compare`, the leaderboard's bold and ranks) use. A test example whose group scores or losses
    are constant over subsets has no Spearman value: it is excluded and counted, and `lds_nan_as_zero` gives
    the LDS under the AirRep authors' convention (such an example counts as 0).

    With two or more training seeds per subset the record also holds the noise ceiling
    (`bench.metrics.noise_ceiling`: the LDS a perfect attribution could reach against this ground truth)
    and the LDS as a fraction of it. The per-label LDS (mean over the test examples of each task, source
    or stance) shows where a method wins.
    """

    code_version = "2"  # 2: cluster bootstrap of test examples, pairing by the harness, the ceiling's CI with subsets

    def run(self, method: Method, ctx: RunContext) -> TaskOutput:
        """Featurise the pool and the test split, group-score the subsets, correlate with the ground truth."""
        return self.evaluate(method, ctx, "test")

    def evaluate(self, method: Method, ctx: RunContext, split: Literal["test", "dev"]) -> TaskOutput:
        """The LDS of `method` on the suite's `split`: the test split (`run`), or the dev split (`bench tune`).

        On the dev split the examples and ground truth are the dev split's, and nothing reads the test split.
        """
        gt = ctx.ground_truth(split)
        train_features, test_features = ctx.featurize_suite(method, split)
        predicted = ctx.group_score(method, test_features, train_features, gt.masks)
        n_resamples = self.config.bootstrap_resamples
        with ctx.acct.phase("eval"):
            per_example = lds(predicted, gt.losses)
            n_nan = int(np.isnan(per_example).sum())
            if n_nan == len(per_example):
                raise ConfigError(f"LDS is undefined for every test example of '{ctx.suite.name}': the group "
                                  f"scores or the losses are constant over subsets")
            test = ctx.suite.split(split)
            clusters = ctx.clusters(test)
            # the same draws for every method of the suite (paired): test examples (within clusters), then subsets
            rows = ctx.draws(len(per_example), 1, n_resamples=n_resamples, clusters=clusters)
            subsets = ctx.rng(1, 1).integers(0, gt.masks.shape[0], size=(n_resamples, gt.masks.shape[0]))
            replicates = lds_replicates(predicted, gt.losses, row_weights=rows, subset_draws=subsets)
            unit = draws_label(clusters)
            as_zero = np.nan_to_num(per_example, nan=0.0)
            metrics = {
                "lds": Metric.from_replicates(
                    float(np.nanmean(per_example)), replicates, draws=f"{unit} x subsets",
                    n=len(per_example) - n_nan,
                    note=f"{n_nan} test examples with constant scores or losses excluded"),
                "lds_nan_as_zero": Metric.from_replicates(
                    float(as_zero.mean()), replicate_means(as_zero, rows), draws=unit, n=len(per_example),
                    note="the AirRep authors' convention: a constant row counts as 0"),
            }
            values = {"lds": per_example.tolist()}
            extra: dict = {"lds_ci_test_examples_only": list(percentile_interval_of(replicate_means(per_example,
                                                                                                    rows)))}
            if gt.seed_losses is not None and gt.seed_losses.shape[0] >= 2:
                ceiling = noise_ceiling(gt.seed_losses)
                reliability = split_half_reliability(gt.seed_losses)
                both = np.isfinite(ceiling) & np.isfinite(per_example)
                # its own estimation error: the test examples (bootstrap) and the subsets (jackknife), together
                value = float(np.nanmean(ceiling))
                half = 1.96 * float(np.sqrt(np.nanvar(replicate_means(ceiling, rows), ddof=1)
                                            + ceiling_subset_variance(gt.seed_losses)))
                metrics["ceiling"] = Metric(
                    value, value - half, value + half, n=int(np.isfinite(ceiling).sum()),
                    draws=f"{unit} (bootstrap) and subsets (delete-one jackknife), normal interval",
                    note=f"sqrt of the Spearman-Brown reliability of the {gt.seed_losses.shape[0]}-seed mean")
                ratio = replicate_means(np.where(both, per_example, np.nan), rows) / \
                    replicate_means(np.where(both, ceiling, np.nan), rows)
                low, high = percentile_interval_of(ratio)
                metrics["lds_of_ceiling"] = Metric(
                    float(per_example[both].mean() / ceiling[both].mean()), low, high, n=int(both.sum()),
                    draws=unit, note="mean LDS / mean ceiling over the same test examples")
                values.update(ceiling=ceiling.tolist(), reliability=reliability.tolist())
                extra["seeds_per_subset"] = int(gt.seed_losses.shape[0])
            kind = main_label_kind(test)  # the label kind whose per-label LDS is kept
            if kind is not None:
                labels = np.array([e.labels[kind] for e in test])
                extra["per_label"] = {"kind": kind, "values": {
                    str(v): {"lds": float(np.nanmean(per_example[labels == v])), "n": int((labels == v).sum())}
                    for v in sorted(set(labels.tolist()))}}
        return TaskOutput(
            metrics=metrics,
            per_example=values,
            headline="lds",
            pairing={"ground_truth": _digest(gt), "n_resamples": n_resamples},
            clusters=clusters,
            extra={"ground_truth": _digest(gt), "n_subsets": int(gt.masks.shape[0]),
                   "subset_fraction": float(gt.masks.mean()),
                   "n_constant_excluded": n_nan, "n_train": int(gt.masks.shape[1]),
                   "n_test": int(gt.losses.shape[1]), "dim": method.dim(train_features), **extra},
        )


def _digest(gt) -> str:
    """What makes two LDS records' values comparable: the same ground truth (masks and losses)."""
    import hashlib

    h = hashlib.sha256()
    for array in (gt.masks, gt.losses):
        h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()[:16]
