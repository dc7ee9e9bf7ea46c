"""`bench check-record RECORD.json`: rerun the request a committed record describes and compare the numbers.

The sentinel CI step: a cheap cell (the `tiny` suite's TF-IDF LDS) is committed as a record; CI reruns it
with the code under test, in a fresh results folder, and fails when the metrics (values, CIs, replicates) or
the per-example values differ. On the CPU model the record names, the comparison is exact; on another CPU,
(or thread count) floating-point differences in the retrained ground truth are allowed up to `--tolerance`
(default 0.01), so
that only a change of what the code computes fails. A changed fingerprint (the code's hash, a code version)
with identical numbers is reported, not failed.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path
from typing import Any


def add_parser(sub) -> None:  # argparse._SubParsersAction
    """Register the subcommand."""
    p = sub.add_parser("check-record", help="rerun a committed record's request and compare its numbers",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("record", type=Path, help="a result record (JSON)")
    p.add_argument("--tolerance", type=float, default=0.01,
                   help="largest difference allowed on another CPU model (default 0.01; exact on the same one)")
    p.add_argument("--cache-dir", type=Path, default=None, help="cache for the rerun (default: the usual one)")
    p.set_defaults(func=run)


def _numbers(record: Any) -> dict[str, float | None]:
    """Every number the check compares, by a readable key."""
    out: dict[str, float | None] = {}
    for name, m in record.metrics.items():
        for key in ("value", "ci_low", "ci_high"):
            out[f"metrics.{name}.{key}"] = m.get(key)
        for i, v in enumerate(m.get("replicates") or []):
            out[f"metrics.{name}.replicates[{i}]"] = v
    for name, values in record.per_example.items():
        for i, v in enumerate(values):
            out[f"per_example.{name}[{i}]"] = v
    return out


def _differs(a: float | None, b: float | None, tolerance: float) -> bool:
    """Whether two numbers differ by more than `tolerance`; None and NaN (a missing value) equal only each other."""
    a_missing = a is None or math.isnan(float(a))
    b_missing = b is None or math.isnan(float(b))
    if a_missing or b_missing:
        return a_missing != b_missing
    return abs(float(a) - float(b)) > tolerance


def run(args: argparse.Namespace) -> int:
    """Rerun and compare."""
    from bench.errors import DataError
    from bench.results import RunRecord, read_record
    from bench.runner import RunRequest, cpu_model
    from bench.runner import run as run_request

    if not args.record.is_file():
        raise DataError(f"no record at {args.record}")
    try:
        old = read_record(args.record)
    except (ValueError, TypeError) as exc:
        raise DataError(f"{args.record} is not a result record ({exc})") from exc
    opts = old.options
    with tempfile.TemporaryDirectory() as tmp:
        new, _ = run_request(RunRequest(
            method=old.method, task=old.task, suite=old.suite, seed=old.seed,
            suite_options=tuple((opts.get("suite") or {}).items()),
            method_options=tuple((opts.get("method") or {}).items()),
            task_options=tuple((opts.get("task") or {}).items()), label=old.label, cache_dir=args.cache_dir,
            results_dir=Path(tmp)))
        new = RunRecord(**json.loads(new.to_json()))  # as written: NaN becomes null, as in the committed one
    same_cpu = old.env.get("cpu") == cpu_model() and old.env.get("torch_threads") == new.env.get("torch_threads")
    tolerance = 0.0 if same_cpu else args.tolerance
    a, b = _numbers(old), _numbers(new)
    missing = sorted(set(a) ^ set(b))
    diffs = [k for k in a if k in b and _differs(a[k], b[k], tolerance)]
    where = "the same CPU model (exact)" if same_cpu else f"another CPU model (tolerance {tolerance:g})"
    if missing or diffs:
        first = (missing or diffs)[0]
        print(f"FAILED: {len(diffs)} of {len(a)} numbers differ and {len(missing)} are missing on {where}; first: "
              f"{first}: {a.get(first)} -> {b.get(first)}. The code now computes other numbers than the committed "
              f"record: bump the code version of what changed and regenerate the records "
              f"(bench run ... --force), then this record.")
        return 1
    note = "" if new.fingerprint == old.fingerprint else (
        f" (its fingerprint changed, {old.fingerprint[:12]} -> {new.fingerprint[:12]}: the code's hash or version "
        f"differs, the numbers do not)")
    print(f"ok: all {len(a)} numbers of {args.record} reproduce on {where}{note}")
    return 0
