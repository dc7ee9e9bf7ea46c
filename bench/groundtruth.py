"""The warm-up model and the retraining ground truth: moved to `bench.retrain`; this module re-exports its names.

Kept so that scripts importing `bench.groundtruth` keep working; new code imports `bench.retrain`.
"""

from __future__ import annotations

from bench.retrain import *  # noqa: F403 - the package's public names, as before the move
from bench.retrain import __all__  # noqa: F401
