"""The table of any task without a bespoke one: rows ranked on the records' headline, one section per suite.

A new task's records appear here with no edit to the renderer; `layout.toml` may give it a title, a
caption (filled from the records' task options) and the columns to show.
"""

from __future__ import annotations

from bench.results import RunRecord
from leaderboard.fmt import (
    footnote_lines,
    format_caption,
    judged_cells,
    layout,
    metric_cell,
    provenance,
    stats_caption,
    suite_key,
    table,
)
from leaderboard.select import Cells, by_suite, of_task


def section(cells: Cells, task: str) -> list[str]:
    """One table per suite of `task`, ranked on the records' headline as in the LDS table."""
    found = of_task(cells, task)
    if not found:
        return []
    spec = layout().get("generic", {}).get(task, {})
    ok = [r for r in found.values() if r.status == "ok"]
    head = next((r.headline for r in ok if r.headline), None) or next((m for r in ok for m in r.metrics), "")
    if spec.get("columns"):
        columns = [tuple(c) for c in spec["columns"]]
    else:  # the headline first, then every other metric the records have, by name
        names = sorted({m for r in ok for m in r.metrics} - {head})
        columns = [(head, head), *[(n, n) for n in names]]
    head = columns[0][1]
    records = list(found.values())
    caption = " ".join(part for part in (format_caption(spec.get("caption", ""), records),
                                         stats_caption(records, head)) if part)
    out = [f"## {spec.get('title', task)}", "", caption, ""]
    for suite, by_row in by_suite(found, suite_key).items():
        footnotes: dict[str, int] = {}
        judged = judged_cells(by_row, head, footnotes)

        def key(item: tuple[str, RunRecord]) -> tuple[float, str]:
            m = item[1].metrics.get(head) if item[1].status == "ok" else None
            return (-(m["value"] if m else -1.0), item[0])

        rows = []
        for m, r in sorted(by_row.items(), key=key):
            if r.status == "ok" and head not in r.metrics:  # e.g. constant self-scores: no value to rank
                note = "*constant*" if r.extra.get("constant_self_score") else "; ".join(r.extra.get("summary", []))
                rows.append([m, note or "", *([""] * (len(columns) - 1))])
                continue
            rows.append([m, judged[m], *[metric_cell(r, metric, footnotes) for _, metric in columns[1:]]])
        out += [f"### {suite}", "", table(rows, ["Method", *[h for h, _ in columns]]), "",
                provenance(list(by_row.values())), ""]
        out += footnote_lines(footnotes)
    return out
