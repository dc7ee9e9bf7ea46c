import numpy as np
import pytest
from scipy import stats

from bench.metrics import lds, spearman_rows


def test_lds_hand_computed():
    # 2 test examples, 4 subsets. Test 0: group scores rank the subsets 1<2<3<4 and losses fall in the same
    # order (so -loss rises): rho = 1. Test 1: scores 4,3,2,1 against -loss ranks 1,2,4,3:
    # d = (4-1, 3-2, 2-4, 1-3) -> sum d^2 = 9+1+4+4 = 18, rho = 1 - 6*18/(4*15) = -0.8.
    group = np.array([[1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0]])
    losses = np.array([[4.0, 0.9], [3.0, 0.8], [2.0, 0.1], [1.0, 0.5]])  # [M, n_test]
    np.testing.assert_allclose(lds(group, losses), [1.0, -0.8])


def test_spearman_rows_matches_scipy_with_ties():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 4, size=(5, 12)).astype(float)
    b = rng.normal(size=(5, 12))
    expected = [stats.spearmanr(a[i], b[i]).statistic for i in range(5)]
    np.testing.assert_allclose(spearman_rows(a, b), expected, rtol=1e-12)


def test_constant_rows_are_nan():
    a = np.array([[1.0, 1.0, 1.0], [1.0, 2.0, 3.0]])
    b = np.array([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]])
    assert np.isnan(spearman_rows(a, b)).all()


def test_lds_shape_mismatch():
    with pytest.raises(ValueError, match="does not match"):
        lds(np.zeros((2, 3)), np.zeros((2, 3)))


def test_split_half_reliability_steps_up_to_every_seed():
    """Hand-computed: the halves' Spearman r, stepped up by k r / (1 + (k - 1) r) with k = S / floor(S/2)."""
    import numpy as np
    from scipy.stats import spearmanr

    from bench.metrics import noise_ceiling, split_half_reliability

    rng = np.random.default_rng(0)
    truth = rng.normal(size=(12, 3))  # [M subsets, n examples]
    seeds = truth[None] + rng.normal(scale=0.7, size=(4, 12, 3))
    for s, k in ((2, 2.0), (3, 3.0), (4, 2.0)):
        h = s // 2
        got = split_half_reliability(seeds[:s])
        for j in range(3):
            r = spearmanr(seeds[:h, :, j].mean(0), seeds[h:2 * h, :, j].mean(0)).statistic
            assert got[j] == pytest.approx(k * r / (1 + (k - 1) * r), rel=1e-12)
    ceiling = noise_ceiling(seeds[:2])
    assert np.all((ceiling >= 0) & (ceiling <= 1))
    np.testing.assert_allclose(ceiling, np.sqrt(np.clip(split_half_reliability(seeds[:2]), 0, 1)))
