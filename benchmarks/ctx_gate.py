"""Gate of a refactor: two results directories hold bit-identical numbers, cell by cell.

Usage: `python benchmarks/ctx_gate.py BEFORE AFTER [--structure]`.

Records are paired by their folder (`<suite>/<task>/<method>`; the file name is the fingerprint, which holds a
hash of the code and so differs). For every pair: both ran (`status` ok), and their `metrics` (values, CIs,
replicates, tests), `per_example` values and `extra.bootstrap` replicates (where a record keeps them) are
identical, compared as the JSON written (no tolerance); so are the headline, the pairing key, the
clusters and `extra.per_label`. Fingerprints, timings, code hashes and the environment may differ.
With `--structure` (for timing records such as the crossover's, whose numbers are measurements) only the
layout is compared, the environment aside: the same keys at every level, the same value types and list
lengths. Exits 1 and names every difference when any is found.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def records(root: Path) -> dict[str, dict[str, Any]]:
    """{"suite/task/method": record} of every JSON record under `root` (one per cell)."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(root.rglob("*.json")):
        cell = path.parent.relative_to(root).as_posix()
        if cell in out:
            raise SystemExit(f"{root}: two records for {cell}; give one record per cell")
        out[cell] = json.loads(path.read_text())
    return out


def layout(value: Any) -> Any:
    """The shape of a JSON value: keys, types and lengths, no numbers or strings."""
    if isinstance(value, dict):
        return {k: layout(v) for k, v in value.items()}
    if isinstance(value, list):
        return ["list", len(value), [layout(v) for v in value]]
    if isinstance(value, bool) or value is None:
        return type(value).__name__
    if isinstance(value, int | float):
        return "number"  # a measured time may be an int in one run and a float in another
    return type(value).__name__


def differences(a: Any, b: Any, where: str = "") -> list[str]:
    """Paths at which two JSON values differ (exact equality, NaN equal to NaN)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{where}.{k}: only in {'before' if k in a else 'after'}" for k in sorted(set(a) ^ set(b))]
        for k in sorted(set(a) & set(b)):
            out += differences(a[k], b[k], f"{where}.{k}")
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: lengths {len(a)} vs {len(b)}"]
        out = []
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            out += differences(x, y, f"{where}[{i}]")
            if len(out) > 5:
                break
        return out
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return []
    return [] if (a == b and type(a) is type(b)) else [f"{where}: {a!r} vs {b!r}"]


def compare(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]], structure: bool) -> list[str]:
    problems = [f"{cell}: only in {'before' if cell in before else 'after'}"
                for cell in sorted(set(before) ^ set(after))]
    for cell in sorted(set(before) & set(after)):
        a, b = before[cell], after[cell]
        for name, rec in (("before", a), ("after", b)):
            if rec.get("status") != "ok":
                problems.append(f"{cell}: {name} status {rec.get('status')!r} {rec.get('error')!r}")
        if structure:  # the environment (git state, versions) is where the code ran, not what it computed
            shapes = (layout({**rec, "env": None}) for rec in (a, b))
            problems += [f"{cell}: layout{d}" for d in differences(*shapes)]
            continue
        for part in ("metrics", "per_example", "headline", "pairing", "clusters"):
            problems += [f"{cell}: {part}{d}" for d in differences(a.get(part), b.get(part))]
        for part in ("bootstrap", "per_label"):  # v1 records kept replicates in extra.bootstrap
            problems += [f"{cell}: extra.{part}{d}" for d in
                         differences(a.get("extra", {}).get(part), b.get("extra", {}).get(part))]
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--structure", action="store_true", help="compare the records' layout only (timings)")
    args = ap.parse_args(argv)
    before, after = records(args.before), records(args.after)
    problems = compare(before, after, args.structure)
    n_values = sum(len(r.get("per_example", {}).get(k, [])) for r in before.values() for k in r.get("per_example", {}))
    n_reps = sum(len(m.get("replicates") or []) for r in before.values() for m in r.get("metrics", {}).values())
    for p in problems:
        print(p)
    what = "layout" if args.structure else (f"metrics, CIs, {n_reps} metric replicates, {n_values} per-example "
                                            f"values, headline, pairing, clusters, extra.bootstrap / per_label")
    print(f"{len(set(before) & set(after))} cells compared ({what}): "
          f"{'IDENTICAL' if not problems else f'{len(problems)} differences'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
