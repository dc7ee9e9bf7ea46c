"""Which records the leaderboard shows: the newest default or labelled record of each (suite, task, row)."""

from __future__ import annotations

import json
from collections.abc import Iterable

from bench.errors import DataError
from bench.results import RunRecord, is_default

Cells = dict[tuple[str, str, str], RunRecord]  # (suite, task, row) -> record


def latest(records: Iterable[RunRecord]) -> Cells:
    """The newest shown record of each (suite, task, row), ties broken by fingerprint.

    Shown: a method's default configuration (`bench.results.is_default`) and named variants (`--label`), and
    a tuning search (task `tune`) at any budget (its task option; the table states it) but no other option.
    A run with ad-hoc options and no label, or with another seed, never replaces a default row; a failed
    record shows only where no successful one exists.
    """
    out: Cells = {}
    for r in sorted(records, key=lambda r: (r.status == "ok", r.created_at, r.fingerprint)):
        search = r.task == "tune" and r.seed == 0 and not r.label and set(r.options.get("task") or {}) <= {"budget"} \
            and not r.options.get("method") and not r.options.get("suite")
        if r.label or is_default(r) or search or r.status != "ok" and r.seed == 0:
            out[(r.column, r.task, r.row)] = r
    return out


def seed_groups(records: Iterable[RunRecord]) -> dict[tuple[str, str, str], dict[int, RunRecord]]:
    """(suite, task, row) -> seed -> the newest successful record, for rows run with several seeds.

    Only seeds of one run of the row count: the records that agree with its newest seed-0 record in suite
    version, data and method config (an older seed of another version or setting is left out).
    """
    out: dict[tuple[str, str, str], dict[int, RunRecord]] = {}
    for r in sorted(records, key=lambda r: (r.created_at, r.fingerprint)):
        if r.status == "ok" and not any(r.options.values()):
            out.setdefault((r.column, r.task, r.row), {})[r.seed] = r
    for key, seeds in out.items():
        if 0 in seeds:
            base = seeds[0]
            out[key] = {s: r for s, r in seeds.items() if (r.suite_version, r.data, r.method_config) ==
                        (base.suite_version, base.data, base.method_config)}
    return {k: v for k, v in out.items() if len(v) > 1}


def curve_points(records: Iterable[RunRecord], task: str = "lds",
                 axis: str = "size") -> dict[tuple[str, str], list[RunRecord]]:
    """(column, method) -> its records at each size (`extra.size`, `bench curve`), sorted by storage.

    A point: a successful seed-0 record of the task with no label, no task or suite options, and method options
    that set the method's size option alone (or none: the default row). The newest record of each size counts.
    `axis` "budget": the points of a learning curve instead (`extra.budget`, `bench curve --budget`), sorted by
    the budget's value. One curve changes one thing: its points are those that agree with its newest point in
    everything but the curve's option (the rest of the method's config, the suite version and data, the pairing,
    the harness and task code); points made otherwise (before a tuning, by other code) are left out.
    """
    newest: dict[tuple[str, str, str], RunRecord] = {}
    for r in sorted(records, key=lambda r: (r.created_at, r.fingerprint)):
        size = (r.extra or {}).get(axis)
        if r.status != "ok" or r.task != task or r.label or r.seed != 0 or size is None:
            continue
        if r.options.get("task") or r.options.get("suite") or set(r.options.get("method") or {}) - {size["option"]}:
            continue
        if axis == "size" and not r.cost.get("storage_bytes_per_example"):
            continue
        newest[(r.column, r.method, json.dumps(size["value"]))] = r
    out: dict[tuple[str, str], list[RunRecord]] = {}
    for (column, method, _), r in newest.items():
        out.setdefault((column, method), []).append(r)
    for key, points in out.items():  # keep the points that agree with the newest in all but the curve's option
        last = max(points, key=lambda r: (r.created_at, r.fingerprint))
        out[key] = [r for r in points if _same_but(r, last, r.extra[axis]["option"])]
    if axis == "budget":
        return {k: sorted(v, key=lambda r: r.extra["budget"]["value"]) for k, v in sorted(out.items())}
    return {k: sorted(v, key=lambda r: r.cost["storage_bytes_per_example"]) for k, v in sorted(out.items())}


def differences(a: RunRecord, b: RunRecord, allowed: Iterable[str] = ()) -> list[str]:
    """What two records' methods ran differently beyond the config options `allowed`.

    The other config options that differ (by name), "run seed", and "harness code" / "task code" where the
    code hashes differ: empty when the two differ in the allowed options alone.
    """
    ca, cb = a.method_config or {}, b.method_config or {}
    out = sorted(k for k in (set(ca) | set(cb)) - set(allowed) if ca.get(k) != cb.get(k))
    if a.seed != b.seed:
        out.append("run seed")
    hashes = [(r.env or {}).get("code_hashes") or {} for r in (a, b)]
    return out + [f"{part} code" for part in ("harness", "task") if hashes[0].get(part) != hashes[1].get(part)]


def _same_but(a: RunRecord, b: RunRecord, option: str) -> bool:
    """Whether two records differ in `option` of the method's config alone (and not in data, draws or code)."""
    return not differences(a, b, (option,)) and \
        (a.suite_version, a.data, a.pairing) == (b.suite_version, b.data, b.pairing)


def of_task(cells: Cells, task: str) -> Cells:
    """The cells of one task."""
    return {k: r for k, r in cells.items() if k[1] == task}


def by_suite(cells: Cells, suite_key) -> dict[str, dict[str, RunRecord]]:
    """Suite -> row -> record, suites in the layout's order."""
    suites = sorted({k[0] for k in cells}, key=suite_key)
    return {s: {k[2]: r for k, r in cells.items() if k[0] == s} for s in suites}


def own_columns(columns: dict[str, dict[str, RunRecord]]) -> list[str]:
    """The columns of suites in their own regime (not another regime's, not a replicate's): the averaged ones."""
    return [s for s, rows in columns.items() if all(r.own for r in rows.values())]


def check_pairing(cells: Cells) -> None:
    """Refuse a column of one task whose rows do not pair (another ground truth or other draws).

    Such rows were made on another machine (ground truths differ at float rounding across CPU models) or by
    code that built another ground truth: their values would sit side by side as if comparable, and the paired
    tests behind bold and ranks could not run. The remedy is to remake the column in one place.

    Raises:
        DataError: naming the column and its groups of rows.
    """
    groups: dict[tuple[str, str], dict[str, list[str]]] = {}
    for (column, task, row), r in cells.items():
        if r.status == "ok" and r.pairing is not None:
            groups.setdefault((column, task), {}).setdefault(r.pairing, []).append(row)
    for (column, task), keys in sorted(groups.items()):
        if len(keys) > 1:
            parts = " | ".join(", ".join(sorted(rows)) for rows in sorted(keys.values(), key=len, reverse=True))
            raise DataError(f"column {column} of task {task} mixes records that do not pair (another ground truth "
                            f"or draws: made on another machine or by other code): {parts}; rerun the column in one "
                            f"place (bench grid --suite {column.split('-')[0]})")
