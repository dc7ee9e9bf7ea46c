"""Helpers for plugin authors' tests: a toy method, toy examples and tiny run and method contexts.

from bench.testing import ToyMethod, toy_examples, tiny_context, tiny_method_context
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.api import Examples, Features, Method, MethodConfig, MethodContext, Role, RunContext
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
    """A run context (what a task sees) on the `tiny` suite with its own cache directory."""
    return RunContext(load_suite("tiny"), cache=Cache(cache_dir), seed=seed)


def tiny_method_context(cache_dir: Path, seed: int = 0) -> MethodContext:
    """A method context (what `Method.setup` gets) on the `tiny` suite with its own cache directory."""
    return tiny_context(cache_dir, seed).method_context()


def _true_nbytes(features: Features) -> int:
    """Size of a feature matrix computed independently of `Method.storage_bytes`."""
    if hasattr(features, "indptr"):
        return sum(a.nbytes for a in (features.data, features.indices, features.indptr))
    if hasattr(features, "untyped_storage"):
        return features.numel() * features.element_size()
    return np.asarray(features).nbytes


def _dense(features: Features) -> np.ndarray:
    if hasattr(features, "toarray"):
        return features.toarray()
    if hasattr(features, "detach"):
        return features.detach().cpu().numpy()
    return np.asarray(features)


def _rows(features: Features, idx: np.ndarray) -> Features:
    """Rows `idx` of features of any kind the contract allows (array, memory map, CSR, tensor)."""
    if hasattr(features, "detach"):
        import torch

        return features[torch.as_tensor(idx)]
    return features[idx] if hasattr(features, "toarray") else np.asarray(features)[idx]


def check_method_contract(make_method, ctx: MethodContext | RunContext, n_train: int = 24,
                          n_test: int = 6) -> None:
    """Assert the method contract on the first examples of the context's suite.

    `ctx`: the method context its `setup` gets (a run context's own, `RunContext.method_context`, if given one).

    `make_method()` must return a fresh, not yet set-up instance. Checks: a method with a `fit` refuses to
    featurise before it; featurising only transforms (the pool's first rows featurised on their own, after
    fitting on the whole pool, equal the pool's rows); featurize shapes and a numeric dtype; finite scores
    of shape [n_test, n_train]; determinism (a second fresh instance gives identical scores); reordered and
    partial features score as the matching entries (reversed tests against a third of the pool); `group_score`
    of single-member subsets equals `score`; the config round-trips through JSON; the storage reported
    equals the real size of the train features. Raises AssertionError on a breach.
    """
    import json

    from bench.config import from_dict, to_jsonable

    if isinstance(ctx, RunContext):
        ctx = ctx.method_context()
    train = ctx.suite.split("train")[:n_train]
    test = ctx.suite.split("test")[:n_test]

    def run_once(before_fit: bool = False):
        method = make_method()
        method.check()
        method.setup(ctx)
        if before_fit and type(method).fit is not Method.fit:
            try:
                method.featurize(test, "test")
            except RuntimeError:
                pass
            else:
                raise AssertionError("featurize ran before fit: a fitted method must refuse it")
        method.fit(train)
        tr = method.featurize(train, "train")
        te = method.featurize(test, "test")
        return method, tr, te, method.score(te, tr)

    method, tr, te, scores = run_once(before_fit=True)
    head = method.featurize(train[:5], "train")  # transformed with what the whole pool fitted
    assert head.shape[0] == 5
    np.testing.assert_allclose(_dense(head).astype(np.float64), _dense(tr)[:5].astype(np.float64), rtol=1e-4,
                               atol=1e-5, err_msg="featurize refitted: the pool's rows differ on their own")
    for feats, n in ((tr, n_train), (te, n_test)):
        assert len(feats.shape) == 2 and feats.shape[0] == n, f"features of shape {feats.shape}, expected [{n}, d]"
        kind = _dense(feats).dtype.kind
        assert kind in "fiu", f"features must be numeric, got dtype {_dense(feats).dtype}"
    if method.pairwise:  # handles to the examples; dim and storage are what the method keeps
        assert tr.shape[1] == 1 and method.dim(tr) > 0 and method.storage_bytes(tr) > 0
    else:
        assert method.dim(tr) == tr.shape[1] > 0
    assert scores.shape == (n_test, n_train), f"score shape {scores.shape}"
    assert np.isfinite(scores).all(), "non-finite scores"

    _, _, _, again = run_once()
    np.testing.assert_array_equal(again, scores, err_msg="scores differ between two fresh instances")

    # scores follow the features given, not the order they were made in (a pairwise method's handles included)
    rev, some = np.arange(n_test)[::-1].copy(), np.random.default_rng(0).permutation(n_train)[:max(2, n_train // 3)]
    np.testing.assert_allclose(method.score(_rows(te, rev), _rows(tr, some)), scores[rev][:, some], rtol=1e-4,
                               atol=1e-6 * max(1.0, float(np.abs(scores).max())),
                               err_msg="scores of reordered, partial features must be the matching entries")

    singles = np.eye(n_train, dtype=bool)
    group = method.group_score(te, tr, singles)
    assert group.shape == (n_test, n_train)
    np.testing.assert_allclose(group, scores, rtol=1e-5, atol=1e-6,
                               err_msg="group_score of one-member subsets must equal score")
    pairs = np.zeros((2, n_train), dtype=bool)
    pairs[0, :2] = pairs[1, 2:5] = True
    assert np.isfinite(method.group_score(te, tr, pairs)).all()

    cfg = method.config
    assert from_dict(type(cfg), json.loads(json.dumps(to_jsonable(cfg)))) == cfg, "config does not round-trip"
    assert method.pairwise or method.storage_bytes(tr) == _true_nbytes(tr), \
        "storage bytes differ from the real feature size"
