"""LDS (the metric of the AirRep paper's Table 1) per suite, the ceiling, and the tables that explain it."""

from __future__ import annotations

import math

from bench import stats
from bench.costmodel import HARNESS_PHASES, METHOD_PHASES, gpu_hours, phase_cost_s
from bench.results import RunRecord, still_improving
from leaderboard.fmt import (
    bytes_text,
    fmt,
    footnote_lines,
    hours,
    judged_cells,
    metric_cell,
    provenance,
    setup_s,
    stats_caption,
    suite_key,
    table,
    throughput,
)
from leaderboard.select import Cells, by_suite, differences, of_task, own_columns

REFERENCE = "airrep"  # the method the Dim column's relative storage is stated against (the paper's)


def section(cells: Cells, seeds: dict[tuple[str, str, str], dict[int, RunRecord]],
            curves: dict[tuple[str, str], list[RunRecord]] | None = None,
            budgets: dict[tuple[str, str], list[RunRecord]] | None = None) -> list[str]:
    """LDS per suite with the ceiling and the average, then its share of the ceiling, per label, NaNs, seeds, cost."""
    lds = of_task(cells, "lds")
    if not lds:
        return []
    columns = by_suite(lds, suite_key)
    suites = list(columns)
    rows_names = sorted({k[2] for k in lds})
    in_order = sorted(lds.items(), key=lambda kv: (suite_key(kv[0][0]), kv[0]))  # the default suite's first
    storage = {m: next((r.cost.get("storage_bytes_per_example") for (_, _, mm), r in in_order
                        if mm == m and r.status == "ok"), None) for m in rows_names}
    ref = storage.get(REFERENCE)
    footnotes: dict[str, int] = {}
    judged = {s: judged_cells(columns[s], "lds", footnotes) for s in suites}
    for s in suites:  # a learned method whose training was still improving when it stopped
        for m, r in columns[s].items():
            if r.status == "ok" and m in judged[s] and still_improving(r):
                judged[s][m] += " ↗"

    def value(s: str, m: str, metric: str = "lds") -> float | None:
        r = columns[s].get(m)
        return r.metrics[metric]["value"] if r is not None and r.status == "ok" and metric in r.metrics else None

    # the average is over each suite in its own regime: another regime's or a replicate's column is shown,
    # not averaged
    own = own_columns(columns)

    def average(m: str, metric: str = "lds") -> float | None:
        values = [value(s, m, metric) for s in own]
        return sum(values) / len(values) if all(v is not None for v in values) else None  # type: ignore[misc]

    order = sorted(rows_names, key=lambda m: (average(m) is None, -(average(m) or 0.0), m))
    rows = []
    for m in order:
        any_record = next(r for (_, _, mm), r in in_order if mm == m)
        dim = next((r.cost.get("dim") for (_, _, mm), r in in_order if mm == m and r.status == "ok"), None)
        rel = f" ({storage[m] / ref:.2g}×)" if ref and storage[m] else ""
        rows.append([m, any_record.method_family, settings([columns[s].get(m) for s in own]),
                     f"{dim if dim is not None else ''}{rel}", *[judged[s].get(m, "") for s in suites],
                     fmt(average(m))])
    ceilings = {s: next((r for r in columns[s].values() if r.status == "ok" and "ceiling" in r.metrics), None)
                for s in suites}
    if any(ceilings.values()):
        values = [c.metrics["ceiling"]["value"] if c else None for s, c in ceilings.items() if s in own]
        rows.insert(0, ["*ceiling*", "", "", "", *[metric_cell(c, "ceiling", footnotes) if c else "" for c in
                                               ceilings.values()],
                        fmt(sum(values) / len(values)) if all(v is not None for v in values) else ""])  # type: ignore
    headers = ["Method", "Family", "Settings", f"Dim (storage vs {REFERENCE})" if ref else "Dim",
               *[f"LDS {s}" for s in suites], "Average"]
    records = list(lds.values())
    out = ["## LDS (the metric of the AirRep paper's Table 1)", "",
           "Mean over test examples of the Spearman correlation between the method's group score and minus "
           "the loss of the LM retrained on each subset. " + stats_caption(records, "lds") + " Method seed 0 "
           "(other seeds below). *ceiling*: the LDS a perfect attribution could reach against this ground truth "
           f"(square root of the Spearman-Brown reliability between the seeds' mean losses; its ± resamples "
           f"{_ceiling_draws(records)}). Settings: *tuned on dev, k configs* where `bench tune` chose them on "
           "the suite's dev split (k configurations searched, the budget every method gets; the default is left "
           "only for a candidate better by more than one paired standard error), *kept* where it searched and "
           "kept the default, *default* where they are the suite's TOML settings (on suites without a dev split, "
           "some of those were chosen on the test split's LDS; per suite where they differ). ↗: still improving, "
           "its training's best held-out step was its last (more steps may raise it). Rows sorted by the average "
           "over suites"
           + (", each in its own regime (a column `suite-regime` is the suite in another regime, `suite-rN` its "
              "replicate N: its data and target LM drawn again; neither is averaged)."
              if len(own) < len(suites) else "."), "",
           table(rows, headers), "", provenance(records), ""]
    out += footnote_lines(footnotes)
    out += _replicate_spread(columns, suites, order)
    out += ablations(columns, own)
    out += storage_matched(columns, own, curves or {})
    out += learning_curves(own, budgets or {})
    out += _rank_agreement(columns, suites)
    if any(ceilings.values()):  # LDS as a share of what the ground truth allows
        share_rows = [[m, *[metric_cell(columns[s].get(m), "lds_of_ceiling", {}) for s in suites],
                       fmt(average(m, "lds_of_ceiling"))] for m in order]
        out += ["### LDS as a share of the ceiling", "",
                f"Mean LDS over mean ceiling on the same test examples (bootstrap 95% CI resampling "
                f"{_ceiling_draws(records, 'lds_of_ceiling')}).", "",
                table(share_rows, ["Method", *suites, "Average"]), ""]
    out += _per_label(columns[suites[0]], suites[0], order)
    out += _nan_table(columns, suites, order)
    out += _seed_table(seeds, "lds", "lds")
    out += _cost_table(in_order)
    return out


