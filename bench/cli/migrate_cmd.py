"""`bench migrate DIR`: rewrite every result record under DIR in the current schema, without rerunning it.

Each record goes through `bench.results.migrate` (one step per schema version: no value, interval or
replicate changes) and, where the record's suite is one this build can load with the same data fingerprint,
gets the cluster of each evaluated example from the suite's `clusters` declaration (the tasks whose
per-example values are the test split's, or a listed subset of it). Files are replaced atomically; a record
already current is left alone. `--check` writes nothing and exits 1 if any record would change.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

TEST_ALIGNED = ("lds", "classification", "selection")  # per-example values: one per test example, in order


def add_parser(sub) -> None:  # argparse._SubParsersAction
    """Register the subcommand."""
    p = sub.add_parser("migrate", help="rewrite result records in the current schema (no rerun)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results_dir", type=Path, help="folder of records (e.g. leaderboard/results)")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 if a record is not current")
    p.set_defaults(func=run)


def _clusters(raw: dict[str, Any], suites: dict[str, Any]) -> dict[str, Any] | None:
    """The record's clusters from its suite, when the suite loads with the record's data; else None."""
    from bench.api import cluster_ids
    from bench.errors import BenchError
    from bench.suites import load_suite

    name = raw["suite"]
    if name not in suites:
        try:
            suites[name] = load_suite(name) if not any((raw.get("options") or {}).get("suite", {}) or {}) else None
        except BenchError:
            suites[name] = None
    suite = suites[name]
    if suite is None or suite.spec.version != raw["suite_version"] or suite.data_fingerprint != raw.get("data"):
        return None
    test = suite.split("test")
    if raw["task"] in TEST_ALIGNED:
        return cluster_ids(suite.spec.clusters, test)
    if raw["task"] == "loo" and raw.get("extra", {}).get("test_rows") is not None:
        return cluster_ids(suite.spec.clusters, [test[i] for i in raw["extra"]["test_rows"]])
    return None


def run(args: argparse.Namespace) -> int:
    """Migrate every record under the folder."""
    from bench.cache import atomic_write_text
    from bench.errors import DataError
    from bench.results import RunRecord, migrate

    if not args.results_dir.is_dir():
        raise DataError(f"no result records at {args.results_dir}")
    suites: dict[str, Any] = {}
    changed = 0
    paths = sorted(args.results_dir.rglob("*.json"))
    for path in paths:
        original = json.loads(path.read_text(encoding="utf-8"))
        raw = migrate(dict(original))
        if original.get("schema_version") != raw["schema_version"] and raw.get("clusters") is None \
                and raw.get("status") == "ok":
            raw["clusters"] = _clusters(raw, suites)
        text = RunRecord(**raw).to_json()
        if text == path.read_text(encoding="utf-8"):
            continue
        changed += 1
        if not args.check:
            atomic_write_text(path, text)
    verb = "would change" if args.check else "migrated"
    print(f"{verb} {changed} of {len(paths)} records under {args.results_dir}")
    return 1 if args.check and changed else 0
