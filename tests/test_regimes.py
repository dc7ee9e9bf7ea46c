"""Regimes: named sets of a suite's retraining settings; the built base LM and its pretrain split."""

import numpy as np
import pytest
import torch

from bench.cache import Cache
from bench.errors import ConfigError
from bench.generator import OPEN_TASKS
from bench.suites import load_suite


def _write_suite(tmp_path, extra: str = "", top: str = ""):
    from importlib import resources

    text = resources.files("bench.suite_files").joinpath("tiny.toml").read_text(encoding="utf-8")
    path = tmp_path / "mine.toml"
    path.write_text(top + text.split("# regimes")[0] + extra, encoding="utf-8")
    return str(path)


def test_a_regime_sets_its_values_and_suite_set_still_wins():
    own = load_suite("tiny")
    base = load_suite("tiny", [("regime", "base-start")])
    assert own.spec.regime_name == "warmup-start" and own.spec.regime is None and own.regime.default
    assert own.spec.lm.base_steps == 0
    assert base.spec.regime_name == "base-start" and not base.regime.default
    lm = base.spec.lm
    assert (lm.retrain_from, lm.base_steps, base.spec.data.generator.n_pretrain) == ("base", 30, 400)
    other = load_suite("tiny", [("lm.warmup_steps", 7), ("regime", "base-start")])
    assert other.spec.lm.warmup_steps == 7 and other.spec.lm.base_steps == 30  # --suite-set of another value
    for key, value in (("lm.base_steps", 7), ("lm.retrain_from", "warmup"), ("lm.finetune_lr", 1.0)):
        with pytest.raises(ConfigError, match=f"--suite-set {key} changes a regime setting"):
            load_suite("tiny", [(key, value), ("regime", "base-start")])
    with pytest.raises(ConfigError, match="lm.retrain_from"):  # a control must stay what its name says
        load_suite("tiny", [("lm.retrain_from", "base"), ("regime", "base-warmup-start")])
    # a regime setting changed by hand, without --regime: no regime's name says what runs
    custom = load_suite("tiny", [("lm.finetune_lr", 1.0)])
    assert custom.spec.regime_name == "custom" and not custom.regime.default
    with pytest.raises(ConfigError, match="has no regime 'Base_start'"):
        load_suite("tiny", [("regime", "Base_start")])
    assert load_suite("tiny", [("regime", "warmup-start")]).spec == own.spec  # naming the own regime changes nothing
    # the own regime is left out of the identity, so every earlier record and cache key stays what it was
    from bench.config import to_jsonable

    assert "regime" not in to_jsonable(own.spec) and to_jsonable(base.spec)["regime"] == "base-start"


def test_bad_regimes_are_config_errors(tmp_path, run_cli):
    with pytest.raises(ConfigError, match="no regime 'bse-start'.*base-start"):
        load_suite("tiny", [("regime", "bse-start")])
    code, _, err, _ = run_cli("run", "--method", "random", "--task", "lds", "--suite", "tiny", "--regime", "nope")
    assert code == 2 and err.count("\n") == 1 and "no regime 'nope'" in err
    own_with_set = _write_suite(tmp_path, '[regimes.warmup-start]\nset = { "lm.finetune_lr" = 1.0 }\n')
    with pytest.raises(ConfigError, match="its values are the TOML's"):
        load_suite(own_with_set)
    for bad in ("Base_start", "r2"):  # names become leaderboard columns and figure file names
        with pytest.raises(ConfigError, match="regime name"):
            load_suite(_write_suite(tmp_path, f'[regimes.{bad}]\ndescription = "x"\n'))
    lying = _write_suite(tmp_path, top='regime = "base-start"\n')
    with pytest.raises(ConfigError, match="retrains from the base model"):
        load_suite(lying)
    # a suite that retrains from the base without naming its regime is base-start (the paper-scale suites)
    flan = load_suite("flan")
    assert flan.spec.regime is None and flan.spec.regime_name == "base-start" and flan.regime.default
    with pytest.raises(ConfigError, match="needs a base LM"):
        load_suite("tiny", [("lm.retrain_from", "base")])


def test_the_pretrain_split_is_open_tasks_only_disjoint_and_leaves_the_other_splits_alone():
    own, base = load_suite("tiny"), load_suite("tiny", [("regime", "base-start")])
    assert own.split("pretrain") == []
    corpus = base.split("pretrain")
    assert len(corpus) == 400 and {e.labels["task"] for e in corpus} <= set(OPEN_TASKS)
    for name in ("train", "test", "warmup", "airrep_train"):
        assert [e.prompt for e in base.split(name)] == [e.prompt for e in own.split(name)]
    prompts = {e.prompt for name in ("train", "test", "warmup", "airrep_train") for e in base.split(name)}
    assert not prompts & {e.prompt for e in corpus}
    assert base.hygiene()["test_overlap"]["pretrain"] == 0
    with pytest.raises(ConfigError, match="closed item list"):
        load_suite("tiny", [("data.generator.pretrain_tasks", ["capital"])])