def settings(records: list[RunRecord | None]) -> str:
    """How a row's settings were chosen, over the suites in their own regime (`extra.tuning` of each record).

    "tuned on dev, k configs" where every suite's record ran at settings `bench tune` chose, "default" where
    none did; otherwise per suite ("tuned on dev (k) on small; default on qa"). A record from before tuning
    existed counts as default.
    """
    found = [(r.suite, (r.extra or {}).get("tuning", {"status": "default"})) for r in records
             if r is not None and r.status == "ok"]
    if not found:
        return ""

    def text(t: dict) -> str:
        status = t.get("status")
        if status == "tuned":
            return f"tuned on dev, {t.get('n_configs')} configs"
        if status == "kept":
            return f"default, kept by tuning on dev ({t.get('n_configs')} configs)"
        if status == "inherited":
            return f"{t.get('from')}'s tuned settings"
        return "overridden" if status == "overridden" else "default"

    kinds = {text(t) for _, t in found}
    if len(kinds) == 1:
        return kinds.pop()
    return "; ".join(f"{text(t)} on {suite}" for suite, t in found)


def storage_matched(columns: dict[str, dict[str, RunRecord]], suites: list[str],
                    curves: dict[tuple[str, str], list[RunRecord]]) -> list[str]:
    """Each method at the size whose storage per training example is nearest AirRep's, judged together.

    Per suite in its own regime where some method was run at several sizes (`bench curve`): of each method's
    points (its curve's records, else its row), the one nearest `REFERENCE`'s bytes per example on a log scale
    (ties: the larger, the competitor's advantage); a method of one size (a fixed encoder, full gradients)
    keeps its row, and a choice more than 2x away says so. Ranks and bold as in the main table, over the chosen
    records that pair with the reference's (the same ground truth and draws); the others are listed unjudged.
    """
    out = []
    for s in suites:
        if not any(len(curves.get((s, m), [])) > 1 for m in columns[s]):
            continue
        ref_record = columns[s].get(REFERENCE)
        ref = ref_record.cost.get("storage_bytes_per_example") if ref_record is not None else None
        if not ref or ref_record is None:
            continue
        chosen = {m: p for m, r in columns[s].items() if (p := at_storage(r, curves.get((s, m), []), ref))}
        paired = {m: r for m, r in chosen.items() if r.pairing == ref_record.pairing}
        footnotes: dict[str, int] = {}
        judged = judged_cells(paired, "lds", footnotes)
        order = sorted(chosen, key=lambda m: (-chosen[m].metrics["lds"]["value"], m))
        rows = []
        for m in order:
            r = chosen[m]
            size = (r.extra or {}).get("size")
            ratio = r.cost["storage_bytes_per_example"] / ref
            rows.append([m, f"{size['option']} {size['value']}" if size else "", len(curves.get((s, m), [])) or 1,
                         f"{ratio:.2g}×" + (" (none within 2×)" if abs(math.log(ratio)) > math.log(2) else ""),
                         judged.get(m) or f"{fmt(r.metrics['lds']['value'])} (does not pair)"])
        out += [f"### LDS at matched storage ({s})", "",
                f"Each method at the size (of those run: `bench curve`, everything else as the method's row) whose "
                f"storage per training example is nearest {REFERENCE}'s on a log scale (ties: the larger); a "
                f"method of one size (a fixed encoder, full gradients) at its own. Storage is what each method "
                f"reports per training example (for TrackStar, EK-FAC and DataInf it includes matrices spread "
                f"over the pool). Ranks and bold over these rows as in the main table. The figure draws every "
                f"size as a line.", "",
                table(rows, ["Method", "Size", "Sizes run", f"Storage vs {REFERENCE}", f"LDS {s}"]), ""]
        out += footnote_lines(footnotes)
    return out


