"""`bench respond`: generate the responses of Alpaca's seen test half (paper Appendix D).

The paper samples 250 instructions from the Alpaca training set and answers them with a model trained on
all of it. This command fine-tunes the suite's retraining start model on the whole pool (as one retraining
job does on a subset; cached), answers the suite's seen instructions greedily and writes them as JSONL
`{instruction, input, output, generator}`. Point `data.preset.seen_responses` at the file.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(sub) -> None:  # argparse._SubParsersAction
    """Register the subcommand."""
    p = sub.add_parser("respond", help="generate the responses of an Alpaca suite's seen test instructions",
                       description=__doc__)
    p.add_argument("--suite", required=True, help="a built-in suite name or a suite .toml with an alpaca preset")
    p.add_argument("--out", type=Path, required=True, help="the JSONL file to write")
    p.add_argument("--suite-set", dest="suite_options", action="append", default=[], metavar="KEY=VALUE",
                   help="override a suite value by dotted key (repeatable)")
    p.add_argument("--max-new-tokens", type=int, default=256, help="longest response, in tokens (default 256)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--cache-dir", type=Path, default=None, help="artefact cache (default $BENCH_CACHE)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Fine-tune on the pool, answer the seen instructions, write the file atomically."""
    from bench.cache import Cache, atomic_write_text, default_cache_dir
    from bench.config import parse_override
    from bench.errors import ConfigError
    from bench.presets import alpaca_prompt, alpaca_seen_rows
    from bench.progress import progress
    from bench.retrain import pool_lm
    from bench.runner import check_device
    from bench.suites import load_suite

    if args.max_new_tokens < 1:
        raise ConfigError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    suite = load_suite(args.suite, [parse_override(o) for o in args.suite_options])
    preset = suite.spec.data.preset
    if preset is None or preset.name != "alpaca":
        raise ConfigError(f"suite '{suite.name}' has no alpaca preset: 'bench respond' answers the seen test "
                          f"instructions of an Alpaca suite")
    check_device(args.device)
    rows = alpaca_seen_rows(preset, suite.base_dir)
    lm, _ = pool_lm(suite, Cache(args.cache_dir or default_cache_dir()), args.device)
    bs = suite.spec.lm.eval_batch_size
    outputs: list[str] = []
    with progress(total=len(rows), desc="responding", unit="ex") as bar:
        for start in range(0, len(rows), bs):
            batch = [alpaca_prompt(r) for r in rows[start: start + bs]]
            outputs += lm.generate(batch, max_new_tokens=args.max_new_tokens)
            bar.update(len(batch))
    generator = f"{suite.spec.lm.model or 'built target LM'} fine-tuned on the {suite.name} pool"
    lines = [json.dumps({**r, "output": o, "generator": generator}, ensure_ascii=False)
             for r, o in zip(rows, outputs, strict=True)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, "\n".join(lines) + "\n")
    print(f"wrote {len(lines)} responses to {args.out}; use them with "
          f"--suite-set data.preset.seen_responses={args.out}")
    return 0
