"""Curves, not points: `bench curve` records a method at each size; the leaderboard draws lines and matches storage."""

import dataclasses
import re
from pathlib import Path

import pytest

from bench.results import read_record, read_records
from leaderboard.select import curve_points
from leaderboard.tables.lds import storage_matched

DATA = Path(__file__).parent / "data" / "leaderboard"


def _at(record, method, value, storage, lds_shift, option="rank", **changes):
    """A copy of a golden record as if run at another size (storage per example, LDS moved by lds_shift)."""
    lds = dict(record.metrics["lds"])
    lds.update(value=lds["value"] + lds_shift, replicates=[None if v is None else v + lds_shift
                                                           for v in lds["replicates"]])
    cost = dict(record.cost, storage_bytes_per_example=storage)
    return dataclasses.replace(record, method=method, metrics={**record.metrics, "lds": lds}, cost=cost,
                               options={"method": {option: value}, "suite": {}, "task": {}},
                               extra={"size": {"option": option, "value": value}},
                               fingerprint=f"{method}{value}", **changes)


def test_storage_matched_picks_each_methods_size_nearest_the_reference():
    airrep = read_record(DATA / "results" / "small" / "lds" / "airrep" / "aaaaaaaaaaaa.json")
    logra = read_record(DATA / "results" / "small" / "lds" / "logra" / "ffffffffffff.json")
    ref = airrep.cost["storage_bytes_per_example"]
    points = [_at(logra, "logra", r, ref * f, s) for r, f, s in ((4, 0.25, -0.2), (8, 1.1, -0.1), (64, 64, 0.0))]
    # an ad-hoc run with another option too is no point of the curve, nor a failed one, nor one made at other
    # settings of the rest of the config (an older point, before the damping was tuned)
    stray = dataclasses.replace(_at(logra, "logra", 16, ref * 4, 0.05),
                                options={"method": {"rank": 16, "damping": 0.1}, "suite": {}, "task": {}})
    failed = dataclasses.replace(_at(logra, "logra", 32, ref * 16, 0.3), status="failed")
    older = dataclasses.replace(_at(logra, "logra", 2, ref / 16, 0.1), method_config={"damping": 0.5},
                                created_at="2020-01-01T00:00:00+00:00")
    curves = curve_points([*points, stray, failed, older])
    assert [r.extra["size"]["value"] for r in curves[("small", "logra")]] == [4, 8, 64]  # sorted by storage
    columns = {"small": {"airrep": airrep, "logra": logra}}
    text = "\n".join(storage_matched(columns, ["small"], curves))
    # logra at rank 8 (1.1x airrep's bytes) is the nearest point; airrep is its own single point
    assert re.search(r"\| logra +\| rank 8 +\| 3 +\| 1\.1× ", text) and re.search(r"\| airrep +\| +\| 1 +\| 1× ", text)
    assert f"{logra.metrics['lds']['value'] - 0.1:.3f}" in text
    # no curve anywhere: no table (the main table already shows every method at one size)
    assert storage_matched(columns, ["small"], {}) == []
    # a tie on the log scale goes to the larger size (the competitor's advantage); far from it, the row says so
    tie = curve_points([_at(logra, "logra", 4, ref / 2, 0.0), _at(logra, "logra", 8, ref * 2, 0.01)])
    text = "\n".join(storage_matched(columns, ["small"], tie))
    assert re.search(r"\| logra +\| rank 8 +\| 2 +\| 2× ", text) and "none within 2×" not in text
    far = curve_points([_at(logra, "logra", 32, ref * 16, 0.0), _at(logra, "logra", 64, ref * 64, 0.0)])
    assert "16× (none within 2×)" in "\n".join(storage_matched(columns, ["small"], far))


