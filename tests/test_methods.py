"""The method contract, checked for every registered method (later methods are checked for free)."""

import pytest

from bench.api import methods
from bench.testing import ToyMethod, check_method_contract, tiny_context

HEAVY = {"gte", "gte_attn", "airrep", "airrep_sum"}  # load a 22M-parameter encoder: seconds, not milliseconds


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in methods.names()
])
def test_contract(name, tiny_cache):
    cls = methods.get(name)
    check_method_contract(lambda: cls(cls.smoke_config()), tiny_context(tiny_cache))


def test_toy_method_passes_the_contract(tiny_cache):
    check_method_contract(lambda: ToyMethod(), tiny_context(tiny_cache))


def test_contract_catches_a_broken_method(tiny_cache):
    class Nondeterministic(ToyMethod):
        calls = 0

        def featurize(self, examples, role):
            Nondeterministic.calls += 1
            return super().featurize(examples, role) + Nondeterministic.calls

    with pytest.raises(AssertionError, match="differ between two fresh instances"):
        check_method_contract(lambda: Nondeterministic(), tiny_context(tiny_cache))
