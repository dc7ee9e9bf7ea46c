"""`bench compare` and the seeds: paired comparisons from stored records; --seed seeds the method itself."""

import json


def test_compare_output(run_cli, capsys):
    from bench.cli.main import main

    for m in ("tfidf", "random"):
        code, _, err, results = run_cli("run", "--method", m, "--task", "lds", "--suite", "tiny")
        assert code == 0, err
    assert main(["compare", "tfidf", "random", "--task", "lds", "--suite", "tiny", "--results-dir", str(results)]) == 0
    out = capsys.readouterr().out
    assert "A - B = +" in out and "Wilcoxon signed-rank p = " in out
    assert "(paired bootstrap, 1000 replicates of task clusters > test examples x subsets)" in out
    # 64 test examples in 14 task clusters: the t reference has 13 degrees of freedom
    assert "Holm-adjusted over the 1 pairs of the 2 rows of this column: p = " in out
    assert "(what the leaderboard's bold and ranks say)" in out
    assert "conditional on what they do not resample" in out
    assert main(["compare", "random", "random", "--task", "lds", "--suite", "tiny", "--results-dir", str(results)]) == 0
    out = capsys.readouterr().out
    assert "A - B = +0.0000" in out and ", p = 1 (paired bootstrap" in out
    assert main(["compare", "tfidf", "gte", "--task", "lds", "--suite", "tiny", "--results-dir", str(results)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no successful lds record of 'gte'" in err


def test_seed_changes_the_methods_randomness_not_the_ground_truth(run_cli):
    records = {}
    for seed in ("0", "1"):
        code, _, err, results = run_cli("run", "--method", "random", "--task", "lds", "--suite", "tiny", "--seed", seed)
        assert code == 0, err
    for path in results.rglob("*.json"):
        r = json.loads(path.read_text())
        records[r["seed"]] = r
    assert records[0]["method_config"]["seed"] == 0 and records[1]["method_config"]["seed"] == 1
    assert records[0]["per_example"]["lds"] != records[1]["per_example"]["lds"]
    # the same ground truth under both seeds
    assert records[0]["extra"]["ground_truth"] == records[1]["extra"]["ground_truth"]
    assert records[0]["pairing"] != records[1]["pairing"]  # other draws: the two seeds' replicates do not pair


def test_seeds_runs_each_seed(run_cli):
    code, out, err, results = run_cli("run", "--method", "random", "--task", "lds", "--suite", "tiny",
                                      "--seeds", "0,1,2")
    assert code == 0, err
    assert sorted(json.loads(p.read_text())["seed"] for p in results.rglob("*.json")) == [0, 1, 2]
    code, _, err, _ = run_cli("run", "--method", "random", "--task", "lds", "--suite", "tiny", "--seeds", "0,x")
    assert code == 2 and "--seeds" in err
