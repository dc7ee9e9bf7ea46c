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

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class RunRecord:
    """What one `bench run` of a task with a method on a suite produced.

    Attributes:
        schema_version: version of this layout; older files go through `migrate`.
        suite / suite_version / task / method: what ran.
        method_family: gradient, representation, learned or baseline.
        method_config / task_config: the full configs, JSON.
        fingerprint: sha256 of {suite, task, method, configs, schema} - the file name.
        status: "ok" or "failed".
        metrics: name -> {"value", "ci_low", "ci_high", "higher_is_better", ...}.
        per_example: name -> list of per-test-example values (NaN stored as null).
        cost: {"phases": [...], "storage_bytes", "storage_bytes_per_example", "dim", ...}.
        env: package version, git commit, python / torch versions, device, hostname.
        seed: the run's seed.
        started_at / created_at: ISO-8601 UTC timestamps.
        error: {"kind", "message"} when status is "failed".
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
    schema_version: int = SCHEMA_VERSION

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


def migrate(raw: dict[str, Any]) -> dict[str, Any]:
    """Bring a record dict of any known schema version to the current one (one step per version)."""
    version = raw.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ValueError(f"unknown result schema version {version!r} (this build reads {SCHEMA_VERSION})")
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
    options = record.extra.get("options")
    if options is None:  # older records: only --suite-set was kept
        options = {"suite": record.extra.get("suite_options") or {}}
    return not any(options.values()) and not record.extra.get("label") and record.seed == 0


def default_records(results_dir: Path) -> dict[tuple[str, str, str], RunRecord]:
    """The newest successful default-configuration record of each (suite, task, method)."""
    out: dict[tuple[str, str, str], RunRecord] = {}
    for r in sorted(read_records(results_dir), key=lambda r: (r.created_at, r.fingerprint)):
        if r.status == "ok" and is_default(r):
            out[(r.suite, r.task, r.method)] = r
    return out


def comparable(a: RunRecord, b: RunRecord, metric: str, *, values: bool = True) -> str | None:
    """Why two records cannot be paired on `metric` (None if they can): other examples or other draws.

    Pairing needs both records' bootstrap replicates of `metric` under the same draws, and with `values` their
    per-example values too (a test on the differences).
    """
    for r in (a, b):
        if metric not in (r.extra.get("bootstrap") or {}) or values and metric not in r.per_example:
            kept = "per-example values and replicates" if values else "replicates"
            return f"the {r.method} record keeps no {kept} of '{metric}'"
    if (a.suite, a.suite_version, a.task) != (b.suite, b.suite_version, b.task):
        return "they are of different suites, suite versions or tasks"
    if a.extra.get("data") != b.extra.get("data") or a.extra.get("pairing") != b.extra.get("pairing"):
        return "their data or ground truth differ (another suite option or version)"
    if values and len(a.per_example[metric]) != len(b.per_example[metric]):
        return "they hold different numbers of examples"
    if len(a.extra["bootstrap"][metric]) != len(b.extra["bootstrap"][metric]):
        return "they hold different numbers of replicates"
    return None
