"""Entry point of the `bench` console script."""

from __future__ import annotations

import argparse
import sys

from bench.cli import (
    check_cmd,
    compare_cmd,
    curve_cmd,
    export_cmd,
    grid_cmd,
    leaderboard_cmd,
    list_cmd,
    migrate_cmd,
    plan_cmd,
    respond_cmd,
    run_cmd,
    tune_cmd,
)
from bench.errors import BenchError
from bench.executors import ShardIncomplete

EXIT_USER_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with its subcommands."""
    parser = argparse.ArgumentParser(prog="bench", description="Training data attribution benchmark.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    list_cmd.add_parser(sub)
    run_cmd.add_parser(sub)
    leaderboard_cmd.add_parser(sub)
    grid_cmd.add_parser(sub)
    plan_cmd.add_parser(sub)
    respond_cmd.add_parser(sub)
    compare_cmd.add_parser(sub)
    export_cmd.add_parser(sub)
    migrate_cmd.add_parser(sub)
    check_cmd.add_parser(sub)
    tune_cmd.add_parser(sub)
    curve_cmd.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; a `BenchError` prints one line and exits with status 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted; finished jobs are cached and a rerun resumes", file=sys.stderr)
        return 130
    except ShardIncomplete as exc:  # a shard did its share: success for a scheduler, no record yet
        print(str(exc), file=sys.stderr)
        return 0


if __name__ == "__main__":
    sys.exit(main())
