"""The warm-up model and the retraining ground truth (the datamodels table).

One mechanism, two uses: `retrain_table` fine-tunes the target LM from the warm-up weights on M random
subsets of a pool and records the losses of an evaluation set. The LDS ground truth is the table of the
`train` pool against the `test` split; AirRep's training data are tables over the disjoint `airrep_train`
split. Each subset is one job, cached on its own (atomic write), so an interrupted run resumes where it
stopped; cache keys hash every input that determines the result.
"""

from __future__ import annotations

import functools
import io
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench import versions
from bench.cache import Cache, atomic_path, atomic_write_text, build, peek_built
from bench.config import fingerprint
from bench.executors import Executor, LocalExecutor
from bench.suites import Suite, load_suite


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


def subset_mask(n_pool: int, fraction: float, seed: int, index: int) -> np.ndarray:
    """Subset `index`: exactly round(fraction * n_pool) members (at least 1), drawn from (seed, index) alone.

    A subset does not depend on how many others are drawn, so a table of M subsets is a prefix of a table
    of more, and growing M reuses every finished job.

    Returns:
        bool [n_pool].
    """
    size = max(1, round(fraction * n_pool))
    mask = np.zeros(n_pool, dtype=bool)
    mask[np.random.default_rng([seed, index]).choice(n_pool, size=size, replace=False)] = True
    return mask


def subset_masks(n_pool: int, num_subsets: int, fraction: float, seed: int) -> np.ndarray:
    """The first `num_subsets` subsets, bool [num_subsets, n_pool]."""
    return np.stack([subset_mask(n_pool, fraction, seed, j) for j in range(num_subsets)])


def _lm_args(suite: Suite) -> dict:
    """What determines the suite's target LM: its data and recipe (the code versions are added per artefact)."""
    return {"suite": suite.name, "data": suite.data_fingerprint, "lm": suite.spec.lm}


def _retrain_versions() -> dict[str, str]:
    return versions.of("lm", "retrain", "batched")


def warmup_built(suite: Suite, cache: Cache) -> bool:
    """Whether the suite's warm-up model is in the cache (touches nothing)."""
    return peek_built(cache, "warmup", _lm_args(suite), versions.of("lm"))


def warmup_lm(suite: Suite, cache: Cache, device: str = "cpu"):  # -> (TargetLM, meta dict)
    """Return the suite's warm-up target LM and its metadata, training and caching it on first use.

    The tokenizer is trained on the text of every split; the model is trained for `lm.warmup_steps` steps
    on the `warmup` split (no steps when that split is empty).
    """
    from bench.lm import TargetLM, load_pretrained_lm

    spec = suite.spec.lm

    def produce(directory: Path) -> dict:
        import time

        t0 = time.perf_counter()
        if spec.model is not None:  # a pretrained LM with its own tokenizer
            lm = load_pretrained_lm(spec.model, device, spec=spec, seed=spec.init_seed)
        else:
            lm = TargetLM.create(suite.tokenizer_texts(), spec, device)
        warm = suite.split("warmup")
        losses: list[float] = []
        if warm and spec.warmup_steps:
            losses = lm.train(lm.encode(warm), lr=spec.warmup_lr, seed=spec.init_seed, steps=spec.warmup_steps,
                              desc=f"warm-up {suite.name}")
        _save_lm_dir(lm, directory)
        return {"wall_s": time.perf_counter() - t0, "steps": len(losses), "n_warmup": len(warm),
                "final_loss": losses[-1] if losses else None, "vocab_size": len(lm.tokenizer)}

    directory, meta, _ = build(cache, "warmup", _lm_args(suite), versions.of("lm"), produce)
    return _load_lm_dir(spec, directory, device), meta  # as a later cache hit sees it, also the first time


def _save_lm_dir(lm, directory: Path) -> None:
    """Save a trained LM into a cache entry (`save_lm`, or `save_pretrained_lm` for a pretrained one)."""
    from bench.lm import save_lm, save_pretrained_lm

    (save_pretrained_lm if lm.spec.model is not None else save_lm)(lm, directory)


def _load_lm_dir(spec, directory: Path, device: str):  # -> TargetLM
    """Load what `_save_lm_dir` wrote into a cache entry."""
    from bench.lm import load_lm, load_pretrained_lm

    if spec.model is not None:
        return load_pretrained_lm(str(directory / "model"), device, spec=spec)
    return load_lm(directory, spec, device)


