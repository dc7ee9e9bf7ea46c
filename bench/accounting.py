"""One place for the clock and memory: phases with wall time, peak memory and device.

`with acct.phase("index"):` times the block (CUDA events plus synchronize on a GPU, `perf_counter` on the
CPU), records peak memory (CUDA max-allocated bytes, reset at the start of the phase, or the peak resident
set size of the process sampled during the phase) and appends a `Phase`. Methods and tasks never time
themselves; the run context wraps their calls.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import psutil

from bench.costmodel import phase_cost_s


@dataclass(frozen=True)
class Phase:
    """One timed phase.

    Attributes:
        name: setup, index (train featurisation), query (test featurisation), score, eval, or a
            harness phase such as ground_truth (never charged to a method).
        wall_s: wall-clock seconds.
        peak_bytes: peak GPU bytes on CUDA, else peak process RSS during the phase.
        memory_kind: "cuda_max_allocated" or "process_rss".
        device: "cpu" or "cuda:N".
        count: items processed (examples featurised, jobs run), when meaningful.
        cached: the work was loaded from the cache; wall_s is then the load time and `original_wall_s`
            what producing it cost.
        cached_count: of `count` items, how many came from the cache (a resumed run).
    """

    name: str
    wall_s: float
    peak_bytes: int
    memory_kind: str
    device: str
    count: int | None = None
    cached: bool = False
    original_wall_s: float | None = None
    cached_count: int | None = None

    @property
    def cost_s(self) -> float:
        """What producing the phase's work cost: `original_wall_s` where some or all of it came from the cache."""
        return phase_cost_s(dataclasses.asdict(self))


class _RssSampler:
    """Samples the process RSS in a daemon thread; `peak` is the maximum seen."""

    def __init__(self, interval_s: float = 0.01) -> None:
        self._proc = psutil.Process()
        self._interval = interval_s
        self._stop = threading.Event()
        self.peak = self._proc.memory_info().rss
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    def __enter__(self) -> _RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)


@dataclass
class PhaseHandle:
    """What a running phase lets the caller set: the item count and cache status."""

    count: int | None = None
    cached: bool = False
    original_wall_s: float | None = None
    cached_count: int | None = None


@dataclass
class Accountant:
    """Collects phases and storage for one run."""

    device: str = "cpu"
    phases: list[Phase] = field(default_factory=list)
    storage_bytes: int | None = None
    n_train_stored: int | None = None

    def _cuda(self):  # -> torch.cuda module or None; torch is only touched when already imported
        if not self.device.startswith("cuda"):
            return None
        torch = sys.modules.get("torch")
        return torch.cuda if torch is not None and torch.cuda.is_available() else None

    @contextmanager
    def phase(self, name: str, count: int | None = None) -> Iterator[PhaseHandle]:
        """Time the block as phase `name`; yields a handle to set `count` / `cached` afterwards."""
        handle = PhaseHandle(count=count)
        cuda = self._cuda()
        if cuda is not None:
            cuda.synchronize()
            cuda.reset_peak_memory_stats()
            start, end = cuda.Event(enable_timing=True), cuda.Event(enable_timing=True)
            start.record()
            yield handle
            end.record()
            cuda.synchronize()
            wall = start.elapsed_time(end) / 1000.0
            peak, kind = int(cuda.max_memory_allocated()), "cuda_max_allocated"
        else:
            with _RssSampler() as sampler:
                t0 = time.perf_counter()
                yield handle
                wall = time.perf_counter() - t0
            peak, kind = int(sampler.peak), "process_rss"
        self.phases.append(Phase(name=name, wall_s=wall, peak_bytes=peak, memory_kind=kind, device=self.device,
                                 count=handle.count, cached=handle.cached,
                                 original_wall_s=handle.original_wall_s, cached_count=handle.cached_count))

    def record_storage(self, nbytes: int, n_train: int) -> None:
        """Record the bytes of the train-side features a method keeps for `n_train` examples."""
        self.storage_bytes = int(nbytes)
        self.n_train_stored = int(n_train)

    def total(self, name: str) -> float:
        """Sum of wall seconds of the phases called `name`."""
        return sum(p.wall_s for p in self.phases if p.name == name)
