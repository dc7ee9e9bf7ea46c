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
    Method,
    Metric,
    RunContext,
    Task,
    TaskConfig,
    TaskOutput,
    config_dict,
    make_config,
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


@register_task("tune", config=TuneConfig)
class Tune(Task):
    """Search a method's declared settings (`Method.search_space`) on the dev split's LDS; keep the best.

    Candidates: the suite's own setting of the searched options (its TOML's `[methods.NAME]` table, before any
    tuned settings, or the method's defaults) first, then the other combinations of the space, a seeded
    sample of them when there are more than the budget allows. Each is set up, fitted and evaluated from
    scratch on the sealed suite (`RunContext.sealed`): the LDS task's computation on the dev split
    (`LDS.evaluate`), the same bootstrap draws for every candidate, so their differences pair. The winner
    has the highest dev LDS (ties: the earlier candidate, the default first).

    The winner's dev LDS is the maximum of `budget` noisy estimates and overstates what it reaches on new
    examples; the test LDS of the tuned setting (`bench run --task lds` after `bench tune` wrote it) is the
    number to compare. `dev_gain` (winner less default, paired) measures how much tuning found, with the same
    caveat.
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
        outputs: list[TaskOutput] = []
        for i, options in enumerate(chosen):
            candidate = cls(make_config(cls.config_cls, {**config_dict(default_config), **options}, where=cls.name))
            candidate.check()
            candidate.check_suite(ctx.suite)
            acct = Accountant(device=ctx.device)
            out = lds_task.evaluate(candidate, sealed.with_accountant(acct), "dev")
            outputs.append(out)
            lds_metric = out.metrics["lds"]
            work = [p for p in acct.phases if p.name != "ground_truth"]
            results.append({
                "options": options, "dev_lds": lds_metric.value, "ci": [lds_metric.ci_low, lds_metric.ci_high],
                "n": lds_metric.n, "dim": out.extra.get("dim"),
                "storage_bytes_per_example": (acct.storage_bytes / acct.n_train_stored
                                              if acct.storage_bytes and acct.n_train_stored else None),
                "wall_s": float(sum(p.wall_s for p in work)),
                "original_wall_s": float(sum(p.original_wall_s if p.cached and p.original_wall_s is not None
                                             else p.wall_s for p in work)),
            })
            ctx.acct.phases.extend(dataclasses.replace(p, name=f"candidate_{i}/{p.name}") for p in work)
            if i == 0:  # the ground truth is the harness's, read once
                ctx.acct.phases.extend(p for p in acct.phases if p.name == "ground_truth")
        values = np.array([r["dev_lds"] for r in results], dtype=np.float64)
        if not np.isfinite(values).any():
            raise ConfigError(f"tune: no candidate of '{cls.name}' has a dev LDS (every one constant over subsets)")
        best = int(np.nanargmax(values))  # the first maximum: ties keep the earlier candidate
        win, base = outputs[best].metrics["lds"], outputs[0].metrics["lds"]
        draws = win.draws
        gain = np.asarray(win.replicates, dtype=np.float64) - np.asarray(base.replicates, dtype=np.float64)
        metrics = {
            "dev_lds": Metric.from_replicates(win.value, win.replicates, draws=draws, n=win.n,
                                              note=f"the best of {len(chosen)} configurations: biased upward"),
            "dev_lds_default": Metric.from_replicates(base.value, base.replicates, draws=draws, n=base.n,
                                                      note="the suite's own setting"),
            "dev_gain": Metric.from_replicates(win.value - base.value, gain, draws=draws, n=win.n,
                                               note="winner less default, paired draws; biased upward"),
        }
        winner = chosen[best]
        return TaskOutput(
            metrics=metrics, headline="dev_lds",
            per_example={"dev_lds_winner": list(outputs[best].per_example["lds"]),
                         "dev_lds_default": list(outputs[0].per_example["lds"])},
            pairing={"dev": outputs[0].pairing, "budget": cfg.budget},
            clusters=outputs[0].clusters,
            extra={"space": {k: list(v) for k, v in space.items()}, "budget": cfg.budget,
                   "n_configs": len(chosen), "grid_size": int(np.prod([len(v) for v in space.values()])),
                   "candidates": results, "winner": best, "tuned_options": winner,
                   "default_options": default, "default_config": config_dict(default_config),
                   "n_dev": outputs[0].extra.get("n_test"), "dim": outputs[best].extra.get("dim")},
        )
