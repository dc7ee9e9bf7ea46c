"""Counterfactual removal: when the examples a method blames are removed, does the test loss rise more than at random?

The most direct question asked of an attribution (bergson's validation of its query-loss filter, dattri's
brittleness test, the "remove and retrain" evaluations of the literature): per test example, take the top
k% of the pool by the method's score, retrain without them, and compare the example's loss with what
removing k% at random does. Unlike LDS and LOO it needs no correlation and no linear model of the effect,
only the method's top of the ranking, which is the part a user acts on.
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
    register_task,
    replicate_means,
    spearman_rows,
)
from tasks.loo import pick_tests


@dataclass(frozen=True, kw_only=True)
class RemovalConfig(TaskConfig):
    """Options of the counterfactual removal task."""

    n_test: int = field(default=32, metadata={"help": "Test examples whose losses are measured (spread over labels)."})
    fractions: tuple[float, ...] = field(default=(0.01, 0.05, 0.1), metadata={
        "help": "Shares of the pool removed: per test example, the method's top k%; and k% at random."})
    headline_fraction: float = field(default=0.05, metadata={
        "help": "The share the leaderboard ranks by (one of `fractions`)."})
    random_draws: int = field(default=3, metadata={
        "help": "Random removals of each size, shared by every test example and method."})
    seeds: int = field(default=2, metadata={
        "help": "Training seeds (batch orders) of every removal: seed, seed + 1, ...; every removal of one seed "
                "sees the same order."})
    seed: int = field(default=0, metadata={"help": "Seed of the test examples, the random removals and training."})
    bootstrap_resamples: int = field(default=1000, metadata={"help": "Bootstrap resamples for the 95% CI."})

    def __post_init__(self) -> None:
        if self.n_test < 2:
            raise ConfigError(f"removal.n_test must be >= 2, got {self.n_test}")
        if not self.fractions or any(not 0 < f <= 0.5 for f in self.fractions) or \
                len(set(self.fractions)) != len(self.fractions):
            raise ConfigError(f"removal.fractions must be distinct shares in (0, 0.5], got {list(self.fractions)}")
        if self.headline_fraction not in self.fractions:
            raise ConfigError(f"removal.headline_fraction {self.headline_fraction} is not one of the fractions "
                              f"{list(self.fractions)}; add it to fractions or pick one of them")
        if self.random_draws < 1 or self.seeds < 1:
            raise ConfigError(f"removal.random_draws and removal.seeds must be >= 1, got {self.random_draws}, "
                              f"{self.seeds}")
        if self.bootstrap_resamples < 100:
            raise ConfigError(f"removal.bootstrap_resamples must be >= 100, got {self.bootstrap_resamples}")


def share_name(fraction: float) -> str:
    """A fraction as a metric suffix: 0.05 -> '5pct', 0.005 -> '0.5pct'."""
    return f"{fraction * 100:g}pct"


def removal_size(n_pool: int, fraction: float) -> int:
    """Rows removed at `fraction` of a pool: round(fraction * n_pool), at least 1."""
    return max(1, round(fraction * n_pool))


def top_rows(scores: np.ndarray, size: int, tiebreak: np.ndarray) -> list[int]:
    """The `size` pool rows with the highest scores, ties broken by `tiebreak` (a permutation), sorted.

    A random order among equal scores, not the pool's order: a method that scores many rows alike (or all,
    as a constant one) removes a random set of them, not the pool's first rows.
    """
    order = np.lexsort((tiebreak, -np.asarray(scores, dtype=np.float64)))
    return sorted(int(i) for i in order[:size])


def random_rows(n_pool: int, size: int, seed: int, draw: int) -> list[int]:
    """Random removal `draw` of `size` rows, drawn from (seed, n_pool, size, draw) alone, sorted."""
    rng = np.random.default_rng([seed, n_pool, size, draw, 5])
    return sorted(int(i) for i in rng.choice(n_pool, size=size, replace=False))


def removal_effects(method: np.ndarray, random: np.ndarray, whole: np.ndarray) -> dict[str, np.ndarray]:
    """Per test example, what removing the method's rows did against removing random ones.

    Args:
        method: float [S, n_test], test losses after the method's removal (each test example its own rows).
        random: float [S, R, n_test], after each random removal (the same rows for every test example).
        whole: float [S, n_test], after training on the whole pool; every array of one seed shares its order.

    Returns:
        increase: [n_test], the method's removal's loss increase over the whole pool, mean over seeds;
        increase_random: [n_test], a random removal's, mean over draws and seeds;
        gain: [n_test], increase - increase_random (the whole pool's run cancels);
        beats: [n_test], 1.0 where the method's increase exceeds that of every random draw (seed means);
        seed_gain: [S, n_test], the gain in each seed.
    """
    inc = method - whole  # [S, n]
    inc_random = random - whole[:, None, :]  # [S, R, n]
    seed_gain = inc - inc_random.mean(axis=1)
    draw_means = inc_random.mean(axis=0)  # [R, n]
    return {"increase": inc.mean(axis=0), "increase_random": draw_means.mean(axis=0), "gain": seed_gain.mean(axis=0),
            "beats": (inc.mean(axis=0) > draw_means.max(axis=0)).astype(np.float64), "seed_gain": seed_gain}


def _digest(value: object) -> str:
    import hashlib
    import json

    return hashlib.sha256(json.dumps(value).encode()).hexdigest()[:16]


@register_task("removal", config=RemovalConfig)
class Removal(Task):
    """Counterfactual removal: the test loss after removing a method's top k% against removing k% at random.

    `n_test` test examples spread over the labels. For each share k of `fractions` and each test example, the
    method's top round(k * pool) rows by its score of that example (ties in a seeded random order) are
    removed; `random_draws` random sets of the same size are removed as the reference (one set per draw,
    shared by every test example and method). Every removal, and the whole pool, is retrained from the
    suite's start with the suite's fine-tuning recipe under each of `seeds` training seeds; a removed row
    keeps its batch slot without loss (`RunContext.retrain_without`), so within a seed the method's and the
    random removals differ in their removed rows alone. Per test example: the gain, its loss increase over
    the whole pool's run minus a random removal's (means over seeds and draws), and whether the method's
    increase beats every random draw's (chance 1 / (draws + 1) for a ranking unrelated to the example). Means
    over test examples, with a percentile bootstrap CI over them (the same draws for every method: paired).
    The test examples, the random removals and the whole pool's runs are the same for every method and form
    the `ground_truth` phase (shared, cached); a method's own removals are its cell's `eval` phase, cached by
    content (a set another method or test example removes trains once).
    """

    needs_features = False  # pair scores are enough: a score file of the suite works too
    code_version = "1"

    def run(self, method: Method, ctx: RunContext) -> TaskOutput:
        """Retrain the shared references, score, retrain the method's removals, compare."""
        cfg = self.config
        pool, test = ctx.suite.split("train"), ctx.suite.split("test")
        n = len(pool)
        kind = main_label_kind(test)
        labels = [e.labels[kind] if kind else "all" for e in test]
        chosen = pick_tests(labels, cfg.n_test, cfg.seed)
        sizes = [removal_size(n, f) for f in cfg.fractions]
        if max(sizes) >= n:
            raise DataError(f"removal: a pool of {n} cannot lose {max(sizes)} rows; lower removal.fractions")
        seeds = list(range(cfg.seed, cfg.seed + cfg.seeds))
        eval_ids = tuple(chosen)
        shared_rows = [[]] + [random_rows(n, size, cfg.seed, r) for size in sizes for r in range(cfg.random_draws)]
        shared = [(rows, s) for s in seeds for rows in shared_rows]
        with ctx.acct.phase("ground_truth", count=len(shared)) as ph:
            losses, produced_s, ran = ctx.retrain_without(shared, eval_ids=eval_ids,
                                                          desc=f"random removals {ctx.suite.name}")
            ph.cached, ph.cached_count, ph.original_wall_s = ran == 0, len(shared) - ran, produced_s
        losses = losses.reshape(len(seeds), len(shared_rows), len(chosen))
        whole = losses[:, 0]  # [S, n_test]
        random_losses = losses[:, 1:].reshape(len(seeds), len(sizes), cfg.random_draws, len(chosen))
        train_features, test_features = ctx.featurize_suite(method)
        scores = ctx.score(method, test_features, train_features)[chosen]  # [n_test, n_pool]
        tiebreak = [np.random.default_rng([cfg.seed, n, int(t), 7]).permutation(n) for t in chosen]
        removed = [[top_rows(scores[i], size, tiebreak[i]) for i in range(len(chosen))] for size in sizes]
        requests = [(removed[f][i], s) for s in seeds for f in range(len(sizes)) for i in range(len(chosen))]
        with ctx.acct.phase("eval", count=len(requests)) as ph:
            method_losses, method_s, ran = ctx.retrain_without(requests, eval_ids=eval_ids,
                                                               desc=f"removals of {method.name}")
            ph.cached, ph.cached_count, ph.original_wall_s = ran == 0, len(requests) - ran, method_s
            # row (s, f, i) holds every chosen test example's loss; test example i's is column i
            method_losses = method_losses.reshape(len(seeds), len(sizes), len(chosen), len(chosen))
            own = np.diagonal(method_losses, axis1=2, axis2=3)  # [S, F, n_test]
            effects = [removal_effects(own[:, f], random_losses[:, f], whole) for f in range(len(sizes))]
            clusters = ctx.clusters([test[i] for i in chosen])
            unit = draws_label(clusters)
            draws = ctx.draws(len(chosen), 13, n_resamples=cfg.bootstrap_resamples, clusters=clusters)

            def mean_metric(values: np.ndarray, note: str) -> Metric:
                return Metric.from_replicates(float(values.mean()), replicate_means(values, draws), draws=unit,
                                              n=len(values), note=note)

            metrics: dict[str, Metric] = {}
            head = cfg.fractions.index(cfg.headline_fraction)
            chance = 1.0 / (cfg.random_draws + 1)
            for f, (fraction, eff) in enumerate(zip(cfg.fractions, effects, strict=True)):
                share = f"{fraction:.0%}" if fraction * 100 == round(fraction * 100) else f"{fraction:.1%}"
                named = {
                    "gain": mean_metric(eff["gain"], f"loss increase after removing the method's top {share} "
                                        f"minus a random {share}'s, nats; mean over {cfg.seeds} seed(s)"),
                    "beats_random": mean_metric(eff["beats"], f"share of test examples whose increase beats all "
                                                f"{cfg.random_draws} random draws (chance {chance:.2f})"),
                    "increase": mean_metric(eff["increase"], f"loss increase after removing the top {share}"),
                    "increase_random": mean_metric(eff["increase_random"],
                                                   f"loss increase after removing a random {share}")}
                for name, metric in named.items():
                    metrics[f"{name}_{share_name(fraction)}"] = metric
                    if f == head:
                        metrics[name] = metric
            seed_facts = {}
            if cfg.seeds >= 2:
                g = effects[head]["seed_gain"]
                seed_facts = {"gain_seed_spearman": float(spearman_rows(g[:1], g[1:2])[0]),
                              "gain_sign_agreement": float((np.sign(g[0]) == np.sign(g[1])).mean())}
            # the noise a single random removal carries: the draws' spread of the increase, per test example
            random_sd = {share_name(fr): float(np.std(random_losses[:, f].mean(axis=0), axis=0, ddof=1).mean())
                         if cfg.random_draws >= 2 else None for f, fr in enumerate(cfg.fractions)}
        return TaskOutput(
            metrics=metrics, per_example={"gain": effects[head]["gain"].tolist(),
                                          "beats_random": effects[head]["beats"].tolist()},
            extra={"test_rows": chosen, "label_kind": kind, "sizes": sizes, "n_train": n,
                   "removed": {share_name(fr): removed[f] for f, fr in enumerate(cfg.fractions)},
                   "random_removed": {share_name(fr): [random_rows(n, sizes[f], cfg.seed, r)
                                                       for r in range(cfg.random_draws)]
                                      for f, fr in enumerate(cfg.fractions)},
                   "seeds": seeds, "whole_loss": whole.tolist(),  # [S, n_test]
                   "method_loss": own.tolist(),  # [S, F, n_test]
                   "random_loss": random_losses.tolist(),  # [S, F, draws, n_test]
                   "seed_gain": {share_name(fr): effects[f]["seed_gain"].tolist()
                                 for f, fr in enumerate(cfg.fractions)},
                   "random_sd": random_sd, **seed_facts,
                   "retraining_s": produced_s + method_s, "dim": method.dim(train_features)},
            headline="gain", clusters=clusters,
            pairing={"tests": _digest(chosen), "random": _digest(shared_rows), "seeds": seeds,
                     "fractions": list(cfg.fractions), "headline_fraction": cfg.headline_fraction,
                     "n_resamples": cfg.bootstrap_resamples})