def at_storage(row: RunRecord | None, curve: list[RunRecord], ref_bytes: float) -> RunRecord | None:
    """The method's point whose storage per training example is nearest `ref_bytes` on a log scale.

    Its points: its curve's records, else its row. Ties: the larger (the competitor's advantage). None without any.
    """

    def usable(p: RunRecord) -> bool:
        return (p.status == "ok" and bool(p.cost.get("storage_bytes_per_example"))
                and p.metrics.get("lds", {}).get("value") is not None)

    points = [p for p in curve if usable(p)] or ([row] if row is not None and usable(row) else [])
    return min(points, key=lambda p: (abs(math.log(p.cost["storage_bytes_per_example"] / ref_bytes)),
                                      -p.cost["storage_bytes_per_example"]), default=None)


def phase_s(record: RunRecord, name: str) -> float | None:
    """Seconds of a record's phase `name` at its original cost (`phase_cost_s`); None if it has none."""
    found = [p for p in record.cost.get("phases", []) if p.get("name") == name]
    return sum(phase_cost_s(p) for p in found) if found else None


def learning_curves(suites: list[str], budgets: dict[tuple[str, str], list[RunRecord]]) -> list[str]:
    """A learned method's LDS against its training budget (`bench curve --budget`), with what each point cost.

    Per suite in its own regime and method with two or more budgets: each budget's LDS (± half its CI), its
    best held-out step (↗: the last, still improving), its data generation and its training in seconds at their
    original cost (data generation is one cached artefact shared by every budget, charged to each: what a
    stand-alone run at that budget costs); then the paired change of LDS between the two largest budgets.
    """
    out = []
    for s in suites:
        for (column, m), line in budgets.items():
            line = [r for r in line if r.metrics.get("lds", {}).get("value") is not None]
            if column != s or len(line) < 2:
                continue
            rows = []
            for r in line:
                info = (r.extra or {}).get("method_info") or {}
                datagen, train = phase_s(r, "setup/datagen"), phase_s(r, "setup/train")
                rows.append([r.extra["budget"]["value"], metric_cell(r, "lds", {}),
                             f"{info.get('best_step', '')}{' ↗' if still_improving(r) else ''}",
                             fmt(datagen, 0) if datagen is not None else "",
                             fmt(train, 0) if train is not None else ""])
            option = line[0].extra["budget"]["option"]
            a, b = line[-1], line[-2]
            problem = stats.why_not_comparable(a, b, "lds")
            if problem is None:
                c = stats.compare(a, b, "lds")
                change = f"{c.diff:+.3f} [{c.ci_low:+.3f}, {c.ci_high:+.3f}] (paired, p = {c.p:.2g})"
            else:
                change = f"{a.metrics['lds']['value'] - b.metrics['lds']['value']:+.3f} (unpaired: {problem})"
            out += [f"### {m}'s learning curve ({s})", "",
                    f"LDS against {option} (everything else as the method's row); best held-out step (the one "
                    f"kept; ↗: the last, still improving); data generation and training in seconds at their "
                    f"original cost. From {option} {b.extra['budget']['value']} to {a.extra['budget']['value']} "
                    f"the LDS changes by {change}.", "",
                    table(rows, [option.capitalize(), f"LDS {s}", "Best step", "Data generation (s)",
                                 "Training (s)"]), ""]
    return out


