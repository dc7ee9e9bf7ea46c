"""Released ground truth: the AirRep authors' retraining results (`lds.jsonl`) instead of retraining here.

Layout (`sunweiwei/airrep-test`, one folder per benchmark next to its `train.jsonl` and `test.jsonl`):
one JSON object per line, `{"train_subset": [row indices into train.jsonl], "test_loss": [one loss per
row of test.jsonl]}`, optionally with `"test_loss_seeds": [[losses of seed 1], [seed 2], ...]` (what
`bench export` writes, so that the noise ceiling survives the round trip). A suite names it with
`[ground_truth] released = "path/lds.jsonl"` (relative to the suite file) or
`released = "hf://sunweiwei/airrep-test/flan/lds.jsonl"` (downloaded through `huggingface_hub`, which
honours `HF_HUB_OFFLINE`). LDS for any method then needs only featurisation.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from bench.data import jsonl_rows, local_file
from bench.errors import DataError


def resolve(ref: str, base_dir: Path | None = None) -> Path:
    """A local path for `ref`: a file (relative to `base_dir`) or `hf://owner/dataset/path/in/repo`."""
    return local_file(ref, base_dir, what="ground_truth.released")


def _finite_numbers(values: list) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)


def load_released(path: Path, n_train: int, n_test: int):  # -> bench.retrain.GroundTruth
    """Read and validate an `lds.jsonl`; masks over the `n_train` pool rows, losses of the `n_test` test rows.

    Raises:
        DataError: one line naming the file and line: bad JSON, a missing key, an index out of range or
            repeated, a loss count that is not the test split's size, a non-finite loss, fewer than 2 subsets.
    """
    from bench.retrain import GroundTruth

    masks, losses, seed_losses = [], [], []
    for lineno, row in jsonl_rows(path):
        where = f"{path}:{lineno}"
        if "train_subset" not in row or "test_loss" not in row:
            raise DataError(f"{where}: each row needs 'train_subset' and 'test_loss'")
        subset, loss = row["train_subset"], row["test_loss"]
        if not isinstance(subset, list) or not all(isinstance(i, int) and not isinstance(i, bool)
                                                   for i in subset):
            raise DataError(f"{where}: train_subset must be a list of integer row indices")
        bad = [i for i in subset if not 0 <= i < n_train]
        if bad:
            raise DataError(f"{where}: train_subset index {bad[0]} is outside the pool of {n_train} rows")
        if len(set(subset)) != len(subset):
            raise DataError(f"{where}: train_subset repeats an index")
        if not subset:
            raise DataError(f"{where}: train_subset is empty")
        if not isinstance(loss, list) or len(loss) != n_test:
            got = len(loss) if isinstance(loss, list) else type(loss).__name__
            raise DataError(f"{where}: test_loss has {got} values, the test split has {n_test} rows")
        if not _finite_numbers(loss):
            raise DataError(f"{where}: test_loss must hold finite numbers")
        seeds = row.get("test_loss_seeds")
        if seeds is not None:
            if not isinstance(seeds, list) or len(seeds) < 2 or not all(
                    isinstance(s, list) and len(s) == n_test and _finite_numbers(s) for s in seeds):
                raise DataError(f"{where}: test_loss_seeds must be 2 or more lists of {n_test} finite losses")
            if seed_losses and len(seeds) != len(seed_losses[0]):
                raise DataError(f"{where}: test_loss_seeds has {len(seeds)} seeds, earlier rows {len(seed_losses[0])}")
        if (seeds is None) != (not seed_losses) and masks:
            raise DataError(f"{where}: test_loss_seeds must be given on every row or on none")
        if seeds is not None:
            mean = np.mean(np.asarray(seeds, dtype=np.float64), axis=0)
            worst = float(np.max(np.abs(mean - np.asarray(loss, dtype=np.float64))))
            if worst > 1e-9 * max(1.0, float(np.max(np.abs(mean)))):
                raise DataError(f"{where}: test_loss is not the mean of test_loss_seeds (off by up to {worst:.3g})")
            seed_losses.append(seeds)
        mask = np.zeros(n_train, dtype=bool)
        mask[subset] = True
        masks.append(mask)
        losses.append(np.asarray(loss, dtype=np.float64))
    if len(masks) < 2:
        raise DataError(f"{path}: {len(masks)} subset(s); LDS needs at least 2 (Spearman over subsets)")
    m = len(masks)
    per_seed = np.asarray(seed_losses, dtype=np.float64).transpose(1, 0, 2) if seed_losses else None  # [S, M, n]
    return GroundTruth(masks=np.stack(masks), losses=np.stack(losses), seeds=np.full(m, -1, dtype=np.int64),
                       wall_s=np.zeros(m), seed_losses=per_seed)
