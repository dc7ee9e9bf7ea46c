"""Linear datamodeling score (LDS): the AirRep paper's Table 1 metric."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bench.api import (
    ConfigError,
    Method,
    Metric,
    RunContext,
    Task,
    TaskConfig,
    TaskOutput,
    bootstrap_mean,
    lds,
    register_task,
)


@dataclass(frozen=True, kw_only=True)
class LDSConfig(TaskConfig):
    """Options of the LDS task."""

    bootstrap_resamples: int = field(default=2000, metadata={"help": "Bootstrap resamples for the 95% CI."})

    def __post_init__(self) -> None:
        if self.bootstrap_resamples < 100:
            raise ConfigError(f"lds.bootstrap_resamples must be >= 100, got {self.bootstrap_resamples}")


@register_task("lds", config=LDSConfig)
class LDS(Task):
    """LDS: Spearman over retrained subsets between group score and minus test loss (Park et al. 2023).

    Per test example, the method's `group_score` of each of the suite's M subsets is rank-correlated with
    minus the loss of the target LM fine-tuned on that subset; the headline is the mean over test examples
    with a bootstrap 95% CI over test examples. A test example whose group scores or losses are constant
    over subsets has no Spearman value: it is excluded and counted.
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
            interval = bootstrap_mean(per_example, rng=ctx.rng(1), n_resamples=self.config.bootstrap_resamples)
        metric = Metric.from_interval(interval, n=len(per_example) - n_nan,
                                      note=f"{n_nan} test examples with constant scores or losses excluded")
        return TaskOutput(
            metrics={"lds": metric},
            per_example={"lds": per_example.tolist()},
            extra={"n_subsets": int(gt.masks.shape[0]), "subset_fraction": float(gt.masks.mean()),
                   "n_constant_excluded": n_nan, "n_train": int(gt.masks.shape[1]),
                   "n_test": int(gt.losses.shape[1]), "dim": method.dim(train_features)},
        )