def ablations(columns: dict[str, dict[str, RunRecord]], suites: list[str]) -> list[str]:
    """Each ablation against its parent on the suites in their own regime: the LDS difference, paired.

    An ablation's record names its parent, the config options it may change and what it changes in words
    (`extra.ablation`, from `Method.ablation_of`). The two are compared only where their configs differ in
    those options alone (the seed included); otherwise the row says in which other options they differ, and
    gives no difference.
    """
    rows = []
    for s in suites:
        for m, r in sorted(columns[s].items()):
            info = (r.extra or {}).get("ablation") if r.status == "ok" else None
            parent = columns[s].get(info["of"]) if info else None
            if info is None or parent is None or parent.status != "ok":
                continue
            other = differences(r, parent, info.get("options", ()))
            base = [m, info["of"], info.get("changes", ""), s]
            if other:
                rows.append([*base, "", "", f"not compared: also differs in {', '.join(other)}", ""])
                continue
            problem = stats.why_not_comparable(r, parent, "lds")
            if problem is not None:
                rows.append([*base, "", "", f"not compared: {problem}", ""])
                continue
            base += [fmt(r.metrics["lds"]["value"]), fmt(parent.metrics["lds"]["value"])]
            c = stats.compare(r, parent, "lds")
            rows.append([*base, f"{c.diff:+.3f} [{c.ci_low:+.3f}, {c.ci_high:+.3f}]", f"{c.p:.2g}"])
    if not rows:
        return []
    return ["### Ablations: one change each", "",
            "Each ablation against the method it changes, on the same suite, ground truth and draws. Compared only "
            "where the two records' configs differ in the ablated options alone and the harness and task code that "
            "made them is the same (otherwise the row names the other differences and shows no values); Δ = "
            "ablation − parent with the paired bootstrap's 95% CI and p (no correction over rows). Both run at the "
            "parent's settings (tuned for the parent where it was tuned), which can favour the parent.", "",
            table(rows, ["Ablation", "Of", "Changes", "Suite", "LDS", "LDS of parent", "Δ (95% CI)", "p"]), ""]


def _replicate_spread(columns: dict[str, dict[str, RunRecord]], suites: list[str], order: list[str]) -> list[str]:
    """Per suite (in a regime) with replicates: each method's LDS on every replicate, their spread, its CI."""
    import statistics

    families: dict[tuple[str, str, bool], list[str]] = {}  # a suite in one regime -> its columns, in order
    for s in suites:
        r = next(iter(columns[s].values()))
        families.setdefault((r.suite, r.regime, r.regime_default), []).append(s)
    out = []
    for family in families.values():
        base = family[0]
        if len(family) < 2 or next(iter(columns[base].values())).replicate != 0:
            continue
        rows = []
        for m in order:
            records = [columns[s].get(m) for s in family]
            values = [r.metrics["lds"]["value"] if r is not None and r.status == "ok" and "lds" in r.metrics
                      else None for r in records]
            if any(v is None for v in values):
                continue
            half = [(r.metrics["lds"]["ci_high"] - r.metrics["lds"]["ci_low"]) / 2 for r in records]
            rows.append([m, *[fmt(v) for v in values], fmt(statistics.mean(values)),
                         fmt(statistics.stdev(values)), fmt(statistics.mean(half))])
        if rows:
            out += [f"### LDS across replicates of {base}", "",
                    f"Each replicate draws the suite's data and its target LM's initialisation again (generator and "
                    f"initialisation seeds moved by N); ground truth, methods and scores are rebuilt on it. SD: the "
                    f"spread of a method's LDS across the {len(family)} draws, a source of variation that no "
                    f"single-suite CI contains; beside it, the mean half-width of the replicates' 95% CIs.", "",
                    table(rows, ["Method", *family, "Mean", "SD across replicates", "Mean CI half-width"]), ""]
    return out


