"""Data classification: does the top-scored training example share the test example's label? (Table 2)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bench.api import (
    ConfigError,
    DataError,
    Method,
    Metric,
    RunContext,
    Task,
    TaskConfig,
    TaskOutput,
    draws_label,
    register_task,
    replicate_means,
)


@dataclass(frozen=True, kw_only=True)
class ClassificationConfig(TaskConfig):
    """Options of the classification task."""

    k: int = field(default=10, metadata={"help": "The second figure: any of the top-k shares the label."})
    label_kinds: tuple[str, ...] = field(default=(), metadata={
        "help": "Label kinds to evaluate (default: every kind all train and test examples carry)."})
    bootstrap_resamples: int = field(default=1000, metadata={"help": "Bootstrap resamples for the 95% CI."})

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ConfigError(f"classification.k must be >= 1, got {self.k}")
        if self.bootstrap_resamples < 100:
            raise ConfigError(f"classification.bootstrap_resamples must be >= 100, got {self.bootstrap_resamples}")


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores per row, best first (ties broken deterministically).

    Args:
        scores: float [n_test, n_train].
        k: how many (clipped to n_train).

    Returns:
        int [n_test, k].
    """
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def chance_levels(train_labels: np.ndarray, test_labels: np.ndarray, k: int) -> tuple[float, float]:
    """Expected top-1 and any-of-top-k accuracy of a scorer that ranks the pool uniformly at random.

    Top-1: mean over test examples of the share p of training examples with its label. Top-k: mean of
    1 - C(n - c, k) / C(n, k), drawing k distinct training examples of which c = p * n match.
    """
    n = len(train_labels)
    values, counts = np.unique(train_labels, return_counts=True)
    share = dict(zip(values.tolist(), counts.tolist(), strict=True))
    c = np.array([share.get(label, 0) for label in test_labels.tolist()], dtype=np.float64)
    top1 = float((c / n).mean())
    k = min(k, n)
    miss = np.ones_like(c)
    for j in range(k):  # P(no match in k draws without replacement) = prod_j (n - c - j) / (n - j)
        miss *= np.clip(n - c - j, 0, None) / (n - j)
    return top1, float((1.0 - miss).mean())


@register_task("classification", config=ClassificationConfig)
class Classification(Task):
    """Data classification (paper Table 2): top-1 / any-of-top-k training example has the test label.

    For every label kind the suite's examples carry (task and family on the embedded suites; source on
    Tulu; safety on SafeRLHF), the share of test examples whose highest-scored training example has the same
    label, and the share whose top k contain one, each with a bootstrap 95% CI over test examples and the
    chance level of a random ranking next to it. Two methods are compared with McNemar's test on the test
    examples where they disagree (clustered where the suite declares clusters, `bench.stats`).
    """

    code_version = "2"  # 2: clustered draws, McNemar declared in the record, pairing by the harness

    def run(self, method: Method, ctx: RunContext) -> TaskOutput:
        """Score the test split against the pool and check labels of the top-ranked training examples."""
        train, test = ctx.suite.split("train"), ctx.suite.split("test")
        # "task" first when present: the first metric is the record's headline (the paper's FLAN column)
        kinds = self.config.label_kinds or tuple(sorted(
            set.intersection(*(set(e.labels) for e in [*train, *test])), key=lambda k: (k != "task", k)))
        skipped: list[str] = []
        if not self.config.label_kinds and ctx.suite.spec.clusters in kinds:  # the suite's clusters kept out of
            # the pool's split (bbq's template families) cannot be classified: chance and every method score 0
            kind = ctx.suite.spec.clusters
            if not {e.labels[kind] for e in test} & {e.labels[kind] for e in train}:
                kinds, skipped = tuple(k for k in kinds if k != kind), [kind]
        if not kinds:
            raise DataError(f"suite '{ctx.suite.name}' has no label kind shared by all train and test examples; "
                            f"classification needs one (map a column in [data] label_columns)")
        for kind in kinds:
            missing = next((e for e in [*train, *test] if kind not in e.labels), None)
            if missing is not None:
                raise DataError(f"label kind '{kind}' is missing on example '{missing.id}' of suite '{ctx.suite.name}'")
        train_features, test_features = ctx.featurize_suite(method)
        scores = ctx.score(method, test_features, train_features)
        metrics: dict[str, Metric] = {}
        per_example: dict[str, list[float]] = {}
        chance: dict[str, dict[str, float]] = {}
        k = self.config.k
        clusters = ctx.clusters(test)
        unit = draws_label(clusters)
        with ctx.acct.phase("eval"):
            top = top_k(scores, k)
            # the same draws of test examples for every metric and method of the suite: paired
            draws = ctx.draws(len(test), 2, n_resamples=self.config.bootstrap_resamples, clusters=clusters)
            for kind in kinds:
                tl = np.array([e.labels[kind] for e in train])
                zl = np.array([e.labels[kind] for e in test])
                hits = tl[top] == zl[:, None]
                c1, ck = chance_levels(tl, zl, k)
                chance[kind] = {"top1": c1, f"top{k}": ck}
                for name, values, level in ((f"top1_{kind}", hits[:, 0], c1), (f"top{k}_{kind}", hits.any(1), ck)):
                    values = values.astype(np.float64)
                    # a 0/1 outcome per example: two methods are compared by McNemar's test on the examples
                    # where they disagree (`bench.stats`); the replicates give the interval
                    metrics[name] = Metric.from_replicates(float(values.mean()), replicate_means(values, draws),
                                                           test="mcnemar", draws=unit, n=len(values),
                                                           note=f"chance {level:.3f}")
                    per_example[name] = values.tolist()
        return TaskOutput(metrics=metrics, per_example=per_example, headline=f"top1_{kinds[0]}",
                          pairing={"n_test": len(test), "n_resamples": self.config.bootstrap_resamples,
                                   "k": k},
                          clusters=clusters,
                          extra={"label_kinds": list(kinds), "k": k, "chance": chance,
                                 **({"skipped_label_kinds": skipped} if skipped else {}),
                                 "dim": method.dim(train_features), "n_train": len(train), "n_test": len(test)})
