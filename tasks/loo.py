"""Leave-one-out: does a method's score of a training example predict what removing it does to a test loss?

dattri and the AirRep paper's appendix (Table 5) evaluate LOO. The left-out example keeps its batch slot
without loss (a retraining without it, every batch otherwise the same), so within one seed nothing but the
removal differs. Whether that change is a property of the example or of one batch order is measured: every
removal is retrained under `seeds` batch orders, the target is the mean increase, and the seeds' agreement
gives the task its noise ceiling, as the LDS ground truth's seeds give LDS its own.
"""

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
    main_label_kind,
    percentile_interval_of,
    register_task,
    replicate_means,
    spearman_rows,
    split_half_reliability,
)


@dataclass(frozen=True, kw_only=True)
class LOOConfig(TaskConfig):
    """Options of the leave-one-out task."""

    n_test: int = field(default=48, metadata={"help": "Test examples whose losses are measured (spread over labels)."})
    k_top: int = field(default=8, metadata={
        "help": "Per test example, its k most similar pool examples by the reference ranking (TF-IDF) are removed."})
    k_random: int = field(default=8, metadata={"help": "Per test example, k more random pool examples are removed."})
    seed: int = field(default=0, metadata={"help": "Seed of the test examples, the random removals and training."})
    seeds: int = field(default=2, metadata={
        "help": "Training seeds (batch orders) per removal: seed, seed + 1, ...; 2 or more give the noise ceiling."})
    bootstrap_resamples: int = field(default=1000, metadata={"help": "Bootstrap resamples for the 95% CI."})

    def __post_init__(self) -> None:
        if self.n_test < 2 or self.k_top < 0 or self.k_random < 0 or self.k_top + self.k_random < 2:
            raise ConfigError(f"loo: n_test must be >= 2 and k_top + k_random >= 2, got {self.n_test}, "
                              f"{self.k_top}, {self.k_random}")
        if self.bootstrap_resamples < 100:
            raise ConfigError(f"loo.bootstrap_resamples must be >= 100, got {self.bootstrap_resamples}")
        if self.seeds < 1:
            raise ConfigError(f"loo.seeds must be >= 1, got {self.seeds}")




def digest(value: object) -> str:
    """A short sha256 of a JSON value: the removals and test rows in a record's pairing key."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(value).encode()).hexdigest()[:16]


def pick_tests(labels: list[str], n: int, seed: int) -> list[int]:
    """`n` test positions spread over the labels: round-robin over the sorted labels, each in a seeded order."""
    rng = np.random.default_rng([seed, len(labels)])
    by_label = {lab: [int(i) for i in rng.permutation([i for i, x in enumerate(labels) if x == lab])]
                for lab in sorted(set(labels))}
    out: list[int] = []
    while len(out) < min(n, len(labels)):
        for lab in sorted(by_label):
            if by_label[lab] and len(out) < n:
                out.append(by_label[lab].pop(0))
    return sorted(out)


def reference_removals(pool_texts: list[str], test_texts: list[str], k_top: int, k_random: int,
                       seed: int) -> list[int]:
    """The pool rows to leave out, sorted: the union over test texts of their removals.

    For each test text, its `k_top` nearest by TF-IDF cosine (a fixed, method-independent reference) and
    `k_random` random others.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(token_pattern=r"(?u)\b\w+\b")
    pool = vec.fit_transform(pool_texts)
    sims = (vec.transform(test_texts) @ pool.T).toarray()
    rng = np.random.default_rng([seed, len(pool_texts), 1])
    chosen: set[int] = set()
    for row in sims:
        top = [int(i) for i in np.argsort(-row, kind="stable")[:k_top]]
        chosen.update(top)
        rest = np.setdiff1d(np.arange(len(pool_texts)), np.array(sorted(chosen), dtype=np.int64))
        chosen.update(int(i) for i in rng.choice(rest, size=min(k_random, rest.size), replace=False))
    return sorted(chosen)


