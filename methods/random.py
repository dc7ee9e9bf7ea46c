"""Random scores: the sanity baseline whose LDS must be zero within its confidence interval."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from bench.api import Examples, Features, Method, MethodConfig, Role, register_method

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """The SplitMix64 finaliser, elementwise on uint64 (wrap-around arithmetic is intended)."""
    with np.errstate(over="ignore"):
        x = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
        x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
        x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
        return x ^ (x >> np.uint64(31))


@dataclass(frozen=True, kw_only=True)
class RandomConfig(MethodConfig):
    """Options of the random baseline."""

    seed: int = field(default=0, metadata={"help": "Seed of the random scores."})


@register_method("random", config=RandomConfig)
class RandomMethod(Method):
    """Random baseline: i.i.d. uniform score for every (test, train) pair, fixed by the seed.

    Each example is featurised as one 64-bit key (hash of seed, role and id); the score of a pair is a hash
    of the two keys mapped to [0, 1). Scores are therefore independent across pairs and do not depend on
    the order in which examples are given, and the method stores 8 bytes per training example.
    """

    family = "baseline"

    def featurize(self, examples: Examples, role: Role) -> Features:
        """One uint64 key per example, [n, 1]."""
        keys = [int.from_bytes(hashlib.blake2b(f"{self.config.seed}/{role}/{e.id}".encode(), digest_size=8)
                               .digest(), "little") for e in examples]
        return np.array(keys, dtype=np.uint64).reshape(-1, 1)

    def score(self, test_features: Features, train_features: Features) -> np.ndarray:
        """Uniform [0, 1) hash of each (test key, train key) pair, float [n_test, n_train]."""
        mixed = _splitmix64(test_features[:, :1] ^ _splitmix64(train_features[:, 0][None, :]))
        return (mixed >> np.uint64(11)).astype(np.float64) / float(1 << 53)
