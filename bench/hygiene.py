"""Data hygiene: is a test prompt also in a training split, and does a split repeat an example?

Prompts are compared after `normalise` (case, whitespace and punctuation folded), so a test question that
a training split holds with other capitals or spacing counts as seen. Every run records the report of the
splits it loaded (`extra.hygiene`) and `bench run` prints a line when a test example overlaps; the
built-in suites are tested to have none.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

from bench.data import Example

_NOT_WORD = re.compile(r"[\W_]+", re.UNICODE)


def normalise(text: str) -> str:
    """Lower-case, NFKC, punctuation and runs of whitespace folded into single spaces."""
    return " ".join(_NOT_WORD.sub(" ", unicodedata.normalize("NFKC", text).lower()).split())


def report(splits: Mapping[str, Sequence[Example]]) -> dict[str, Any]:
    """Overlap of the test split with every other split, by prompt, and exact duplicates within each split.

    Returns:
        `{"test_overlap": {split: test examples whose prompt that split holds}, "test_overlap_any": test
        examples whose prompt any other split holds, "duplicates": {split: examples repeating an earlier
        (prompt, response) of the same split}, "sizes": {split: n}}`.
    """
    test = splits.get("test", ())
    test_keys = [normalise(e.prompt) for e in test]
    overlap, seen_anywhere = {}, set()
    for name, examples in splits.items():
        if name == "test" or not examples:
            continue
        keys = {normalise(e.prompt) for e in examples}
        hits = {i for i, k in enumerate(test_keys) if k in keys}
        overlap[name] = len(hits)
        if name != "dev":  # the dev split is held out too: no training split
            seen_anywhere |= hits
    duplicates = {}
    for name, examples in splits.items():
        pairs = [(normalise(e.prompt), normalise(e.response)) for e in examples]
        duplicates[name] = len(pairs) - len(set(pairs))
    return {"test_overlap": overlap, "test_overlap_any": len(seen_anywhere), "duplicates": duplicates,
            "sizes": {name: len(examples) for name, examples in splits.items()}}


def describe(rep: Mapping[str, Any]) -> str | None:
    """One line about the overlaps and duplicates of a report, or None when it is clean."""
    parts = [f"{n} with {name}" for name, n in sorted(rep["test_overlap"].items()) if n and name != "dev"]
    dev = rep["test_overlap"].get("dev", 0)
    dups = [f"{n} in {name}" for name, n in sorted(rep["duplicates"].items()) if n]
    if not parts and not dups and not dev:
        return None
    n_test = rep["sizes"].get("test", 0)
    text = []
    if parts:
        text.append(f"{rep['test_overlap_any']} of {n_test} test examples share their prompt with a training split "
                    f"({', '.join(parts)})")
    if dev:
        text.append(f"{dev} of {n_test} test examples share their prompt with the dev split")
    if dups:
        text.append(f"duplicate examples: {', '.join(dups)}")
    return "; ".join(text)
