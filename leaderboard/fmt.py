"""Formatting shared by the leaderboard's tables: numbers, cells with bold and ranks, footnotes, captions."""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import tomllib
from tabulate import tabulate

from bench import stats
from bench.costmodel import setup_cost_s
from bench.results import RunRecord

FAILED = "✕"
LAYOUT = Path(__file__).with_name("layout.toml")


@lru_cache(maxsize=1)
def layout() -> dict[str, Any]:
    """The leaderboard's layout (`layout.toml`): suite order, sections, the workflow's grid, generic tables."""
    return tomllib.loads(LAYOUT.read_text(encoding="utf-8"))


def grid_runs() -> list[tuple[dict[str, Any], str, str | None, int]]:
    """The layout's grid as `bench run`s, in order: (step, suite, regime or None, replicate or 0)."""
    return [(step, suite, regime, replicate) for step in layout()["grid"] for suite in step["suites"]
            for regime in step.get("regimes", [None]) for replicate in step.get("replicates", [0])]


def step_argv(step: dict[str, Any], suite: str, regime: str | None, replicate: int) -> list[str]:
    """One grid run's `bench run` arguments, without the results directory.

    Methods, tasks, seeds, suite, regime, replicate, and a labelled variant's `set` options and `label` (a row
    of its own, e.g. a control).
    """
    argv = ["--method", step["methods"], "--task", step["tasks"]]
    if step.get("seeds"):
        argv += ["--seeds", str(step["seeds"])]
    argv += ["--suite", suite]
    if regime is not None:
        argv += ["--regime", regime]
    if replicate:
        argv += ["--replicate", str(replicate)]
    for key, value in (step.get("set") or {}).items():
        argv += ["--set", f"{key}={value}"]
    if step.get("label"):
        argv += ["--label", str(step["label"])]
    return argv


def suite_key(name: str) -> tuple[int, int, str]:
    """Sort key of suite columns: the layout's order, then any other suite by name.

    A suite's other regimes (columns `suite-regime`) come right after it.
    """
    order = layout()["suite_order"]
    if name in order:
        return order.index(name), 0, ""
    for i, suite in enumerate(order):
        if name.startswith(f"{suite}-"):
            return i, 1, name
    return len(order), 0, name


