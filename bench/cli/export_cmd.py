"""`bench export-examples` and `bench export`: a suite's examples, and its ground truth, as files.

- `bench export-examples --suite S --out DIR`: `train.jsonl` and `test.jsonl`, the exact examples in the
  order a score matrix for `bench run --method scores` must index (rows: test, columns: train).
- `bench export --suite S --out DIR`: every split, `lds.jsonl` in the AirRep authors' layout
  (`{"train_subset": [...], "test_loss": [...]}`), a `suite.toml` that reads the folder back with the
  exported ground truth as released, and a `README.md` with the recipe. Builds the ground truth first
  when it is not cached (as `bench run` would). With `--model`, also the target LM that the model-based
  methods use (`model/`, `save_pretrained` with its tokenizer), every split tokenised with the harness's
  loss mask (`tokenized/`, `datasets` on disk) and `model.json` (the trained parameters, the loss).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.config import parse_override


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--suite", default="small", help="suite name or .toml path (default small)")
    p.add_argument("--suite-set", dest="suite_options", action="append", default=[], metavar="KEY=VALUE",
                   help="override a suite option (dotted key), as for bench run")
    p.add_argument("--out", type=Path, required=True, help="output folder (created; files in it are replaced)")


def add_parser(sub) -> None:  # argparse._SubParsersAction
    """Register both subcommands."""
    p = sub.add_parser("export-examples", help="write a suite's train and test examples in score-matrix order",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(p)
    p.set_defaults(func=run_examples)
    p = sub.add_parser("export", help="write a suite's splits and ground truth (lds.jsonl) in the authors' layout",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(p)
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="artefact cache (default $BENCH_CACHE or ~/.cache/tda-bench)")
    p.add_argument("--device", default="cpu", help="device of the retraining when it is not cached (default cpu)")
    p.add_argument("--model", action="store_true",
                   help="also write the target LM (model/), the tokenised splits (tokenized/) and model.json")
    p.set_defaults(func=run_export)


def _suite(args: argparse.Namespace):
    from bench.suites import load_suite

    return load_suite(args.suite, [parse_override(o) for o in args.suite_options])


def _report(out: Path, written: dict[str, int]) -> None:
    for name, n in written.items():
        print(f"{out / name}: {n} rows")


def run_examples(args: argparse.Namespace) -> int:
    """Write the two files."""
    from bench.export import export_examples

    _report(args.out, export_examples(_suite(args), args.out))
    return 0


def run_export(args: argparse.Namespace) -> int:
    """Write the splits, the ground truth, the suite file and the README."""
    from bench.cache import Cache, default_cache_dir
    from bench.export import export_suite
    from bench.runner import check_device

    suite = _suite(args)
    check_device(args.device)
    out = Path(args.out)
    written = export_suite(suite, out, Cache(args.cache_dir or default_cache_dir()), device=args.device,
                           model=args.model)
    _report(out, written)
    print(f"{out / 'suite.toml'}: reads the export back (bench run --method M --task lds --suite {out / 'suite.toml'})")
    return 0
