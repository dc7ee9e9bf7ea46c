"""Group scoring shared by several methods."""

from __future__ import annotations

import numpy as np


def attention_group_score(scores: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """AirRep's attention pooling: f(S, z) = sum_i alpha_i s_i with alpha = softmax over members of |s_i|.

    Temperature 1, as in the paper and the authors' code. For one-member subsets f equals the pair score.

    Args:
        scores: float [n_test, n_train], pair scores s.
        masks: bool [M, n_train], subset membership.

    Returns:
        float64 [n_test, M]; a subset without members scores 0.
    """
    scores = np.asarray(scores, dtype=np.float64)
    magnitude = np.abs(scores)
    out = np.zeros((scores.shape[0], masks.shape[0]), dtype=np.float64)
    for m, mask in enumerate(np.asarray(masks, dtype=bool)):
        if not mask.any():
            continue
        a = magnitude[:, mask]
        w = np.exp(a - a.max(axis=1, keepdims=True))  # stable softmax over the members
        out[:, m] = (w * scores[:, mask]).sum(axis=1) / w.sum(axis=1)
    return out
