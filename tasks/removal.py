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
from tasks.loo import digest, pick_tests


@dataclass(frozen=True, kw_only=True)
class RemovalConfig(TaskConfig):
    """Options of the counterfactual removal task."""

    n_test: int = field(default=32, metadata={"help": "Test examples whose losses are measured (spread over labels)."})
    fractions: tuple[float, ...] = field(default=(0.01, 0.05, 0.1), metadata={
        "help": "Shares of the pool removed: per test example, the method's top k%; and k% at random."})
    headline_fraction: float = field(default=0.05, metadata={
        "help": "The share the leaderboard ranks by (one of `fractions`)."})
    random_draws: int = field(default=5, metadata={
        "help": "Random removals of each size, shared by every test example and method (resampled in the CI)."})
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
        if len({share_name(f) for f in self.fractions}) != len(self.fractions):
            raise ConfigError(f"removal.fractions {list(self.fractions)} name the same share twice (in % to 4 "
                              f"significant digits); give distinct shares")
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
    return f"{fraction * 100:.4g}pct"


def share_text(fraction: float) -> str:
    """A fraction as prose: 0.05 -> '5%', 0.07 -> '7%', 0.005 -> '0.5%'."""
    return f"{fraction * 100:.4g}%"


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
        seed_gain: [S, n_test], the gain in each seed;
        draw_increase: [R, n_test], each random draw's increase, mean over seeds.
    """
    inc = method - whole  # [S, n]
    inc_random = random - whole[:, None, :]  # [S, R, n]
    seed_gain = inc - inc_random.mean(axis=1)
    draw_means = inc_random.mean(axis=0)  # [R, n]
    return {"increase": inc.mean(axis=0), "increase_random": draw_means.mean(axis=0), "gain": seed_gain.mean(axis=0),
            "beats": (inc.mean(axis=0) > draw_means.max(axis=0)).astype(np.float64), "seed_gain": seed_gain,
            "draw_increase": draw_means}


def two_way_replicates(increase: np.ndarray, random_increase: np.ndarray, weights: np.ndarray,
                       draw_idx: np.ndarray) -> dict[str, np.ndarray]:
    """Bootstrap replicates of the mean gain and beats, the test examples and the random draws both resampled.

    The random draws are shared by every test example, so one unusually harmful draw moves every example's
    reference at once: resampling test examples alone would hold that error fixed and narrow the CI.

    Args:
        increase: [n], the method's seed-mean increase per test example.
        random_increase: [R, n], each random draw's seed-mean increase.
        weights: [B, n], bootstrap counts of the test examples (clustered; `RunContext.draws`).
        draw_idx: int [B, R], the random draws of each replicate (with replacement).

    Returns:
        gain, beats, increase_random: [B] replicate means.
    """
    drawn = random_increase[draw_idx]  # [B, R, n]
    reference = drawn.mean(axis=1)  # [B, n]
    total = weights.sum(axis=1)

    def mean(values: np.ndarray) -> np.ndarray:
        return (weights * values).sum(axis=1) / total

    return {"gain": mean(increase[None, :] - reference),
            "beats": mean((increase[None, :] > drawn.max(axis=1)).astype(np.float64)),
            "increase_random": mean(reference)}


def specificity(cross: np.ndarray, labels: list[str], *, same_label: bool = False) -> np.ndarray:
    """Per test example, its loss after its own removal minus after the removals chosen for other examples.

    The other examples are those of other labels (default), or with `same_label` those of its own label.
    A method that ranks the pool alike for every test example (by a global quality, a loss or a gradient norm)
    can gain over random without attributing anything to the example; neither control can be gained that
    way. Against other labels' removals a method that only finds the example's label (its task) still
    scores; against its own label's it does not: what remains is what the method knows of this example.

    Args:
        cross: [n (whose removal), n (evaluated)], seed-mean losses: row j's removal, column i's loss.
        labels: each test example's label (all one label: every other example is the other-label control).
        same_label: compare with the removals of the examples that share the label.

    Returns:
        [n]; NaN where no other example qualifies.
    """
    n = cross.shape[0]
    out = np.full(n, np.nan)
    one_label = len(set(labels)) < 2
    for i in range(n):
        if same_label:
            others = [j for j in range(n) if j != i and labels[j] == labels[i]]
        else:
            others = [j for j in range(n) if j != i and (one_label or labels[j] != labels[i])]
        if others:
            out[i] = cross[i, i] - cross[others, i].mean()
    return out


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
    increase beats every random draw's (chance 1 / (draws + 1) for a ranking unrelated to the loss). Means
    over test examples; their percentile bootstrap CIs resample the test examples (in clusters) and the
    random draws, which every test example shares (the same draws of both for every method: paired).

    A ranking that is the same for every test example (a global quality, loss or gradient norm) can gain over
    random without attributing anything to the example. The control: `specific`, the example's loss after its
    own removal minus after the removals chosen for test examples of other labels (those runs exist already:
    every removal is evaluated on every chosen test example), with a bootstrap over test examples. A method
    that finds the example's label (on the generated suites its task) passes that control; `within_label`,
    against the removals chosen for the other test examples of the same label, asks what it knows beyond it.

    The test examples, the random removals and the whole pool's runs are the same for every method and form
    the `ground_truth` phase (shared, cached); a method's own removals are its cell's `eval` phase, cached by
    content (a set another method or test example removes trains once; the phase counts distinct jobs). As
    with LOO's jobs, a cached result is that of the group that first trained it; in groups of another
    composition the same removal agrees to float rounding.
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
        chosen_labels = [labels[i] for i in chosen]
        sizes = [removal_size(n, f) for f in cfg.fractions]
        if max(sizes) >= n or len(set(sizes)) != len(sizes):
            raise DataError(f"removal: the fractions {list(cfg.fractions)} remove {sizes} rows of a pool of {n}; "
                            f"give fractions that remove distinct numbers of rows, fewer than the pool")
        seeds = list(range(cfg.seed, cfg.seed + cfg.seeds))
        eval_ids = tuple(chosen)
        random_sets = [[random_rows(n, size, cfg.seed, r) for r in range(cfg.random_draws)] for size in sizes]
        shared_rows = [[], *[rows for per_size in random_sets for rows in per_size]]
        shared = [(rows, s) for s in seeds for rows in shared_rows]
        with ctx.acct.phase("ground_truth") as ph:
            losses, produced_s, ran, distinct = ctx.retrain_without(shared, eval_ids=eval_ids,
                                                                    desc=f"random removals {ctx.suite.name}")
            ph.count, ph.cached_count = distinct, distinct - ran
            ph.cached, ph.original_wall_s = ran == 0, produced_s
        losses = losses.reshape(len(seeds), len(shared_rows), len(chosen))
        whole = losses[:, 0]  # [S, n_test]
        random_losses = losses[:, 1:].reshape(len(seeds), len(sizes), cfg.random_draws, len(chosen))
        train_features, test_features = ctx.featurize_suite(method)
        scores = ctx.score(method, test_features, train_features)[chosen]  # [n_test, n_pool]
        bad = np.flatnonzero(~np.isfinite(scores).all(axis=1))
        if bad.size:
            raise DataError(f"removal: {method.name}'s scores of test example '{test[chosen[bad[0]]].id}' are not "
                            f"all finite (NaN or inf); its top rows are undefined")
        tiebreak = [np.random.default_rng([cfg.seed, n, int(t), 7]).permutation(n) for t in chosen]
        removed = [[top_rows(scores[i], size, tiebreak[i]) for i in range(len(chosen))] for size in sizes]
        requests = [(removed[f][i], s) for s in seeds for f in range(len(sizes)) for i in range(len(chosen))]
        with ctx.acct.phase("eval") as ph:
            method_losses, method_s, ran, distinct = ctx.retrain_without(requests, eval_ids=eval_ids,
                                                                         desc=f"removals of {method.name}")
            ph.count, ph.cached_count = distinct, distinct - ran
            ph.cached, ph.original_wall_s = ran == 0, method_s
            # row (s, f, j) is the run without test example j's removal; its column i is test example i's loss
            method_losses = method_losses.reshape(len(seeds), len(sizes), len(chosen), len(chosen))
            own = np.diagonal(method_losses, axis1=2, axis2=3)  # [S, F, n_test]
            cross = method_losses.mean(axis=0)  # [F, whose removal, evaluated], seed means
            effects = [removal_effects(own[:, f], random_losses[:, f], whole) for f in range(len(sizes))]
            specific = [specificity(cross[f], chosen_labels) for f in range(len(sizes))]
            within = [specificity(cross[f], chosen_labels, same_label=True) for f in range(len(sizes))]
            clusters = ctx.clusters([test[i] for i in chosen])
            unit = draws_label(clusters)
            weights = ctx.draws(len(chosen), 13, n_resamples=cfg.bootstrap_resamples, clusters=clusters)
            draw_idx = ctx.rng(14).integers(0, cfg.random_draws, size=(cfg.bootstrap_resamples, cfg.random_draws))
            two_way = f"{unit} x random draws"
            metrics: dict[str, Metric] = {}
            head = cfg.fractions.index(cfg.headline_fraction)
            chance = 1.0 / (cfg.random_draws + 1)
            for f, (fraction, eff) in enumerate(zip(cfg.fractions, effects, strict=True)):
                share = share_text(fraction)
                reps = two_way_replicates(eff["increase"], eff["draw_increase"], weights, draw_idx)
                ok = np.isfinite(specific[f])
                ok_within = np.isfinite(within[f])
                named = {
                    "gain": Metric.from_replicates(
                        float(eff["gain"].mean()), reps["gain"], draws=two_way, n=len(chosen),
                        note=f"loss increase after removing the method's top {share} minus a random {share}'s, "
                             f"nats; mean over {cfg.seeds} seed(s) and {cfg.random_draws} draws"),
                    "beats_random": Metric.from_replicates(
                        float(eff["beats"].mean()), reps["beats"], draws=two_way, n=len(chosen),
                        note=f"share of test examples whose increase beats all {cfg.random_draws} random draws "
                             f"(chance {chance:.2f} for a ranking unrelated to the loss)"),
                    "specific": Metric.from_replicates(
                        float(np.nanmean(specific[f])) if ok.any() else float("nan"),
                        replicate_means(np.where(ok, specific[f], np.nan), weights), draws=unit, n=int(ok.sum()),
                        note=f"loss after its own top-{share} removal minus after those of test examples of other "
                             f"labels; the removals fixed"),
                    "within_label": Metric.from_replicates(
                        float(np.nanmean(within[f])) if ok_within.any() else float("nan"),
                        replicate_means(np.where(ok_within, within[f], np.nan), weights), draws=unit,
                        n=int(ok_within.sum()),
                        note=f"loss after its own top-{share} removal minus after those of the other test examples "
                             f"of its label (what the method knows beyond the label); the removals fixed"),
                    "increase": Metric.from_replicates(
                        float(eff["increase"].mean()), replicate_means(eff["increase"], weights), draws=unit,
                        n=len(chosen), note=f"loss increase after removing the top {share}"),
                    "increase_random": Metric.from_replicates(
                        float(eff["increase_random"].mean()), reps["increase_random"], draws=two_way,
                        n=len(chosen), test="none",
                        note=f"loss increase after removing a random {share} (the same for every method)")}
                for name, metric in named.items():
                    if not np.isfinite(metric.value):  # a control no test example qualifies for: no metric
                        continue
                    metrics[f"{name}_{share_name(fraction)}"] = metric
                    if f == head:
                        metrics[name] = metric
            seed_facts = {}
            if cfg.seeds >= 2:
                g = effects[head]["seed_gain"]
                seed_facts = {"gain_seed_spearman": float(spearman_rows(g[:1], g[1:2])[0]),
                              "gain_sign_agreement": float((np.sign(g[0]) == np.sign(g[1])).mean())}
            # the noise a single random removal carries: the draws' spread of the loss, per test example
            random_sd = {share_name(fr): float(np.std(random_losses[:, f].mean(axis=0), axis=0, ddof=1).mean())
                         if cfg.random_draws >= 2 else None for f, fr in enumerate(cfg.fractions)}

        # what the removals are made of: the share of removed rows with the test example's label, and the
        # share of the pool's rows of that label that were removed (on the generated suites, its task)
        label_facts = {}
        pool_labels = np.array([e.labels.get(kind, "") if kind else "" for e in pool])
        if kind and all(pool_labels):
            same = [[pool_labels[np.array(rows)] == chosen_labels[i] for i, rows in enumerate(removed[f])]
                    for f in range(len(sizes))]
            label_facts = {
                "same_label_share": {share_name(fr): float(np.mean([x.mean() for x in same[f]]))
                                     for f, fr in enumerate(cfg.fractions)},
                "label_pool_removed": {share_name(fr): float(np.mean(
                    [x.sum() / max(1, int((pool_labels == chosen_labels[i]).sum())) for i, x in enumerate(same[f])]))
                    for f, fr in enumerate(cfg.fractions)}}

        def rows_ordigest(rows: list) -> list | str:
            return rows if n <= 20_000 else digest(rows)  # a paper-scale pool's removals: a digest, not the rows

        return TaskOutput(
            metrics=metrics, per_example={"gain": effects[head]["gain"].tolist(),
                                          "beats_random": effects[head]["beats"].tolist(),
                                          "specific": specific[head].tolist(),
                                          "within_label": within[head].tolist()},
            extra={"test_rows": chosen, "label_kind": kind, "sizes": sizes, "n_train": n,
                   "removed": {share_name(fr): rows_ordigest(removed[f]) for f, fr in enumerate(cfg.fractions)},
                   "random_removed": {share_name(fr): rows_ordigest(random_sets[f])
                                      for f, fr in enumerate(cfg.fractions)},
                   "seeds": seeds, "whole_loss": whole.tolist(),  # [S, n_test]
                   "method_loss": own.tolist(),  # [S, F, n_test]
                   "cross_loss": cross.tolist(),  # [F, whose removal, evaluated]
                   "random_loss": random_losses.tolist(),  # [S, F, draws, n_test]
                   "seed_gain": {share_name(fr): effects[f]["seed_gain"].tolist()
                                 for f, fr in enumerate(cfg.fractions)},
                   "random_sd": random_sd, **seed_facts, **label_facts,
                   "retraining_s": produced_s + method_s, "dim": method.dim(train_features)},
            headline="gain", clusters=clusters,
            pairing={"tests": digest(chosen), "random": digest(shared_rows), "seeds": seeds,
                     "fractions": list(cfg.fractions), "headline_fraction": cfg.headline_fraction,
                     "n_resamples": cfg.bootstrap_resamples})
