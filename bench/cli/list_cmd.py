"""`bench list [methods|tasks|suites]`: names with one-line descriptions (imports no torch)."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:  # argparse._SubParsersAction
    """Register the subcommand."""
    p = sub.add_parser("list", help="list methods, tasks and suites",
                       description="List the registered methods and tasks and the built-in suites.")
    p.add_argument("what", nargs="?", choices=["methods", "tasks", "suites"], help="only this kind")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the listing."""
    from bench.api import methods, tasks
    from bench.suites import builtin_suites

    sections = {
        "methods": [(n, methods.summary(n) + ("" if methods.get(n).tasks is None else
                                              f" ({', '.join(methods.get(n).tasks)} task only)")
                     + (f" [bench tune: {', '.join(methods.get(n).search_space)}]"
                        if methods.get(n).search_space else ""))
                    for n in methods.names()],
        "tasks": [(n, tasks.summary(n)) for n in tasks.names()],
        "suites": sorted(builtin_suites().items()),
    }
    for kind, rows in sections.items():
        if args.what and args.what != kind:
            continue
        print(f"{kind}:")
        width = max((len(n) for n, _ in rows), default=0)
        for name, summary in rows:
            print(f"  {name:<{width}}  {summary}")
    return 0