@pytest.mark.slow
def test_bench_curve_records_each_size(run_cli):
    code, out, err, results = run_cli("curve", "--method", "tracin", "--suite", "tiny", "--sizes", "2,4")
    assert code == 0, err
    records = [r for r in read_records(results) if r.task == "lds"]
    assert sorted(r.method_config["rank"] for r in records) == [2, 4]
    assert all(r.extra["size"] == {"option": "rank", "value": r.method_config["rank"]} for r in records)
    line = curve_points(records)[("tiny", "tracin")]
    assert [r.method_config["rank"] for r in line] == [2, 4]
    assert line[0].cost["storage_bytes_per_example"] * 4 == line[1].cost["storage_bytes_per_example"]  # rank^2
    assert "LDS against storage on tiny" in out and "rank=2" in out
    code, _, err, _ = run_cli("curve", "--method", "tfidf", "--suite", "tiny")
    assert code == 2 and "has one size" in err
    code, _, err, _ = run_cli("curve", "--method", "tracin,logra", "--suite", "tiny", "--sizes", "2")
    assert code == 2 and "--sizes applies to one method" in err


def test_learning_curve_orders_budgets_and_states_the_slope_at_the_end():
    from leaderboard.tables.lds import learning_curves

    airrep = read_record(DATA / "results" / "small" / "lds" / "airrep" / "aaaaaaaaaaaa.json")

    def at(steps, shift, best):
        r = _at(airrep, "airrep", steps, 1536, shift, option="steps")
        phases = [{"name": "setup/datagen", "wall_s": 0.5, "cached": True, "original_wall_s": 300.0},
                  {"name": "setup/train", "wall_s": float(steps), "cached": False}]
        return dataclasses.replace(r, extra={"budget": {"option": "steps", "value": steps},
                                             "method_info": {"best_step": best}},
                                   method_config={"steps": steps}, cost={**r.cost, "phases": phases})

    line = curve_points([at(200, 0.02, 200), at(50, -0.1, 40), at(100, 0.0, 90)], axis="budget")
    assert [r.extra["budget"]["value"] for r in line[("small", "airrep")]] == [50, 100, 200]
    text = "\n".join(learning_curves(["small"], line))
    assert "### airrep's learning curve (small)" in text and "From steps 100 to 200 the LDS changes by +0.020" in text
    assert "(paired, p = " in text  # the two budgets' records pair: a paired difference
    # best step = last: still improving; data generation charged at its original cost, training as it ran
    assert re.search(r"\| 200 +\| [0-9.]+ ± [0-9.]+ +\| 200 ↗ +\| 300 +\| 200 ", text)
    assert re.search(r"\| 100 +\| [0-9.]+ ± [0-9.]+ +\| 90 +\| 300 +\| 100 ", text)
    assert curve_points([at(50, 0.0, 50)], axis="budget")[("small", "airrep")] and \
        learning_curves(["small"], curve_points([at(50, 0.0, 50)], axis="budget")) == []  # one point: no curve


@pytest.mark.slow
def test_bench_curve_budget_runs_airreps_learning_curve(run_cli):
    code, out, err, results = run_cli("curve", "--method", "airrep", "--budget", "--sizes", "5,10", "--suite", "tiny")
    assert code == 0, err
    line = curve_points(read_records(results), axis="budget")[("tiny", "airrep")]
    assert [r.method_config["steps"] for r in line] == [5, 10]
    assert all(r.extra["budget"] == {"option": "steps", "value": r.method_config["steps"]} for r in line)
    assert "LDS against training budget on tiny" in out and "steps=10" in out
    code, _, err, _ = run_cli("curve", "--method", "tfidf", "--budget", "--suite", "tiny")
    assert code == 2 and "no training budget to vary" in err