def pool_lm(suite: Suite, cache: Cache, device: str = "cpu"):  # -> (TargetLM, meta dict)
    """The retraining start model fine-tuned on the whole pool as a retraining job is on a subset; cached.

    What generates Alpaca's seen test responses (`bench respond`): the paper's "model trained on the full
    training set".
    """
    spec, seed = suite.spec.lm, suite.spec.ground_truth.seed

    def produce(directory: Path) -> dict:
        import time

        pool = suite.require("train")
        lm = start_lm(suite, cache, device)
        t0 = time.perf_counter()
        losses = lm.train(lm.encode(pool), lr=spec.finetune_lr, seed=seed, epochs=spec.finetune_epochs,
                          desc=f"fine-tune on the {suite.name} pool")
        _save_lm_dir(lm, directory)
        return {"wall_s": time.perf_counter() - t0, "steps": len(losses), "n_pool": len(pool),
                "final_loss": losses[-1] if losses else None}

    directory, meta, _ = build(cache, "pool_lm", {**_lm_args(suite), "seed": seed}, versions.of("lm", "retrain"),
                               produce)
    return _load_lm_dir(spec, directory, device), meta


def start_lm(suite: Suite, cache: Cache, device: str = "cpu"):  # -> TargetLM
    """The model every retraining job starts from: the warm-up LM, or the pretrained base (`lm.retrain_from`)."""
    lm_spec = suite.spec.lm
    if lm_spec.retrain_from == "base":
        from bench.lm import load_pretrained_lm

        return load_pretrained_lm(str(lm_spec.model), device, spec=lm_spec, seed=lm_spec.init_seed)
    return warmup_lm(suite, cache, device)[0]


@dataclass(frozen=True)
class RetrainSpec:
    """Everything a retraining job needs, picklable so that remote workers can rebuild it.

    Attributes:
        suite_ref: a built-in suite name or an absolute path to a suite .toml.
        suite_overrides: the `--suite-set` overrides, so that a worker rebuilds the same suite.
        cache_root: the cache directory (shared by the workers).
        pool_split / eval_split: split names.
        pool_ids / eval_ids: which examples of those splits (None = all), by position.
        device: where the jobs train.
    """

    suite_ref: str
    cache_root: str
    suite_overrides: str = "[]"  # JSON [[dotted key, value], ...] the suite was loaded with
    pool_split: str = "train"
    eval_split: str = "test"
    pool_ids: tuple[int, ...] | None = None
    eval_ids: tuple[int, ...] | None = None
    device: str = "cpu"


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


@functools.lru_cache(maxsize=2)
def _worker_state(spec: RetrainSpec):  # -> (TargetLM, warm state, pool Encoded, eval Encoded)
    """Per-process memo: the warm-up LM and the encoded pool and eval examples of a spec."""
    suite = load_suite(spec.suite_ref, [tuple(kv) for kv in json.loads(spec.suite_overrides)])
    lm = start_lm(suite, Cache(Path(spec.cache_root)), spec.device)

    def pick(split: str, ids: tuple[int, ...] | None):
        examples = suite.split(split)  # type: ignore[arg-type]
        return examples if ids is None else [examples[i] for i in ids]

    return lm, lm.state_dict(), lm.encode(pick(spec.pool_split, spec.pool_ids)), \
        lm.encode(pick(spec.eval_split, spec.eval_ids))


def run_retrain_group(jobs: Sequence[RetrainJob]) -> None:
    """Fine-tune from the start weights on each job's subset (K at once, `bench.lm.finetune_group`).

    Writes each job's eval losses atomically, with its share of the group's time; a job whose file exists
    (a group resumed after a kill) keeps it.
    """
    from bench.lm import finetune_group

    lm, warm_state, pool, evaluation = _worker_state(jobs[0].spec)
    masks = [subset_mask(job.n_pool, job.fraction, job.subset_seed, job.index) for job in jobs]
    result = finetune_group(lm, warm_state, pool, [np.flatnonzero(m) for m in masks], [job.seed for job in jobs],
                            evaluation=evaluation)
    for job, mask, losses in zip(jobs, masks, result.losses, strict=True):
        if Path(job.out_path).exists():  # a resumed group: its finished files stay as they are
            continue
        buf = io.BytesIO()
        np.savez(buf, losses=losses, mask=mask, wall_s=np.float64(result.wall_s / len(jobs)),
                 seed=np.int64(job.seed), group_size=np.int64(len(jobs)), batched=np.bool_(result.batched))
        with atomic_path(Path(job.out_path)) as tmp:
            tmp.write_bytes(buf.getvalue())


