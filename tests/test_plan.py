"""`bench plan` prints the work of a run and its estimate without doing or writing anything."""


def test_plan_on_an_empty_cache_touches_nothing_then_prices_from_records(run_cli, tmp_path, capsys):
    from bench.cli.main import main

    cache, results = tmp_path / "cache", tmp_path / "results"
    argv = ["plan", "--method", "random", "--task", "lds", "--suite", "tiny", "--cache-dir", str(cache),
            "--results-dir", str(results)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "16 retraining jobs, 0 cached, 16 to run" in out and "warm-up LM: to train" in out
    assert "random       lds             ?" in out and "1 cell(s) without a measurement" in out
    assert not cache.exists()  # nothing created

    code, _, err, _ = run_cli("run", "--method", "random", "--task", "lds", "--suite", "tiny", cache=cache)
    assert code == 0, err
    assert main(argv) == 0  # run_cli wrote its record to the same results directory
    out = capsys.readouterr().out
    assert "16 retraining jobs, 16 cached, 0 to run" in out and "s/job measured" in out
    assert "0 cell(s) without a measurement" in out


def test_plan_rejects_an_unknown_method_in_one_line(capsys):
    from bench.cli.main import main

    assert main(["plan", "--method", "lgra", "--task", "lds", "--suite", "tiny"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Did you mean 'logra'" in err


def test_plan_of_a_paper_suite_without_its_data_still_counts_the_jobs(run_cli, tmp_path, monkeypatch):
    import datasets
    import huggingface_hub

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    code, out, err, _ = run_cli("plan", "--suite", "flan", "--method", "all", "--task", "lds", cache=tmp_path / "c")
    assert code == 0, err
    assert "data not available here" in out and "ground truth: 100 retraining jobs, 0 cached, 100 to run" in out


def test_a_cells_price_counts_setup_once_not_with_its_parts():
    from bench.cli.plan_cmd import cell_cost

    phases = [{"name": "ground_truth", "wall_s": 0.1, "cached": True, "original_wall_s": 99.0, "peak_bytes": 9e9},
              {"name": "setup/datagen", "wall_s": 2.0, "cached": True, "original_wall_s": 100.0, "peak_bytes": 1e9},
              {"name": "setup/train", "wall_s": 200.0, "cached": False, "peak_bytes": 3e9},
              {"name": "setup", "wall_s": 202.0, "cached": False, "peak_bytes": 3e9},
              {"name": "index", "wall_s": 5.0, "cached": False, "peak_bytes": 2e9}]
    seen: set[str] = set()
    warm, cold, peak = cell_cost(phases, seen)
    # setup (202 s) holds its parts; the harness's ground truth is priced apart (its 9e9 bytes too)
    assert warm == 207.0 and cold == 207.0 - 2.0 + 100.0 and peak == 3e9
    # the method's next cell shares the datagen already produced: cold counts it once
    assert cell_cost(phases, seen)[1] == 207.0


def test_plan_takes_lists_and_counts_every_training_seed_of_the_ground_truth(capsys):
    from bench.cli.main import main

    assert main(["plan", "--method", "random,tfidf", "--task", "lds,classification", "--suite", "small",
                 "--results-dir", "nowhere"]) == 0
    out = capsys.readouterr().out
    # small: 64 subsets x 2 training seeds
    assert "2 method(s) x 2 task(s) = 4 cell(s)" in out and "ground truth: 128 retraining jobs" in out


def test_grid_plan_totals_the_steps_and_prices_each_seed(tiny_cache, run_cli, monkeypatch, capsys):
    import argparse

    import leaderboard.fmt as fmt
    from bench.cli import grid_cmd, plan_cmd
    from bench.cli.main import main

    code, _, err, results = run_cli("run", "--method", "random", "--task", "lds", "--suite", "tiny")
    assert code == 0, err
    grid = [{"suites": ["tiny"], "methods": "random", "tasks": "lds"},
            {"suites": ["tiny"], "methods": "random", "tasks": "lds", "seeds": "1,2"},
            {"suites": ["tiny"], "methods": "random", "tasks": "lds", "set": {"seed": 3}, "label": "random3"}]
    monkeypatch.setattr(fmt, "layout", lambda: {"grid": grid})
    assert main(["grid", "--plan", "--results-dir", str(results), "--cache-dir", str(tiny_cache)]) == 0
    out = capsys.readouterr().out
    assert "(x 2 seeds)" in out and "grid: 3 step(s)" in out and "0 cell(s) without a measurement" in out

    parser = argparse.ArgumentParser()
    plan_cmd.add_parser(parser.add_subparsers())
    one = plan_cmd.plan(parser.parse_args(["plan", "--method", "random", "--task", "lds", "--suite", "tiny",
                                           "--results-dir", str(results), "--cache-dir", str(tiny_cache)]))
    assert one["cold_s"] > 0 and "ground truth (lds)" in one["harness"]
    total = grid_cmd._plan(grid_cmd.steps(), results, ["--cache-dir", str(tiny_cache)])
    # the cell three times (seed 0, then seeds 1 and 2), the labelled variant priced as its method; the suite's
    # ground truth and warm-up once
    assert total["cells"]["cold_s"] == 4 * one["cold_s"]
    assert total["cold_harness_s"] is not None and total["cold_harness_s"] == plan_cmd.harness_sum(one["harness"])[1]


def test_plan_probe_prices_an_unmeasured_table_from_timed_steps_and_another_regime_is_no_price(
        run_cli, tmp_path, capsys):
    """Records of one regime do not price another's retraining; --probe measures a few steps instead."""
    import argparse

    from bench.cli import plan_cmd
    from bench.cli.main import main

    cache, results = tmp_path / "cache", tmp_path / "results"
    code, _, err, _ = run_cli("run", "--method", "random", "--task", "lds", "--suite", "tiny",
                              "--results-dir", str(results), cache=cache)
    assert code == 0, err
    argv = ["plan", "--method", "random", "--task", "lds", "--suite", "tiny", "--regime", "base-start",
            "--cache-dir", str(cache), "--results-dir", str(results)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    # warmup-start's record does not price base-start's retraining; its cell is priced, and says from where
    assert "16 retraining jobs, 0 cached, 16 to run -> ?; cold ?" in out
    assert "(priced from regime warmup-start: another recipe)" in out
    parser = argparse.ArgumentParser()
    plan_cmd.add_parser(parser.add_subparsers())
    priced = plan_cmd.plan(parser.parse_args([*argv, "--probe"]))
    out = capsys.readouterr().out
    # tiny: a pool of 400, subsets of 50% in batches of 32, 2 epochs: 14 steps; 4 jobs at once (group_size 4)
    assert "probed on cpu:" in out and "of 4 job(s) at once, 14 steps per job" in out, out
    gt_warm, gt_cold = priced["harness"]["ground truth (lds)"]
    assert gt_cold is not None and gt_cold > 0 and gt_warm == gt_cold  # nothing cached: all of it to run
    warmup = priced["harness"]["warm-up LM"][1]
    assert warmup is not None and warmup > 0  # no record of this regime, so priced by the probe's steps


def test_probe_table_times_steps_of_the_tables_recipe(tiny_cache):
    from bench.retrain import RetrainSpec, probe_table
    from bench.suites import load_suite

    suite = load_suite("tiny")
    spec = RetrainSpec(suite_ref=suite.ref, cache_root=str(tiny_cache))
    probe = probe_table(spec, suite, fraction=0.5)
    assert probe["group_size"] == 4 and probe["steps_per_job"] == 14
    assert probe["step_s"] >= 0 and probe["eval_s"] >= 0 and probe["warmup_step_s"] >= 0
    assert probe["job_s"] * 4 >= probe["overhead_s"] + 14 * probe["step_s"] > 0
    from bench.retrain.jobs import worker_state

    assert worker_state(spec)[0].spec == suite.spec.lm  # the recipe is restored on the memoised LM
