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


EXECUTORS: dict[str, Callable[[], Executor]] = {"local": LocalExecutor}


def get_executor(name: str) -> Executor:
    """Return a new executor by name."""
    if name not in EXECUTORS:
        raise ConfigError(f"no executor '{name}'.{did_you_mean(name, EXECUTORS)} Available: "
                          f"{', '.join(sorted(EXECUTORS))}")
    return EXECUTORS[name]()
