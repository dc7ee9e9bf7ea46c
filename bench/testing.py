"""Helpers for plugin authors' tests: a toy method, toy examples and a tiny run context.

from bench.testing import ToyMethod, toy_examples, tiny_context
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.api import Examples, Features, Method, MethodConfig, Role, RunContext
from bench.cache import Cache
from bench.data import Example
from bench.suites import load_suite


@dataclass(frozen=True, kw_only=True)
class ToyConfig(MethodConfig):
    """Options of `ToyMethod`."""

    dim: int = field(default=8, metadata={"help": "Feature width."})


class ToyMethod(Method):
    """Bag of hashed characters: deterministic, dependency-free features for harness tests (not registered)."""

    name = "toy"
    config_cls = ToyConfig

    def featurize(self, examples: Examples, role: Role) -> Features:
        """Character counts hashed into `dim` buckets, float32 [n, dim]."""
        out = np.zeros((len(examples), self.config.dim), dtype=np.float32)
        for i, e in enumerate(examples):
            for ch in e.text():
                out[i, ord(ch) % self.config.dim] += 1.0
        return out


def toy_examples(n: int = 8, split: str = "toy") -> list[Example]:
    """`n` small examples with `task` and `family` labels."""
    return [Example(id=f"{split}-{i}", prompt=f"What is {i} + {i}?", response=str(2 * i),
                    labels={"task": "addition" if i % 2 else "parity", "family": "arithmetic"})
            for i in range(n)]


def tiny_context(cache_dir: Path, seed: int = 0) -> RunContext:
    """A run context on the `tiny` suite with its own cache directory."""
    return RunContext(load_suite("tiny"), cache=Cache(cache_dir), seed=seed)