def loo_spearman(scores: np.ndarray, increase: np.ndarray) -> np.ndarray:
    """Per test example, Spearman over the removed examples between the score and the measured loss increase.

    Args:
        scores: float [n_test, R], the method's score of each removed example for each test example.
        increase: float [R, n_test], the test loss without the example minus the loss with the whole pool.

    Returns:
        float [n_test]; NaN where either side is constant.
    """
    return spearman_rows(scores, increase.T)


@register_task("loo", config=LOOConfig)
class LOO(Task):
    """Leave-one-out (dattri; AirRep paper Table 5): score vs the loss change of removing one example.

    `n_test` test examples spread over the labels; for each, its `k_top` nearest pool examples by TF-IDF
    (a fixed reference, the same for every method; TF-IDF is also a contestant, which the removal set may
    favour) and `k_random` random ones are removed, one at a time (`RunContext.leave_one_out`: one
    fine-tuning of the whole pool, then one per removal, the left-out example's batch slot kept without
    loss), under each of `seeds` training seeds. A removal's loss increase is its run's test loss minus the
    whole pool's run of the same seed, averaged over the seeds. Per test example, the Spearman over all
    removed examples between the method's score and that mean increase; the mean with a percentile bootstrap
    CI over the test examples (the same draws for every method: paired). The ceiling is what a perfect
    predictor of the expected increase could reach against an S-seed mean: the square root of the mean over
    test examples of the seeds' split-half reliability over the removals, stepped up by Spearman-Brown
    (`bench.api.split_half_reliability`). Unlike LDS's ceiling (per-example roots, averaged), the mean is
    taken before the root: one ceiling for the mean LOO (`loo_of_ceiling` is a ratio of means), and no
    per-example clipping, which near a true reliability of 0 inflates the average (about 0.1 for 700
    removals and 48 examples at a true 0); where every reliability is positive it gives a slightly higher
    ceiling instead (Jensen). `seed_spearman` is the raw seed-to-seed Spearman. Their CIs
    resample test examples; the removals are held fixed. The record also keeps the share of removals whose
    increase keeps its sign across seeds. The removals, the loss increases (in the record) and their cost are
    shared by every method (cached jobs, like the LDS ground truth).
    """

    needs_features = False  # pair scores are enough: a score file of the suite works too
    # 2: the pairing names the removals, the record keeps the increases; 3: clustered draws; 4: seeds, ceiling;
    # 5: the ceiling from the mean reliability, seed_spearman a metric
    code_version = "5"

    def run(self, method: Method, ctx: RunContext) -> TaskOutput:
        """Measure (or read) the removals' loss changes, score the removed examples, correlate."""
        cfg = self.config
        pool, test = ctx.suite.split("train"), ctx.suite.split("test")
        kind = main_label_kind(test)
        labels = [e.labels[kind] if kind else "all" for e in test]
        chosen = pick_tests(labels, cfg.n_test, cfg.seed)
        removed = reference_removals([e.text() for e in pool], [test[i].text() for i in chosen], cfg.k_top,
                                     cfg.k_random, cfg.seed)
        n_jobs = (len(removed) + 1) * cfg.seeds
        increases = []  # per seed: [removed, test rows]
        with ctx.acct.phase("ground_truth", count=n_jobs) as ph:
            ran, produced_s = 0, 0.0
            for s in range(cfg.seed, cfg.seed + cfg.seeds):
                whole, without, wall, now = ctx.leave_one_out(
                    removed, eval_ids=tuple(chosen), seed=s, desc=f"leave-one-out {ctx.suite.name}, seed {s}")
                increases.append(without - whole[None, :])
                ran, produced_s = ran + now, produced_s + wall
            ph.cached, ph.cached_count, ph.original_wall_s = ran == 0, n_jobs - ran, produced_s
        seed_increase = np.stack(increases)  # [S, removed, test rows]
        increase = seed_increase.mean(axis=0)
        train_features, test_features = ctx.featurize_suite(method)
        scores = ctx.score(method, test_features, train_features)[np.ix_(chosen, removed)]
        with ctx.acct.phase("eval"):
            per_example = loo_spearman(scores, increase)
            ok = np.isfinite(per_example)
            if not ok.any():
                raise DataError(f"loo: every test example's scores or loss changes are constant on '{ctx.suite.name}'")
            clusters = ctx.clusters([test[i] for i in chosen])
            unit = draws_label(clusters)
            draws = ctx.draws(len(per_example), 12, n_resamples=cfg.bootstrap_resamples, clusters=clusters)
            metrics = {"loo": Metric.from_replicates(
                float(np.nanmean(per_example)), replicate_means(per_example, draws), draws=unit, n=int(ok.sum()),
                note=f"{int((~ok).sum())} constant test examples excluded; the removals fixed; target: the mean "
                     f"increase over {cfg.seeds} seed(s)")}
            seed_facts: dict = {}
            if cfg.seeds >= 2:
                # the mean reliability first, its square root after: one ceiling for a ratio of means, and no
                # per-example clipping (which inflates the average near a true reliability of 0)
                reliability = split_half_reliability(seed_increase)
                rel_ok = np.isfinite(reliability)
                rel_reps = replicate_means(reliability, draws)
                ceiling = float(np.sqrt(np.clip(np.nanmean(reliability), 0.0, 1.0)))
                metrics["ceiling"] = Metric.from_replicates(
                    ceiling, np.sqrt(np.clip(rel_reps, 0.0, 1.0)), draws=unit, n=int(rel_ok.sum()),
                    note=f"sqrt of the mean Spearman-Brown reliability of the {cfg.seeds}-seed mean; the removals "
                         f"fixed")
                seed_r = spearman_rows(seed_increase[0].T, seed_increase[1].T)
                metrics["seed_spearman"] = Metric.from_replicates(
                    float(np.nanmean(seed_r)), replicate_means(seed_r, draws), draws=unit, n=int(rel_ok.sum()),
                    note="Spearman over the removals between seeds 0 and 1, per test example")
                both = ok & rel_ok
                if both.any() and np.nanmean(reliability[both]) > 0:
                    def of_ceiling(loo_means: np.ndarray, rel_means: np.ndarray) -> np.ndarray:
                        with np.errstate(divide="ignore", invalid="ignore"):
                            return loo_means / np.sqrt(np.clip(rel_means, 0.0, 1.0))

                    value = float(of_ceiling(per_example[both].mean(), reliability[both].mean()))
                    reps = of_ceiling(replicate_means(np.where(both, per_example, np.nan), draws),
                                      replicate_means(np.where(both, reliability, np.nan), draws))
                    low, high = percentile_interval_of(reps[np.isfinite(reps)])
                    metrics["loo_of_ceiling"] = Metric(
                        value, low, high, n=int(both.sum()), draws=unit,
                        note="mean LOO / the ceiling of the same test examples")
                seed_facts = {
                    "reliability": reliability.tolist(),
                    "sign_agreement": float((np.sign(seed_increase[0]) == np.sign(seed_increase[1])).mean())}
        return TaskOutput(
            metrics=metrics, per_example={"loo": per_example.tolist()},
            extra={"test_rows": chosen, "removed": removed, "n_removed": len(removed),
                   "label_kind": kind, "increase_abs_mean": float(np.abs(increase).mean()),
                   "increase": increase.tolist(),  # [removed, test rows]: each removal's mean loss change
                   "seed_increase": seed_increase.tolist(),  # [seeds, removed, test rows]
                   "seeds": list(range(cfg.seed, cfg.seed + cfg.seeds)), **seed_facts,
                   "dim": method.dim(train_features), "n_train": len(pool)},
            headline="loo", clusters=clusters,
            pairing={"removals": digest([chosen, removed]), "seed": cfg.seed, "seeds": cfg.seeds,
                     "n_resamples": cfg.bootstrap_resamples})
