"""Retraining throughput, one by one against batched (`bench.batched`), measured in one process.

Usage: `python benchmarks/retraining.py [--suite small] [--repeats 3] [--jobs 4] [--workers 2] [--cache-dir DIR]
[--json F]`.

Both sides run the code the ground truth runs (`bench.lm.finetune_group`, `batched=False` / `True`) on the
suite's first ground-truth subsets, from its warm-up model: fine-tuning plus the test split's losses.
Repeats alternate the two sides, so a slow moment of a shared machine hits both; the speed-up is the
median of the per-repeat ratios, with their range. With `--workers W` > 1 each repeat also runs both sides
in W forked processes sharing the threads (`LocalExecutor(workers=W)`, what `bench run --workers W` does):
W groups batched, and W x `--jobs` jobs one by one, so the process-level parallelism is credited to
neither side alone. In the same run: the FLOPs of one batched training step (counted by
`torch.utils.flop_counter`, forward and backward) over its time, as a share of this machine's fp32 GEMM
rate (a 2048 x 2048 `torch.matmul` timed right after each of 10 steps; median and range of the ratios),
the same for the step's matrix products replayed alone (`products_alone`), and the peak memory of a group
of K and of one job alone, each measured in a fresh process (RSS sampled during training, minus the RSS
after loading the model and data): in the measuring process itself, memory freed by earlier work is kept
by the allocator (`bench.batched.keep_freed_memory`), so a difference of RSS there would say nothing.
The speed-up's bound (`speedup_bound`): a job's steps, each at its products' time alone, against one job of
the loop; what no engine that computes these fp32 products can beat on this machine.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time


def median_spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def _setup(suite_name: str, cache_dir: str | None):
    """The suite's warm-up LM, its start state, the encoded pool and test split, and K subsets."""
    import numpy as np

    from bench.cache import Cache, default_cache_dir
    from bench.retrain import group_size, subset_mask, warmup_lm
    from bench.suites import load_suite

    suite = load_suite(suite_name)
    lm, _ = warmup_lm(suite, Cache(cache_dir or default_cache_dir()))
    pool, evaluation = lm.encode(suite.split("train")), lm.encode(suite.split("test"))
    gt = suite.spec.ground_truth
    k = group_size(suite)
    members = [np.flatnonzero(subset_mask(len(pool.lengths), gt.fraction, gt.seed, j)) for j in range(k)]
    return suite, lm, lm.state_dict(), pool, evaluation, members


