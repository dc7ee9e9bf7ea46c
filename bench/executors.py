"""Executors run independent jobs; each job writes its own result file, so finished jobs are skipped.

The executor owns caching of jobs (a job whose `out_path` exists is done), progress, and retries.
`local` runs jobs in this process, in order. A distributed executor only has to implement `_run_pending`.
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


class Executor(ABC):
    """Runs the pending jobs of a batch; the done ones (result file present) are skipped."""

    name: str = ""

    def run(self, fn: Callable[[J], object], jobs: Sequence[J], *, desc: str) -> int:
        """Run `fn(job)` for every job whose result file is missing.

        Returns:
            The number of jobs that ran (the others were cached).
        """
        pending = [j for j in jobs if not Path(j.out_path).exists()]
        if pending:
            self._run_pending(fn, pending, desc=desc, total=len(jobs))
        return len(pending)

    @abstractmethod
    def _run_pending(self, fn: Callable[[J], object], pending: Sequence[J], *, desc: str, total: int) -> None:
        """Run every job of `pending`; show progress over `total` (the done ones count as done)."""


class LocalExecutor(Executor):
    """In-process, sequential; a job that raises is retried `retries` times, then the error propagates."""

    name = "local"

    def __init__(self, retries: int = 0) -> None:
        self.retries = retries

    def _run_pending(self, fn: Callable[[J], object], pending: Sequence[J], *, desc: str, total: int) -> None:
        with progress(total=total, desc=desc, unit="job", initial=total - len(pending)) as bar:
            for job in pending:
                for attempt in range(self.retries + 1):
                    try:
                        fn(job)
                        break
                    except Exception:
                        if attempt == self.retries:
                            raise
                bar.update(1)


def _ray_job(fn: Callable[[J], object], job: J) -> dict[str, object]:
    """Run one job on a Ray worker; return a summary only (the result lives in the job's file)."""
    import time

    t0 = time.perf_counter()
    fn(job)
    return {"out_path": str(job.out_path), "wall_s": time.perf_counter() - t0}


class RayExecutor(Executor):
    """One Ray task per job (`num_gpus` each on a GPU cluster); Ray retries failed tasks; progress as they finish.

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

    def _run_pending(self, fn: Callable[[J], object], pending: Sequence[J], *, desc: str, total: int) -> None:
        ray = self._init()
        task = ray.remote(num_cpus=self.num_cpus, num_gpus=self.num_gpus, max_retries=self.retries,
                          retry_exceptions=True)(_ray_job)
        fn_ref = ray.put(fn)
        refs = [task.remote(fn_ref, job) for job in pending]
        with progress(total=total, desc=f"{desc} (ray)", unit="job", initial=total - len(pending)) as bar:
            while refs:
                done, refs = ray.wait(refs, num_returns=1)
                self.summaries.extend(ray.get(done))  # raises the job's error once its retries are spent
                bar.update(len(done))


class ShardIncomplete(Exception):
    """This shard's jobs are done but others' are not: the run cannot go on yet (not an error)."""


class ShardExecutor(LocalExecutor):
    """`--shard i/n`: run only the pending jobs whose index is i modulo n (e.g. one SLURM array task each).

    The job files are the same as any executor's, so shards can run anywhere that shares the cache. When
    jobs of other shards are still missing, the run stops with `ShardIncomplete` after its own share.
    """

    name = "shard"

    def __init__(self, index: int, count: int, retries: int = 0) -> None:
        super().__init__(retries)
        if count < 1 or not 0 <= index < count:
            raise ConfigError(f"--shard {index}/{count}: need 0 <= i < n, e.g. --shard 0/4")
        self.index, self.count = index, count

    def run(self, fn: Callable[[J], object], jobs: Sequence[J], *, desc: str) -> int:
        """Run this shard's pending jobs; raise `ShardIncomplete` if other shards' jobs are missing."""
        mine = [j for k, j in enumerate(jobs) if k % self.count == self.index]
        ran = super().run(fn, mine, desc=f"{desc} [shard {self.index}/{self.count}]")
        missing = sum(not Path(j.out_path).exists() for j in jobs)
        if missing:
            raise ShardIncomplete(f"shard {self.index}/{self.count}: {ran} job(s) ran, {missing} of {len(jobs)} "
                                  f"({desc}) belong to other shards; rerun without --shard once every shard is done")
        return ran


EXECUTORS: dict[str, Callable[[], Executor]] = {"local": LocalExecutor, "ray": RayExecutor}


def get_executor(name: str, *, device: str = "cpu", shard: str | None = None, gpus_per_job: float = 1.0) -> Executor:
    """Return a new executor by name; `shard` ("i/n") wraps the local one.

    On CUDA a Ray job takes `gpus_per_job` GPUs (the suite's `ground_truth.gpus_per_job`).
    """
    if shard is not None:
        try:
            index, count = (int(x) for x in shard.split("/"))
        except ValueError as exc:
            raise ConfigError(f"--shard '{shard}': expected i/n, e.g. --shard 0/4") from exc
        if name != "local":
            raise ConfigError("--shard runs jobs in this process; use it with --executor local")
        return ShardExecutor(index, count)
    if name not in EXECUTORS:
        raise ConfigError(f"no executor '{name}'.{did_you_mean(name, EXECUTORS)} Available: "
                          f"{', '.join(sorted(EXECUTORS))}")
    if name == "ray":
        return RayExecutor(num_gpus=gpus_per_job if device.startswith("cuda") else 0)
    return EXECUTORS[name]()
