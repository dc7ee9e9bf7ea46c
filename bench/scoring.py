"""Group scoring shared by several methods: AirRep's attention pooling, in one implementation."""

from __future__ import annotations

import numpy as np


def attention_pool(scores, members, valid=None):  # torch: ([n, pool], long [K, m], bool [K, m]) -> [n, K]
    """AirRep's attention pooling: f(S, z) = sum_i alpha_i s_i with alpha = softmax over members of |s_i|.

    Temperature 1, as in the paper and the authors' code; differentiable (AirRep trains through it).

    Args:
        scores: float tensor [n, pool], pair scores s of n queries against a pool.
        members: long tensor [K, m], each subset's members as positions in the pool.
        valid: optional bool tensor [K, m]: which entries of `members` are members (subsets of unequal size,
            padded); every entry when None.

    Returns:
        float tensor [n, K]; a subset without members scores 0.
    """
    gathered = scores[:, members]  # [n, K, m]
    weights = gathered.abs()
    if valid is not None:
        weights = weights.masked_fill(~valid, float("-inf"))
        gathered = gathered.masked_fill(~valid, 0.0)
    alpha = weights.softmax(dim=-1).nan_to_num(0.0)  # an empty subset: all -inf, no weight anywhere
    return (alpha * gathered).sum(dim=-1)


def attention_group_score(scores: np.ndarray, masks: np.ndarray, chunk: int = 8) -> np.ndarray:
    """`attention_pool` of float64 pair scores [n_test, n_train] over subsets given as masks [M, n_train].

    Subsets go `chunk` at a time, so memory stays at n_test x chunk x largest subset.

    Returns:
        float64 [n_test, M]; a subset without members scores 0. For one-member subsets f is the pair score.
    """
    import torch

    s = torch.as_tensor(np.asarray(scores, dtype=np.float64))
    masks = np.asarray(masks, dtype=bool)
    out = np.zeros((s.shape[0], masks.shape[0]), dtype=np.float64)
    for start in range(0, masks.shape[0], chunk):
        block = masks[start: start + chunk]
        width = max(1, int(block.sum(axis=1).max()))
        members = np.zeros((len(block), width), dtype=np.int64)
        valid = np.zeros((len(block), width), dtype=bool)
        for row, mask in enumerate(block):
            idx = np.flatnonzero(mask)
            members[row, : len(idx)], valid[row, : len(idx)] = idx, True
        out[:, start: start + len(block)] = attention_pool(s, torch.from_numpy(members),
                                                           torch.from_numpy(valid)).numpy()
    return out
