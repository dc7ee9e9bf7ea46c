"""`bench leaderboard`: write LEADERBOARD.md from the result records; `--check` verifies it is current."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.errors import DataError


def add_parser(sub) -> None:  # argparse._SubParsersAction
    """Register the subcommand."""
    p = sub.add_parser("leaderboard", help="render LEADERBOARD.md from result records",
                       description="Render the result records into a markdown leaderboard.")
    p.add_argument("--results-dir", type=Path, default=Path("leaderboard/results"),
                   help="records to read (default leaderboard/results)")
    p.add_argument("--output", type=Path, default=Path("LEADERBOARD.md"), help="file to write (default LEADERBOARD.md)")
    p.add_argument("--figures-dir", type=Path, default=Path("leaderboard/figures"),
                   help="where the PNG figures go (default leaderboard/figures)")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 if the file differs from the records")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Render, then write or compare."""
    from bench.cache import atomic_write_text
    from leaderboard.render import render, write_figures

    if not args.results_dir.is_dir():
        raise DataError(f"no result records at {args.results_dir} "
                        f"(run 'bench run ... --results-dir {args.results_dir}')")
    figures_dir = args.figures_dir.resolve()
    text = render(args.results_dir, figures_dir, relative_to=args.output.resolve().parent)
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else None
        if current != text:
            print(f"{args.output} is not what the records in {args.results_dir} give; run 'bench leaderboard'",
                  file=sys.stderr)
            return 1
        print(f"{args.output} is up to date")
        return 0
    written = write_figures(args.results_dir, figures_dir)
    atomic_write_text(args.output, text)
    print(f"wrote {args.output} and {len(written)} figures in {args.figures_dir}")
    return 0
