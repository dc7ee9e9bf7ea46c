"""Data classification (the metric of the AirRep paper's Table 2): the top-scored example's label."""

from __future__ import annotations

from bench import stats
from leaderboard.fmt import (
    fmt,
    footnote_lines,
    judged_cells,
    provenance,
    stats_caption,
    suite_key,
    table,
)
from leaderboard.select import Cells, by_suite, of_task, own_columns


def section(cells: Cells, seeds: dict) -> list[str]:  # noqa: ARG001 - the common signature
    """Top-1 accuracy of each suite's main label, then every label kind and k per suite, with chance."""
    cls = of_task(cells, "classification")
    if not cls:
        return []
    columns = by_suite(cls, suite_key)
    suites = list(columns)
    heads = {s: next((r.headline for r in columns[s].values() if r.status == "ok" and r.headline), None)
             for s in suites}
    footnotes: dict[str, int] = {}
    judged = {s: judged_cells(columns[s], heads[s], footnotes) if heads[s] else {} for s in suites}
    rows_names = sorted({k[2] for k in cls})

    def value(s: str, m: str) -> float | None:
        r = columns[s].get(m)
        return r.metrics[heads[s]]["value"] if r is not None and r.status == "ok" and heads[s] in r.metrics else None

    def at_chance(s: str) -> bool:
        """No row significantly above random (each against it, Holm over them); False where that is untested."""
        above = stats.above_baseline(columns[s], heads[s]) if heads[s] else None
        return above is not None and not above

    chance_columns = {s for s in suites if at_chance(s)}
    # another regime's or a replicate's column is shown, not averaged; nor is one where no method beats random
    own = [s for s in own_columns(columns) if s not in chance_columns]

    def average(m: str) -> float | None:
        values = [value(s, m) for s in own]
        if not values or any(v is None for v in values):
            return None
        return sum(values) / len(values)  # type: ignore[arg-type]

    order = sorted(rows_names, key=lambda m: (average(m) is None, -(average(m) or 0.0), m))
    rows = [[m, *[judged[s].get(m, "") for s in suites], fmt(average(m))] for m in order]

    def chance(s: str) -> str:
        ok = [r for r in columns[s].values() if r.status == "ok"]
        if not ok or not heads[s]:
            return ""
        k, kind = heads[s].split("_", 1)
        return fmt(ok[0].extra.get("chance", {}).get(kind, {}).get(k))

    rows.append(["*chance*", *[chance(s) for s in suites], ""])
    records = list(cls.values())
    out = ["## Data classification (the metric of the AirRep paper's Table 2)", "",
           "Share of test examples whose top-1 training example by the method's score has the test example's "
           "label: the suite's main label (task, source, stance). " +
           stats_caption(records, {s: h for s, h in heads.items() if h}) +
           " *chance*: a random ranking. A column where no method is significantly above the random baseline "
           "(each method against it with the same tests, Holm over those) is marked *at chance* and left out of "
           "the average; a column without a random row is not tested. Rows sorted by the average.", "",
           table(rows, ["Method", *[f"{s} ({heads[s] or ''}{'; *at chance*' if s in chance_columns else ''})"
                                    for s in suites], "Average"]), "",
           provenance(records), ""]
    out += footnote_lines(footnotes)
    for suite in suites:
        records_ = columns[suite]
        ok = [r for r in records_.values() if r.status == "ok"]
        if not ok:
            continue
        # top1_task, top10_task, top1_family, ...: grouped by label kind, then by k
        names = sorted({name for r in ok for name in r.metrics},
                       key=lambda n: (n.split("_", 1)[1], int(n.split("_", 1)[0][3:] or 0)))
        judged_all = {n: judged_cells(records_, n, {}) for n in names}
        rows = [[m] + [judged_all[n][m] for n in names] for m in sorted(records_)]
        ch = ok[0].extra.get("chance", {})
        rows.append(["*chance*"] + [fmt(ch.get(n.split("_", 1)[1], {}).get(n.split("_", 1)[0])) for n in names])
        out += [f"### {suite}: every label kind", "", table(rows, ["Method", *names]), ""]
    return out


