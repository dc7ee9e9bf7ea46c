"""Data selection (the protocol of the AirRep paper's Figure 4) as a table: F1 after fine-tuning on the top k."""

from __future__ import annotations

from bench.results import RunRecord
from leaderboard.fmt import fmt, footnote_lines, judged_cells, metric_cell, provenance, stats_caption, suite_key, table
from leaderboard.select import Cells, by_suite, of_task


def section(cells: Cells, seeds: dict) -> list[str]:  # noqa: ARG001 - the common signature
    """F1 after fine-tuning on each method's top-k, against random k and the full pool."""
    sel = of_task(cells, "selection")
    if not sel:
        return []
    records_ = [r for r in sel.values() if r.status == "ok"]
    held_out = bool(records_) and all("query_fraction" in r.task_config for r in records_)
    if held_out:  # code version 3: queries apart from the evaluated examples, seeds in the CI, zero steps
        cfg = records_[0].task_config
        protocol = (f"Each task's test examples are split at random into queries ({cfg['query_fraction']:.0%}), "
                    f"which select, and evaluated examples, which are answered, disjoint by content (a shared "
                    f"prompt or item keeps examples on one side): no selection is judged on the examples it was "
                    f"chosen for. Macro unigram F1 over tasks after fine-tuning on the k training examples the "
                    f"method ranks highest for a task's queries, averaged over {cfg['seeds']} fine-tuning seeds; "
                    f"random k (each draw under the same seeds), the full pool and the start LM itself, with no "
                    f"fine-tuning (*zero steps*; on the built suites the warm-up LM, trained on the warm-up split), "
                    f"are the references, outside the ranking. ")
        seeds_text = (" Each task's selections train with seeds of their own, so resampling whole tasks carries "
                      "the seed noise (the full pool's runs, one seed for all tasks, resample the seeds too).")
    else:
        protocol = ("Macro unigram F1 over tasks after fine-tuning on the k training examples the method ranks "
                    "highest for each task, selected with the test examples it is evaluated on (as the paper "
                    "does); random k and the full pool are the references. ")
        seeds_text = (" The CIs hold the one fine-tuning of each task and selection: the fine-tuning seed's noise "
                      "is not in them.")
    out = ["## Data selection (the protocol of the AirRep paper's Figure 4)", "",
           protocol + stats_caption(list(sel.values()), "f1") + seeds_text + " Selection cost: the method's time to "
           "score the pool, its cached setup (AirRep's training, LESS's LoRA) at what producing it cost. Run on the "
           "default suite only, as the paper runs it on FLAN only.", ""]
    for suite, records in by_suite(sel, suite_key).items():
        ok = [r for r in records.values() if r.status == "ok"]
        if not ok:
            continue
        footnotes: dict[str, int] = {}
        judged = judged_cells(records, "f1", footnotes)

        def f1(r: RunRecord) -> float:
            return r.metrics["f1"]["value"] if r.status == "ok" and "f1" in r.metrics else -1.0

        rows = []
        for m, r in sorted(records.items(), key=lambda kv: (-f1(kv[1]), kv[0])):
            cost = r.extra.get("selection_cost_s") if r.status == "ok" else None
            rows.append([m, judged[m], fmt(cost, 1) if cost is not None else "",
                         str(r.extra.get("k", "")) if r.status == "ok" else ""])
        ref = ok[0]
        rows.append(["*random k*", metric_cell(ref, "f1_random", footnotes), "", str(ref.extra.get("k", ""))])
        rows.append(["*full pool*", metric_cell(ref, "f1_full", footnotes), "", str(ref.extra.get("n_train", ""))])
        if "f1_zero" in ref.metrics:
            rows.append(["*zero steps*", metric_cell(ref, "f1_zero", footnotes), "", "0"])
        out += [f"### {suite}", "", table(rows, ["Method", "F1", "Selection cost (s)", "k per task"]), "",
                provenance(list(records.values())), ""]
        out += footnote_lines(footnotes)
    return out
