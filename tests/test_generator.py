from collections import Counter

import pytest

from bench.generator import _ANTONYMS, FAMILIES, ITEM_SHARES, SPLIT_ORDER, TASK_NAMES, generate_splits, partition
from bench.suites import SPLITS, load_suite

SIZES = {"train": 2000, "test": 280, "warmup": 1500, "airrep_train": 1500}
ALL = {s: TASK_NAMES for s in SPLIT_ORDER}


def test_deterministic_and_seed_dependent():
    a = generate_splits(SIZES, seed=0, tasks=ALL)
    assert a == generate_splits(SIZES, seed=0, tasks=ALL)
    assert a["train"] != generate_splits(SIZES, seed=1, tasks=ALL)["train"]


def test_splits_are_disjoint_by_item_and_free_of_duplicate_prompts():
    out = generate_splits(SIZES, seed=0, tasks=ALL, with_items=True)
    items = {s: {(e.labels["task"], item) for e, item in zip(*out[s], strict=True)} for s in SPLIT_ORDER}
    for i, a in enumerate(SPLIT_ORDER):
        examples, _ = out[a]
        assert len(examples) == SIZES[a]
        assert len({e.prompt for e in examples}) == len(examples)  # no prompt twice within a split
        for b in SPLIT_ORDER[i + 1:]:
            assert not items[a] & items[b], (a, b)
            assert not {e.prompt for e in examples} & {e.prompt for e in out[b][0]}


def test_closed_item_lists_are_partitioned_between_splits():
    parts = partition(_ANTONYMS, seed=3)
    assert sorted(x for p in parts.values() for x in p) == sorted(_ANTONYMS)  # each pair in exactly one split
    assert abs(len(parts["test"]) - ITEM_SHARES["test"] * len(_ANTONYMS)) <= 1
    # no word in two antonym pairs: "the opposite of light" could otherwise be a test and a training prompt
    words = [w for pair in _ANTONYMS for w in pair]
    assert len(words) == len(set(words))


def test_tasks_families_and_unequal_sizes():
    assert len(TASK_NAMES) >= 12
    assert len(set(FAMILIES.values())) >= 4
    out = generate_splits(SIZES, seed=0, tasks=ALL)
    sizes = Counter(e.labels["task"] for e in out["train"])
    assert set(sizes) == set(TASK_NAMES)
    assert max(sizes.values()) > 3 * min(sizes.values())
    assert all(e.labels["family"] == FAMILIES[e.labels["task"]] for e in out["train"])
    test = Counter(e.labels["task"] for e in out["test"])
    assert set(test.values()) == {20}  # balanced


def test_a_shifted_split_draws_only_its_tasks():
    warm = ("reversal", "antonym")
    out = generate_splits({**SIZES, "warmup": 800}, seed=0, tasks={**ALL, "warmup": warm})
    assert {e.labels["task"] for e in out["warmup"]} == set(warm)


def test_a_split_larger_than_its_tasks_allow_is_one_clear_error():
    with pytest.raises(ValueError, match="cannot hold"):
        generate_splits({**SIZES, "test": 5000}, seed=0, tasks={**ALL, "test": ("capital",)})


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