def test_quality_matched_crossover_charges_the_first_airrep_point_that_reaches_logras_matched_storage_lds():
    from bench.costmodel import CostProfile, crossover
    from leaderboard.tables.crossover import quality_matched

    airrep = read_record(DATA / "results" / "small" / "lds" / "airrep" / "aaaaaaaaaaaa.json")
    logra = read_record(DATA / "results" / "small" / "lds" / "logra" / "ffffffffffff.json")
    golden = read_record(next((DATA / "results" / "small" / "crossover" / "logra").glob("*.json")))
    env = {**airrep.env, "cpu": "one CPU", "device": "cpu"}  # every record of one machine
    airrep, logra = (dataclasses.replace(r, env=env) for r in (airrep, logra))
    # logra's crossover run measured both profiles: airrep's setup split into data generation and training
    prof = {"setup_s": 300.0, "per_example_s": 0.002, "per_example": {"min": 0.0019, "max": 0.0021}}
    mine = {"setup_s": 1400.0, "per_example_s": 0.001, "per_example": {"min": 0.0009, "max": 0.0011},
            "setup_parts": {"setup/datagen": 800.0, "setup/train": 600.0}}
    theirs = dataclasses.replace(golden, env=env, extra={**golden.extra, "profile": prof, "reference_profile": mine})
    cross = {"logra": theirs}
    ref = airrep.cost["storage_bytes_per_example"]
    # logra at rank 8 (1.1x airrep's bytes) sets the target; its rank-64 row is far better and is not the target
    target = logra.metrics["lds"]["value"] - 0.1
    curves = curve_points([_at(logra, "logra", 8, ref * 1.1, -0.1), _at(logra, "logra", 64, ref * 64, 0.0)])

    def at(steps, lds):
        r = _at(airrep, "airrep", steps, ref, lds - airrep.metrics["lds"]["value"], option="steps")
        phases = [{"name": "setup/datagen", "wall_s": 0.5, "cached": True, "original_wall_s": 300.0},
                  {"name": "setup/train", "wall_s": 2.0 * steps}, {"name": "setup", "wall_s": 2.0 * steps + 1.0}]
        return dataclasses.replace(r, extra={"budget": {"option": "steps", "value": steps}},
                                   method_config={"steps": steps}, cost={**r.cost, "phases": phases},
                                   pairing=logra.pairing, data=logra.data)

    budgets = curve_points([at(50, target - 0.2), at(100, target + 0.01), at(200, target + 0.05)], axis="budget")
    lds = {("small", "lds", "airrep"): airrep, ("small", "lds", "logra"): logra}
    text = "\n".join(quality_matched("small", cross, lds, curves, budgets))
    assert "#### Quality-matched crossover (small)" in text and "logra at rank 8, 1.1×" in text
    assert "airrep's point estimate first reaches it at steps 100." in text
    # the 100-step point: airrep's measured setup with its 600 s of training replaced by the point's 200 s
    expected = crossover(CostProfile(1400.0 - 600.0 + 200.0, 0.001), CostProfile(300.0, 0.002)).describe("airrep",
                                                                                                       "logra")
    row = next(line for line in text.splitlines() if line.startswith("| 100 "))
    assert expected in row and "(quality matched)" in row and "+0.010 [" in row  # paired with the target
    assert sum("(quality matched)" in line for line in text.splitlines()) == 1
    # per-example costs whose repeats overlap give no N*, as in the crossover table
    close = {**mine, "per_example": {"min": 0.0009, "max": 0.0019}}
    noisy = {"logra": dataclasses.replace(theirs, extra={**theirs.extra, "reference_profile": close})}
    assert "equal per-example cost within noise: no N*" in "\n".join(quality_matched("small", noisy, lds, curves,
                                                                                       budgets))
    # a curve that never reaches the target says so; one point is no curve
    low = curve_points([at(50, target - 0.2), at(100, target - 0.1)], axis="budget")
    assert "No point of airrep's curve reaches it" in "\n".join(quality_matched("small", cross, lds, curves, low))
    assert quality_matched("small", cross, lds, curves, curve_points([at(50, 0.9)], axis="budget")) == []
    # records of two machines, or a curve that does not pair with the target, are not compared
    other = {"logra": dataclasses.replace(theirs, env={**env, "cpu": "another CPU"})}
    assert "Not compared: the records are made on different machines" in \
        "\n".join(quality_matched("small", other, lds, curves, budgets))
    unpaired = curve_points([dataclasses.replace(r, pairing={"other": 1}) for r in budgets[("small", "airrep")]],
                            axis="budget")
    assert "do not pair" in "\n".join(quality_matched("small", cross, lds, curves, unpaired))
    whole = {"logra": dataclasses.replace(theirs, extra={
        **theirs.extra, "reference_profile": {k: v for k, v in mine.items() if k != "setup_parts"}})}
    assert "training share of the setup" in "\n".join(quality_matched("small", whole, lds, curves, budgets))
