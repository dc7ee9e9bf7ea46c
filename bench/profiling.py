"""Cost profiles of methods: their one-time setup and per-example costs, measured through the accountant.

What the crossover task compares (paper Section 9, Figure 6), measured by the harness rather than a task:
`profile` times a method on the run's suite with repeats, `reference_profile` does so once per suite for
a reference method and caches it per machine, `profile_at` times featurisation with a realistic target LM.
Tasks reach them through `RunContext.profile`, `reference_profile` and `profile_at`.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import statistics
from typing import Any

from bench.accounting import Accountant
from bench.api import Method, RunContext, code_versions, config_dict, make_config, methods, suite_method_options
from bench.cache import build


def setup_cost(phases: list) -> float:
    """A setup's cost from its phases: the outer phase, its cached parts at what producing them cost."""
    outer = [p for p in phases if p.name == "setup"][-1]
    inner = [p for p in phases if p.name != "setup"]
    produced = sum(p.cost_s for p in inner)
    return produced + max(0.0, outer.wall_s - sum(p.wall_s for p in inner))


def spread(values: list[float]) -> dict[str, float]:
    """Median, min, max and count of repeated measurements."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def _fresh(ctx: RunContext) -> tuple[RunContext, Accountant]:
    acct = Accountant(device=ctx.device)
    return ctx.with_accountant(acct), acct


def profile(ctx: RunContext, method: Method, *, repeats: int, repeat_sample: int,
            repeat_setup_s: float) -> dict[str, Any]:
    """Set up, featurise the pool and the test split, score; then time the per-example work `repeats` times.

    The per-example cost (featurising a training example and scoring it against the test split) is the
    median over repeats of featurising the same sample of the pool and scoring the test split against it,
    with the range of the repeats. A setup that cached nothing and took under `repeat_setup_s` is run
    `repeats` times on fresh instances; a setup made of cached work (AirRep's training, LESS's LoRA, a
    warm-up LM) counts what producing it cost, measured once when it ran.
    """
    start = len(ctx.acct.phases)
    ctx.setup(method)
    setup_phases = ctx.acct.phases[start:]
    train_features = ctx.featurize(method, ctx.suite.split("train"), "train")
    test_features = ctx.featurize(method, ctx.suite.split("test"), "test")
    ctx.score(method, test_features, train_features)
    phases = ctx.acct.phases[start:]
    n_train, n_test = int(train_features.shape[0]), int(test_features.shape[0])
    index = next(p for p in phases if p.name == "index")
    query = next(p for p in phases if p.name == "query")
    setup_s = setup_cost(setup_phases)
    setups = [setup_s]
    if not any(p.cached for p in setup_phases) and setup_s < repeat_setup_s:
        for _ in range(repeats - 1):
            sub, acct = _fresh(ctx)
            sub.setup(type(method)(method.config))
            setups.append(setup_cost(acct.phases))
    # the per-example work, repeated on one sample of the pool (train features fit on the pool come first)
    sample = ctx.suite.split("train")[: min(n_train, repeat_sample)]
    per_example, featurize, score_pair = [], [], []
    for _ in range(repeats):
        sub, acct = _fresh(ctx)
        feats = sub.featurize(method, sample, "train")
        # featurising train examples fits the method (a vocabulary, a projection), so the test side follows
        sub.score(method, sub.featurize(method, ctx.suite.split("test"), "test"), feats)
        f = next(p for p in acct.phases if p.name == "index").wall_s / len(sample)
        sc = next(p for p in acct.phases if p.name == "score").wall_s / (len(sample) * n_test)
        featurize.append(f)
        score_pair.append(sc)
        per_example.append(f + sc * n_test)
    return {
        "setup_s": statistics.median(setups), "setup": spread(setups),
        "setup_parts": {p.name: p.cost_s for p in setup_phases if p.name != "setup"},
        "featurize_s_per_example": statistics.median(featurize), "featurize": spread(featurize),
        "pool_featurize_s_per_example": index.wall_s / n_train, "query_s_per_example": query.wall_s / n_test,
        "score_s_per_pair": statistics.median(score_pair),
        # attributing one more training example: featurise it and score it against the test set
        "per_example_s": statistics.median(per_example), "per_example": spread(per_example),
        "repeat_sample": len(sample),
        "storage_bytes_per_example": method.storage_bytes(train_features) / n_train,
        "dim": method.dim(train_features), "n_train": n_train, "n_test": n_test,
        "peak_bytes": max(p.peak_bytes for p in phases), "device": index.device,
    }


def reference_profile(ctx: RunContext, name: str, *, repeats: int, repeat_sample: int,
                      repeat_setup_s: float) -> dict[str, Any]:
    """The registered method `name`'s profile on this suite, measured once and cached for every record of it.

    The method is built with the suite's config of it. Keyed by the suite, the method's configuration and
    code, the device and this machine (timings belong to the machine): every method compared with it is then
    compared with the same measurement, not a fresh one with its own noise.
    """
    ref_cls = methods.get(name)
    ref_method = ref_cls(make_config(ref_cls.config_cls, suite_method_options(ctx.suite, name, ref_cls), where=name))
    args = {"suite": ctx.suite.name, "data": ctx.suite.data_fingerprint, "reference": name,
            "config": config_dict(ref_method.config), "code_version": ref_cls.code_version,
            "repeats": repeats, "repeat_sample": repeat_sample, "device": ctx.device,
            "machine": f"{platform.node()}/{platform.processor() or platform.machine()}/{os.cpu_count()}"}

    def produce(directory):
        sub, _ = _fresh(ctx)
        return {"profile": profile(sub, ref_method, repeats=repeats, repeat_sample=repeat_sample,
                                   repeat_setup_s=repeat_setup_s)}

    # the cache kind keeps its name from when the crossover task measured it itself
    _, meta, _ = build(ctx.cache, "crossover_reference", args, code_versions("lm", "retrain", "batched"), produce)
    return meta["profile"]


def profile_at(ctx: RunContext, method: Method, target_lm: str, *, sample: int, rank: int) -> dict[str, Any]:
    """Per-example featurisation cost of `method` with the target LM `target_lm`, on `sample` pool examples.

    A copy of the method with its target-LM option (`Method.target_lm_option`) set to `target_lm`, its
    `rank` (if it has one) to `rank`, and random projections (if it has an `init`): the PCA statistics are
    one-time work, while every attributed example costs the projected gradient pass.
    """
    fields = {f.name for f in dataclasses.fields(method.config)}
    options: dict[str, Any] = {str(method.target_lm_option): target_lm}
    if "rank" in fields:
        options["rank"] = rank
    if "init" in fields:
        # the PCA statistics are one-time work (and at 0.5B their SVDs alone take tens of minutes on a
        # CPU); every attributed example costs the projected gradient pass, which random init measures
        options["init"] = "random"
    probe = type(method)(dataclasses.replace(method.config, **options))
    sub, acct = _fresh(ctx)
    sub.setup(probe)
    examples = ctx.suite.split("train")[:sample]
    features = sub.featurize(probe, examples, "train")
    index = next(p for p in acct.phases if p.name == "index")
    return {"model": target_lm, "params": probe.info().get("model_params"), "dim": probe.dim(features),
            "featurize_s_per_example": index.wall_s / len(examples),
            "storage_bytes_per_example": probe.storage_bytes(features) / len(examples),
            "peak_bytes": max(p.peak_bytes for p in acct.phases), "n": len(examples)}
