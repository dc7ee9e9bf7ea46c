"""Result records: one schema-versioned JSON per (suite, task, method config). Standard library only.

This module is all the leaderboard imports, so it must not import torch, numpy or any plugin.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.stats import BOOTSTRAP, MCNEMAR, NO_TEST

SCHEMA_VERSION = 2


@dataclass(frozen=True)
class RunRecord:
    """What one `bench run` of a task with a method on a suite produced.

    Attributes:
        schema_version: version of this layout; older files go through `migrate`.
        suite / suite_version / task / method: what ran.
        method_family: gradient, representation, learned or baseline.
        method_config / task_config: the full configs, JSON.
        fingerprint: sha256 of {suite, task, method, configs, seed, code versions and code hash} - the file name.
        status: "ok" or "failed".
        headline: the metric the record is ranked by (the task names it).
        metrics: name -> {"value", "ci_low", "ci_high", "higher_is_better", "n", "note", "test", "replicates",
            "draws"}: `test` is the paired test that applies (`bench.stats`: bootstrap, mcnemar, none),
            `replicates` the bootstrap replicates under the suite's shared draws, `draws` what they resample.
        per_example: name -> list of per-example values (NaN stored as null).
        pairing: the key two records must share for their replicates and per-example values to pair (the
            harness builds it from the task's pairing inputs, the run seed and the clusters).
        clusters: {"kind", "ids"}: the cluster of each evaluated example (the suite's `clusters`), or None.
        label: a named variant's row name (`--label`), or None for the method's own row.
        options: the options given on the command line: {"method", "task", "suite"} -> {key: value}.
        data: the suite's data fingerprint.
        regime / regime_default: the retraining regime the suite ran in (`--regime`), and whether it is the
            suite's own (the TOML's values). A record written before regimes existed has neither and reads
            as `warmup-start`, the suite's own: true of every committed record (all of built suites that
            retrain from the warm-up LM); a paper-scale record of that time retrained from the base and
            reads wrong (rerun it).
        replicate: N of `--replicate N` (the suite's data and LM drawn again with seeds moved by N), else 0.
        cost: {"phases": [...], "storage_bytes", "storage_bytes_per_example", "dim", ...}.
        env: package version, git commit and dirty flag, code versions and hashes, python / torch versions,
            libraries, device, CPU.
        seed: the run's seed.
        started_at / created_at: ISO-8601 UTC timestamps.
        error: {"kind", "message"} when status is "failed".
        extra: the task's own JSON (per-label values, chance levels, profiles): read by its bespoke table.
    """

    suite: str
    suite_version: str
    task: str
    method: str
    method_family: str
    method_config: dict[str, Any]
    task_config: dict[str, Any]
    fingerprint: str
    status: str
    metrics: dict[str, Any]
    per_example: dict[str, list[Any]]
    cost: dict[str, Any]
    env: dict[str, Any]
    seed: int
    started_at: str
    created_at: str
    error: dict[str, str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    headline: str | None = None
    pairing: str | None = None
    clusters: dict[str, Any] | None = None
    label: str | None = None
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    data: str | None = None
    regime: str = "warmup-start"
    regime_default: bool = True
    replicate: int = 0
    schema_version: int = SCHEMA_VERSION

    @property
    def row(self) -> str:
        """The leaderboard row of the record: the method, or the label of a named variant."""
        return self.label or self.method

    @property
    def column(self) -> str:
        """The leaderboard column of the record: the suite in its own regime, else `suite-regime`.

        Replicate N adds `-rN`.
        """
        base = self.suite if self.regime_default else f"{self.suite}-{self.regime}"
        return f"{base}-r{self.replicate}" if self.replicate else base

    @property
    def own(self) -> bool:
        """Whether the record is of its suite itself: its own regime, not a replicate."""
        return self.regime_default and not self.replicate

    def to_json(self) -> str:
        """Serialise with NaN/inf as null and sorted keys (stable diffs)."""
        return json.dumps(_clean(asdict(self)), indent=1, sort_keys=True, allow_nan=False) + "\n"


def _clean(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def record_path(results_dir: Path, record: RunRecord) -> Path:
    """`results/<suite>/<task>/<method>/<fingerprint[:12]>.json`."""
    return Path(results_dir) / record.suite / record.task / record.method / f"{record.fingerprint[:12]}.json"


def check_results_dir(results_dir: Path) -> None:
    """Fail before any work when records could not be written to `results_dir` (not a folder, no rights).

    Creates nothing: a folder that does not exist yet is made when the first record is written.
    """
    from bench.errors import ConfigError

    path = Path(results_dir)
    probe = path
    while not probe.exists():  # the nearest existing ancestor decides
        probe = probe.parent
    if not probe.is_dir():
        where = "is a file" if probe == path else f"is under '{probe}', which is a file"
        raise ConfigError(f"--results-dir '{path}' {where}; give a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"--results-dir '{path}': '{probe}' is not writable; give a folder you can write to")


def write_record(results_dir: Path, record: RunRecord) -> Path:
    """Write the record atomically (temp file + rename); return its path."""
    path = record_path(results_dir, record)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(record.to_json())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _binary(values: list[Any] | None) -> bool:
    return bool(values) and all(v in (0, 1, 0.0, 1.0) for v in values)  # type: ignore[union-attr]


def _v1_to_v2(raw: dict[str, Any]) -> dict[str, Any]:
    """Schema 1 -> 2: the keys the leaderboard and the CLI read move out of `extra` into typed fields.

    `extra.headline`, `label`, `options` (older: `suite_options`), `data` and `pairing` become fields; each
    metric takes its replicates from `extra.bootstrap` and declares its test: `mcnemar` where its
    per-example values are 0/1 (classification's hits), `bootstrap` where it has replicates, else `none`.
    No value, interval or replicate changes; clusters are unknown (None) until `bench migrate` reads them
    from the suite.
    """
    out = dict(raw)
    extra = dict(raw.get("extra") or {})
    metrics = {k: dict(v) for k, v in (raw.get("metrics") or {}).items()}
    bootstrap = extra.pop("bootstrap", None) or {}
    per_example = raw.get("per_example") or {}
    for name, m in metrics.items():
        reps = bootstrap.get(name)
        m["replicates"] = reps
        m["test"] = MCNEMAR if _binary(per_example.get(name)) else BOOTSTRAP if reps else NO_TEST
        m.setdefault("draws", _V1_DRAWS.get(raw.get("task", ""), "") if reps else "")
    out["metrics"] = metrics
    # what the schema-1 leaderboard ranked a record without a headline by: top-1 of the task label first
    out["headline"] = extra.pop("headline", None) or min(
        metrics, key=lambda n: (not n.startswith("top1_task"), not n.startswith("top1_"), n), default=None)
    out["label"] = extra.pop("label", None)
    options = extra.pop("options", None)
    suite_options = extra.pop("suite_options", None)
    out["options"] = options if options is not None else {"suite": suite_options or {}}
    out["data"] = extra.pop("data", None)
    out["pairing"] = extra.pop("pairing", None)
    out["clusters"] = None
    out["extra"] = extra
    out["schema_version"] = 2
    return out


# what schema-1 replicates resampled, per task (their draws were not recorded)
_V1_DRAWS = {"lds": "test examples (independent) x subsets", "classification": "test examples (independent)",
             "selection": "test examples within tasks", "mislabel": "corrupted and clean examples",
             "loo": "test examples (independent)"}
MIGRATIONS = {1: _v1_to_v2}  # version -> the step to version + 1


def migrate(raw: dict[str, Any]) -> dict[str, Any]:
    """Bring a record dict of any known schema version to the current one (one step per version)."""
    version = raw.get("schema_version")
    while version != SCHEMA_VERSION:
        step = MIGRATIONS.get(version)  # type: ignore[arg-type]
        if step is None:
            raise ValueError(f"unknown result schema version {version!r} (this build reads up to {SCHEMA_VERSION})")
        raw = step(raw)
        version = raw["schema_version"]
    return raw


def read_record(path: Path) -> RunRecord:
    """Read and migrate one record."""
    raw = migrate(json.loads(Path(path).read_text(encoding="utf-8")))
    return RunRecord(**raw)


def read_records(results_dir: Path) -> list[RunRecord]:
    """All records below `results_dir`, sorted by path."""
    return [read_record(p) for p in sorted(Path(results_dir).rglob("*.json"))]


def is_default(record: RunRecord) -> bool:
    """Whether the record ran the method's default configuration (the row the leaderboard shows for it).

    Default: no --set, --task-set or --suite-set options, no --label, seed 0.
    """
    return not any(record.options.values()) and not record.label and record.seed == 0


def default_records(results_dir: Path) -> dict[tuple[str, str, str], RunRecord]:
    """The newest successful default-configuration record of each (suite, task, method)."""
    out: dict[tuple[str, str, str], RunRecord] = {}
    for r in sorted(read_records(results_dir), key=lambda r: (r.created_at, r.fingerprint)):
        if r.status == "ok" and is_default(r):
            out[(r.suite, r.task, r.method)] = r
    return out


def still_improving(record: RunRecord) -> bool:
    """Whether a learned method was still improving when its training stopped: its best step was its last.

    From the method's own `still_improving` (`Method.info`), else its `best_step` against its config's `steps`
    (records of AirRep from before the flag).
    """
    info = (record.extra or {}).get("method_info") or {}
    if "still_improving" in info:
        return bool(info["still_improving"])
    best, steps = info.get("best_step"), (record.method_config or {}).get("steps")
    return best is not None and steps is not None and best == steps
