"""Splitting a set of examples in two, disjoint by content: selection's queries, a suite's dev split.

`content_groups` links the examples that share content (a prompt, or a rare answer that names their item);
`split_groups` sends whole groups to one side, about a given share of each stratum (a task, a source).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from bench.errors import DataError


def content_groups(labels: np.ndarray, prompts: list[str], responses: list[str],
                   norm: Callable[[str], str] | None = None) -> list[int]:
    """A group id per example: examples of one stratum that share their content go to one side of a split.

    Within a stratum (`labels`: a task, a source), examples are linked when their normalised prompts are equal,
    or their normalised responses are equal and that response is rare in the stratum (held by at most a
    quarter of its examples, and by at least two): an answer few examples share names their item (a capital, a
    plural, a translation asked under another template); one most of a stratum shares (a sentiment, a small
    count) does not. Linked examples form one group (connected components). `norm`: how texts are compared
    (default: case and whitespace folded; the dev split uses `bench.hygiene.normalise`, punctuation too).
    """
    if norm is None:
        def norm(text: str) -> str:
            return " ".join(text.lower().split())

    parent = list(range(len(labels)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for task in sorted(set(labels.tolist())):
        rows = [int(i) for i in np.flatnonzero(labels == task)]
        by_key: dict[tuple[str, str], list[int]] = {}
        response_count: dict[str, int] = {}
        for i in rows:
            response_count[norm(responses[i])] = response_count.get(norm(responses[i]), 0) + 1
        for i in rows:
            by_key.setdefault(("prompt", norm(prompts[i])), []).append(i)
            if response_count[norm(responses[i])] <= max(2, len(rows) // 4):
                by_key.setdefault(("response", norm(responses[i])), []).append(i)
        for members in by_key.values():
            for i in members[1:]:
                parent[find(i)] = find(members[0])
    return [find(i) for i in range(len(labels))]


def split_groups(labels: np.ndarray, fraction: float, rng: np.random.Generator, groups: list[int] | None = None,
                 *, what: str, closest: bool = False) -> tuple[list[int], list[int]]:
    """Each stratum's positions, split at random into a taken side (about `fraction`) and the rest.

    Whole groups (`content_groups`; default: each example its own) go to one side: groups in a seeded random
    order are taken until floor(fraction * n + 0.5) examples (at least 1) are reached, and at least one group
    stays behind. `what` names the split in errors (e.g. "selection"). `closest`: a group that would overshoot
    the target by more than leaving it out undershoots is skipped (a large group cannot take most of a
    stratum), and the smallest group is taken if nothing else was.

    Returns:
        (taken positions, the rest), each sorted; disjoint; every stratum in both.

    Raises:
        DataError: a stratum whose examples form fewer than 2 groups (nothing left on one side).
    """
    groups = list(range(len(labels))) if groups is None else groups
    taken_all: list[int] = []
    for task in sorted(set(labels.tolist())):
        rows = np.flatnonzero(labels == task)
        members: dict[int, list[int]] = {}
        for i in rows:
            members.setdefault(groups[int(i)], []).append(int(i))
        if len(members) < 2:
            raise DataError(f"{what}: task '{task}' has {rows.size} test example(s) in {len(members)} content "
                            f"group; both sides of the split need 2 or more groups per task")
        target = max(1, int(np.floor(fraction * rows.size + 0.5)))
        order = [sorted(members)[k] for k in rng.permutation(len(members))]
        taken: list[int] = []
        for g in order[:-1]:  # the last group always stays
            if len(taken) >= target:
                break
            if closest and len(taken) + len(members[g]) - target > target - len(taken):
                continue
            taken += members[g]
        if not taken:  # closest skipped every group: the smallest one (not the one that stays)
            taken = list(min((members[g] for g in order[:-1]), key=len))
        taken_all += taken
    rest = sorted(set(range(len(labels))) - set(taken_all))
    return sorted(taken_all), rest
