"""Metrics as pure functions on arrays (no I/O, no models, no hidden randomness).

One orientation everywhere: `scores` is float [n_test, n_train] and higher means the training example
helped the test example more; group scores are [n_test, n_subsets].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Interval:
    """A point estimate with a 95% confidence interval."""

    mean: float
    low: float
    high: float


def spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman correlation between matching rows of `a` and `b`, vectorised.

    Ranks each row once (average ranks for ties) and takes the Pearson correlation of the ranks.

    Args:
        a: float [n, m].
        b: float [n, m].

    Returns:
        float [n]; NaN for a row where either side is constant.
    """
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"expected two [n, m] arrays of one shape, got {a.shape} and {b.shape}")
    ra = stats.rankdata(a, axis=1)
    rb = stats.rankdata(b, axis=1)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    num = (ra * rb).sum(axis=1)
    den = np.sqrt((ra * ra).sum(axis=1) * (rb * rb).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = num / den
    rho[den == 0] = np.nan
    return rho


def lds(group_scores: np.ndarray, test_losses: np.ndarray) -> np.ndarray:
    """Linear datamodeling score per test example (Park et al. 2023, arXiv:2303.14186).

    Args:
        group_scores: float [n_test, n_subsets], the method's predicted benefit of each subset.
        test_losses: float [n_subsets, n_test], the loss of the LM fine-tuned on each subset.

    Returns:
        float [n_test]: Spearman rho over subsets between the group score and minus the loss; NaN where
        either is constant over subsets.
    """
    if group_scores.shape != test_losses.T.shape:
        raise ValueError(f"group_scores {group_scores.shape} does not match test_losses.T {test_losses.T.shape}")
    return spearman_rows(np.asarray(group_scores, dtype=np.float64), -np.asarray(test_losses, dtype=np.float64).T)


def split_half_reliability(seed_losses: np.ndarray) -> np.ndarray:
    """Per eval example, how reproducible the ground truth's ranking of subsets is across training seeds.

    The seeds are split into two halves (the first floor(S/2) and the rest); per example, the Spearman
    correlation over subsets between the halves' mean losses, stepped up to the full S seeds by the
    Spearman-Brown formula 2r / (1 + r) (exact for equal halves, as with S = 2).

    Args:
        seed_losses: float [S, M, n], S >= 2 seeds of M subsets.

    Returns:
        float [n]: the reliability of the S-seed mean loss; NaN where a half is constant over subsets.
    """
    seed_losses = np.asarray(seed_losses, dtype=np.float64)
    if seed_losses.ndim != 3 or seed_losses.shape[0] < 2:
        raise ValueError(f"expected [S >= 2, M, n] losses, got shape {seed_losses.shape}")
    half = seed_losses.shape[0] // 2
    a, b = seed_losses[:half].mean(axis=0), seed_losses[half:].mean(axis=0)
    r = spearman_rows(a.T, b.T)
    with np.errstate(invalid="ignore", divide="ignore"):
        return 2 * r / (1 + r)


def noise_ceiling(seed_losses: np.ndarray) -> np.ndarray:
    """Per eval example, the LDS that a perfect attribution could reach against this ground truth.

    A predictor that knew every subset's expected loss (over training seeds) correlates with the S-seed
    mean at the square root of that mean's reliability (`split_half_reliability`, clipped to [0, 1]):
    classical test theory's bound for a noise-free predictor of a noisy measurement.

    Args:
        seed_losses: float [S, M, n].

    Returns:
        float [n]; NaN where the reliability is undefined.
    """
    rel = split_half_reliability(seed_losses)
    return np.sqrt(np.clip(rel, 0.0, 1.0))


def bootstrap_mean(values: np.ndarray, *, rng: np.random.Generator, n_resamples: int = 2000) -> Interval:
    """Mean with a percentile-bootstrap 95% CI (scipy.stats.bootstrap), NaNs excluded.

    Raises:
        ValueError: no finite value.
    """
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        raise ValueError("no finite values to average")
    mean = float(finite.mean())
    if finite.size == 1 or np.all(finite == finite[0]):
        return Interval(mean, mean, mean)
    res = stats.bootstrap((finite,), np.mean, n_resamples=n_resamples, confidence_level=0.95,
                          method="percentile", rng=rng)
    return Interval(mean, float(res.confidence_interval.low), float(res.confidence_interval.high))


def unigram_f1(prediction: str, reference: str) -> float:
    """Unigram F1 between whitespace tokens (SQuAD-style: multiset overlap), lower-cased.

    Two empty strings score 1; one empty string scores 0.
    """
    from collections import Counter

    pred, ref = prediction.lower().split(), reference.lower().split()
    if not pred or not ref:
        return float(pred == ref)
    overlap = sum((Counter(pred) & Counter(ref)).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(pred), overlap / len(ref)
    return 2 * precision * recall / (precision + recall)


def stratified_bootstrap_macro_mean(values: np.ndarray, groups: np.ndarray, *, rng: np.random.Generator,
                                    n_resamples: int = 2000) -> Interval:
    """Mean over groups of the within-group mean, with a 95% CI resampling examples within each group.

    Args:
        values: float [n], one value per example.
        groups: [n] group label of each example.
        rng: the resampling generator.
        n_resamples: bootstrap resamples.
    """
    labels = sorted(set(groups.tolist()))
    members = [values[groups == g] for g in labels]
    point = float(np.mean([m.mean() for m in members]))
    boot = np.zeros(n_resamples)
    for m in members:
        boot += m[rng.integers(0, len(m), size=(n_resamples, len(m)))].mean(axis=1)
    boot /= len(members)
    return Interval(point, float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5)))
