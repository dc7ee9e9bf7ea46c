"""Retraining throughput, one by one against batched (`bench.batched`), measured in one process.

Usage: `python benchmarks/retraining.py [--suite small] [--repeats 3] [--jobs 4] [--cache-dir DIR] [--json F]`.

Both sides run the code the ground truth runs (`bench.lm.finetune_group`, `batched=False` / `True`) on the
suite's first ground-truth subsets, from its warm-up model: fine-tuning plus the test split's losses.
Repeats alternate the two sides, so a slow moment of a shared machine hits both; the speed-up is the
median of the per-repeat ratios, with their range. In the same run: this machine's fp32 GEMM rate (a
2048 x 2048 `torch.matmul`, median of 5), the FLOPs of one batched training step (counted by
`torch.utils.flop_counter`, forward and backward) over its median time, and the peak memory of a group
(process RSS sampled during it, minus the RSS before).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


def _median_spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def gemm_rate(n: int = 2048, repeats: int = 5) -> float:
    """fp32 GFLOP/s of an n x n matmul on this machine (median of `repeats` after a warm-up)."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times) / 1e9


def main(argv: list[str] | None = None) -> dict:
    import numpy as np
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from bench import batched as stacking
    from bench.accounting import _RssSampler
    from bench.cache import Cache, default_cache_dir
    from bench.groundtruth import group_size, subset_mask, warmup_lm
    from bench.lm import finetune_group
    from bench.suites import load_suite

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="small")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=4, help="one-by-one jobs per repeat")
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args(argv)

    suite = load_suite(args.suite)
    lm, _ = warmup_lm(suite, Cache(args.cache_dir or default_cache_dir()))
    start = lm.state_dict()
    pool, evaluation = lm.encode(suite.split("train")), lm.encode(suite.split("test"))
    gt = suite.spec.ground_truth
    k = group_size(suite)
    members = [np.flatnonzero(subset_mask(len(pool.lengths), gt.fraction, gt.seed, j)) for j in range(k)]
    seeds = list(range(k))
    stacking.keep_freed_memory()  # the harness's setting, for both sides alike

    one, grouped, ratios, peaks = [], [], [], []
    for _ in range(args.repeats):
        r = finetune_group(lm, start, pool, members[: args.jobs], seeds[: args.jobs], evaluation=evaluation,
                           batched=False)
        one.append(args.jobs / r.wall_s)
        baseline = _RssSampler()._proc.memory_info().rss
        with _RssSampler() as sampler:
            r = finetune_group(lm, start, pool, members, seeds, evaluation=evaluation)
        if not r.batched:
            raise SystemExit(f"suite {args.suite}: its target LM does not train batched (group size {k})")
        grouped.append(k / r.wall_s)
        ratios.append(grouped[-1] / one[-1])
        peaks.append((sampler.peak - baseline) / 2**20)

    # one batched step: its FLOPs, and its time without the Python of the training loop around it
    lm.load_state_dict(start)
    stack = stacking.StackedLlama(lm.model, k)
    opt = torch.optim.AdamW(stack.parameters(), lr=suite.spec.lm.finetune_lr, fused=True)
    bs = suite.spec.lm.batch_size
    index = torch.stack([torch.as_tensor(m[:bs]) for m in members])
    packed = stacking.pack(*stacking._rows(pool, index))

    def step():
        loss = stack.batch_losses(packed).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    step_s = []
    for _ in range(10):
        t0 = time.perf_counter()
        step()
        step_s.append(time.perf_counter() - t0)
    peak = gemm_rate()
    rate = flops / statistics.median(step_s) / 1e9
    out = {"suite": args.suite, "group_size": k, "threads": torch.get_num_threads(),
           "one_by_one_subsets_per_s": _median_spread(one), "batched_subsets_per_s": _median_spread(grouped),
           "speedup": _median_spread(ratios), "gemm_peak_gflops": peak,
           "batched_step": {"gflop": flops / 1e9, "seconds": _median_spread(step_s), "gflops": rate,
                            "fraction_of_peak": rate / peak},
           "group_peak_rss_mib": _median_spread(peaks)}
    s = out["speedup"]
    print(f"{args.suite}: one by one {out['one_by_one_subsets_per_s']['median']:.2f} subsets/s, batched (K={k}) "
          f"{out['batched_subsets_per_s']['median']:.2f} subsets/s: {s['median']:.2f}x "
          f"(range {s['min']:.2f}-{s['max']:.2f} over {s['n']} repeats)")
    print(f"batched step: {flops / 1e9:.2f} GFLOP in {1e3 * statistics.median(step_s):.1f} ms = {rate:.0f} GFLOP/s, "
          f"{100 * rate / peak:.0f}% of this machine's fp32 GEMM rate ({peak:.0f} GFLOP/s, 2048x2048 matmul)")
    print(f"peak memory of a group: {statistics.median(peaks):.0f} MiB above the process's RSS before it")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(out, fh, indent=1)
    return out


if __name__ == "__main__":
    main()