def test_base_start_retrains_from_the_base_and_the_methods_model_continues_from_it(tmp_path):
    from bench.retrain import base_lm, start_lm, warmup_lm

    cache = Cache(tmp_path / "c")
    base_suite = load_suite("tiny", [("regime", "base-start")])
    control = load_suite("tiny", [("regime", "base-warmup-start")])
    base, meta = base_lm(base_suite, cache)
    assert meta["steps"] == 30 and meta["n_pretrain"] == 400
    start = start_lm(base_suite, cache).state_dict()
    assert all(torch.equal(start[k], v) for k, v in base.state_dict().items())
    warm, warm_meta = warmup_lm(base_suite, cache)
    assert warm_meta["base_wall_s"] == pytest.approx(meta["wall_s"]) and warm_meta["steps"] == 60
    assert not torch.equal(warm.state_dict()["model.norm.weight"], base.state_dict()["model.norm.weight"])
    # the control shares the base and warm-up models: one cache entry, not equal weights by luck ...
    from bench.retrain.lms import lm_args, model_args

    assert model_args(base_suite) == model_args(control) and lm_args(base_suite) != lm_args(control)
    assert all(torch.equal(v, warmup_lm(control, cache)[0].state_dict()[k]) for k, v in warm.state_dict().items())
    # ... but retrains from the warm-up LM; and the scratch warm-up of the own regime is another model
    assert all(torch.equal(v, start_lm(control, cache).state_dict()[k]) for k, v in warm.state_dict().items())
    scratch = warmup_lm(load_suite("tiny"), cache)[0].state_dict()
    assert not torch.equal(scratch["model.norm.weight"], warm.state_dict()["model.norm.weight"])


def _compare(capsys, results, *argv):
    from bench.cli.main import main

    code = main(["compare", "tfidf", "random", "--task", "lds", "--suite", "tiny", "--results-dir", str(results),
                 *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_records_carry_the_regime_and_the_leaderboard_shows_it_as_a_column(run_cli, tmp_path, capsys):
    from bench.results import read_records
    from leaderboard.select import latest

    cache = tmp_path / "c"
    for regime in (None, "base-start"):
        for method in ("tfidf", "random"):
            code, _, err, results = run_cli("run", "--method", method, "--task", "lds", "--suite", "tiny",
                                            *(["--regime", regime] if regime else []), cache=cache)
            assert code == 0, err
    records = read_records(results)
    by_regime = {(r.method, r.regime, r.regime_default) for r in records}
    assert by_regime == {("tfidf", "warmup-start", True), ("random", "warmup-start", True),
                         ("tfidf", "base-start", False), ("random", "base-start", False)}
    assert {k[0] for k in latest(records)} == {"tiny", "tiny-base-start"}
    own = {r.method: r for r in records if r.regime_default}
    other = {r.method: r for r in records if not r.regime_default}
    assert own["tfidf"].metrics["lds"]["value"] != other["tfidf"].metrics["lds"]["value"]  # another ground truth
    code, out, err = _compare(capsys, results, "--regime", "base-start")
    assert code == 0, err
    assert f"{other['tfidf'].metrics['lds']['value']:.4f}" in out and "(base-start)" in out
    code, _, err = _compare(capsys, results, "--regime", "base-warmup-start")
    assert code != 0 and "--regime base-warmup-start" in err


def test_compare_finds_a_suite_set_variant(run_cli, tmp_path, capsys):
    cache = tmp_path / "c"
    for method in ("tfidf", "random"):
        code, _, err, results = run_cli("run", "--method", method, "--task", "lds", "--suite", "tiny", "--suite-set",
                                        "ground_truth.num_subsets=8", cache=cache)
        assert code == 0, err
    code, out, err = _compare(capsys, results)
    assert code != 0  # no default record
    code, out, err = _compare(capsys, results, "--suite-set", "ground_truth.num_subsets=8")
    assert code == 0 and "A - B" in out, err
    assert np.isfinite(float(out.split("A - B = ")[1].split(",")[0]))


def test_a_replicate_draws_the_data_and_the_lm_again_and_is_its_own_column(run_cli, tmp_path):
    from bench.results import read_records

    own, again = load_suite("tiny"), load_suite("tiny", [("replicate", 2)])
    assert again.spec.replicate == 2 and own.spec.replicate == 0
    assert again.spec.data.generator.seed == own.spec.data.generator.seed + 2
    assert again.spec.lm.init_seed == own.spec.lm.init_seed + 2
    assert [e.prompt for e in again.split("test")] != [e.prompt for e in own.split("test")]
    both = load_suite("tiny", [("replicate", 1), ("regime", "base-start")])
    assert both.spec.replicate == 1 and both.spec.lm.base_steps == 30
    for bad in (-1, "x"):
        with pytest.raises(ConfigError, match="--replicate"):
            load_suite("tiny", [("replicate", bad)])
    with pytest.raises(ConfigError, match="moves data.generator.seed"):
        load_suite("tiny", [("replicate", 1), ("data.generator.seed", 3)])
    with pytest.raises(ConfigError, match="lacks"):  # a base LM needs its corpus
        load_suite("tiny", [("lm.base_steps", 5)])
    with pytest.raises(ConfigError, match="generator"):
        load_suite("flan", [("replicate", 1)])
    code, _, err, results = run_cli("run", "--method", "random", "--task", "lds", "--suite", "tiny", "--replicate",
                                    "1", cache=tmp_path / "c")
    assert code == 0, err
    (record,) = read_records(results)
    assert record.replicate == 1 and record.column == "tiny-r1" and not record.own
