"""Gate for refactors of the retraining jobs: every job family's results on `tiny`, saved for a bit-for-bit diff.

    BENCH_CACHE=$(mktemp -d) python benchmarks/retrain_gate.py /tmp/gate_before   # writes .npz and .json
    BENCH_CACHE=$(mktemp -d) python benchmarks/retrain_gate.py /tmp/gate_after
    python benchmarks/retrain_gate.py --compare /tmp/gate_before /tmp/gate_after

In the cache given by BENCH_CACHE it builds the LDS ground truth (`RunContext.ground_truth`), the same with two
seeds per subset, a `retrain` table over chosen rows of another split, two `finetune_answers` batches and a
`leave_one_out` with 3 removals, and records how many jobs each ran now (`ran`: all 0 when the cache already
held them). Then it damages one job file of each family, runs them again and records the warnings (cache
path masked), the jobs rerun and the results (`damaged_*`, which must equal the undamaged ones).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
from pathlib import Path

import numpy as np


def _families(suite, suite2, cache, device: str = "cpu") -> tuple[dict, dict, dict]:
    """Run every job family; (arrays, answers, ran counts)."""
    from bench.api import RunContext

    arrays: dict[str, np.ndarray] = {}
    answers: dict[str, object] = {}
    ran: dict[str, int] = {}

    ctx = RunContext(suite, cache=cache, device=device)
    gt = ctx.ground_truth()
    ran["ground_truth"] = _ran(ctx)
    arrays.update(gt_masks=gt.masks, gt_losses=gt.losses, gt_seeds=gt.seeds)
    if gt.seed_losses is not None:
        arrays["gt_seed_losses"] = gt.seed_losses

    ctx2 = RunContext(suite2, cache=cache, device=device)  # two seeds per subset: replicate files
    gt2 = ctx2.ground_truth()
    ran["ground_truth2"] = _ran(ctx2)
    arrays.update(gt2_masks=gt2.masks, gt2_losses=gt2.losses, gt2_seeds=gt2.seeds, gt2_seed_losses=gt2.seed_losses)

    table, ran["retrain"] = ctx.retrain(pool_split="airrep_train", eval_split="airrep_train",
                                        pool_ids=tuple(range(0, 120, 2)), eval_ids=tuple(range(1, 41, 2)),
                                        num_subsets=6, fraction=0.3, seed=7)
    arrays.update(rt_masks=table.masks, rt_losses=table.losses, rt_seeds=table.seeds)

    requests = [([3, 1, 2, 0], 0, [0, 1]), ([5, 6, 7, 8], 1, [2, 3]), ([10, 11], 0, [0])]
    got, _, ran["answers"] = ctx.finetune_answers(requests, max_new_tokens=6)
    answers["answers"] = got
    got2, _, ran["answers2"] = ctx.finetune_answers([([20, 21, 22], 3, [4, 5, 6])], max_new_tokens=4)
    answers["answers2"] = got2

    whole, each, _, ran["loo"] = ctx.leave_one_out([3, 17, 42], eval_ids=tuple(range(16)), seed=0)
    arrays.update(loo_whole=whole, loo_each=each)
    return arrays, answers, ran


def _ran(ctx) -> int:
    """How many jobs the context's last ground-truth phase ran now (its count less those read from the cache)."""
    phase = ctx.acct.phases[-1]
    return int(phase.count - phase.cached_count)


def gate(out: Path) -> None:
    import bench
    from bench.cache import Cache

    root = Path(os.environ["BENCH_CACHE"]).resolve()
    cache = Cache(root)
    suite = bench.load_suite("tiny")
    suite2 = bench.load_suite("tiny", ground_truth__num_subsets=4, ground_truth__seeds_per_subset=2)

    arrays, answers, ran = _families(suite, suite2, cache)

    # one damaged file per family: named on stderr, recomputed, the same result
    damaged = []
    for kind in ("retrain", "loo", "generate"):
        files = sorted(root.rglob(f"{kind}/*/jobs/*"))
        victim = files[len(files) // 2]
        victim.write_bytes(victim.read_bytes()[:40])
        damaged.append(victim.relative_to(root).as_posix())
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        arrays_d, answers_d, ran_d = _families(suite, suite2, cache)
    warnings = sorted(line.replace(str(root), "<CACHE>") for line in err.getvalue().splitlines()
                      if line.startswith("warning:"))
    arrays.update({f"damaged_{k}": v for k, v in arrays_d.items()})
    np.savez(out.with_suffix(".npz"), **arrays)
    out.with_suffix(".json").write_text(json.dumps({
        "answers": answers, "damaged_answers": answers_d, "ran": ran, "damaged_ran": ran_d,
        "damaged_files": damaged, "warnings": warnings}, indent=1, sort_keys=True), encoding="utf-8")
    print(json.dumps({"ran": ran, "damaged_ran": ran_d, "warnings": len(warnings)}))


def compare(a: Path, b: Path) -> int:
    """0 if the two gate outputs are bit-identical (arrays, answers, warnings; `ran` may differ)."""
    za, zb = np.load(a.with_suffix(".npz")), np.load(b.with_suffix(".npz"))
    bad = []
    if sorted(za.files) != sorted(zb.files):
        bad.append(f"array names differ: {sorted(za.files)} vs {sorted(zb.files)}")
    for key in sorted(set(za.files) & set(zb.files)):
        x, y = za[key], zb[key]
        if x.dtype != y.dtype or x.shape != y.shape or not np.array_equal(x, y):
            bad.append(f"{key}: differs ({x.dtype}{x.shape} vs {y.dtype}{y.shape})")
    ja, jb = (json.loads(p.with_suffix(".json").read_text(encoding="utf-8")) for p in (a, b))
    for key in ("answers", "damaged_answers", "warnings", "damaged_files"):
        if ja[key] != jb[key]:
            bad.append(f"{key}: differs")
    for line in bad:
        print("DIFF", line)
    print(f"{len(za.files)} arrays compared; ran {ja['ran']} vs {jb['ran']}; "
          f"{'bit-identical' if not bad else f'{len(bad)} difference(s)'}")
    return 1 if bad else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path, nargs="+", help="output stem (.npz and .json), or two stems with --compare")
    p.add_argument("--compare", action="store_true")
    args = p.parse_args()
    if args.compare:
        return compare(*args.out)
    gate(args.out[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
