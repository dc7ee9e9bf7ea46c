"""One job-table mechanism for every family of retraining jobs (random subsets, answers, leave-one-out).

A job is one fine-tuning run from the start LM that writes one file, `out_path`, atomically; a family of jobs
is a `JobKind`: how a group of its jobs is computed (K runs trained at once, `bench.lm.finetune_group`) and
the format of its files (`NpzFile`, `JsonFile`: written, checked, read back). `run_jobs` does the rest for
every family alike: it discards damaged files (said on stderr), trains the warm-up LM first if a job is
missing, and hands the jobs to the executor (`bench.executors`) in groups of `group_size(suite)`, which
skips the cached ones, shows progress and counts how many ran now; `read_jobs` reads the finished files.
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
from bench.cache import Cache, atomic_path, atomic_write_text
from bench.executors import Executor, LocalExecutor
from bench.retrain.lms import base_lm, start_lm, warmup_lm
from bench.suites import Suite, load_suite


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


def retrain_versions() -> dict[str, str]:
    """The code versions in the cache key of every job table."""
    return versions.of("lm", "retrain", "batched")


def group_size(suite: Suite) -> int:
    """K, the retraining jobs trained at once (`ground_truth.group_size`, else a default by target LM).

    16 for a built float32 LM, 4 for a pretrained float32 LM with a top-layers recipe, else 1. `bench.batched`
    trains built float32 LMs; 16 copies of the embedded suites' LMs take well under 1 GiB. With
    `lm.train_layers`, a copy is its top layers (SmolLM2-135M, top 2: 7M parameters) and the logits of its loss
    positions over the whole vocabulary; 4 copies are measured in `benchmarks/pretrained.py`.
    """
    gt, lm = suite.spec.ground_truth, suite.spec.lm
    if gt.group_size:
        return gt.group_size
    if lm.dtype != "float32":
        return 1
    if lm.model is None:
        return 16
    return 4 if lm.train_layers else 1


def spec_suite(spec: RetrainSpec) -> Suite:
    """The suite a spec names, loaded with its overrides (in a worker)."""
    return load_suite(spec.suite_ref, [tuple(kv) for kv in json.loads(spec.suite_overrides)])


@functools.lru_cache(maxsize=2)
def worker_state(spec: RetrainSpec):  # -> (TargetLM, start state, pool Encoded, eval Encoded)
    """Per-process memo: the start LM, its weights and the encoded pool and eval examples of a spec."""
    suite = spec_suite(spec)
    lm = start_lm(suite, Cache(Path(spec.cache_root)), spec.device)

    def pick(split: str, ids: tuple[int, ...] | None):
        examples = suite.split(split)  # type: ignore[arg-type]
        return examples if ids is None else [examples[i] for i in ids]

    return lm, lm.state_dict(), lm.encode(pick(spec.pool_split, spec.pool_ids)), \
        lm.encode(pick(spec.eval_split, spec.eval_ids))


# -- job files ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NpzFile:
    """A job's outputs as the members of an `.npz`; `keys`: the members every finished file has."""

    keys: tuple[str, ...]

    def write(self, path: Path, outputs: dict[str, Any]) -> None:
        """Write `outputs` (members in their order) atomically."""
        buf = io.BytesIO()
        np.savez(buf, **outputs)
        with atomic_path(path) as tmp:
            tmp.write_bytes(buf.getvalue())

    def check(self, path: Path) -> None:
        """Read every member of `keys` (a truncated member fails here)."""
        with np.load(path) as z:
            for key in self.keys:
                z[key]  # noqa: B018 - reading is the check

    def read(self, path: Path, keys: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """The members `keys` (default: all of `self.keys`)."""
        with np.load(path) as z:
            return {key: z[key] for key in (self.keys if keys is None else keys)}


@dataclass(frozen=True)
class JsonFile:
    """A job's outputs as a JSON object; `list_key`: the list every finished file holds."""

    list_key: str

    def write(self, path: Path, outputs: dict[str, Any]) -> None:
        """Write `outputs` atomically."""
        atomic_write_text(path, json.dumps(outputs))

    def check(self, path: Path) -> None:
        """Parse the file and find its list."""
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data.get(self.list_key), list):
            raise ValueError(f"no '{self.list_key}' list")

    def read(self, path: Path, keys: Sequence[str] | None = None) -> dict[str, Any]:
        """The object's values `keys` (default: all)."""
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if keys is None else {key: data[key] for key in keys}


@dataclass(frozen=True)
class JobKind:
    """A family of jobs: its cache entries, how a group of them is computed, the format of their files.

    Attributes:
        cache_kind: the cache's kind of the table's entry (its jobs are files in `<entry>/jobs/`).
        compute: a group's jobs -> each job's outputs, in order (a module-level function: workers unpickle it).
        file: the format of a job's file.
        batch_by: jobs with equal `batch_by(job)` run as one batch, batches in key order (None: all at once).
    """

    cache_kind: str
    compute: Callable[[list[Any]], Sequence[dict[str, Any]]]
    file: NpzFile | JsonFile
    batch_by: Callable[[Any], Any] | None = None

    def jobs_dir(self, cache: Cache, args: dict[str, Any], *, peek: bool = False) -> Path:
        """Where the jobs of the table keyed by `args` write (`peek`: touching nothing)."""
        return (cache.peek if peek else cache.entry)(self.cache_kind, args) / "jobs"


def run_group(kind: JobKind, jobs: list[Any]) -> None:
    """Compute a group of jobs and write each job's file atomically, with its share of the group's time.

    A job whose file exists (a group resumed after a kill) keeps it.
    """
    outputs = kind.compute(jobs)
    for job, out in zip(jobs, outputs, strict=True):
        if Path(job.out_path).exists():  # a resumed group: its finished files stay as they are
            continue
        kind.file.write(Path(job.out_path), out)


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


def run_jobs(kind: JobKind, jobs: Sequence[Any], suite: Suite, cache: Cache, *, device: str,
             executor: Executor | None, desc: str) -> int:
    """Run every job of a table whose file is missing or damaged; returns how many ran now (0: all cached).

    The warm-up LM is trained here first when a job is missing (with its own progress bar, not inside a job).
    """
    discard_damaged(jobs, kind.file.check)
    if not all(Path(job.out_path).exists() for job in jobs):
        if suite.spec.lm.retrain_from == "warmup":
            warmup_lm(suite, cache, device)
        elif suite.spec.lm.model is None:
            base_lm(suite, cache, device)
    executor = executor or LocalExecutor()
    if kind.batch_by is None:
        batches = [list(jobs)]
    else:
        batches = [[job for job in jobs if kind.batch_by(job) == key] for key in sorted(set(map(kind.batch_by, jobs)))]
    fn = functools.partial(run_group, kind)
    ran = 0
    for batch in batches:
        ran += executor.run(fn, batch, desc=desc, group_size=group_size(suite))
    return ran


def read_jobs(kind: JobKind, jobs: Sequence[Any], keys: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Each finished job's outputs `keys` (default: all of the format's), in order."""
    return [kind.file.read(Path(job.out_path), keys) for job in jobs]


def cached_wall_s(kind: JobKind, jobs: Sequence[Any]) -> list[float]:
    """The measured seconds of each job whose file is there and readable (touches nothing; for planning)."""
    walls = []
    for job in jobs:
        if Path(job.out_path).exists():
            try:
                walls.append(float(kind.file.read(Path(job.out_path), ("wall_s",))["wall_s"]))
            except Exception:  # noqa: BLE001, S112 - a damaged entry is not cached (a run recomputes it)
                continue
    return walls
