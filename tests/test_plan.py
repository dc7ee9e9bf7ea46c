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
