import numpy as np

from bench.api import methods
from bench.testing import toy_examples


def test_random_scores_are_uniform_independent_and_order_free():
    method = methods.get("random")()
    train, test = toy_examples(300, "train"), toy_examples(40, "test")
    s = method.score(method.featurize(test, "test"), method.featurize(train, "train"))
    assert s.shape == (40, 300) and (s >= 0).all() and (s < 1).all()
    assert abs(s.mean() - 0.5) < 0.02
    assert abs(np.corrcoef(s[0], s[1])[0, 1]) < 0.2  # rows are not the same ranking
    perm = np.arange(300)[::-1]
    s2 = method.score(method.featurize(test, "test"), method.featurize([train[i] for i in perm], "train"))
    np.testing.assert_array_equal(s2, s[:, perm])
    other = methods.get("random")(methods.get("random").config_cls(seed=1))
    assert not np.array_equal(other.score(other.featurize(test, "test"), other.featurize(train, "train")), s)
