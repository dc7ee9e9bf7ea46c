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


def resample_indices(n: int, *, rng: np.random.Generator, n_resamples: int) -> np.ndarray:
    """Bootstrap draws of `n` positions with replacement, int [n_resamples, n].

    Drawn from `rng` alone, so every method evaluated with the same generator state on the same suite gets
    the same draws: their replicates are paired.
    """
    return rng.integers(0, n, size=(n_resamples, n))


def replicate_means(values: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """Mean of `values` (NaN excluded) under each bootstrap draw of positions, float [n_resamples]."""
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    clean = np.where(finite, values, 0.0)
    counts = np.stack([np.bincount(d, minlength=len(values)) for d in draws]).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (counts @ clean) / (counts @ finite.astype(np.float64))


def lds_replicates(group_scores: np.ndarray, test_losses: np.ndarray, *, rng: np.random.Generator,
                   n_resamples: int = 1000) -> np.ndarray:
    """Two-way bootstrap of the mean LDS: test examples and retrained subsets resampled together.

    Each replicate draws n_test test examples and M subsets with replacement, recomputes every drawn
    example's Spearman over the drawn subsets (a subset drawn twice counts twice, tied in the ranks) and
    averages over the drawn examples (NaN excluded). The subsets are a sample too: a method's LDS on
    another draw of M subsets would differ, and a CI over test examples alone leaves that out.

    Args:
        group_scores: float [n_test, M].
        test_losses: float [M, n_test].
        rng: the resampling generator (test draws first, then subset draws, so that methods pair).
        n_resamples: replicates.

    Returns:
        float [n_resamples], the replicates' mean LDS.
    """
    n_test, m = group_scores.shape
    rows = resample_indices(n_test, rng=rng, n_resamples=n_resamples)
    cols = resample_indices(m, rng=rng, n_resamples=n_resamples)
    target = -np.asarray(test_losses, dtype=np.float64).T  # [n_test, M]
    scores = np.asarray(group_scores, dtype=np.float64)
    out = np.empty(n_resamples)
    for b in range(n_resamples):
        rho = spearman_rows(scores[:, cols[b]], target[:, cols[b]])
        w = np.bincount(rows[b], minlength=n_test).astype(np.float64)
        ok = np.isfinite(rho)
        out[b] = (w[ok] * rho[ok]).sum() / w[ok].sum() if w[ok].sum() else np.nan
    return out


def percentile_interval(point: float, replicates: np.ndarray) -> Interval:
    """`point` with the 2.5 / 97.5 percentiles of its bootstrap replicates (NaN replicates dropped)."""
    reps = np.asarray(replicates, dtype=np.float64)
    reps = reps[np.isfinite(reps)]
    if reps.size == 0:
        return Interval(point, point, point)
    return Interval(point, float(np.percentile(reps, 2.5)), float(np.percentile(reps, 97.5)))


def paired_difference(a: np.ndarray, b: np.ndarray, a_replicates: np.ndarray, b_replicates: np.ndarray) -> dict:
    """Method a minus method b on the same examples: mean difference, its paired bootstrap CI, Wilcoxon p.

    Args:
        a: float [n], per-example values of method a (NaN where undefined; dropped pairwise).
        b: float [n], method b's on the same examples.
        a_replicates: float [B], a's bootstrap replicates.
        b_replicates: float [B], b's under the same draws.

    Returns:
        `{"mean", "ci_low", "ci_high", "p_wilcoxon", "p_bootstrap", "n"}`: the CI from the replicate
        differences and the two-sided p-value they give (every source the replicates resample: on LDS,
        test examples and subsets), and the two-sided Wilcoxon signed-rank p-value (scipy) of the
        per-example differences, which holds the subsets fixed (conditional on this draw of subsets).
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or np.shape(a_replicates) != np.shape(b_replicates):
        raise ValueError("paired_difference needs values of the same examples and replicates of the same draws")
    ok = np.isfinite(a) & np.isfinite(b)
    diff = a[ok] - b[ok]
    interval = percentile_interval(float(np.nanmean(a) - np.nanmean(b)),
                                   np.asarray(a_replicates) - np.asarray(b_replicates))
    p = float(stats.wilcoxon(diff).pvalue) if diff.size and np.any(diff != 0) else 1.0
    reps = np.asarray(a_replicates, dtype=np.float64) - np.asarray(b_replicates, dtype=np.float64)
    reps = reps[np.isfinite(reps)]
    p_boot = float(min(1.0, 2 * min(np.mean(reps <= 0), np.mean(reps >= 0)))) if reps.size else 1.0
    return {"mean": interval.mean, "ci_low": interval.low, "ci_high": interval.high, "p_wilcoxon": p,
            "p_bootstrap": p_boot, "n": int(ok.sum())}


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
    point, boot = stratified_replicates(values, groups, rng=rng, n_resamples=n_resamples)
    return Interval(point, float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5)))


def stratified_replicates(values: np.ndarray, groups: np.ndarray, *, rng: np.random.Generator,
                          n_resamples: int = 2000) -> tuple[float, np.ndarray]:
    """The macro mean over groups and its bootstrap replicates, examples resampled within each group.

    The draws depend only on the group sizes and `rng`, so methods evaluated on the same examples pair.

    Returns:
        (point estimate, float [n_resamples] replicates).
    """
    labels = sorted(set(groups.tolist()))
    members = [values[groups == g] for g in labels]
    point = float(np.mean([m.mean() for m in members]))
    boot = np.zeros(n_resamples)
    for m in members:
        boot += m[rng.integers(0, len(m), size=(n_resamples, len(m)))].mean(axis=1)
    return point, boot / len(members)