def table(rows: list[list[str]], headers: list[str]) -> str:
    """A GitHub markdown table, cells as given."""
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def fmt(value: float | None, digits: int = 3) -> str:
    """A number with fixed decimals; blank for None or NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.{digits}f}"


def metric_cell(record: RunRecord | None, metric: str, footnotes: dict[str, int], bold: bool = False,
                rank: int | None = None) -> str:
    """`value ± half CI`, bold and (rank) when given; ✕ with a footnote for a failed run; blank if absent.

    A metric without a test whose interval is the point itself (tuning's gain) is its value alone.
    """
    if record is None:
        return ""
    if record.status != "ok":
        kind = (record.error or {}).get("kind", "error")
        index = footnotes.setdefault(kind, len(footnotes) + 1)
        return f"{FAILED}[^{index}]"
    m = record.metrics.get(metric)
    if m is None:
        return ""
    point = m.get("test") == stats.NO_TEST and m["ci_low"] == m["ci_high"] == m["value"]  # no interval declared
    text = fmt(m["value"]) if point else f"{fmt(m['value'])} ± {fmt((m['ci_high'] - m['ci_low']) / 2)}"
    return (f"**{text}**" if bold else text) + (f" ({rank})" if rank is not None else "")


def judged_cells(records: Mapping[str, RunRecord], metric: str, footnotes: dict[str, int]) -> dict[str, str]:
    """Row -> its cell in a column judged with `bench.stats.column` (bold and Holm ranks)."""
    col = stats.column(records, metric)
    return {m: metric_cell(r, metric, footnotes, bold=col.bold.get(m, False), rank=col.rank.get(m))
            for m, r in records.items()}


def stats_caption(records: list[RunRecord], metric: str | dict[str, str]) -> str:
    """What ± and the marks of a column mean, read from the records' own metric declarations.

    `metric`: the metric, or per suite the metric of its column (a table whose columns differ). When the
    suites' records were drawn differently, each way of drawing names its suites.
    """
    def name(r: RunRecord) -> str:
        return metric.get(r.column, "") if isinstance(metric, dict) else metric

    ok = [r for r in records if r.status == "ok" and name(r) in r.metrics]
    if not ok:
        return ""
    by_draws: dict[str, set[str]] = {}
    for r in ok:
        if r.metrics[name(r)].get("draws"):
            by_draws.setdefault(r.metrics[name(r)]["draws"], set()).add(r.column)
    draws = sorted(by_draws) if len(by_draws) < 2 else \
        [f"{d} ({', '.join(sorted(suites))})" for d, suites in sorted(by_draws.items())]
    tests = sorted({r.metrics[name(r)].get("test", stats.NO_TEST) for r in ok})
    test_text = {stats.BOOTSTRAP: "the paired bootstrap of the difference (p from its standard error)",
                 stats.MCNEMAR: "the paired bootstrap of the difference and the exact McNemar test on the examples "
                                "where two methods disagree (the larger p)",
                 stats.NO_TEST: "no paired test (no bold or rank)"}
    seeds = sorted({r.extra.get("seeds_per_subset") for r in ok if r.extra.get("seeds_per_subset")})
    seeds_text = (f" Ground truth: {', '.join(str(s) for s in seeds)} training seeds per subset, losses averaged."
                  if seeds else "")
    judged = [t for t in tests if t != stats.NO_TEST]
    marks = (f"(n): rank, 1 + the rows significantly above; **bold**: rank 1, no row significantly above. Both "
             f"from {'; '.join(test_text[t] for t in judged)}, two-sided at {stats.ALPHA:g} with Holm's correction "
             f"over every pair of the column's rows." if judged else "No paired test: no bold or rank.")
    ci = f"± is half the 95% CI of a bootstrap resampling {'; '.join(draws)}. " if draws else "± is half the 95% CI. "
    return ci + marks + seeds_text


def format_caption(template: str, records: list[RunRecord]) -> str:
    """A caption template filled from the first successful record's task options ({option} or {option:spec}).

    An option the records do not hold (an older record) reads "(not recorded)", never a raw placeholder.
    """
    import re

    ok = [r for r in records if r.status == "ok"] or records
    values = ok[0].task_config if ok else {}

    def fill(match: re.Match[str]) -> str:
        name, spec = match.group(1), match.group(2) or ""
        if name not in values:
            return "(not recorded)"
        try:
            return format(values[name], spec)
        except (TypeError, ValueError):
            return str(values[name])

    return re.sub(r"\{(\w+)(?::([^{}]*))?\}", fill, template)


def bytes_text(n: float | None) -> str:
    """Bytes in B / KiB / MiB / GiB."""
    if n is None:
        return ""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return ""


def setup_s(record: RunRecord) -> float | None:
    """The one-time cost charged to the method: its setup at its original (uncached) cost (`setup_cost_s`)."""
    return setup_cost_s(record.cost.get("phases", []))


def hours(h: float | None) -> str:
    """Device-hours with 3 significant digits."""
    if h is None:
        return ""
    return f"{h:.3g}" if h >= 0.001 else "< 0.001"


def throughput(record: RunRecord) -> float | None:
    """Training examples featurised per second (the index phase)."""
    index = [p for p in record.cost.get("phases", []) if p["name"] == "index"]
    if not index or not index[0].get("count") or index[0]["wall_s"] <= 0:
        return None
    return index[0]["count"] / index[0]["wall_s"]


def commit(record: RunRecord) -> str:
    """The record's full commit, marked when the tree had uncommitted changes (`+dirty` in older records)."""
    sha = str(record.env.get("git_commit") or "unknown")
    dirty = record.env.get("git_dirty") or sha.endswith("+dirty")
    return sha.removesuffix("+dirty") + (" (uncommitted changes)" if dirty else "")


def machine(record: RunRecord) -> str:
    """Where a record ran: the CPU model on a CPU (numbers move across CPU models at float rounding), or the device."""
    device = str(record.env.get("device") or "unknown")
    return str(record.env.get("cpu") or device) if device == "cpu" else str(record.env.get("device_name") or device)


def provenance(records: list[RunRecord]) -> str:
    """One line: each suite column's machines and commits, then package versions and dates of the records.

    Per column, because records of one column pair (one ground truth) only if made on one machine, and a
    table can hold columns made on different ones.
    """
    if not records:
        return ""
    columns: dict[str, tuple[set[str], set[str]]] = {}
    for r in records:
        name = f"{r.suite} v{r.suite_version} ({r.regime}{f', replicate {r.replicate}' if r.replicate else ''})"
        machines, commits = columns.setdefault(name, (set(), set()))
        machines.add(machine(r))
        commits.add(commit(r))
    suites = [f"{name} on {', '.join(sorted(machines))} at {', '.join(sorted(commits))}"
              for name, (machines, commits) in sorted(columns.items())]
    versions = sorted({str(r.env.get("package_version")) for r in records})
    dates = sorted(r.created_at[:10] for r in records)
    return (f"<sub>Suites: {'; '.join(suites)} · tda-bench {', '.join(versions)} · "
            f"records {dates[0]} to {dates[-1]}</sub>")


def footnote_lines(footnotes: dict[str, int]) -> list[str]:
    """The footnotes of failed cells, and a blank line after them."""
    lines = [f"[^{i}]: run failed: {kind}" for kind, i in sorted(footnotes.items(), key=lambda kv: kv[1])]
    return lines + ([""] if lines else [])
