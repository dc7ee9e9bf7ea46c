"""Tuning on the dev split: each method's declared settings searched on dev LDS, with one budget for all.

The test split is sealed while it runs (`bench.suites.Suite.sealed`): the LDS of every candidate is computed on
the dev split's examples against the dev split's ground truth (the same retraining jobs' losses, other
columns), and a method or task that reads a test example fails. `bench tune` runs this task and writes the
winners as the suite's tuned settings.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.api import (
    Accountant,
    ConfigError,
    HeldOutError,
    Method,
    Metric,
    RunContext,
    Task,
    TaskConfig,
    TaskOutput,
    config_dict,
    make_config,
    method_cost_s,
    register_task,
    suite_method_options,
    tasks,
)


@dataclass(frozen=True, kw_only=True)
class TuneConfig(TaskConfig):
    """Options of the tuning task."""

    budget: int = field(default=8, metadata={
        "help": "Configurations evaluated per method, the default included (the same for every method)."})
    seed: int = field(default=0, metadata={"help": "Seed of which configurations a larger search space samples."})
    bootstrap_resamples: int = field(default=1000, metadata={"help": "Bootstrap resamples of the dev LDS's CIs."})

    def __post_init__(self) -> None:
        if self.budget < 1:
            raise ConfigError(f"tune.budget must be >= 1, got {self.budget}")
        if self.bootstrap_resamples < 100:
            raise ConfigError(f"tune.bootstrap_resamples must be >= 100, got {self.bootstrap_resamples}")


def candidates(space: dict[str, tuple[Any, ...]], default: dict[str, Any], budget: int,
               rng: np.random.Generator) -> list[dict[str, Any]]:
    """The configurations to evaluate: `default` first, then up to `budget` - 1 others of the grid.

    The grid is every combination of the space's values; when it holds more than `budget` - 1 others, a
    seeded random sample of them (in grid order).
    """
    keys = list(space)
    grid = [dict(zip(keys, values, strict=True)) for values in itertools.product(*(space[k] for k in keys))]
    others = [g for g in grid if g != default]
    if len(others) > budget - 1:
        keep = sorted(rng.choice(len(others), size=budget - 1, replace=False).tolist())
        others = [others[i] for i in keep]
    return [dict(default), *others]


def select(outputs: list[TaskOutput | None]) -> tuple[int, bool]:
    """The chosen candidate and whether the default (index 0) is kept: the best, or no better one beyond noise.

    Candidates are compared on the dev LDS with constant rows counted as 0 (`lds_nan_as_zero`: a setting
    that makes hard examples constant gains nothing by it). The best leaves the default only if it beats it
    by more than one standard error of their paired difference (the spread of the difference over the
    shared bootstrap draws of the LDS): the one-standard-error rule, so that noise alone keeps the default.
    Ties keep the earlier candidate. Failed candidates (None) are skipped; the default must not have failed.
    """
    values = [o.metrics["lds_nan_as_zero"].value if o is not None else -np.inf for o in outputs]
    best = int(np.argmax(values))  # the first maximum
    if best == 0:
        return 0, True
    a, b = outputs[best].metrics["lds"].replicates, outputs[0].metrics["lds"].replicates  # type: ignore[union-attr]
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    se = float(np.nanstd(diff, ddof=1)) if np.isfinite(diff).sum() > 1 else float("inf")
    if values[best] - values[0] > se:
        return best, False
    return 0, True


@register_task("tune", config=TuneConfig)
class Tune(Task):
    """Search a method's declared settings (`Method.search_space`) on the dev split's LDS; keep the best.

    Candidates: the suite's own setting of the searched options (its TOML's `[methods.NAME]` table, before any
    tuned settings, or the method's defaults) first, then the other combinations of the space, a seeded
    sample of them when there are more than the budget allows. Each is set up, fitted and evaluated from
    scratch on the sealed suite (`RunContext.sealed`): the LDS task's computation on the dev split
    (`LDS.evaluate`), the same bootstrap draws for every candidate, so their differences pair. The chosen
    one (`select`): the best dev LDS, constant rows as 0, if it beats the default by more than one paired
    standard error, else the default (kept). A candidate that fails is recorded and skipped.

    The chosen dev LDS is the maximum of up to `budget` noisy estimates and overstates what it reaches on new
    examples; the test LDS of the tuned setting (`bench run --task lds` after `bench tune` wrote it) is the
    number to compare. `dev_gain` (chosen less default) measures how much tuning found, with the same caveat,
    and has no interval.
    """

    code_version = "1"
    requires = ("train", "dev")
    in_all = False  # a search, not an evaluation: `bench tune` runs it

    def run(self, method: Method, ctx: RunContext) -> TaskOutput:
        """Evaluate each candidate on the dev split and report the search."""
        cls = type(method)
        space = dict(cls.search_space)
        if not space:
            raise ConfigError(f"method '{cls.name}' declares no settings to tune (Method.search_space): the random "
                              f"baseline is a mean over seeds and an ablation takes its parent's settings")
        unknown = sorted(set(space) - {f.name for f in dataclasses.fields(method.config)})
        if unknown:
            raise ConfigError(f"method '{cls.name}': its search space names '{unknown[0]}', not an option of it")
        cfg = self.config
        # the suite's own setting of the searched options, before tuning (its TOML, else the method's default)
        own = suite_method_options(ctx.suite, cls.name, cls, tuned=False)
        default = {k: own.get(k, getattr(cls.config_cls(), k)) for k in space}
        default_config = make_config(cls.config_cls, {**config_dict(method.config), **default}, where=cls.name)
        chosen = candidates(space, default, cfg.budget, ctx.rng(11, cfg.seed))
        lds_task = tasks.get("lds")(tasks.get("lds").config_cls(bootstrap_resamples=cfg.bootstrap_resamples))
        sealed = ctx.sealed()
        results: list[dict[str, Any]] = []
        outputs: list[TaskOutput | None] = []
        for i, options in enumerate(chosen):
            acct = Accountant(device=ctx.device)
            try:
                candidate = cls(make_config(cls.config_cls, {**config_dict(default_config), **options},
                                            where=cls.name))
                candidate.check()
                candidate.check_suite(sealed.suite)
                out = lds_task.evaluate(candidate, sealed.with_accountant(acct), "dev")
            except HeldOutError:
                raise  # the method read the test split: a bug of the method, not of this candidate
            except (ConfigError, RuntimeError, MemoryError, ValueError) as exc:  # this candidate fails, not the search
                outputs.append(None)
                results.append({"options": options, "error": f"{type(exc).__name__}: {str(exc)[:300]}"})
                continue
            outputs.append(out)
            lds_metric = out.metrics["lds"]
            work = [p for p in acct.phases if p.name != "ground_truth"]
            results.append({
                "options": options, "dev_lds": lds_metric.value, "ci": [lds_metric.ci_low, lds_metric.ci_high],
                "dev_lds_nan_as_zero": out.metrics["lds_nan_as_zero"].value,
                "n": lds_metric.n, "dim": out.extra.get("dim"),
                "storage_bytes_per_example": (acct.storage_bytes / acct.n_train_stored
                                              if acct.storage_bytes and acct.n_train_stored else None),
                # the run's time (its top-level phases: a setup's parts and warm-ups nest in it) and the
                # method's cost with its setup at what producing it cost (`method_cost_s`)
                "wall_s": float(sum(p.wall_s for p in work if p.name in ("setup", "index", "query", "score",
                                                                          "eval"))),
                "original_wall_s": method_cost_s([dataclasses.asdict(p) for p in work]),
            })
            ctx.acct.phases.extend(dataclasses.replace(p, name=f"candidate_{i}/{p.name}") for p in work)
            if not any(p.name == "ground_truth" for p in ctx.acct.phases):  # the harness's, read once
                ctx.acct.phases.extend(p for p in acct.phases if p.name == "ground_truth")
        if outputs[0] is None:
            raise ConfigError(f"tune: the suite's own setting of '{cls.name}' fails on the dev split "
                              f"({results[0]['error']}); fix it before tuning around it")
        best, kept = select(outputs)
        win, base = outputs[best].metrics["lds"], outputs[0].metrics["lds"]  # type: ignore[union-attr]
        draws = win.draws
        gain = win.value - base.value
        metrics = {
            "dev_lds": Metric.from_replicates(win.value, win.replicates, draws=draws, n=win.n, note=(
                "the default, kept: no candidate beat it by one paired standard error" if kept else
                f"the chosen one of {len(chosen)} configurations: biased upward")),
            "dev_lds_default": Metric.from_replicates(base.value, base.replicates, draws=draws, n=base.n,
                                                      note="the suite's own setting"),
            "dev_gain": Metric(gain, gain, gain, n=win.n, test="none", note=(
                "chosen less default, on the draws that chose it: no interval (it would be biased)")),
        }
        winner = chosen[best]
        return TaskOutput(
            metrics=metrics, headline="dev_lds",
            per_example={"dev_lds_winner": list(outputs[best].per_example["lds"]),  # type: ignore[union-attr]
                         "dev_lds_default": list(outputs[0].per_example["lds"])},
            pairing={"dev": outputs[0].pairing, "budget": cfg.budget},
            clusters=outputs[0].clusters,
            extra={"space": {k: list(v) for k, v in space.items()}, "budget": cfg.budget,
                   "n_configs": len(chosen), "grid_size": int(np.prod([len(v) for v in space.values()])),
                   "candidates": results, "winner": best, "kept_default": kept, "tuned_options": winner,
                   "failed": sum("error" in r for r in results), "tuning_key": ctx.suite.tuning_key,
                   "default_options": default, "default_config": config_dict(default_config),
                   "n_dev": outputs[0].extra.get("n_test"),
                   "dim": outputs[best].extra.get("dim")},  # type: ignore[union-attr]
        )
