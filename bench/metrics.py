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

    Two disjoint halves of h = floor(S/2) seeds each (the first h and the next h); per example, the
    Spearman correlation r over subsets between the halves' mean losses (the reliability of an h-seed
    mean), stepped up to the mean of all S seeds by the Spearman-Brown formula k r / (1 + (k - 1) r) with
    k = S / h (k = 2, 2r / (1 + r), for even S). Spearman-Brown is a classical-test-theory result for
    Pearson correlations, used here on Spearman's: an approximation.

    Args:
        seed_losses: float [S, M, n], S >= 2 seeds of M subsets.

    Returns:
        float [n]: the reliability of the S-seed mean loss; NaN where a half is constant over subsets.
    """
    seed_losses = np.asarray(seed_losses, dtype=np.float64)
    if seed_losses.ndim != 3 or seed_losses.shape[0] < 2:
        raise ValueError(f"expected [S >= 2, M, n] losses, got shape {seed_losses.shape}")
    half = seed_losses.shape[0] // 2
    a, b = seed_losses[:half].mean(axis=0), seed_losses[half:2 * half].mean(axis=0)
    r = spearman_rows(a.T, b.T)
    k = seed_losses.shape[0] / half
    with np.errstate(invalid="ignore", divide="ignore"):
        return k * r / (1 + (k - 1) * r)


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


def ceiling_subset_variance(seed_losses: np.ndarray) -> float:
    """Delete-one jackknife variance, over the retrained subsets, of the mean noise ceiling.

    The ceiling is estimated from these M subsets; another draw of subsets would give another estimate. The
    jackknife (leave each subset out, recompute the mean over examples of `noise_ceiling`) measures that,
    without the ties a bootstrap of subsets would put into the rank correlations.

    Args:
        seed_losses: float [S, M, n].

    Returns:
        (M - 1) / M * sum_j (theta_-j - mean theta)^2.
    """
    m = seed_losses.shape[1]
    theta = np.array([np.nanmean(noise_ceiling(np.delete(seed_losses, j, axis=1))) for j in range(m)])
    return float((m - 1) / m * ((theta - theta.mean()) ** 2).sum())


def lds_replicates(group_scores: np.ndarray, test_losses: np.ndarray, *, row_weights: np.ndarray,
                   subset_draws: np.ndarray) -> np.ndarray:
    """Two-way bootstrap of the mean LDS: test examples (or clusters of them) and retrained subsets together.

    Replicate b weighs test example i by `row_weights[b, i]` (how often `bench.stats.draw_weights` drew it),
    recomputes every example's Spearman over the subsets `subset_draws[b]` (a subset drawn twice counts
    twice, tied in the ranks) and takes the weighted mean (NaN excluded). The subsets are a sample too: a
    method's LDS on another draw of M subsets would differ, and a CI over test examples alone leaves that out.

    Args:
        group_scores: float [n_test, M].
        test_losses: float [M, n_test].
        row_weights: float [B, n_test].
        subset_draws: int [B, M], subsets drawn with replacement.

    Returns:
        float [B], the replicates' mean LDS.
    """
    target = -np.asarray(test_losses, dtype=np.float64).T  # [n_test, M]
    scores = np.asarray(group_scores, dtype=np.float64)
    out = np.empty(len(row_weights))
    for b, (w, cols) in enumerate(zip(row_weights, subset_draws, strict=True)):
        rho = spearman_rows(scores[:, cols], target[:, cols])
        ok = np.isfinite(rho) & (w > 0)
        out[b] = (w[ok] * rho[ok]).sum() / w[ok].sum() if ok.any() else np.nan
    return out


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
