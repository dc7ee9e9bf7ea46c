"""The method contract, checked for every registered method (later methods are checked for free)."""

import pytest

from bench.api import methods
from bench.testing import ToyMethod, check_method_contract, tiny_context

HEAVY = {"gte", "gte_attn", "airrep", "airrep_sum",  # load a 22M-parameter encoder: seconds, not milliseconds
         "ekfac"}  # kronfluence fits and eigendecomposes its factors three times: tens of seconds


# precomputed scores (`scores`) have no features or storage of their own: tests/test_external.py checks them
@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in methods.names()
    if not methods.get(n).precomputed
])
def test_contract(name, tiny_cache):
    cls = methods.get(name)
    check_method_contract(lambda: cls(cls.smoke_config()), tiny_context(tiny_cache))


def test_toy_method_passes_the_contract(tiny_cache):
    check_method_contract(lambda: ToyMethod(), tiny_context(tiny_cache))


def test_contract_catches_a_broken_method(tiny_cache):
    class Nondeterministic(ToyMethod):
        instances = 0

        def __init__(self):
            super().__init__()
            Nondeterministic.instances += 1
            self.offset = Nondeterministic.instances  # each fresh instance shifts its features

        def featurize(self, examples, role):
            return super().featurize(examples, role) + self.offset

    with pytest.raises(AssertionError, match="differ between two fresh instances"):
        check_method_contract(lambda: Nondeterministic(), tiny_context(tiny_cache))


def test_the_contract_catches_a_method_that_refits_in_featurize(tiny_cache):
    """A featurize that fits on whatever it is given breaks 'featurize only transforms'."""

    class Refits(ToyMethod):
        def fit(self, examples):
            self._fitted = True

        def featurize(self, examples, role):
            if not getattr(self, "_fitted", False):
                raise RuntimeError("fit first")
            base = super().featurize(examples, role)
            return base - base.mean(axis=0, keepdims=True)  # depends on the set it is given

    with pytest.raises(AssertionError, match="featurize refitted"):
        check_method_contract(lambda: Refits(), tiny_context(tiny_cache))


def test_the_contract_catches_a_pairwise_method_that_ignores_its_handles(tiny_cache):
    """Handles of a pairwise method are the same integers whatever the set: the scores must follow them."""
    import numpy as np

    class Ignores(ToyMethod):
        pairwise = True

        def fit(self, examples):
            self._pool, self._kept = super().featurize(examples, "train"), {}

        def featurize(self, examples, role):  # stable handles, as the ekfac method's
            if not hasattr(self, "_pool"):
                raise RuntimeError("fit first")
            rows = super().featurize(examples, role)
            for e, row in zip(examples, rows, strict=True):
                self._kept.setdefault(e.id, (len(self._kept), row))
            return np.array([[self._kept[e.id][0]] for e in examples], dtype=np.int64)

        def score(self, test_features, train_features):  # wrong: the kept rows in the order they came
            rows = np.stack([row for _, row in self._kept.values()])
            n_pool = len(self._pool)
            return rows[n_pool: n_pool + len(test_features)] @ rows[: len(train_features)].T

        def dim(self, train_features):
            return self._pool.shape[1]

        def storage_bytes(self, train_features):
            return self._pool.nbytes

    with pytest.raises(AssertionError, match="reordered, partial features"):
        check_method_contract(lambda: Ignores(), tiny_context(tiny_cache))


def test_the_contract_catches_a_method_that_featurises_before_fit(tiny_cache):
    class NoGuard(ToyMethod):
        def fit(self, examples):
            pass

    with pytest.raises(AssertionError, match="featurize ran before fit"):
        check_method_contract(lambda: NoGuard(), tiny_context(tiny_cache))


def test_a_method_cannot_read_the_ground_truth(tiny_cache):
    """The test losses are what a method is evaluated against: its context has no way to them.

    `Method.setup` gets a `MethodContext`, which holds neither the ground truth, the leave-one-out losses nor
    the selection fine-tunings, nor the task-facing `RunContext` they live on; retraining measures no test loss.
    """
    from bench.api import MethodContext, RunContext

    ctx = tiny_context(tiny_cache)
    seen = {}

    class Peeks(ToyMethod):
        def setup(self, ctx):
            seen["ctx"] = ctx
            self.truth = ctx.ground_truth()

    with pytest.raises(AttributeError, match="ground_truth"):
        ctx.setup(Peeks())
    mctx = seen["ctx"]
    assert type(mctx) is MethodContext
    for name in ("ground_truth", "leave_one_out", "finetune_answers", "featurize", "score", "group_score",
                 "setup", "profile", "method_context"):
        assert not hasattr(mctx, name), name

    def reachable(obj, depth=0):  # every object the method context holds, a few levels down
        yield obj
        if depth < 3 and hasattr(obj, "__dict__") and not isinstance(obj, type):
            for value in vars(obj).values():
                yield from reachable(value, depth + 1)

    assert not any(isinstance(o, RunContext) for o in reachable(mctx)), "the method context reaches a RunContext"
    with pytest.raises(ValueError, match="test split"):
        mctx.retrain(pool_split="train", eval_split="test", num_subsets=2, fraction=0.5, seed=0)
    with pytest.raises(ValueError, match="setup/"):
        mctx.phase("ground_truth")
    assert ctx.ground_truth().losses.shape == (16, 64)  # a task still can, after the method's call