def _memory_child(suite_name: str, cache_dir: str | None, k: int) -> None:
    """In a fresh process: RSS after loading, then the peak while training a group of `k` (printed as JSON)."""
    from bench import batched as stacking
    from bench.accounting import _RssSampler
    from bench.lm import finetune_group

    _, lm, start, pool, evaluation, members = _setup(suite_name, cache_dir)
    stacking.keep_freed_memory()
    members = (members * (1 + k // len(members)))[:k]
    before = _RssSampler()._proc.memory_info().rss
    with _RssSampler() as sampler:
        finetune_group(lm, start, pool, members, list(range(k)), evaluation=evaluation, batched=k > 1)
    print(json.dumps({"k": k, "rss_before_mib": before / 2**20, "peak_mib": sampler.peak / 2**20,
                      "group_mib": (sampler.peak - before) / 2**20}))


def group_memory(suite_name: str, cache_dir: str | None, k: int) -> dict:
    """`_memory_child` run in a fresh Python process."""
    argv = [sys.executable, __file__, "--suite", suite_name, "--memory-child", str(k)]
    if cache_dir:
        argv += ["--cache-dir", cache_dir]
    proc = subprocess.run(argv, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def gemm_gflops(x, y) -> float:
    """GFLOP/s of one timed `x @ y` (square n x n operands): the GEMM rate timed beside a measurement."""
    t0 = time.perf_counter()
    x @ y
    return 2 * x.shape[0] ** 3 / (time.perf_counter() - t0) / 1e9


def products_alone(step, repeats: int = 5, n: int = 2048) -> dict[str, float]:
    """The matrix products of one call of `step`, replayed alone, against an n x n GEMM, interleaved.

    The profiler records every `bmm` / `mm` with its shapes; the products are then timed again on random
    tensors of the same shapes, and each repeat also times an n x n `torch.matmul` right after, so that a
    slow moment of a shared machine hits both: the share of the GEMM rate is the median of the repeats'
    ratios. No engine that computes these products, however well it fuses the rest of the step, can take
    less time than their sum, nor run faster than their rate.
    """
    import torch
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        step()
    calls = []
    flops = 0
    for e in prof.events():
        if e.name in ("aten::bmm", "aten::mm"):
            a, b = torch.randn(e.input_shapes[0]), torch.randn(e.input_shapes[1])
            calls.append((torch.bmm if e.name == "aten::bmm" else torch.mm, a, b))
            flops += 2 * (a.shape[0] if a.dim() == 3 else 1) * a.shape[-2] * a.shape[-1] * b.shape[-1]
    x, y = torch.randn(n, n), torch.randn(n, n)
    for op, a, b in calls:
        op(a, b)
    x @ y
    seconds, shares = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for op, a, b in calls:
            op(a, b)
        seconds.append(time.perf_counter() - t0)
        shares.append(flops / seconds[-1] / 1e9 / gemm_gflops(x, y))
    return {"calls": len(calls), "seconds": statistics.median(seconds), "gflop": flops / 1e9,
            "gflops": flops / statistics.median(seconds) / 1e9, "fraction_of_peak": median_spread(shares)}


def _in_workers(workers: int, units: list, train) -> float:
    """Wall seconds to run `train(unit)` for every unit in `workers` forked processes (LocalExecutor)."""
    import tempfile
    from pathlib import Path

    from bench.executors import LocalExecutor

    class Unit:
        def __init__(self, directory: Path, i: int) -> None:
            self.out_path, self.i = directory / f"{i}.done", i

    with tempfile.TemporaryDirectory() as tmp:
        jobs = [Unit(Path(tmp), i) for i in range(len(units))]

        def fn(group):
            for job in group:
                train(units[job.i])
                job.out_path.write_text("done")

        t0 = time.perf_counter()
        LocalExecutor(workers=workers).run(fn, jobs, desc=f"{workers} workers")
        return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from bench import batched as stacking
    from bench.lm import finetune_group

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="small")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=4, help="one-by-one jobs per repeat")
    ap.add_argument("--workers", type=int, default=1, help="also measure both sides in this many forked processes")
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--json", default=None, help="also write the figures here")
    ap.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.memory_child is not None:
        _memory_child(args.suite, args.cache_dir, args.memory_child)
        return {}

    suite, lm, start, pool, evaluation, members = _setup(args.suite, args.cache_dir)
    k = len(members)
    seeds = list(range(k))
    stacking.keep_freed_memory()  # the harness's setting, for both sides alike

    one, grouped, ratios = [], [], []
    w_one, w_grouped, w_ratios, w_vs_plain = [], [], [], []
    for _ in range(args.repeats):
        r = finetune_group(lm, start, pool, members[: args.jobs], seeds[: args.jobs], evaluation=evaluation,
                           batched=False)
        one.append(args.jobs / r.wall_s)
        r = finetune_group(lm, start, pool, members, seeds, evaluation=evaluation)
        if not r.batched:
            raise SystemExit(f"suite {args.suite}: its target LM does not train batched (group size {k})")
        grouped.append(k / r.wall_s)
        ratios.append(grouped[-1] / one[-1])
        if args.workers > 1:
            w = args.workers
            wall = _in_workers(w, [[j] for j in range(args.jobs)] * w, lambda js: finetune_group(
                lm, start, pool, [members[j] for j in js], [seeds[j] for j in js], evaluation=evaluation,
                batched=False))
            w_one.append(w * args.jobs / wall)
            wall = _in_workers(w, [list(range(k))] * w, lambda js: finetune_group(
                lm, start, pool, [members[j] for j in js], [seeds[j] for j in js], evaluation=evaluation))
            w_grouped.append(w * k / wall)
            w_ratios.append(w_grouped[-1] / w_one[-1])
            w_vs_plain.append(w_grouped[-1] / one[-1])

    # one batched step: its FLOPs, and its time without the Python of the training loop around it
    lm.load_state_dict(start)
    stack = stacking.StackedLlama(lm.model, k)
    opt = torch.optim.AdamW(stack.parameters(), lr=suite.spec.lm.finetune_lr, fused=True)
    bs = suite.spec.lm.batch_size
    index = torch.stack([torch.as_tensor(m[:bs]) for m in members])
    packed = stacking._rows(pool, index)

    def step():
        loss = stack.batch_losses(packed).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    x, y = torch.randn(2048, 2048), torch.randn(2048, 2048)
    x @ y
    step_s, step_shares, gemms = [], [], []
    for _ in range(10):  # each step beside a 2048 x 2048 GEMM: a slow moment of the machine hits both
        t0 = time.perf_counter()
        step()
        step_s.append(time.perf_counter() - t0)
        gemms.append(gemm_gflops(x, y))
        step_shares.append(flops / step_s[-1] / 1e9 / gemms[-1])
    peak = statistics.median(gemms)
    rate = flops / statistics.median(step_s) / 1e9
    alone = products_alone(step)
    # the most any engine on these products could give: every step of a job at the products' time alone
    # (its test losses and the loop's Python free), against the one-by-one jobs measured above
    steps = math.ceil(len(members[0]) / bs) * suite.spec.lm.finetune_epochs
    bound = {"steps_per_job": steps, "batched_s_per_job": steps * alone["seconds"] / k}
    bound["speedup"] = 1 / bound["batched_s_per_job"] / statistics.median(one)
    memory = {str(n): group_memory(args.suite, args.cache_dir, n) for n in sorted({1, k, 2 * k})}
    out = {"suite": args.suite, "group_size": k, "threads": torch.get_num_threads(),
           "one_by_one_subsets_per_s": median_spread(one), "batched_subsets_per_s": median_spread(grouped),
           "speedup": median_spread(ratios), "gemm_peak_gflops": peak,
           "batched_step": {"gflop": flops / 1e9, "seconds": median_spread(step_s), "gflops": rate,
                            "fraction_of_peak": median_spread(step_shares),
                            "products_alone": alone},
           "speedup_bound": bound,
           "memory_fresh_process": memory}
    if args.workers > 1:
        out["workers"] = {"workers": args.workers, "one_by_one_subsets_per_s": median_spread(w_one),
                          "batched_subsets_per_s": median_spread(w_grouped), "speedup": median_spread(w_ratios),
                          "batched_workers_vs_one_by_one_one_process": median_spread(w_vs_plain)}
    s = out["speedup"]
    print(f"{args.suite}: one by one {out['one_by_one_subsets_per_s']['median']:.2f} subsets/s, batched (K={k}) "
          f"{out['batched_subsets_per_s']['median']:.2f} subsets/s: {s['median']:.2f}x "
          f"(range {s['min']:.2f}-{s['max']:.2f} over {s['n']} repeats)")
    if args.workers > 1:
        wk = out["workers"]
        print(f"{args.workers} forked workers: one by one {wk['one_by_one_subsets_per_s']['median']:.2f} subsets/s, "
              f"batched {wk['batched_subsets_per_s']['median']:.2f} subsets/s: {wk['speedup']['median']:.2f}x "
              f"(range {wk['speedup']['min']:.2f}-{wk['speedup']['max']:.2f}); batched in workers against one by "
              f"one in one process: {wk['batched_workers_vs_one_by_one_one_process']['median']:.2f}x (range "
              f"{wk['batched_workers_vs_one_by_one_one_process']['min']:.2f}-"
              f"{wk['batched_workers_vs_one_by_one_one_process']['max']:.2f})")
    print(f"batched step: {flops / 1e9:.2f} GFLOP in {1e3 * statistics.median(step_s):.1f} ms = {rate:.0f} GFLOP/s, "
          f"{100 * statistics.median(step_shares):.0f}% (range {100 * min(step_shares):.0f}-"
          f"{100 * max(step_shares):.0f}%) "
          f"of this machine's fp32 GEMM rate timed beside each step ({peak:.0f} GFLOP/s, 2048x2048 matmul)")
    print(f"its {alone['calls']} matrix products alone (same shapes, random data): {alone['gflop']:.2f} GFLOP in "
          f"{1e3 * alone['seconds']:.1f} ms = {alone['gflops']:.0f} GFLOP/s, "
          f"{100 * alone['fraction_of_peak']['median']:.0f}% of the GEMM rate timed beside them (range "
          f"{100 * alone['fraction_of_peak']['min']:.0f}-{100 * alone['fraction_of_peak']['max']:.0f}%): the bound "
          f"for any engine built on these products")
    print(f"bound: {bound['steps_per_job']} steps per job at the products' time alone = "
          f"{bound['batched_s_per_job']:.3f} s per job, at most {bound['speedup']:.2f}x the one-by-one loop "
          f"(fp32, these products; measured {s['median']:.2f}x)")
    for n, m in memory.items():
        print(f"peak memory training {n} job(s) at once (fresh process): {m['group_mib']:.0f} MiB above the "
              f"{m['rss_before_mib']:.0f} MiB after loading (peak RSS {m['peak_mib']:.0f} MiB)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(out, fh, indent=1)
    return out


if __name__ == "__main__":
    main()
