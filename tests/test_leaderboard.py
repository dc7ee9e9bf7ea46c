"""Golden test: fixed records -> expected markdown; plus --check and the no-torch import boundary."""

import re
import subprocess
import sys
from pathlib import Path

from leaderboard.render import render

DATA = Path(__file__).parent / "data" / "leaderboard"


def test_golden_records_render_to_the_expected_markdown():
    text = render(DATA / "results", relative_to=DATA)
    assert text == (DATA / "expected.md").read_text(encoding="utf-8")
    # what the golden file pins down, spelled out
    lds = text[text.index("## LDS"):text.index("### LDS as a share")]
    # two suites as columns, the ceiling first, rows sorted by the average over suites
    assert "| LDS small             | LDS qa                | Average   |" in lds
    assert re.search(r"\| \*ceiling\* +\| +\| +\| +\| 0\.854 ± 0\.011 +\| 0\.930 ± 0\.010", lds)
    # how each row's settings were chosen: logra's small record ran at settings bench tune chose, its qa one not
    assert "| 0.150 ± 0.024 (3) ↗ " in lds  # airrep on qa stopped at its best held-out step: still improving
    assert "| tuned on dev, 8 configs on small; default on qa |" in lds
    assert re.search(r"\| tfidf +\| representation +\| default ", lds)
    assert lds.index("| dsdm ") < lds.index("| airrep ") < lds.index("| logra ") < lds.index("| tfidf ")
    # significance-aware bold and ranks: dsdm (0.462) and airrep (0.467) cannot be told apart on small, both
    # rank 1 and bold; logra is significantly below both (rank 3), tfidf below all three (rank 4)
    assert "**0.462 ± 0.028** (1)" in lds and "**0.467 ± 0.029** (1)" in lds
    assert "| 0.403 ± 0.025 (3)" in lds and "| 0.313 ± 0.023 (4)" in lds
    assert "0.111" not in text  # an ad-hoc --set run never replaces a method's default row
    assert "✕[^1]" in text and "[^1]: run failed: RuntimeError" in text  # failed cell, footnote
    assert "0.100" not in text  # the older tfidf record is superseded by the newer one
    assert "| airrep   | small   | 0, 1, 2 | 0.465 ± 0.009   | 0.467, 0.455, 0.472 |" in text  # method seeds
    assert "| tfidf    | 3 / 0.310 |" in text  # excluded test examples, and the authors' convention
    assert "### LDS per task on small" in text and "| capital   | sorting   |" in text
    assert "| *chance* | 0.081" in text
    assert "| *random k*  | 0.192 ± 0.016" in text and "[^1]: run failed: MemoryError" in text  # per-table notes
    # crossover: 20160 + 0.0005 N = 100 + 0.042 N at N = 483,373, where both cost 5.67 h
    assert "| logra    | gradient | 100 s   | 42             | 72.0 KiB            | > 483K (5.67 h)" in text
    assert "100× / 48×" in text and "(reference)" in text
    # GPU-hours of a CUDA record: method (36 s of setup less the 3 s warm-up nested in it (the shared warm-up
    # LM, listed right before setup: the harness's) + 1,440 + 360 + 0 s) / 3,600 = 0.509; harness, at the
    # original cost of its cached phases, (7,200 + 1,800 s) / 3,600 = 2.5; CPU records leave both cells empty
    assert "| logra    | small   | 33.0        | 1              | 72.0 KiB            | 12.0 GiB      | 0.509" in text
    assert "| 0.509          | 2.5             | cuda:0   |" in text
    assert "| 600.0 MiB     |                |                 | cpu      |" in text
    # the header names the records it was rendered from
    assert "result records in `results/`" in text and "--results-dir results`" in text


def test_no_relative_storage_without_an_airrep_record(tmp_path):
    import shutil

    shutil.copytree(DATA / "results" / "small" / "lds" / "tfidf", tmp_path / "small" / "lds" / "tfidf")
    text = render(tmp_path)
    assert "| Dim " in text and "×)" not in text.split("## Cost")[0]


def test_check_mode(tmp_path, capsys):
    from bench.cli.main import main

    out = tmp_path / "LB.md"
    args = ["leaderboard", "--results-dir", str(DATA / "results"), "--output", str(out),
            "--figures-dir", str(tmp_path / "figures")]
    assert main(args) == 0
    pngs = sorted((tmp_path / "figures").glob("*.png"))
    assert [p.name for p in pngs] == ["crossover_small.png", "lds_vs_storage_qa.png", "lds_vs_storage_small.png",
                                      "selection_vs_cost_small.png"]
    assert all(p.read_bytes().startswith(b"\x89PNG") and p.stat().st_size > 10_000 for p in pngs)
    assert "![lds_vs_storage_small](figures/lds_vs_storage_small.png)" in out.read_text()
    assert main([*args, "--check"]) == 0
    out.write_text(out.read_text() + "edited\n")
    assert main([*args, "--check"]) == 1
    assert main(["leaderboard", "--results-dir", str(tmp_path / "none")]) == 2


