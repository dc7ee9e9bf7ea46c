"""Progress bars (tqdm): counts, rate and ETA on stderr; silent when BENCH_PROGRESS=0."""

from __future__ import annotations

import os
from typing import Any


def progress(total: int | None = None, desc: str | None = None, unit: str = "it", **kwargs: Any):
    """Return a tqdm bar; disabled when `BENCH_PROGRESS=0` (tests) so logs stay clean."""
    from tqdm.auto import tqdm

    disable = os.environ.get("BENCH_PROGRESS", "1") == "0"
    return tqdm(total=total, desc=desc, unit=unit, disable=disable, dynamic_ncols=True, leave=False, **kwargs)