def run_retrain_job(job: RetrainJob) -> None:
    """One job on its own (a group of one)."""
    run_retrain_group([job])


def group_size(suite: Suite) -> int:
    """K, the retraining jobs trained at once: `ground_truth.group_size`, else 16 for a built float32 LM, else 1.

    `bench.batched` trains built float32 LMs; 16 copies of the embedded suites' LMs take well under 1 GiB.
    """
    gt, lm = suite.spec.ground_truth, suite.spec.lm
    if gt.group_size:
        return gt.group_size
    return 16 if lm.model is None and lm.dtype == "float32" else 1


def _retrain_args(spec: RetrainSpec, suite: Suite, fraction: float | None, seed: int) -> tuple[int, dict]:
    """The pool's size and the cache key of a table of jobs on it (`fraction` None: leave-one-out's)."""
    pool_n = len(suite.split(spec.pool_split)) if spec.pool_ids is None else len(spec.pool_ids)  # type: ignore[arg-type]
    args = {**_lm_args(suite), "pool_split": spec.pool_split, "eval_split": spec.eval_split,
            "pool_ids": None if spec.pool_ids is None else fingerprint(list(spec.pool_ids)),
            "eval_ids": None if spec.eval_ids is None else fingerprint(list(spec.eval_ids)),
            "fraction": fraction, "seed": seed, "n_pool": pool_n, "group_size": group_size(suite),
            "code_versions": _retrain_versions()}
    return pool_n, args


def _jobs(spec: RetrainSpec, jobs_dir: Path, *, n_pool: int, num_subsets: int, seeds_per_subset: int,
          fraction: float, seed: int) -> list[RetrainJob]:
    """Every run of the table, seed by seed: the first seed of every subset, then the second, ..."""
    return [RetrainJob(spec, j, job_seed(seed, j, r), n_pool, fraction, seed, job_file(jobs_dir, j, r), r)
            for r in range(seeds_per_subset) for j in range(num_subsets)]


def plan_table(spec: RetrainSpec, suite: Suite, cache: Cache, *, num_subsets: int, fraction: float,
               seed: int, seeds_per_subset: int = 1) -> dict[str, float | int | None]:
    """What `retrain_table` would do, touching nothing: jobs, how many are cached, their measured mean cost."""
    pool_n, args = _retrain_args(spec, suite, fraction, seed)
    jobs = _jobs(spec, cache.peek("retrain", args) / "jobs", n_pool=pool_n, num_subsets=num_subsets,
                 seeds_per_subset=seeds_per_subset, fraction=fraction, seed=seed)
    walls = []
    for job in jobs:
        if job.out_path.exists():
            try:
                with np.load(job.out_path) as z:
                    walls.append(float(z["wall_s"]))
            except Exception:  # noqa: BLE001, S112 - a damaged entry is not cached (a run recomputes it)
                continue
    return {"jobs": len(jobs), "cached": len(walls), "mean_job_s": sum(walls) / len(walls) if walls else None,
            "warmup_cached": warmup_built(suite, cache),
            "group_size": args["group_size"]}


def retrain_table(spec: RetrainSpec, suite: Suite, cache: Cache, *, num_subsets: int, fraction: float,
                  seed: int, seeds_per_subset: int = 1, executor: Executor | None = None,
                  desc: str = "retraining") -> tuple[GroundTruth, int]:
    """Build (or resume, or load) the table of losses after fine-tuning on M random subsets of a pool.

    Each subset is trained `seeds_per_subset` times (the table's losses are their mean). Jobs run in groups
    of `group_size(suite)` (trained at once).

    Returns:
        The table and the number of jobs that ran now (0 when everything was cached).
    """
    pool_n, args = _retrain_args(spec, suite, fraction, seed)
    # num_subsets is not part of the key: subset j is the same for any M, so a larger M extends the table
    directory = cache.entry("retrain", args)
    jobs = _jobs(spec, directory / "jobs", n_pool=pool_n, num_subsets=num_subsets,
                 seeds_per_subset=seeds_per_subset, fraction=fraction, seed=seed)
    discard_damaged(jobs, _check_npz)
    if not all(job.out_path.exists() for job in jobs) and suite.spec.lm.retrain_from == "warmup":
        warmup_lm(suite, cache, spec.device)  # train it here, with its own progress bar, not inside a job
    ran = (executor or LocalExecutor()).run(run_retrain_group, jobs, desc=desc, group_size=args["group_size"])
    return load_table(jobs), ran


