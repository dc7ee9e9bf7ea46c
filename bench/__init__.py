"""tda-bench: a benchmark harness for training data attribution on language models.

The Python API for notebooks (the CLI does the same through `bench run`):

- `load_suite(name, **options)`: a suite (built-in name or `.toml` path) and its splits.
- `ground_truth(suite)`: its retraining ground truth (built and cached on first use, as by `bench run`).
- `evaluate(scores, suite=..., task=...)`: the harness's metrics, with CIs, of a score matrix
  [n_test, n_train] computed anywhere; it writes no record unless given `results_dir`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from bench.retrain import GroundTruth
    from bench.suites import Suite

__all__ = ["Evaluation", "__version__", "evaluate", "ground_truth", "load_suite"]


def _overrides(options: dict[str, Any] | None) -> list[tuple[str, Any]]:
    return sorted((options or {}).items())


def load_suite(name: str = "small", **options: Any) -> Suite:
    """A suite by built-in name or `.toml` path; `options` override suite keys, dots as double underscores.

    Example: `load_suite("small", ground_truth__num_subsets=32)`; then `suite.split("train")`.
    """
    from bench.suites import load_suite as load

    return load(name, [(k.replace("__", "."), v) for k, v in sorted(options.items())])


def _cache(cache_dir: str | Path | None):  # -> bench.cache.Cache
    from bench.cache import Cache, default_cache_dir

    return Cache(Path(cache_dir) if cache_dir else default_cache_dir())


def _suite(suite: str | Suite, options: dict[str, Any] | None) -> Suite:
    from bench.suites import Suite
    from bench.suites import load_suite as load

    if isinstance(suite, Suite):
        if options:
            raise TypeError("suite_options apply to a suite given by name; load_suite(name, **options) instead")
        return suite
    return load(suite, _overrides(options))


def ground_truth(suite: str | Suite = "small", *, suite_options: dict[str, Any] | None = None,
                 cache_dir: str | Path | None = None, device: str = "cpu") -> GroundTruth:
    """The suite's LDS ground truth (`bench.retrain.GroundTruth`), retrained and cached if needed.

    `masks` bool [M, n_train], `losses` float [M, n_test] (the mean over seeds), `seed_losses` [S, M, n_test];
    cached in `cache_dir` (default: where `bench run` caches).
    """
    from bench.api import RunContext

    return RunContext(_suite(suite, suite_options), cache=_cache(cache_dir), device=device).ground_truth()


class Evaluation:
    """What `evaluate` returns: the metrics with 95% CIs, per-example values, the task's extra facts."""

    def __init__(self, metrics: dict[str, Any], per_example: dict[str, list[float]], extra: dict[str, Any],
                 record_path: Path | None = None) -> None:
        self.metrics = metrics  # name -> bench.api.Metric (value, ci_low, ci_high, ...)
        self.per_example = per_example
        self.extra = extra
        self.record_path = record_path  # the record written (results_dir given), else None

    def __getitem__(self, name: str) -> float:
        """The value of metric `name`."""
        return self.metrics[name].value

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={m.value:.4f} [{m.ci_low:.4f}, {m.ci_high:.4f}]" for k, m in self.metrics.items())
        return f"Evaluation({shown})"


def evaluate(scores: Any, suite: str | Suite = "small", task: str = "lds", *, name: str = "array", seed: int = 0,
             task_options: dict[str, Any] | None = None, suite_options: dict[str, Any] | None = None,
             cache_dir: str | Path | None = None, results_dir: str | Path | None = None) -> Evaluation:
    """Evaluate a score matrix [n_test, n_train] with the harness's metrics and CIs.

    Rows are the suite's test split, columns its training pool, in the order of `bench export-examples`.
    Tasks: lds, classification, selection (those that need only scores). Nothing is written but the cache
    (the ground truth, as `bench run`), unless `results_dir` is given: then the scores are saved there
    (`_scores/<name>-<sha256>.npy`) and evaluated by `bench run --method scores`, whose record is written.

    Raises:
        bench.errors.BenchError: a bad matrix (shape, dtype, non-finite values), suite or task.
    """
    import numpy as np

    from bench.api import RunContext, make_config, tasks
    from bench.errors import ConfigError
    from bench.external import Scores

    method = Scores.from_array(scores, name=name)
    task_cls = tasks.get(task)
    if task_cls.needs_features:
        raise ConfigError(f"task '{task}' measures a method's own features and costs; scores have none")
    s = _suite(suite, suite_options)
    method.check_suite(s)  # shape first: nothing is written for a matrix that does not fit
    if results_dir is not None:
        from bench.results import check_results_dir
        from bench.runner import RunRequest, run

        if not isinstance(suite, str):
            raise TypeError("with results_dir, give the suite by name or path (a record must name it)")
        if not name or any(c in name for c in "/\\") or name.startswith("."):
            raise ConfigError(f"name '{name}' must be a plain file name (no path separators)")
        check_results_dir(Path(results_dir))
        folder = Path(results_dir) / "_scores"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}-{method.identity()['sha256'][:12]}.npy"
        np.save(path, np.asarray(scores, dtype=np.float64))
        record, where = run(RunRequest(
            method="scores", task=task, suite=suite, suite_options=tuple(_overrides(suite_options)),
            method_options=(("path", str(path)), ("name", name)), task_options=tuple(_overrides(task_options)),
            seed=seed, cache_dir=Path(cache_dir) if cache_dir else None, results_dir=Path(results_dir)))
        from bench.api import Metric

        return Evaluation({k: Metric(**v) for k, v in record.metrics.items()}, record.per_example, record.extra,
                          where)
    task_obj = task_cls(make_config(task_cls.config_cls, dict(task_options or {}), where=task))
    for split in task_cls.requires:
        s.require(split)
    ctx = RunContext(s, cache=_cache(cache_dir), seed=seed)
    out = task_obj.run(method, ctx)
    from bench.api import Metric
    from bench.runner import record_metrics

    # as a record keeps them (replicates rounded), so that `evaluate` and `bench run` agree to the digit
    return Evaluation({k: Metric(**v) for k, v in record_metrics(out).items()}, out.per_example, out.extra)