def _rank_agreement(columns: dict[str, dict[str, RunRecord]], suites: list[str]) -> list[str]:
    """Kendall tau between the method orders of every pair of columns, and the significant flips."""
    from bench import stats

    rows = []
    for i, a in enumerate(suites):
        for b in suites[i + 1:]:
            agreement = stats.rank_agreement(columns[a], columns[b], "lds")
            if agreement is None:
                continue
            flips = ", ".join(f"{x} > {y} → {y} > {x}" for x, y in agreement.flips) or "none"
            interval = (f"{fmt(agreement.median, 2)} [{fmt(agreement.ci_low, 2)}, {fmt(agreement.ci_high, 2)}]"
                        if agreement.n_replicates else "no interval: a column's rows drew differently")
            rows.append([a, b, str(len(agreement.methods)), fmt(agreement.tau, 2), interval, flips])
    if not rows:
        return []
    return ["### Does the order hold? Rank agreement between columns", "",
            "For each pair of columns, the methods both have (the random baseline left out: its place at the "
            "bottom says nothing about attribution): Kendall's τ-b between their LDS orders, and its median and "
            "95% percentile interval over the records' bootstrap replicates (replicate i of every row of one "
            "column against replicate i of the other's: the rows of a column share their draws, so each "
            "replicate orders the whole column). Where methods are within noise of each other the replicates' "
            "orders tend to agree less than the point values do, so their τ tends to fall below the point τ, "
            "and the interval may not contain it: read it as how much of the agreement another draw of test "
            "clusters and subsets could undo (not another training seed or draw of the data: the replicate "
            "tables show those). The draws are seeded alike for every column, so columns of one suite share "
            "them and columns of different suites do not: intervals of regime pairs and of suite pairs are not "
            "comparable. Then each pair of "
            "methods whose order flips significantly: above in one column and below in the other, each by the "
            "paired test after Holm over the pairs of the methods compared here (a smaller family than the "
            "LDS table's, so a flip can disagree with its bold and ranks).", "",
            table(rows, ["Column A", "Column B", "Methods", "Kendall τ", "Replicates' τ: median [95%]",
                         "Significant flips (A → B)"]),
            ""]


def _ceiling_draws(records: list[RunRecord], metric: str = "ceiling") -> str:
    """What the records' ceiling intervals resample, from their own declarations."""
    draws = sorted({r.metrics[metric].get("draws") or "test examples" for r in records
                    if r.status == "ok" and metric in r.metrics})
    return "; ".join(draws) or "test examples"


def _cost_table(in_order: list) -> list[str]:
    rows = []
    for (s, _, m), r in in_order:
        if r.status != "ok":
            continue
        thr = throughput(r)
        setup = setup_s(r)
        phases = r.cost.get("phases", [])
        method_h, harness_h = gpu_hours(phases, METHOD_PHASES), gpu_hours(phases, HARNESS_PHASES)
        rows.append([m, s, fmt(setup, 1) if setup is not None else "", f"{thr:,.0f}" if thr else "",
                     bytes_text(r.cost.get("storage_bytes_per_example")), bytes_text(r.cost.get("peak_bytes")),
                     hours(method_h), hours(harness_h), str(r.cost.get("device", ""))])
    return ["## Cost", "",
            "Setup: the method's one-time cost in seconds (its original cost when loaded from the cache; "
            "the shared warm-up and ground truth are not charged). Throughput: training examples featurised "
            "per second. GPU-h (runs on a CUDA device only): the method's phases (setup, featurisation, "
            "scoring) and the suite's shared harness work (warm-up, retraining ground truth, summed over jobs), "
            "each at what producing it cost.", "",
            table(rows, ["Method", "Suite", "Setup (s)", "Index (ex/s)", "Storage / example", "Peak memory",
                         "Method GPU-h", "Harness GPU-h", "Device"]), ""]