def _check_npz(path: Path, keys: Sequence[str] = ("mask", "losses", "seed", "wall_s")) -> None:
    """Read every member `keys` of a job's `.npz` (a truncated member fails here); the default: a retraining job's."""
    with np.load(path) as z:
        for key in keys:
            z[key]  # noqa: B018 - reading is the check


def _check_job_json(path: Path) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data.get("answers"), list):
        raise ValueError("no 'answers' list")


def discard_damaged(jobs: Sequence[Any], check: Callable[[Path], None]) -> int:
    """Delete each finished job's file that `check` cannot read, so that the job runs again.

    A file cut short by a full disk or a copy; which entry is said on stderr. Returns how many were discarded.
    """
    discarded = 0
    for job in jobs:
        path = Path(job.out_path)
        if not path.exists():
            continue
        try:
            check(path)
        except Exception as exc:  # noqa: BLE001 - any failure to read means the entry is unusable
            why = str(exc).splitlines()[0] if str(exc) else ""
            print(f"warning: damaged cache entry {path} ({type(exc).__name__}: {why}); recomputing that job",
                  file=sys.stderr)
            path.unlink(missing_ok=True)
            discarded += 1
    return discarded


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


def run_generate_group(jobs: Sequence[GenerateJob]) -> None:
    """Fine-tune the group's copies (at once where `bench.batched` can), generate, write each job's answers."""
    from bench.lm import finetune_group

    lm, start, pool, _ = _worker_state(jobs[0].spec)
    suite = load_suite(jobs[0].spec.suite_ref, [tuple(kv) for kv in json.loads(jobs[0].spec.suite_overrides)])
    evaluation = suite.split(jobs[0].spec.eval_split)  # type: ignore[arg-type]
    prompts = [[evaluation[i].prompt for i in job.prompt_ids] for job in jobs]
    result = finetune_group(lm, start, pool, [np.array(job.members) for job in jobs], [job.seed for job in jobs],
                            prompts=prompts, max_new_tokens=max(job.max_new_tokens for job in jobs))
    for job, answers in zip(jobs, result.generations, strict=True):
        if Path(job.out_path).exists():
            continue
        atomic_write_text(Path(job.out_path), json.dumps({
            "answers": answers, "wall_s": result.wall_s / len(jobs), "group_size": len(jobs),
            "batched": result.batched}))


def generate_jobs(spec: RetrainSpec, suite: Suite, cache: Cache, requests: Sequence[tuple[Sequence[int], int,
                  Sequence[int]]], *, max_new_tokens: int, executor: Executor | None = None,
                  desc: str = "fine-tuning") -> tuple[list[list[str]], float, int]:
    """Answers of the fine-tuned LM for each request (pool rows, seed, eval rows), cached one by one.

    Member rows are sorted (the training set, not its order, identifies a run). Requests of one size run
    in groups of `group_size(suite)`.

    Returns:
        (answers per request, the seconds producing them took when they ran, how many ran now).
    """
    args = {**_lm_args(suite), "pool_split": spec.pool_split, "eval_split": spec.eval_split,
            "group_size": group_size(suite), "code_versions": _retrain_versions()}
    directory = cache.entry("generate", args)
    jobs = []
    for members, seed, prompt_ids in requests:
        rows = tuple(sorted(int(i) for i in members))
        key = fingerprint({"members": list(rows), "seed": int(seed), "prompt_ids": [int(i) for i in prompt_ids],
                           "max_new_tokens": max_new_tokens})
        jobs.append(GenerateJob(spec, rows, int(seed), tuple(int(i) for i in prompt_ids), max_new_tokens,
                                directory / "jobs" / f"{key[:20]}.json"))
    discard_damaged(jobs, _check_job_json)
    if not all(job.out_path.exists() for job in jobs) and suite.spec.lm.retrain_from == "warmup":
        warmup_lm(suite, cache, spec.device)
    ran = 0
    for size in sorted({len(job.members) for job in jobs}):  # equal sizes train together
        same = [job for job in jobs if len(job.members) == size]
        ran += (executor or LocalExecutor()).run(run_generate_group, same, desc=desc, group_size=args["group_size"])
    answers, wall = [], 0.0
    for job in jobs:
        data = json.loads(job.out_path.read_text(encoding="utf-8"))
        answers.append(data["answers"])
        wall += float(data["wall_s"])
    return answers, wall, ran


