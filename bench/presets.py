"""Data recipes of the paper's benchmarks, read from the published file layout (a local mirror or the hub).

`flan` (Muennighoff/flan): rows `{inputs, targets, task}` in `{split}/{task}_{split}.jsonl`. The paper uses
100,000 random training rows and the first 100 test rows of each task (66 tasks, 6,520 rows); the label
is the task. The training rows are drawn by a seeded reservoir over the task files in name order, so the
draw does not depend on the machine and never holds the whole training set; `n_warmup` more rows, disjoint
from the pool, form the warm-up split (the paper warms the gradient baselines up on 100,000 other rows).

A source is a local directory in that layout or `hf://Muennighoff/flan`, which `huggingface_hub` fetches
into its cache (only the files of the needed split) and which then goes through the same reader.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from bench.data import Example
from bench.errors import ConfigError, DataError

HUB_PREFIX = "hf://"
FLAN_HUB = "hf://Muennighoff/flan"


@dataclass(frozen=True, kw_only=True)
class PresetSpec:
    """A published benchmark's data recipe (`[data.preset]` in a suite TOML)."""

    name: Literal["flan"] = field(metadata={"help": "The recipe: flan (more to come: alpaca, tulu, safe)."})
    source: str = field(default=FLAN_HUB, metadata={
        "help": "A local mirror directory in the published layout (relative to the suite file) or hf://owner/name."})
    n_train: int = field(default=100_000, metadata={"help": "Random training rows in the attributed pool."})
    n_test_per_task: int = field(default=100, metadata={"help": "First test rows of each task."})
    n_warmup: int = field(default=0, metadata={"help": "Further random training rows, disjoint, for warm-up."})
    seed: int = field(default=0, metadata={"help": "Seed of the training-row draw."})

    def __post_init__(self) -> None:
        if self.n_train < 1 or self.n_test_per_task < 1 or self.n_warmup < 0:
            raise ConfigError("data.preset: n_train and n_test_per_task must be >= 1, n_warmup >= 0")


def _directory(source: str, split: str, base_dir: Path | None) -> Path:
    if source.startswith(HUB_PREFIX):
        repo = source[len(HUB_PREFIX):]
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

        try:
            return Path(snapshot_download(repo, repo_type="dataset", allow_patterns=[f"{split}/*"]))
        except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
            raise DataError(f"data.preset: cannot fetch {source} ({type(exc).__name__}); without the hub, set "
                            f"data.preset.source to a local mirror directory in the same layout") from exc
    path = Path(source).expanduser()
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    if not path.is_dir():
        raise DataError(f"data.preset: no directory {path}")
    return path


def _task_files(root: Path, split: str) -> list[Path]:
    files = sorted((root / split).glob(f"*_{split}.jsonl"))
    if not files:
        raise DataError(f"data.preset: no {split}/<task>_{split}.jsonl files under {root}")
    return files


def _rows(path: Path):
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{lineno}: invalid JSON ({exc.msg})") from exc
            missing = [k for k in ("inputs", "targets", "task") if k not in row]
            if missing:
                raise DataError(f"{path}:{lineno}: missing {', '.join(missing)} (FLAN rows have inputs, targets, task)")
            yield lineno, row


def _example(path: Path, lineno: int, row: dict) -> Example:
    return Example(id=f"{path.stem}:{lineno}", prompt=str(row["inputs"]), response=str(row["targets"]),
                   labels={"task": str(row["task"])})


def flan(spec: PresetSpec, split: str, base_dir: Path | None = None) -> list[Example]:
    """The examples of one split (`train`, `test` or `warmup`) under the FLAN recipe."""
    if split == "test":
        root = _directory(spec.source, "test", base_dir)
        out = []
        for path in _task_files(root, "test"):
            for k, (lineno, row) in enumerate(_rows(path)):
                if k == spec.n_test_per_task:
                    break
                out.append(_example(path, lineno, row))
        return out
    if split not in ("train", "warmup") or (split == "warmup" and spec.n_warmup == 0):
        return []
    root = _directory(spec.source, "train", base_dir)
    want = spec.n_train + spec.n_warmup
    rng = np.random.default_rng(spec.seed)
    reservoir: list[tuple[Path, int, dict]] = []
    seen = 0
    for path in _task_files(root, "train"):
        for lineno, row in _rows(path):  # Algorithm R: every row ends up kept with probability want / seen
            if len(reservoir) < want:
                reservoir.append((path, lineno, row))
            else:
                j = int(rng.integers(seen + 1))
                if j < want:
                    reservoir[j] = (path, lineno, row)
            seen += 1
    if seen < want:
        raise DataError(f"data.preset: {root / 'train'} holds {seen} rows, fewer than n_train + n_warmup = {want}")
    order = rng.permutation(want)  # which drawn rows are the pool and which the warm-up split
    chosen = order[: spec.n_train] if split == "train" else order[spec.n_train:]
    return [_example(*reservoir[i]) for i in sorted(chosen)]


RECIPES = {"flan": flan}


def load_preset(spec: PresetSpec, split: str, base_dir: Path | None = None) -> list[Example]:
    """Dispatch to the recipe named in `spec`."""
    return RECIPES[spec.name](spec, split, base_dir)