def test_leaderboard_imports_no_torch():
    code = ("import sys; from pathlib import Path; from leaderboard.render import render; "
            f"render(Path({str(DATA / 'results')!r})); sys.exit(3 if 'torch' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_the_header_names_the_results_dir_it_was_made_from(tmp_path):
    import shutil

    shutil.copytree(DATA / "results", tmp_path / "elsewhere")
    text = render(tmp_path / "elsewhere")
    assert f"from the result records in `{(tmp_path / 'elsewhere').as_posix()}/`" in text
    assert "leaderboard/results/`" not in text.splitlines()[2]


def test_replicates_get_their_spread_table_and_stay_out_of_the_average():
    from bench.results import RunRecord
    from leaderboard.select import latest
    from leaderboard.tables.lds import section

    def record(method: str, value: float, replicate: int) -> RunRecord:
        return RunRecord(suite="small", suite_version="2", task="lds", method=method, method_family="baseline",
                         method_config={}, task_config={}, fingerprint=f"{method}{replicate}", status="ok",
                         metrics={"lds": {"value": value, "ci_low": value - 0.05, "ci_high": value + 0.05,
                                          "higher_is_better": True, "n": 10, "test": "none"}},
                         per_example={}, cost={}, env={}, seed=0, started_at="", created_at="2026-12-03",
                         headline="lds", replicate=replicate)

    values = {"logra": (0.6, 0.5, 0.4), "tfidf": (0.3, 0.3, 0.3)}
    records = [record(m, v[n], n) for m, v in values.items() for n in range(3)]
    text = "\n".join(section(latest(records), {}))
    spread = text[text.index("### LDS across replicates of small"):]
    assert "| logra    | 0.600   | 0.500      | 0.400      | 0.500  | 0.100" in spread
    assert "| tfidf    | 0.300   | 0.300      | 0.300      | 0.300  | 0.000" in spread
    # the average column is small's own value, not the mean over replicates
    main = text[:text.index("### LDS across")]
    assert "| LDS small         | LDS small-r1      | LDS small-r2      | Average   |" in main
    assert main.split("| logra")[1].split("\n")[0].rstrip().endswith("| 0.600     |")
    # each column's machine and commit in the provenance line (a column pairs only records of one machine)
    assert "small v2 (warmup-start) on unknown at unknown; small v2 (warmup-start, replicate 1) on unknown" in main


def test_a_column_whose_rows_do_not_pair_is_refused():
    """Rows of one column made on other ground truths (another machine) must not sit side by side."""
    import pytest

    from bench.errors import DataError
    from bench.results import RunRecord
    from leaderboard.select import check_pairing, latest

    def record(method: str, pairing: str) -> RunRecord:
        return RunRecord(suite="small", suite_version="2", task="lds", method=method, method_family="baseline",
                         method_config={}, task_config={}, fingerprint=method, status="ok",
                         metrics={"lds": {"value": 0.5, "ci_low": 0.4, "ci_high": 0.6, "higher_is_better": True,
                                          "n": 10, "test": "bootstrap"}},
                         per_example={}, cost={}, env={}, seed=0, started_at="", created_at="2026-12-07",
                         headline="lds", pairing=pairing)

    check_pairing(latest([record("logra", "a"), record("tfidf", "a")]))  # one ground truth: fine
    with pytest.raises(DataError, match=r"column small of task lds mixes .*: logra, tfidf \| ekfac"):
        check_pairing(latest([record("logra", "a"), record("tfidf", "a"), record("ekfac", "b")]))


def test_a_classification_column_where_no_method_beats_random_is_marked_and_left_out_of_the_average():
    """Each committed classification column is marked *at chance* exactly when no row is significantly above
    random (each against it, Holm over them); a marked column is not averaged (stereoset's stance is at
    chance for every method: its top-10 chance is 0.999). Synthetic columns: a row far above random is
    not at chance; a column without random is not tested (averaged); all columns at chance render."""
    from bench import stats
    from bench.results import RunRecord, read_records
    from leaderboard.select import latest
    from leaderboard.tables.classification import section

    root = Path(__file__).resolve().parents[1]
    cells = latest([r for r in read_records(root / "leaderboard" / "results") if r.task == "classification"])
    text = "\n".join(section(cells, {}))
    header = next(line for line in text.splitlines() if line.startswith("| Method"))
    assert "stereoset (top1_stance; *at chance*)" in header and header.count("at chance") == 1
    stereoset = {k[2]: r for k, r in cells.items() if k[0] == "stereoset"}
    assert stats.above_baseline(stereoset, "top1_stance") == set()
    row = next(line for line in text.splitlines() if line.startswith("| dsdm"))
    cols = [c.strip() for c in header.strip("|").split("|")]
    kept = [i for i, c in enumerate(cols) if i and c != "Average" and "at chance" not in c]
    assert [cols[i].split(" ")[0] for i in kept] == ["small", "shifted", "qa", "bbq"]
    cells_of_row = row.strip("|").split("|")
    values = [float(cells_of_row[i].strip().strip("*").split(" ")[0]) for i in kept]
    assert float(cells_of_row[-1]) == round(sum(values) / len(values), 3)  # every column but stereoset

    def record(suite, method, outcomes, seed=0):
        rng = np.random.default_rng(seed)
        reps = [float(np.mean(rng.choice(outcomes, len(outcomes)))) for _ in range(200)]
        value = float(np.mean(outcomes))
        return RunRecord(suite=suite, suite_version="1", task="classification", method=method,
                         method_family="baseline", method_config={}, task_config={}, fingerprint=f"{suite}{method}",
                         status="ok", metrics={"top1_task": {"value": value, "ci_low": value - 0.1,
                                                             "ci_high": value + 0.1, "higher_is_better": True,
                                                             "n": len(outcomes), "test": stats.MCNEMAR,
                                                             "replicates": reps}},
                         per_example={"top1_task": list(outcomes)}, cost={}, env={}, seed=0, started_at="",
                         created_at="2026-12-07", headline="top1_task", pairing="p")

    import numpy as np

    coin = [1.0, 0.0] * 20
    sure = [1.0] * 40
    synthetic = [record("a", "random", coin), record("a", "good", sure, 1), record("b", "random", coin),
                 record("b", "meh", coin[::-1], 2), record("c", "good", sure), record("c", "meh", coin)]
    text = "\n".join(section(latest(synthetic), {}))
    header = next(line for line in text.splitlines() if line.startswith("| Method"))
    assert "a (top1_task)" in header and "b (top1_task; *at chance*)" in header and "c (top1_task)" in header
    only_chance = "\n".join(section(latest(synthetic[2:4]), {}))
    assert "b (top1_task; *at chance*)" in only_chance


def test_an_ablation_is_compared_with_its_parent_only_when_one_thing_changed():
    import dataclasses

    from bench.results import read_record
    from leaderboard.tables.lds import ablations

    columns = {}
    for suite, name in (("small", "ffffffffffff"), ("qa", "lllllllllllq")):
        parent = read_record(DATA / "results" / suite / "lds" / "logra" / f"{name}.json")
        lds = dict(parent.metrics["lds"])
        lds.update(value=lds["value"] - 0.01, replicates=[None if v is None else v - 0.01 for v in lds["replicates"]])
        config = {**parent.method_config, **({"rank": 32} if suite == "qa" else {})}
        child = dataclasses.replace(parent, method="logra_attn", metrics={**parent.metrics, "lds": lds},
                                    method_config=config,
                                    extra={"ablation": {"of": "logra", "options": [], "changes": "attention pooling"}})
        columns[suite] = {"logra": parent, "logra_attn": child}
    text = "\n".join(ablations(columns, ["small", "qa"]))
    assert re.search(r"\| logra_attn \| logra +\| attention pooling \| small +\| 0\.393 \| 0\.403 +\| "
                     r"-0\.010 \[-0\.010, -0\.010\]", text)
    assert re.search(r"\| qa +\| +\| +\| not compared: also differs in rank \|", text)  # no values shown
    other_code = {"small": {**columns["small"], "logra_attn": dataclasses.replace(
        columns["small"]["logra_attn"], env={**columns["small"]["logra_attn"].env, "code_hashes": {"harness": "x"}})}}
    assert "not compared: also differs in harness code" in "\n".join(ablations(other_code, ["small"]))
    # the ablated options themselves may differ
    columns["qa"]["logra_attn"].extra["ablation"]["options"] = ["rank"]
    assert "not compared" not in "\n".join(ablations(columns, ["small", "qa"]))
    assert ablations({"small": {"logra": columns["small"]["logra"]}}, ["small"]) == []


def test_seed_groups_keep_the_seeds_of_one_run_of_the_row():
    import dataclasses

    from bench.results import read_record
    from leaderboard.select import seed_groups

    base = read_record(next((DATA / "results" / "small" / "lds" / "tfidf").glob("*.json")))
    seeds = [dataclasses.replace(base, seed=s, fingerprint=f"s{s}") for s in (0, 1, 2)]
    assert sorted(seed_groups(seeds)[(base.column, "lds", base.row)]) == [0, 1, 2]
    # seed 2 made at another suite version (an older run): not a seed of this one
    older = dataclasses.replace(seeds[2], suite_version="old")
    assert sorted(seed_groups([*seeds[:2], older])[(base.column, "lds", base.row)]) == [0, 1]
    assert seed_groups([seeds[0], dataclasses.replace(seeds[1], method_config={"other": 1})]) == {}