def load_table(jobs: Sequence[RetrainJob]) -> GroundTruth:
    """Assemble the finished jobs' files into a `GroundTruth` (replicates averaged)."""
    n_seeds = 1 + max(job.replicate for job in jobs)
    n_subsets = len(jobs) // n_seeds
    masks, losses, seeds, walls = [], [], [], []
    for job in jobs:
        with np.load(job.out_path) as z:
            if job.replicate == 0:
                masks.append(z["mask"])
                seeds.append(int(z["seed"]))
            losses.append(z["losses"])
            walls.append(float(z["wall_s"]))
    seed_losses = np.stack(losses).reshape(n_seeds, n_subsets, -1)
    return GroundTruth(masks=np.stack(masks), losses=seed_losses.mean(axis=0), seeds=np.array(seeds),
                       wall_s=np.array(walls).reshape(n_seeds, n_subsets).sum(axis=0), seed_losses=seed_losses)


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


def run_loo_group(jobs: Sequence[LooJob]) -> None:
    """Train the group's copies at once (`bench.lm.finetune_group`), each without its own example; write each."""
    import torch

    from bench.lm import Encoded, finetune_group

    lm, warm_state, pool, evaluation = _worker_state(jobs[0].spec)
    n = len(pool.lengths)
    gone = torch.as_tensor([max(job.removed, 0) for job in jobs], dtype=torch.long)
    silent = torch.full_like(pool.labels[gone], -100)  # the left-out rows, with no label token
    data = Encoded(torch.cat([pool.input_ids, pool.input_ids[gone]]),
                   torch.cat([pool.attention_mask, pool.attention_mask[gone]]), torch.cat([pool.labels, silent]),
                   torch.cat([pool.lengths, pool.lengths[gone]]))
    members = []
    for j, job in enumerate(jobs):
        rows = np.arange(n)
        if job.removed >= 0:
            rows[job.removed] = n + j  # the same position in the order, a row without loss
        members.append(rows)
    result = finetune_group(lm, warm_state, data, members, [job.seed for job in jobs], evaluation=evaluation)
    for job, losses in zip(jobs, result.losses, strict=True):
        if Path(job.out_path).exists():
            continue
        buf = io.BytesIO()
        np.savez(buf, losses=losses, removed=np.int64(job.removed), wall_s=np.float64(result.wall_s / len(jobs)),
                 seed=np.int64(job.seed), group_size=np.int64(len(jobs)), batched=np.bool_(result.batched))
        with atomic_path(Path(job.out_path)) as tmp:
            tmp.write_bytes(buf.getvalue())


def loo_table(spec: RetrainSpec, suite: Suite, cache: Cache, removed: Sequence[int], *, seed: int,
              executor: Executor | None = None,
              desc: str = "leave-one-out") -> tuple[np.ndarray, np.ndarray, float, int]:
    """Eval losses after fine-tuning on the whole pool and on the pool without each of `removed`, cached by job.

    Returns:
        (losses of the whole pool's run [n_eval], of each removal's run [len(removed), n_eval], the seconds
        the jobs took when they ran, how many ran now).
    """
    pool_n, args = _retrain_args(spec, suite, None, seed)
    bad = [i for i in removed if not 0 <= int(i) < pool_n]
    if bad:
        raise ValueError(f"leave-one-out: pool row {bad[0]} is outside the pool of {pool_n}")
    directory = cache.entry("loo", args) / "jobs"
    jobs = [LooJob(spec, -1, seed, directory / "whole.npz")] + \
        [LooJob(spec, int(i), seed, directory / f"{int(i):06d}.npz") for i in removed]
    discard_damaged(jobs, functools.partial(_check_npz, keys=("losses", "removed", "wall_s")))
    if not all(job.out_path.exists() for job in jobs) and suite.spec.lm.retrain_from == "warmup":
        warmup_lm(suite, cache, spec.device)
    ran = (executor or LocalExecutor()).run(run_loo_group, jobs, desc=desc, group_size=args["group_size"])
    losses, wall = [], 0.0
    for job in jobs:
        with np.load(job.out_path) as z:
            losses.append(z["losses"])
            wall += float(z["wall_s"])
    return losses[0], np.stack(losses[1:]) if removed else np.zeros((0, len(losses[0]))), wall, ran
