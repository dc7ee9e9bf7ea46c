from collections import Counter

from bench.generator import FAMILIES, TASK_NAMES, generate
from bench.suites import SPLITS, load_suite


def test_deterministic_and_seed_dependent():
    a = generate(100, seed=0, split="train")
    assert a == generate(100, seed=0, split="train")
    assert a != generate(100, seed=1, split="train")
    assert a != generate(100, seed=0, split="warmup")


def test_tasks_families_and_unequal_sizes():
    assert len(TASK_NAMES) >= 12
    assert len(set(FAMILIES.values())) >= 4
    pool = generate(2000, seed=0, split="train")
    sizes = Counter(e.labels["task"] for e in pool)
    assert set(sizes) == set(TASK_NAMES)
    assert max(sizes.values()) > 3 * min(sizes.values())
    assert all(e.labels["family"] == FAMILIES[e.labels["task"]] for e in pool)
    test = Counter(e.labels["task"] for e in generate(140, seed=0, split="test", balanced=True))
    assert set(test.values()) == {10}


def test_suite_splits_have_unique_ids_and_expected_sizes():
    suite = load_suite("tiny")
    g = suite.spec.data.generator
    ids = set()
    for name in SPLITS:
        examples = suite.split(name)
        assert len(examples) == getattr(g, f"n_{name}")
        ids |= {e.id for e in examples}
        assert all(e.prompt and e.response for e in examples)
    assert len(ids) == sum(len(suite.split(n)) for n in SPLITS)
