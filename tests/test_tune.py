"""The dev split (content-disjoint from test, evaluated by the same retraining jobs) and `bench tune` on it."""

import json

import numpy as np
import pytest

from bench.errors import DataError, HeldOutError
from bench.hygiene import normalise
from bench.suites import load_suite

DEV = [("dev.share", 0.25)]


def test_dev_split_is_a_stratified_content_disjoint_share_of_the_drawn_test_split():
    plain, suite = load_suite("tiny"), load_suite("tiny", DEV)
    drawn = plain.split("test")
    dev, test = suite.split("dev"), suite.split("test")
    assert plain.split("dev") == [] and plain.split("test+dev") == drawn  # no [dev]: the test split as drawn
    assert suite.split("test+dev") == drawn and len(dev) + len(test) == len(drawn)
    dev_pos, test_pos = suite.dev_positions()
    assert [drawn[i] for i in dev_pos] == dev and [drawn[i] for i in test_pos] == test
    assert 0.2 * len(drawn) <= len(dev) <= 0.3 * len(drawn)
    tasks = {e.labels["task"] for e in drawn}
    assert {e.labels["task"] for e in dev} == tasks == {e.labels["task"] for e in test}  # stratified by clusters
    # disjoint by content: no prompt, and no answer rare in its task, on both sides
    assert not {normalise(e.prompt) for e in dev} & {normalise(e.prompt) for e in test}
    for task in tasks:
        answers = [normalise(e.response) for e in drawn if e.labels["task"] == task]
        rare = {a for a in answers if answers.count(a) <= max(2, len(answers) // 4)}
        assert not ({normalise(e.response) for e in dev if e.labels["task"] == task} & rare
                    & {normalise(e.response) for e in test if e.labels["task"] == task})
    assert load_suite("tiny", DEV).dev_positions() == (dev_pos, test_pos)  # seeded
    assert load_suite("tiny", [*DEV, ("dev.seed", 1)]).dev_positions() != (dev_pos, test_pos)
    # what is keyed on test positions moves with the positions, whatever moved them; the drawn data does not
    by_prompt = load_suite("tiny", [*DEV, ("clusters", "prompt")])
    assert by_prompt.dev_positions() != (dev_pos, test_pos)
    assert len({plain.data_fingerprint, suite.data_fingerprint, by_prompt.data_fingerprint}) == 3
    assert suite.drawn_fingerprint == plain.drawn_fingerprint == plain.data_fingerprint
    assert suite.tokenizer_texts() == plain.tokenizer_texts()
    assert suite.hygiene()["test_overlap"]["dev"] == 0


def test_sealed_suite_refuses_the_test_split_and_bad_dev_settings_fail_in_one_line():
    sealed = load_suite("tiny", DEV).sealed()
    for name in ("test", "test+dev"):
        with pytest.raises(HeldOutError, match="sees the dev split only"):
            sealed.split(name)
    assert len(sealed.split("dev")) > 0 and len(sealed.split("train")) == 400
    with pytest.raises(DataError, match=r"no dev split; declare one with a \[dev\] table"):
        load_suite("tiny").require("dev")
    from bench.errors import ConfigError

    with pytest.raises(ConfigError, match=r"dev.share must be in \(0, 1\)"):
        load_suite("tiny", [("dev.share", 1.0)])
    with pytest.raises(DataError, match="stratified by 'source'"):
        load_suite("tiny", [*DEV, ("dev.stratify", "source")]).split("dev")
    with pytest.raises(HeldOutError, match="tokenizer_texts holds the test split"):
        sealed.tokenizer_texts()
    assert sealed.tokenizer_texts(by_harness=True) == load_suite("tiny").tokenizer_texts()


def test_candidates_start_with_the_default_and_keep_within_the_budget():
    from tasks.tune import candidates

    space = {"a": (1, 2, 3, 4), "b": (False, True)}
    full = candidates(space, {"a": 2, "b": False}, 8, np.random.default_rng(0))
    assert full[0] == {"a": 2, "b": False} and len(full) == 8
    assert len({json.dumps(c, sort_keys=True) for c in full}) == 8  # the whole grid, once each
    small = candidates(space, {"a": 2, "b": False}, 4, np.random.default_rng(0))
    assert len(small) == 4 and small[0] == {"a": 2, "b": False} and all(c in full for c in small)
    assert candidates(space, {"a": 2, "b": False}, 4, np.random.default_rng(0)) == small
    assert candidates(space, {"a": 9, "b": False}, 3, np.random.default_rng(1))[0] == {"a": 9, "b": False}


def test_methods_cannot_retrain_against_or_on_held_out_splits(tiny_cache):
    from bench.api import RunContext
    from bench.cache import Cache

    ctx = RunContext(load_suite("tiny", DEV), cache=Cache(tiny_cache)).method_context()
    with pytest.raises(ValueError, match="may not train on or measure losses on the dev split"):
        ctx.retrain(pool_split="train", eval_split="dev", num_subsets=2, fraction=0.5, seed=0)
    with pytest.raises(ValueError, match="on the test split"):
        ctx.retrain(pool_split="test", eval_split="airrep_train", num_subsets=2, fraction=0.5, seed=0)


def test_the_default_is_left_only_for_a_candidate_better_by_one_paired_standard_error():
    from bench.api import Metric, TaskOutput
    from tasks.tune import select

    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.02, 200)

    def out(value, spread):
        reps = value + spread * noise + rng.normal(0, 0.001, 200)
        m = Metric.from_replicates(value, reps, draws="x")
        return TaskOutput(metrics={"lds": m, "lds_nan_as_zero": m})

    # paired difference's spread ~0.001: a gain of 0.01 is 10 SE -> chosen
    assert select([out(0.30, 1.0), out(0.31, 1.0)]) == (1, False)
    # the same gain with replicates that disagree by ~0.05 between candidates: within one SE -> default kept
    assert select([out(0.30, 1.0), out(0.31, -1.5)]) == (0, True)
    assert select([out(0.30, 1.0), None, out(0.29, 1.0)]) == (0, True)  # the default is best; a failed one skipped


@pytest.mark.slow
def test_dev_and_test_ground_truth_are_columns_of_the_same_jobs(tiny_cache):
    from bench.api import RunContext
    from bench.cache import Cache

    plain = RunContext(load_suite("tiny"), cache=Cache(tiny_cache)).ground_truth()
    ctx = RunContext(load_suite("tiny", DEV), cache=Cache(tiny_cache))
    dev, test = ctx.ground_truth("dev"), ctx.ground_truth("test")
    # the dev suite's jobs are the plain suite's (the same drawn split evaluated): nothing trained again
    assert all(p.cached for p in ctx.acct.phases if p.name == "ground_truth")
    dev_pos, test_pos = ctx.suite.dev_positions()
    np.testing.assert_array_equal(dev.masks, plain.masks)
    # the same training runs (the eval set does not change training); only the evaluated columns differ
    np.testing.assert_allclose(dev.losses, plain.losses[:, dev_pos], atol=1e-5)
    np.testing.assert_allclose(test.losses, plain.losses[:, test_pos], atol=1e-5)
    assert dev.seed_losses is not None and dev.seed_losses.shape[2] == len(dev_pos)
    with pytest.raises(DataError, match="has no dev split to tune on"):
        RunContext(load_suite("tiny"), cache=Cache(tiny_cache)).ground_truth("dev")


@pytest.mark.slow
def test_tune_picks_the_best_dev_config_writes_it_and_runs_use_it(run_cli, tmp_path):
    from importlib import resources

    text = resources.files("bench.suite_files").joinpath("tiny.toml").read_text(encoding="utf-8")
    suite_file = tmp_path / "tinydev.toml"
    suite_file.write_text(text.replace('clusters = "task"\n', 'clusters = "task"\n\n[dev]\nshare = 0.25\n', 1))
    code, out, err, results = run_cli("tune", "--method", "tfidf", "--suite", str(suite_file), "--budget", "4")
    assert code == 0, err
    rec = json.loads(next((results / "tiny" / "tune" / "tfidf").glob("*.json")).read_text())
    found = rec["extra"]["candidates"]
    values = [c["dev_lds_nan_as_zero"] for c in found]
    winner, kept = rec["extra"]["winner"], rec["extra"]["kept_default"]
    # the best, unless it beats the default by less than one paired SE (then the default, kept)
    assert len(found) == 4 == rec["extra"]["n_configs"] and winner == (0 if kept else int(np.argmax(values)))
    assert kept == (winner == 0)  # the default is kept when it is the best, or none beats it beyond noise
    assert found[0]["options"] == {"ngram_max": 1, "sublinear_tf": False, "min_df": 1}  # tfidf's defaults
    assert rec["metrics"]["dev_lds"]["value"] == found[winner]["dev_lds"]
    assert rec["metrics"]["dev_lds_default"]["value"] == values[0]
    assert rec["extra"]["n_dev"] == len(load_suite(str(suite_file)).split("dev"))
    queries = [p["count"] for p in rec["cost"]["phases"] if p["name"].endswith("/query")]
    assert queries == [rec["extra"]["n_dev"]] * 4  # every candidate featurised the dev split, not the test split
    tuned = json.loads((tmp_path / "tinydev.tuned.json").read_text())
    assert tuned["tfidf"]["options"] == found[rec["extra"]["winner"]]["options"]
    assert ("kept (no candidate beat it" in out) == kept and "4 configs" in out
    # a run then uses the winner, and says so; --set over it says "overridden"
    code, out, err, _ = run_cli("run", "--method", "tfidf", "--task", "lds", "--suite", str(suite_file))
    assert code == 0, err
    lds = json.loads(next((results / "tiny" / "lds" / "tfidf").glob("*.json")).read_text())
    assert lds["extra"]["tuning"]["status"] == ("kept" if kept else "tuned")
    assert lds["extra"]["tuning"]["n_configs"] == 4
    assert all(lds["method_config"][k] == v for k, v in tuned["tfidf"]["options"].items())
    assert lds["extra"]["n_test"] == len(load_suite(str(suite_file)).split("test"))
    flipped = not tuned["tfidf"]["options"]["sublinear_tf"]
    code, _, err, _ = run_cli("run", "--method", "tfidf", "--task", "lds", "--suite", str(suite_file), "--set",
                              f"sublinear_tf={json.dumps(flipped)}", "--label", "other")
    assert code == 0, err
    other = [json.loads(p.read_text()) for p in (results / "tiny" / "lds" / "tfidf").glob("*.json")]
    assert {r["extra"]["tuning"]["status"] for r in other} == {"kept" if kept else "tuned", "overridden"}
    # the suite's TOML alone (what tuning starts from) is untouched by the tuned file
    assert load_suite(str(suite_file), use_tuned=False).spec.methods.get("tfidf") is None
    # tuned settings are bound to the dev split they were chosen on: another dev split never gets them
    assert load_suite(str(suite_file)).tuned and not load_suite(str(suite_file), [("dev.seed", 1)]).tuned
    suite_file.write_text(suite_file.read_text().replace("share = 0.25", "share = 0.3"))
    assert load_suite(str(suite_file)).tuned == {}


@pytest.mark.slow
def test_tuning_seals_the_test_split_from_methods(run_cli, tmp_path):
    from dataclasses import dataclass

    from bench.api import Method, MethodConfig, methods, register_method

    @dataclass(frozen=True, kw_only=True)
    class PeekConfig(MethodConfig):
        k: int = 1

    @register_method("peek_test", config=PeekConfig)
    class PeekTest(Method):
        """Reads the test split in its setup: what tuning must refuse."""

        search_space = {"k": (1, 2)}

        def setup(self, ctx):
            ctx.suite.split("test")

        def featurize(self, examples, role):
            return np.ones((len(examples), 1))

    try:  # registered for this test only: a later `--method all` must not meet it
        code, out, err, results = run_cli("tune", "--method", "peek_test", "--suite", "tiny", "--suite-set",
                                          "dev.share=0.25", "--no-write")
    finally:
        methods._entries.pop("peek_test")
    assert code == 2 and "the test split was read while tuning" in err
    assert not list(results.rglob("*.json"))  # nothing half-written
    code, out, err, _ = run_cli("tune", "--method", "random", "--suite", "tiny", "--suite-set", "dev.share=0.25")
    assert code == 2 and "declares no settings to tune" in err
    code, out, err, _ = run_cli("tune", "--method", "tfidf", "--suite", "tiny")
    assert code == 2 and "no dev split" in err and "Traceback" not in err
    code, out, err, _ = run_cli("tune", "--method", "tfidf", "--suite", "tiny", "--suite-set", "dev.share=0.25")
    assert code == 2 and "add --no-write" in err  # tuned settings of a command-line dev split would apply nowhere


@pytest.mark.slow
def test_tuning_a_gradient_method_builds_its_lm_on_the_sealed_suite(run_cli, tmp_path):
    code, out, err, results = run_cli("tune", "--method", "tracin", "--suite", "tiny", "--suite-set",
                                      "dev.share=0.25", "--budget", "2", "--no-write", cache=tmp_path / "fresh")
    assert code == 0, err  # the warm-up LM's tokenizer reads every split's text: the harness may, a method not
    rec = json.loads(next((results / "tiny" / "tune" / "tracin").glob("*.json")).read_text())
    assert [c["options"]["rank"] for c in rec["extra"]["candidates"]][0] == 16 and rec["extra"]["n_configs"] == 2


def test_small_v3_dev_split_is_a_quarter_of_its_drawn_test_split_by_task_and_content():
    from bench.hygiene import normalise
    from bench.suites import load_suite

    small = load_suite("small")
    dev, test = small.split("dev"), small.split("test")
    assert (len(dev), len(test)) == (90, 230) and len(small.split("test+dev")) == 320
    assert not {normalise(e.prompt) for e in dev} & {normalise(e.prompt) for e in test}
    per_task = {t: sum(e.labels["task"] == t for e in dev) for t in {e.labels["task"] for e in test}}
    assert len(per_task) == 14 and min(per_task.values()) >= 5  # every task has dev examples


def test_the_leaderboard_shows_a_search_at_any_budget_and_the_cli_passes_only_another_budget():
    import dataclasses
    from pathlib import Path

    from bench.cli.tune_cmd import DEFAULT_BUDGET
    from bench.results import read_record
    from leaderboard.select import latest
    from tasks.tune import TuneConfig

    assert DEFAULT_BUDGET == TuneConfig().budget
    golden = read_record(next((Path(__file__).parent / "data" / "leaderboard" / "results" / "small" / "lds" /
                               "tfidf").glob("*.json")))
    search = dataclasses.replace(golden, task="tune", options={"method": {}, "suite": {}, "task": {"budget": 4}})
    adhoc = dataclasses.replace(search, options={"method": {"rank": 8}, "suite": {}, "task": {"budget": 4}},
                                fingerprint="other")
    assert list(latest([search])) == [(golden.column, "tune", golden.row)]
    assert latest([adhoc]) == {}  # a search of another method config is no row
    assert latest([dataclasses.replace(golden, options={"method": {}, "suite": {}, "task": {"k": 1}})]) == {}
