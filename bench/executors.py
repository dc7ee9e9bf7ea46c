"""Executors run independent jobs; each job writes its own result file, so finished jobs are skipped.

The executor owns caching of jobs (a job whose `out_path` exists is done), progress, and retries. Jobs run
in groups: consecutive jobs `[g * K, (g + 1) * K)` form group g, one unit of work (K retraining jobs
trained at once, `bench.batched`) that writes K files. A group with any file missing runs whole, so its
members are computed together again, and a kill loses at most the group in progress. `local` runs groups
in this process, in order, or with `workers` > 1 in that many forked worker processes that share the CPU
threads (`--workers`); `ray` one task per group; `--shard i/n` the groups g with g mod n = i. A
distributed executor only has to implement `_run_pending`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, TypeVar

from bench.errors import ConfigError, did_you_mean
from bench.progress import progress


class Job(Protocol):
    """Anything with an `out_path`: the file the job writes atomically when it succeeds."""

    @property
    def out_path(self) -> Path: ...  # noqa: D102


J = TypeVar("J", bound=Job)


def groups_of(jobs: Sequence[J], size: int) -> list[list[J]]:
    """Consecutive groups of `size` jobs (the last one shorter): the units of work."""
    size = max(1, int(size))
    return [list(jobs[i: i + size]) for i in range(0, len(jobs), size)]


def _missing(group: Sequence[Job]) -> int:
    return sum(not Path(j.out_path).exists() for j in group)


class Executor(ABC):
    """Runs the pending groups of a batch of jobs; a group whose result files all exist is skipped."""

    name: str = ""

    def run(self, fn: Callable[[list[J]], object], jobs: Sequence[J], *, desc: str, group_size: int = 1) -> int:
        """Run `fn(group)` for every group of `group_size` consecutive jobs with a result file missing.

        Returns:
            The number of jobs whose result file was missing (the others were cached).
        """
        pending = [g for g in groups_of(jobs, group_size) if _missing(g)]
        missing = sum(_missing(g) for g in pending)
        if pending:
            self._run_pending(fn, pending, desc=desc, total=len(jobs))
        return missing

    @abstractmethod
    def _run_pending(self, fn: Callable[[list[J]], object], pending: Sequence[list[J]], *, desc: str,
                     total: int) -> None:
        """Run every group of `pending`; show progress in jobs over `total` (the done ones count as done)."""


class LocalExecutor(Executor):
    """On this machine; a job that raises is retried `retries` times, then the error propagates.

    `workers` = 1 runs the groups in this process, in order. `workers` > 1 runs them in that many worker
    processes forked from this one (so `fn` and the groups need not be picklable), each with one torch
    thread: GNU OpenMP is not fork-safe once the parent has used its thread pool, and a one-thread child
    never enters it. Progress bars are off in the workers (the parent's counts groups). Measured on 2 idle
    cores (`benchmarks/retraining.py --workers 2`, `small`, README): two workers train 1.46x as many
    jobs per second as one two-thread process when jobs run one by one (small products use a second
    thread poorly), but only 1.07x when they train batched, so it stays off by default. Results agree
    with one worker's to float rounding, not bit for bit: MKL splits a product's reduction by thread
    count. Workers need the `fork` start method (Linux, macOS) and a CPU run; the cell's peak memory
    (`bench plan`, the record's cost) is this process's, not the workers'.
    """

    name = "local"

    def __init__(self, retries: int = 0, workers: int = 1) -> None:
        if workers < 1:
            raise ConfigError(f"--workers {workers}: need at least 1")
        self.retries, self.workers = retries, workers

    def _attempt(self, fn: Callable[[list[J]], object], group: list[J]) -> None:
        for attempt in range(self.retries + 1):
            try:
                fn(group)
                return
            except Exception:
                if attempt == self.retries:
                    raise

    def _run_pending(self, fn: Callable[[list[J]], object], pending: Sequence[list[J]], *, desc: str,
                     total: int) -> None:
        with progress(total=total, desc=desc, unit="job", initial=total - sum(len(g) for g in pending)) as bar:
            if self.workers == 1 or len(pending) == 1:
                for group in pending:
                    self._attempt(fn, group)
                    bar.update(len(group))
                return
            self._run_forked(fn, pending, bar)

    def _run_forked(self, fn: Callable[[list[J]], object], pending: Sequence[list[J]], bar) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed
        from concurrent.futures.process import BrokenProcessPool

        global _FORKED
        workers = min(self.workers, len(pending))
        _FORKED = (self, fn, list(pending))  # inherited by the forked workers, never pickled
        try:
            with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork"),
                                     initializer=_worker_init) as pool:
                futures = {pool.submit(_forked_group, i): len(g) for i, g in enumerate(pending)}
                try:
                    for future in as_completed(futures):
                        future.result()  # re-raises the group's error once its retries are spent
                        bar.update(futures[future])
                except BaseException:
                    pool.shutdown(cancel_futures=True)  # groups not started yet stay pending; started ones finish
                    raise
        except BrokenProcessPool as exc:
            raise RuntimeError(f"a retraining worker process died ({exc}); it may have run out of memory: "
                               f"rerun with fewer --workers (finished jobs are kept)") from exc
        finally:
            _FORKED = None


_FORKED: tuple | None = None  # (executor, fn, pending groups) of the forked run in progress


def _worker_init() -> None:
    """A forked worker: one torch thread (no OpenMP pool after fork), no progress bars of its own."""
    import os

    import torch

    torch.set_num_threads(1)
    os.environ["BENCH_PROGRESS"] = "0"


def _forked_group(index: int) -> None:
    """In a forked worker: run pending group `index` of the run that forked it.

    An error that cannot be pickled back to the parent is raised as a RuntimeError naming it (else the
    pool would report a broken worker).
    """
    import pickle

    executor, fn, pending = _FORKED
    try:
        executor._attempt(fn, pending[index])
    except Exception as exc:
        try:
            pickle.loads(pickle.dumps(exc))  # the parent must be able to rebuild it
        except Exception:  # noqa: BLE001 - any failure to pickle or unpickle
            raise RuntimeError(f"{type(exc).__name__}: {exc}") from None
        raise


def _ray_job(fn: Callable[[list[J]], object], group: list[J]) -> dict[str, object]:
    """Run one group on a Ray worker; return a summary only (the results live in the jobs' files)."""
    import time

    t0 = time.perf_counter()
    fn(group)
    return {"out_paths": [str(j.out_path) for j in group], "wall_s": time.perf_counter() - t0}


class RayExecutor(Executor):
    """One Ray task per group (`num_gpus` each on a GPU cluster); Ray retries failed tasks; progress as they finish.

    Connects to the cluster in `RAY_ADDRESS` when set, else starts a local Ray with `num_cpus`. Jobs write
    their result files themselves (atomically, to the shared cache) and return only a summary, so results
    are identical to the local executor's.
    """

    name = "ray"

    def __init__(self, retries: int = 2, num_cpus: float = 1, num_gpus: float = 0,
                 local_cpus: int | None = None) -> None:
        self.retries, self.num_cpus, self.num_gpus, self.local_cpus = retries, num_cpus, num_gpus, local_cpus
        self.startup_s: float | None = None
        self.summaries: list[dict[str, object]] = []

    def _init(self):
        import os
        import time

        try:
            import ray
        except ImportError as exc:
            raise ConfigError("--executor ray needs Ray: pip install 'ray>=2.9'") from exc
        if not ray.is_initialized():
            t0 = time.perf_counter()
            address = os.environ.get("RAY_ADDRESS")
            ray.init(address=address, num_cpus=None if address else self.local_cpus, include_dashboard=False,
                     log_to_driver=False, configure_logging=False)
            self.startup_s = time.perf_counter() - t0
        return ray

    def _run_pending(self, fn: Callable[[list[J]], object], pending: Sequence[list[J]], *, desc: str,
                     total: int) -> None:
        ray = self._init()
        task = ray.remote(num_cpus=self.num_cpus, num_gpus=self.num_gpus, max_retries=self.retries,
                          retry_exceptions=True)(_ray_job)
        fn_ref = ray.put(fn)
        sizes = {}
        refs = []
        for group in pending:
            ref = task.remote(fn_ref, group)
            sizes[ref] = len(group)
            refs.append(ref)
        initial = total - sum(len(g) for g in pending)
        with progress(total=total, desc=f"{desc} (ray)", unit="job", initial=initial) as bar:
            while refs:
                done, refs = ray.wait(refs, num_returns=1)
                self.summaries.extend(ray.get(done))  # raises the group's error once its retries are spent
                bar.update(sum(sizes[r] for r in done))


class ShardIncomplete(Exception):
    """This shard's jobs are done but others' are not: the run cannot go on yet (not an error)."""


class ShardExecutor(LocalExecutor):
    """`--shard i/n`: run only the pending groups whose index is i modulo n (e.g. one SLURM array task each).

    The job files are the same as any executor's, so shards can run anywhere that shares the cache. When
    jobs of other shards are still missing, the run stops with `ShardIncomplete` after its own share.
    """

    name = "shard"

    def __init__(self, index: int, count: int, retries: int = 0, workers: int = 1) -> None:
        super().__init__(retries, workers)
        if count < 1 or not 0 <= index < count:
            raise ConfigError(f"--shard {index}/{count}: need 0 <= i < n, e.g. --shard 0/4")
        self.index, self.count = index, count

    def run(self, fn: Callable[[list[J]], object], jobs: Sequence[J], *, desc: str, group_size: int = 1) -> int:
        """Run this shard's pending groups; raise `ShardIncomplete` if other shards' jobs are missing."""
        mine = [job for g, group in enumerate(groups_of(jobs, group_size)) if g % self.count == self.index
                for job in group]
        # `mine` keeps whole groups in order, so regrouping it by group_size gives the same groups
        ran = super().run(fn, mine, desc=f"{desc} [shard {self.index}/{self.count}]", group_size=group_size)
        missing = sum(not Path(j.out_path).exists() for j in jobs)
        if missing:
            raise ShardIncomplete(f"shard {self.index}/{self.count}: {ran} job(s) ran, {missing} of {len(jobs)} "
                                  f"({desc}) belong to other shards; rerun without --shard once every shard is done")
        return ran


EXECUTORS: dict[str, Callable[[], Executor]] = {"local": LocalExecutor, "ray": RayExecutor}


def get_executor(name: str, *, device: str = "cpu", shard: str | None = None, gpus_per_job: float = 1.0,
                 workers: int = 1) -> Executor:
    """Return a new executor by name; `shard` ("i/n") wraps the local one.

    On CUDA a Ray job takes `gpus_per_job` GPUs (the suite's `ground_truth.gpus_per_job`). `workers` > 1
    (local or sharded, CPU only): that many forked worker processes.
    """
    if workers != 1:  # fewer than 1: LocalExecutor says so
        if name != "local":
            raise ConfigError(f"--workers is for the local executor; --executor {name} places jobs itself")
        if device != "cpu":
            raise ConfigError(f"--workers runs forked CPU processes; on {device} leave it at 1")
        import multiprocessing

        if "fork" not in multiprocessing.get_all_start_methods():
            raise ConfigError("--workers needs the fork start method, which this platform lacks; leave it at 1")
    if shard is not None:
        try:
            index, count = (int(x) for x in shard.split("/"))
        except ValueError as exc:
            raise ConfigError(f"--shard '{shard}': expected i/n, e.g. --shard 0/4") from exc
        if name != "local":
            raise ConfigError("--shard runs jobs in this process; use it with --executor local")
        return ShardExecutor(index, count, workers=workers)
    if name not in EXECUTORS:
        raise ConfigError(f"no executor '{name}'.{did_you_mean(name, EXECUTORS)} Available: "
                          f"{', '.join(sorted(EXECUTORS))}")
    if name == "ray":
        return RayExecutor(num_gpus=gpus_per_job if device.startswith("cuda") else 0)
    return LocalExecutor(workers=workers)
