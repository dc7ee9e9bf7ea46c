"""The four tables of retraining jobs, each a `JobKind` of `bench.retrain.jobs` with its cache key and reader.

- Random subsets (`retrain_table`): the LDS ground truth and AirRep's training data; fine-tune the start LM
  on M random subsets of a pool and record the losses of an evaluation set. A subset does not depend on how
  many others are drawn, so a larger M extends a table.
- Answers (`generate_jobs`): data selection's runs; fine-tune on explicit pool rows, answer eval prompts.
- Leave-one-out (`loo_table`): the whole pool, and the pool without each of a few rows, same order.
- Removals (`removal_table`): the pool without a set of rows, same order (the removal task's counterfactuals).

Each job is cached on its own (atomic write), so an interrupted run resumes where it stopped; cache keys
hash every input that determines the result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.cache import Cache
from bench.config import fingerprint
from bench.executors import Executor
from bench.retrain.jobs import (
    JobKind,
    JsonFile,
    NpzFile,
    RetrainSpec,
    cached_wall_s,
    group_size,
    read_jobs,
    retrain_versions,
    run_group,
    run_jobs,
    spec_suite,
    worker_state,
)
from bench.retrain.lms import heldout_args, lm_args, warmup_built
from bench.suites import Suite


# -- random subsets ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GroundTruth:
    """Losses of models fine-tuned on random subsets, each subset with one or more training seeds.

    Attributes:
        masks: bool [M, n_pool], subset membership.
        losses: float64 [M, n_eval], mean response cross-entropy of each eval example after training on
            each subset, averaged over the subset's seeds.
        seeds: int64 [M], the training seed of each subset's first job.
        wall_s: float64 [M], seconds each subset's jobs took when they ran (summed over its seeds).
        seed_losses: float64 [S, M, n_eval], the losses of each seed (S = seeds per subset).
    """

    masks: np.ndarray
    losses: np.ndarray
    seeds: np.ndarray
    wall_s: np.ndarray
    seed_losses: np.ndarray | None = None

    def columns(self, positions: Sequence[int]) -> GroundTruth:
        """The table restricted to the eval examples at `positions` (a suite's test or dev columns)."""
        idx = np.asarray(positions, dtype=np.int64)
        return GroundTruth(masks=self.masks, losses=self.losses[:, idx], seeds=self.seeds, wall_s=self.wall_s,
                           seed_losses=None if self.seed_losses is None else self.seed_losses[:, :, idx])


def subset_mask(n_pool: int, fraction: float, seed: int, index: int) -> np.ndarray:
    """Subset `index`: exactly round(fraction * n_pool) members (at least 1), drawn from (seed, index) alone.

    A subset does not depend on how many others are drawn, so a table of M subsets is a prefix of a table
    of more, and growing M reuses every finished job.

    Returns:
        bool [n_pool].
    """
    mask = np.zeros(n_pool, dtype=bool)
    mask[np.random.default_rng([seed, index]).choice(n_pool, size=subset_size(n_pool, fraction),
                                                     replace=False)] = True
    return mask


def subset_size(n_pool: int, fraction: float) -> int:
    """Members of every subset of a table: round(fraction * n_pool), at least 1."""
    return max(1, round(fraction * n_pool))


def subset_masks(n_pool: int, num_subsets: int, fraction: float, seed: int) -> np.ndarray:
    """The first `num_subsets` subsets, bool [num_subsets, n_pool]."""
    return np.stack([subset_mask(n_pool, fraction, seed, j) for j in range(num_subsets)])


@dataclass(frozen=True)
class RetrainJob:
    """One training run: subset `index` of the pool with `seed`; writes mask and eval losses to `out_path`.

    `replicate` r > 0 is the same subset trained with another seed (the noise ceiling's repeats).
    """

    spec: RetrainSpec
    index: int
    seed: int
    n_pool: int
    fraction: float
    subset_seed: int
    out_path: Path
    replicate: int = 0


def job_seed(seed: int, index: int, replicate: int = 0) -> int:
    """The training seed of subset `index`'s `replicate`-th run (replicate 0: the seed of one-seed tables)."""
    key = [seed, index, 1] if replicate == 0 else [seed, index, 1, replicate]
    return int(np.random.default_rng(key).integers(2**31))


def job_file(jobs_dir: Path, index: int, replicate: int = 0) -> Path:
    """Where subset `index`'s `replicate`-th run is cached."""
    return jobs_dir / (f"{index:05d}.npz" if replicate == 0 else f"{index:05d}-s{replicate}.npz")


def _subset_outputs(jobs: list[RetrainJob]) -> list[dict]:
    """Fine-tune from the start weights on each job's subset (K at once, `bench.lm.finetune_group`)."""
    from bench.lm import finetune_group

    lm, warm_state, pool, evaluation = worker_state(jobs[0].spec)
    masks = [subset_mask(job.n_pool, job.fraction, job.subset_seed, job.index) for job in jobs]
    result = finetune_group(lm, warm_state, pool, [np.flatnonzero(m) for m in masks], [job.seed for job in jobs],
                            evaluation=evaluation)
    return [{"losses": losses, "mask": mask, "wall_s": np.float64(result.wall_s / len(jobs)),
             "seed": np.int64(job.seed), "group_size": np.int64(len(jobs)), "batched": np.bool_(result.batched)}
            for job, mask, losses in zip(jobs, masks, result.losses, strict=True)]


SUBSETS = JobKind("retrain", _subset_outputs, NpzFile(("mask", "losses", "seed", "wall_s")))


def run_retrain_group(jobs: Sequence[RetrainJob]) -> None:
    """Train a group of subset jobs at once and write each job's file (a finished one is kept)."""
    run_group(SUBSETS, list(jobs))


def run_retrain_job(job: RetrainJob) -> None:
    """One job on its own (a group of one)."""
    run_retrain_group([job])


def _table_args(spec: RetrainSpec, suite: Suite, fraction: float | None, seed: int) -> tuple[int, dict]:
    """The pool's size and the cache key of a table of jobs on it (`fraction` None: leave-one-out's)."""
    pool_n = len(suite.split(spec.pool_split)) if spec.pool_ids is None else len(spec.pool_ids)  # type: ignore[arg-type]
    # "test+dev" is the drawn test split, which a suite without a dev split calls "test": the same jobs
    eval_split = "test" if spec.eval_split == "test+dev" else spec.eval_split
    args = {**lm_args(suite), **heldout_args(suite, spec.eval_split), "pool_split": spec.pool_split,
            "eval_split": eval_split, "pool_ids": None if spec.pool_ids is None else fingerprint(list(spec.pool_ids)),
            "eval_ids": None if spec.eval_ids is None else fingerprint(list(spec.eval_ids)),
            "fraction": fraction, "seed": seed, "n_pool": pool_n, "group_size": group_size(suite),
            "code_versions": retrain_versions()}
    return pool_n, args


def _subset_jobs(spec: RetrainSpec, jobs_dir: Path, *, n_pool: int, num_subsets: int, seeds_per_subset: int,
                 fraction: float, seed: int) -> list[RetrainJob]:
    """Every run of the table, seed by seed: the first seed of every subset, then the second, ..."""
    return [RetrainJob(spec, j, job_seed(seed, j, r), n_pool, fraction, seed, job_file(jobs_dir, j, r), r)
            for r in range(seeds_per_subset) for j in range(num_subsets)]


def plan_table(spec: RetrainSpec, suite: Suite, cache: Cache, *, num_subsets: int, fraction: float,
               seed: int, seeds_per_subset: int = 1) -> dict[str, float | int | None]:
    """What `retrain_table` would do, touching nothing: jobs, how many are cached, their measured mean cost."""
    pool_n, args = _table_args(spec, suite, fraction, seed)
    jobs = _subset_jobs(spec, SUBSETS.jobs_dir(cache, args, peek=True), n_pool=pool_n, num_subsets=num_subsets,
                        seeds_per_subset=seeds_per_subset, fraction=fraction, seed=seed)
    walls = cached_wall_s(SUBSETS, jobs)
    return {"jobs": len(jobs), "cached": len(walls), "mean_job_s": sum(walls) / len(walls) if walls else None,
            "warmup_cached": warmup_built(suite, cache),
            "group_size": args["group_size"]}


def probe_table(spec: RetrainSpec, suite: Suite, *, fraction: float, steps: tuple[int, int] = (2, 4),
                eval_rows: int = 64) -> dict[str, float | int]:
    """Time a few optimiser steps of this table's jobs and price a whole job from them (writes no job).

    What `bench plan --probe` runs when no job of the table was measured (a recipe never run on this
    machine, e.g. a GPU recipe priced on a CPU). A group of K jobs (`group_size`) trains on real pool rows
    from the start LM: once for one step (untimed: the frozen layers' shared output and allocations), then
    for `steps[0]` and `steps[1]` steps; the difference gives the seconds per step and the rest the
    overhead. The evaluation is timed on `eval_rows` rows and scaled to the evaluated split. A job is
    ceil(subset / batch size) x epochs steps. The one-time work of a process (loading the start LM, the
    frozen layers' output) is not in the price.

    The warm-up LM's steps (`TargetLM.train`, one model, through the whole model) are timed the same way.

    Returns:
        step_s, overhead_s and eval_s of a group, job_s (a group's time over K), group_size, steps_per_job,
        warmup_step_s (one warm-up step).

    Raises:
        ConfigError: the pool is too small to time `steps[1]` steps.
    """
    import dataclasses
    import math
    import time

    import torch

    from bench.errors import ConfigError
    from bench.lm import finetune_group

    if not 0 < steps[0] < steps[1]:
        raise ValueError(f"steps must be increasing and positive, got {steps}")
    lm, start, pool, evaluation = worker_state(spec)
    k, recipe = group_size(suite), lm.spec
    n_pool = len(pool.lengths)
    if n_pool < steps[1] * recipe.batch_size:
        raise ConfigError(f"--probe needs a pool of at least {steps[1] * recipe.batch_size} examples to time "
                          f"{steps[1]} steps, this one has {n_pool}; run the ground truth instead")
    per_job = math.ceil(subset_size(n_pool, fraction) / recipe.batch_size) * recipe.finetune_epochs
    rng = np.random.default_rng(0)

    def group_s(n_steps: int, rows=None) -> float:
        size = min(n_pool, n_steps * recipe.batch_size)
        members = [np.sort(rng.choice(n_pool, size=size, replace=False)) for _ in range(k)]
        t0 = time.perf_counter()
        finetune_group(lm, start, pool, members, list(range(k)), evaluation=rows)
        return time.perf_counter() - t0

    n_eval = len(evaluation.lengths)
    lm.spec = dataclasses.replace(recipe, finetune_epochs=1)  # n steps = one epoch of n batches
    try:
        group_s(1, evaluation.take(torch.arange(1)) if n_eval else None)  # warms up: the frozen layers' output
        short, long = group_s(steps[0]), group_s(steps[1])
        step = max(0.0, (long - short) / (steps[1] - steps[0]))
        overhead = max(0.0, short - steps[0] * step)
        m = min(n_eval, eval_rows)
        evaluated = group_s(1, evaluation.take(torch.arange(m)) if m < n_eval else evaluation) if m else 0.0
        eval_s = max(0.0, evaluated - overhead - step) * n_eval / max(m, 1) if m else 0.0
        # the warm-up trains one model with TargetLM.train (no shared frozen output): time its steps too
        rows = pool.take(torch.arange(steps[1] * recipe.batch_size))
        lm.load_state_dict(start)
        t0 = time.perf_counter()
        lm.train(rows, lr=recipe.warmup_lr, seed=0, steps=steps[0])
        t1 = time.perf_counter()
        lm.train(rows, lr=recipe.warmup_lr, seed=0, steps=steps[1])
        warmup_step = max(0.0, (time.perf_counter() - t1 - (t1 - t0)) / (steps[1] - steps[0]))
    finally:
        lm.spec = recipe
    group = overhead + per_job * step + eval_s
    return {"step_s": step, "overhead_s": overhead, "eval_s": eval_s, "job_s": group / k, "group_size": k,
            "steps_per_job": per_job, "warmup_step_s": warmup_step}


def retrain_table(spec: RetrainSpec, suite: Suite, cache: Cache, *, num_subsets: int, fraction: float,
                  seed: int, seeds_per_subset: int = 1, executor: Executor | None = None,
                  desc: str = "retraining") -> tuple[GroundTruth, int]:
    """Build (or resume, or load) the table of losses after fine-tuning on M random subsets of a pool.

    Each subset is trained `seeds_per_subset` times (the table's losses are their mean). Jobs run in groups
    of `group_size(suite)` (trained at once).

    Returns:
        The table and the number of jobs that ran now (0 when everything was cached).
    """
    pool_n, args = _table_args(spec, suite, fraction, seed)
    # num_subsets is not part of the key: subset j is the same for any M, so a larger M extends the table
    jobs = _subset_jobs(spec, SUBSETS.jobs_dir(cache, args), n_pool=pool_n, num_subsets=num_subsets,
                        seeds_per_subset=seeds_per_subset, fraction=fraction, seed=seed)
    ran = run_jobs(SUBSETS, jobs, suite, cache, device=spec.device, executor=executor, desc=desc)
    return load_table(jobs), ran


def load_table(jobs: Sequence[RetrainJob]) -> GroundTruth:
    """Assemble the finished jobs' files into a `GroundTruth` (replicates averaged)."""
    n_seeds = 1 + max(job.replicate for job in jobs)
    n_subsets = len(jobs) // n_seeds
    masks, losses, seeds, walls = [], [], [], []
    for job, out in zip(jobs, read_jobs(SUBSETS, jobs), strict=True):
        if job.replicate == 0:
            masks.append(out["mask"])
            seeds.append(int(out["seed"]))
        losses.append(out["losses"])
        walls.append(float(out["wall_s"]))
    seed_losses = np.stack(losses).reshape(n_seeds, n_subsets, -1)
    return GroundTruth(masks=np.stack(masks), losses=seed_losses.mean(axis=0), seeds=np.array(seeds),
                       wall_s=np.array(walls).reshape(n_seeds, n_subsets).sum(axis=0), seed_losses=seed_losses)


# -- answers ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GenerateJob:
    """Fine-tune on explicit pool rows with `seed`, then answer eval rows greedily; writes JSON to `out_path`.

    Data selection's unit of work: the rows a method selected for one task (or a random draw, or the whole
    pool), the task's test prompts. Cached by content (`generate_jobs`), so a random or full-pool run is
    shared by every method, and a rerun fine-tunes nothing.
    """

    spec: RetrainSpec
    members: tuple[int, ...]
    seed: int
    prompt_ids: tuple[int, ...]
    max_new_tokens: int
    out_path: Path


def _answer_outputs(jobs: list[GenerateJob]) -> list[dict]:
    """Fine-tune the group's copies (at once where `bench.batched` can) and generate each job's answers."""
    from bench.lm import finetune_group

    lm, start, pool, _ = worker_state(jobs[0].spec)
    evaluation = spec_suite(jobs[0].spec).split(jobs[0].spec.eval_split)  # type: ignore[arg-type]
    prompts = [[evaluation[i].prompt for i in job.prompt_ids] for job in jobs]
    result = finetune_group(lm, start, pool, [np.array(job.members) for job in jobs], [job.seed for job in jobs],
                            prompts=prompts, max_new_tokens=max(job.max_new_tokens for job in jobs))
    return [{"answers": answers, "wall_s": result.wall_s / len(jobs), "group_size": len(jobs),
             "batched": result.batched} for answers in result.generations]


def _n_members(job: GenerateJob) -> int:
    return len(job.members)


ANSWERS = JobKind("generate", _answer_outputs, JsonFile("answers"), batch_by=_n_members)  # equal sizes train together


def run_generate_group(jobs: Sequence[GenerateJob]) -> None:
    """Fine-tune the group's copies (at once where `bench.batched` can), generate, write each job's answers."""
    run_group(ANSWERS, list(jobs))


def generate_jobs(spec: RetrainSpec, suite: Suite, cache: Cache, requests: Sequence[tuple[Sequence[int], int,
                  Sequence[int]]], *, max_new_tokens: int, executor: Executor | None = None,
                  desc: str = "fine-tuning") -> tuple[list[list[str]], float, int]:
    """Answers of the fine-tuned LM for each request (pool rows, seed, eval rows), cached one by one.

    Member rows are sorted (the training set, not its order, identifies a run). Requests of one size run
    in groups of `group_size(suite)`.

    Returns:
        (answers per request, the seconds producing them took when they ran, how many ran now).
    """
    args = {**lm_args(suite), **heldout_args(suite, spec.eval_split), "pool_split": spec.pool_split,
            "eval_split": spec.eval_split, "group_size": group_size(suite), "code_versions": retrain_versions()}
    directory = ANSWERS.jobs_dir(cache, args)
    jobs = []
    for members, seed, prompt_ids in requests:
        rows = tuple(sorted(int(i) for i in members))
        key = fingerprint({"members": list(rows), "seed": int(seed), "prompt_ids": [int(i) for i in prompt_ids],
                           "max_new_tokens": max_new_tokens})
        jobs.append(GenerateJob(spec, rows, int(seed), tuple(int(i) for i in prompt_ids), max_new_tokens,
                                directory / f"{key[:20]}.json"))
    ran = run_jobs(ANSWERS, jobs, suite, cache, device=spec.device, executor=executor, desc=desc)
    answers, wall = [], 0.0
    for out in read_jobs(ANSWERS, jobs, ("answers", "wall_s")):
        answers.append(out["answers"])
        wall += float(out["wall_s"])
    return answers, wall, ran


# -- leave-one-out ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LooJob:
    """Fine-tune on the whole pool with `seed`, leaving out pool row `removed` (-1: none); eval losses to `out_path`.

    The left-out example keeps its place in every batch with no loss on it (its labels are all -100), so
    every other example is seen in the same batch at the same step as in the whole pool's run: a retraining
    without the example, the same order otherwise. Its batches' mean loss is then over the other examples'
    tokens (as dropping it from those batches would be), so their gradients weigh 1/(N - n_i) instead of
    1/N there: the loss change is the example's removal, not only minus its own gradient step. On a CPU the
    same removals retrained in the same groups give bit-identical losses; in groups of another size or
    composition they agree to float rounding (about 1e-6 here, against mean changes of 5e-4 on small).
    """

    spec: RetrainSpec
    removed: int
    seed: int
    out_path: Path


def _silenced_runs(spec: RetrainSpec, removed_sets: Sequence[Sequence[int]], seeds: Sequence[int]):
    """Train one copy per removal set at once (`bench.lm.finetune_group`), its removed rows silenced in place.

    Each removed row keeps its position in the order as a copy of itself with no label token, so the run
    differs from the whole pool's of the same seed in those examples alone (the others of its batches weigh
    more: the batch mean is over their tokens). A batch every row of which is removed still takes its
    optimiser step, with a zero gradient (AdamW's momentum and weight decay still move the weights). The
    copies are taken from the pool (a top-layers recipe reuses the pool's frozen-layer states instead of
    recomputing them per group).

    Returns:
        The `FinetuneResult` (losses of the spec's eval rows, one row per set).
    """
    import torch

    from bench.lm import finetune_group

    lm, warm_state, pool, evaluation = worker_state(spec)
    n = len(pool.lengths)
    # one silent copy per row any job of the group removes (at most the pool again, however many jobs)
    flat = np.unique(np.asarray([int(i) for rows in removed_sets for i in rows], dtype=np.int64))
    gone = torch.as_tensor(flat, dtype=torch.long)
    silent = torch.full_like(pool.labels[gone], -100)
    data = pool.take(torch.cat([torch.arange(n), gone]), labels=torch.cat([pool.labels, silent]))
    members = []
    for rows in removed_sets:
        order = np.arange(n)
        rows = np.asarray(list(rows), dtype=np.int64)
        order[rows] = n + np.searchsorted(flat, rows)  # the same slot, a copy without loss
        members.append(order)
    return finetune_group(lm, warm_state, data, members, list(seeds), evaluation=evaluation)


def _loo_outputs(jobs: list[LooJob]) -> list[dict]:
    """Train the group's copies at once (`_silenced_runs`), each without its own example."""
    result = _silenced_runs(jobs[0].spec, [(job.removed,) if job.removed >= 0 else () for job in jobs],
                            [job.seed for job in jobs])
    return [{"losses": losses, "removed": np.int64(job.removed), "wall_s": np.float64(result.wall_s / len(jobs)),
             "seed": np.int64(job.seed), "group_size": np.int64(len(jobs)), "batched": np.bool_(result.batched)}
            for job, losses in zip(jobs, result.losses, strict=True)]


LEAVE_ONE_OUT = JobKind("loo", _loo_outputs, NpzFile(("losses", "removed", "wall_s")))


def run_loo_group(jobs: Sequence[LooJob]) -> None:
    """Train the group's copies at once (`bench.lm.finetune_group`), each without its own example; write each."""
    run_group(LEAVE_ONE_OUT, list(jobs))


def loo_table(spec: RetrainSpec, suite: Suite, cache: Cache, removed: Sequence[int], *, seed: int,
              executor: Executor | None = None,
              desc: str = "leave-one-out") -> tuple[np.ndarray, np.ndarray, float, int]:
    """Eval losses after fine-tuning on the whole pool and on the pool without each of `removed`, cached by job.

    Returns:
        (losses of the whole pool's run [n_eval], of each removal's run [len(removed), n_eval], the seconds
        the jobs took when they ran, how many ran now).
    """
    pool_n, args = _table_args(spec, suite, None, seed)
    bad = [i for i in removed if not 0 <= int(i) < pool_n]
    if bad:
        raise ValueError(f"leave-one-out: pool row {bad[0]} is outside the pool of {pool_n}")
    directory = LEAVE_ONE_OUT.jobs_dir(cache, args)
    jobs = [LooJob(spec, -1, seed, directory / "whole.npz")] + \
        [LooJob(spec, int(i), seed, directory / f"{int(i):06d}.npz") for i in removed]
    ran = run_jobs(LEAVE_ONE_OUT, jobs, suite, cache, device=spec.device, executor=executor, desc=desc)
    losses, wall = [], 0.0
    for out in read_jobs(LEAVE_ONE_OUT, jobs, ("losses", "wall_s")):
        losses.append(out["losses"])
        wall += float(out["wall_s"])
    return losses[0], np.stack(losses[1:]) if removed else np.zeros((0, len(losses[0]))), wall, ran


# -- counterfactual removals ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RemovalJob:
    """Fine-tune on the whole pool with `seed`, rows `removed` silenced in place (none: the whole pool's run).

    Leave-one-out's job with any number of rows left out: each keeps its batch slot with no loss, so two
    removals of one seed differ in their removed examples alone (their batches' means are over the others).
    """

    spec: RetrainSpec
    removed: tuple[int, ...]
    seed: int
    out_path: Path


def _removal_outputs(jobs: list[RemovalJob]) -> list[dict]:
    """Train the group's copies at once, each without its own rows."""
    result = _silenced_runs(jobs[0].spec, [job.removed for job in jobs], [job.seed for job in jobs])
    return [{"losses": losses, "removed": np.asarray(job.removed, dtype=np.int64),
             "wall_s": np.float64(result.wall_s / len(jobs)), "seed": np.int64(job.seed),
             "group_size": np.int64(len(jobs)), "batched": np.bool_(result.batched)}
            for job, losses in zip(jobs, result.losses, strict=True)]


REMOVALS = JobKind("removal", _removal_outputs, NpzFile(("losses", "removed", "wall_s")))


def run_removal_group(jobs: Sequence[RemovalJob]) -> None:
    """Train the group's copies at once, each without its own rows; write each job's file."""
    run_group(REMOVALS, list(jobs))


def removal_table(spec: RetrainSpec, suite: Suite, cache: Cache, requests: Sequence[tuple[Sequence[int], int]], *,
                  executor: Executor | None = None,
                  desc: str = "removals") -> tuple[np.ndarray, float, int, int]:
    """Eval losses after fine-tuning on the pool without each request's rows (rows, seed), cached by content.

    A job's file is named by its sorted rows and seed, so a removal another method (or another test example)
    already asked for is read back, and a request repeated in `requests` trains once.

    Returns:
        (eval losses [len(requests), n_eval], the seconds the distinct jobs took when they ran, how many ran now,
        how many distinct jobs the requests are).

    Raises:
        ValueError: a row outside the pool, or listed twice in one request.
    """
    pool_n, args = _table_args(spec, suite, None, 0)
    del args["fraction"], args["seed"]  # the seed is each job's; its file name holds it
    directory = REMOVALS.jobs_dir(cache, args)
    jobs: dict[Path, RemovalJob] = {}
    paths = []
    for rows, seed in requests:
        removed = tuple(sorted(int(i) for i in rows))
        if any(not 0 <= i < pool_n for i in removed):
            raise ValueError(f"removal: a row of {list(removed)[:5]}... is outside the pool of {pool_n}")
        if len(set(removed)) != len(removed):
            raise ValueError("removal: a request lists a pool row twice")
        path = directory / f"{fingerprint({'removed': list(removed), 'seed': int(seed)})[:20]}.npz"
        jobs.setdefault(path, RemovalJob(spec, removed, int(seed), path))
        paths.append(path)
    distinct = list(jobs.values())
    ran = run_jobs(REMOVALS, distinct, suite, cache, device=spec.device, executor=executor, desc=desc)
    by_path = {job.out_path: out for job, out in zip(distinct, read_jobs(REMOVALS, distinct, ("losses", "wall_s")),
                                                     strict=True)}
    wall = sum(float(out["wall_s"]) for out in by_path.values())
    n_eval = len(by_path[paths[0]]["losses"]) if paths else 0
    losses = np.stack([by_path[p]["losses"] for p in paths]) if paths else np.zeros((0, n_eval))
    return losses, wall, ran, len(distinct)
