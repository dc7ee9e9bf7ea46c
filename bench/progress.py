"""Progress bars (tqdm): counts, rate and ETA on stderr; silent when BENCH_PROGRESS=0."""

from __future__ import annotations

import os
from typing import Any


def progress_enabled() -> bool:
    """False when `BENCH_PROGRESS=0` (tests, CI): no bar of ours or of the libraries we drive."""
    return os.environ.get("BENCH_PROGRESS", "1") != "0"


def progress(total: int | None = None, desc: str | None = None, unit: str = "it", **kwargs: Any):
    """Return a tqdm bar; disabled when `BENCH_PROGRESS=0` (tests) so logs stay clean."""
    from tqdm.auto import tqdm

    disable = not progress_enabled()
    return tqdm(total=total, desc=desc, unit=unit, disable=disable, dynamic_ncols=True, leave=False, **kwargs)