def _per_label(records: dict[str, RunRecord], suite: str, order: list[str]) -> list[str]:
    """Mean LDS per task / source / stance on one suite: where each method wins."""
    ok = {m: r for m, r in records.items() if r.status == "ok" and r.extra.get("per_label")}
    if not ok:
        return []
    kind = next(iter(ok.values())).extra["per_label"]["kind"]
    labels = sorted({v for r in ok.values() for v in r.extra["per_label"]["values"]})
    best = {v: max(r.extra["per_label"]["values"].get(v, {}).get("lds", -2.0) for r in ok.values()) for v in labels}
    rows = []
    for m in [m for m in order if m in ok]:
        values = ok[m].extra["per_label"]["values"]
        rows.append([m, *[(lambda x: f"**{fmt(x)}**" if x == best[v] else fmt(x))(values.get(v, {}).get("lds"))
                          for v in labels]])
    n = next(iter(ok.values())).extra["per_label"]["values"]
    sizes = ", ".join(f"{v} {n[v]['n']}" for v in labels if v in n)
    return [f"### LDS per {kind} on {suite}", "",
            f"Mean LDS over the test examples of each {kind} (test examples: {sizes}); bold: the highest of "
            f"each column (no test of significance).", "", table(rows, ["Method", *labels]), ""]


def _nan_table(columns: dict[str, dict[str, RunRecord]], suites: list[str], order: list[str]) -> list[str]:
    """Test examples without an LDS (constant scores or losses), and the LDS counting them as 0."""
    rows = []
    for m in order:
        records = [columns[s].get(m) for s in suites]
        excluded = [int(r.extra.get("n_constant_excluded", 0)) if r is not None and r.status == "ok" else None
                    for r in records]
        if not any(excluded):
            continue
        cells = []
        for r, n in zip(records, excluded, strict=True):
            zero = r.metrics.get("lds_nan_as_zero") if r is not None and n is not None else None
            cells.append("" if n is None else f"{n}" + (f" / {fmt(zero['value'])}" if zero else ""))
        rows.append([m, *cells])
    if not rows:
        return []
    return ["### Test examples without an LDS", "",
            "Test examples a method leaves without an LDS (its group scores are constant over subsets; they are "
            "left out of its mean) / its LDS when they count as 0 (the AirRep authors' convention).", "",
            table(rows, ["Method", *suites]), ""]


def _seed_table(seeds: dict[tuple[str, str, str], dict[int, RunRecord]], task: str, metric: str) -> list[str]:
    """Rows run with several method seeds (`--seeds`): mean ± sd of the headline over seeds."""
    rows = []
    for (suite, t, row), by_seed in sorted(seeds.items(), key=lambda kv: (suite_key(kv[0][0]), kv[0])):
        if t != task:
            continue
        values = [r.metrics[metric]["value"] for _, r in sorted(by_seed.items()) if metric in r.metrics]
        if len(values) < 2:
            continue
        mean = sum(values) / len(values)
        sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
        rows.append([row, suite, ", ".join(str(k) for k in sorted(by_seed)), f"{fmt(mean)} ± {fmt(sd)}",
                     ", ".join(fmt(v) for v in values)])
    if not rows:
        return []
    return ["### Method seeds", "",
            "The same method with other seeds of its own randomness (`bench run --seeds ...`: sampling and "
            "initialisation, random projections); the ground truth stays the same. Mean ± sample sd over seeds.", "",
            table(rows, ["Method", "Suite", "Seeds", f"{metric.upper()} mean ± sd", "Per seed"]), ""]


