"""AirRep's training data: retraining tables on splits of `airrep_train`, normalised as the paper's Eq. 8."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.api import DataError, MethodContext


@dataclass
class Split:
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


def split_ids(config, n_available: int, s: int) -> tuple[np.ndarray, np.ndarray]:
    """Split `s`: (pool positions, dev positions) in airrep_train, drawn from (seed, s)."""
    perm = np.random.default_rng([config.seed, s, 17]).permutation(n_available)
    return perm[config.dev_size: config.dev_size + config.pool_size], perm[: config.dev_size]


def generate(config, ctx: MethodContext) -> tuple[list[Split], float]:
    """Every split's retraining table through the harness (`ctx.retrain`, cached job by job), timed.

    Returns:
        (the splits, the seconds the retraining took when it ran: its original cost also when cached).
    """
    c = config
    n_available = len(ctx.suite.split("airrep_train"))
    if c.pool_size + c.dev_size > n_available:
        raise DataError(
            f"airrep: suite '{ctx.suite.name}' has {n_available} airrep_train examples, fewer than pool_size + "
            f"dev_size = {c.pool_size + c.dev_size}; lower them (--set pool_size=... dev_size=...)")
    splits = []
    with ctx.phase("setup/datagen", count=c.n_splits * c.subsets_per_split) as ph:
        compute_s, ran = 0.0, 0
        for s in range(c.n_splits):
            pool_ids, dev_ids = split_ids(c, n_available, s)
            table, ran_now = ctx.retrain(
                pool_split="airrep_train", eval_split="airrep_train", pool_ids=tuple(int(i) for i in pool_ids),
                eval_ids=tuple(int(i) for i in dev_ids), num_subsets=c.subsets_per_split,
                fraction=c.subset_fraction, seed=c.seed * 1000 + s, desc=f"airrep data {s + 1}/{c.n_splits}")
            ran += ran_now
            compute_s += float(table.wall_s.sum())
            members = np.stack([np.flatnonzero(m) for m in table.masks])
            splits.append(Split(pool_ids, dev_ids, members, table.losses, normalise_losses(table.losses)))
        ph.cached_count = c.n_splits * c.subsets_per_split - ran
        ph.cached, ph.original_wall_s = ran == 0, compute_s
    return splits, compute_s
