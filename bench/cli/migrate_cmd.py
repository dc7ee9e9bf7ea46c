"""`bench migrate DIR`: rewrite every result record under DIR in the current schema, without rerunning it.

Each record goes through `bench.results.migrate` (one step per schema version: no value, interval or
replicate changes). A migrated record keeps the draws it was made with: its `clusters` stay unknown (None)
and its metrics say what their replicates resampled (`draws`), so no caption claims a clustered interval
for replicates that were drawn example by example; a rerun makes clustered ones. Files are replaced
atomically; a record already current is left alone. `--check` writes nothing and exits 1 if any record would change.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(sub) -> None:  # argparse._SubParsersAction
    """Register the subcommand."""
    p = sub.add_parser("migrate", help="rewrite result records in the current schema (no rerun)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results_dir", type=Path, help="folder of records (e.g. leaderboard/results)")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 if a record is not current")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Migrate every record under the folder."""
    from bench.cache import atomic_write_text
    from bench.errors import DataError
    from bench.results import RunRecord, migrate

    if not args.results_dir.is_dir():
        raise DataError(f"no result records at {args.results_dir}")
    changed = 0
    paths = sorted(args.results_dir.rglob("*.json"))
    for path in paths:
        before = path.read_text(encoding="utf-8")
        text = RunRecord(**migrate(json.loads(before))).to_json()
        if text == before:
            continue
        changed += 1
        if not args.check:
            atomic_write_text(path, text)
    verb = "would change" if args.check else "migrated"
    print(f"{verb} {changed} of {len(paths)} records under {args.results_dir}")
    return 1 if args.check and changed else 0
