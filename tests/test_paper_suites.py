"""The built-in paper-scale suites, read from local mirrors in the published layouts.

Each test runs a built-in suite unchanged except for `--suite-set` overrides that point its hub sources at
the fixtures (made-up rows, exact layouts), its Qwen2.5-0.5B at a tiny local model directory in the hub
layout (a Qwen2 model with a ChatML tokenizer, so the chat-template recipe runs) and its sizes at tiny ones.
"""

import json
from pathlib import Path

import pytest

from bench.suites import builtin_suites, load_suite

PRESETS = Path(__file__).parent / "data" / "presets"
RELEASED = Path(__file__).parent / "data" / "released"
PAPER = ("flan", "alpaca", "tulu", "safe")
SMALL_LM = {"lm.max_length": 64, "lm.warmup_steps": 2, "lm.batch_size": 4, "lm.eval_batch_size": 16,
            "lm.finetune_epochs": 1, "ground_truth.num_subsets": 3, "ground_truth.fraction": 0.5}
MIRRORS = {
    "flan": {"data.preset.source": PRESETS / "flan_mirror", "data.preset.n_train": 12,
             "data.preset.n_warmup": 4, "data.preset.n_test_per_task": 2},
    "alpaca": {"data.preset.source": PRESETS / "alpaca_mirror",
               "data.preset.eval_source": PRESETS / "alpaca_eval_mirror",
               "data.preset.warmup_source": PRESETS / "ultrachat_mirror", "data.preset.n_train": 20,
               "data.preset.n_test": 6, "data.preset.n_warmup": 4},
    "tulu": {"data.preset.source": PRESETS / "tulu_mirror", "data.preset.warmup_source": PRESETS / "ultrachat_mirror",
             "data.preset.n_train": 12, "data.preset.n_test": 6, "data.preset.n_warmup": 4},
    "safe": {"data.preset.source": PRESETS / "safe_mirror", "data.preset.warmup_source": PRESETS / "ultrachat_mirror",
             "data.preset.n_test": 6, "data.preset.n_warmup": 4},
}


def _sets(options: dict) -> list[str]:
    out = []
    for key, value in options.items():
        out += ["--suite-set", f"{key}={json.dumps(str(value) if isinstance(value, Path) else value)}"]
    return out


def test_the_paper_suites_are_built_in_with_the_qwen_recipe():
    assert set(PAPER) | {"flan-released"} <= set(builtin_suites())
    for name in PAPER:
        spec = load_suite(name).spec
        lm = spec.lm
        assert (lm.model, lm.dtype, lm.chat_template) == ("Qwen/Qwen2.5-0.5B", "bfloat16", True)
        assert lm.retrain_from == "base" and lm.max_grad_norm == 1.0 and lm.weight_decay == 0.01
        assert (lm.max_length, lm.batch_size, lm.finetune_epochs, lm.finetune_lr) == (512, 16, 2, 2e-5)
        assert spec.data.preset.name == name and spec.data.preset.source.startswith("hf://")
        assert spec.methods["airrep"]["checkpoint"] == "sunweiwei/AirRep-Flan-Small"
        assert spec.methods["gte"]["model"] == "thenlper/gte-small" and spec.methods["logra"]["rank"] == 16
    assert load_suite("flan").spec.data.preset.n_train == 100_000
    assert load_suite("flan-released").spec.ground_truth.released == "hf://sunweiwei/airrep-test/flan/lds.jsonl"


@pytest.mark.parametrize("name", PAPER)
def test_a_paper_suite_on_its_local_mirror_gives_an_lds_result(run_cli, tmp_path, tiny_pretrained, name):
    cache = tmp_path / "cache"
    sets = _sets({**MIRRORS[name], **SMALL_LM, "lm.model": tiny_pretrained})
    if name == "alpaca":  # the seen test half: answered by the pool-trained LM first
        seen = tmp_path / "seen.jsonl"
        code, _, err, _ = run_cli("respond", "--suite", "alpaca", "--out", str(seen), "--max-new-tokens", "4",
                                  *sets, cache=cache)
        assert code == 0, err
        sets += _sets({"data.preset.seen_responses": seen})
    code, _, err, results = run_cli("run", "--method", "tfidf", "--task", "lds", "--suite", name, *sets, cache=cache)
    assert code == 0, err
    record = json.loads(next(results.rglob("*.json")).read_text())
    assert record["suite"] == name and record["status"] == "ok" and -1 <= record["metrics"]["lds"]["value"] <= 1
    assert record["extra"]["n_subsets"] == 3
    jobs = list((cache / "retrain").rglob("*.npz"))
    assert len(jobs) == 3
    # lm.retrain_from = "base": the jobs fine-tune the pretrained model; no warm-up model was trained
    assert not (cache / "warmup").exists()


def test_flan_released_on_a_local_copy_matches_the_fixture_suite(run_cli, tmp_path, tiny_pretrained):
    sets = _sets({"data.train.source": RELEASED / "flan" / "train.jsonl",
                  "data.test.source": RELEASED / "flan" / "test.jsonl",
                  "ground_truth.released": RELEASED / "flan" / "lds.jsonl", "lm.model": tiny_pretrained})
    code, _, err, results = run_cli("run", "--method", "tfidf", "--task", "lds", "--suite", "flan-released", *sets,
                                    cache=tmp_path / "cache")
    assert code == 0, err
    built_in = json.loads(next(results.rglob("*.json")).read_text())
    code, _, err, results = run_cli("run", "--method", "tfidf", "--task", "lds", "--suite",
                                    str(RELEASED / "flan.toml"), cache=tmp_path / "cache")
    fixture = [json.loads(p.read_text()) for p in results.rglob("*.json")
               if p.parent.parent.parent.name != "flan-released"]
    assert code == 0, err
    assert built_in["metrics"]["lds"]["value"] == fixture[0]["metrics"]["lds"]["value"]
    assert not (tmp_path / "cache" / "retrain").exists()  # nothing retrained


def test_a_paper_suite_without_the_hub_says_what_to_do(run_cli, tmp_path, monkeypatch):
    import datasets
    import huggingface_hub

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)  # both read the variable once, at import
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    code, _, err, _ = run_cli("run", "--method", "tfidf", "--task", "lds", "--suite", "tulu", cache=tmp_path / "c")
    assert code == 2 and err.count("\n") == 1 and "allenai/tulu-v1-sft-mixture" in err
    assert "set data.preset.source to a local snapshot" in err
    code, _, err, _ = run_cli("run", "--method", "tfidf", "--task", "lds", "--suite", "flan-released",
                              cache=tmp_path / "c")
    assert code == 2 and "sunweiwei/airrep-test/flan/train.jsonl" in err and "local copy" in err


@pytest.mark.parametrize("method", ["logra", "less", "rds"])
def test_target_lm_methods_run_on_the_bf16_chat_recipe(run_cli, tmp_path, tiny_pretrained, method):
    """Gradient and hidden-state methods on the paper recipe's bfloat16, chat-template target LM, warmed up
    on UltraChat rows (logix's PCA has no bfloat16 kernel: the method differentiates in float32)."""
    sets = _sets({**MIRRORS["tulu"], **SMALL_LM, "lm.model": tiny_pretrained, f"methods.{method}": {
        "logra": {"rank": 2}, "less": {"lora_rank": 2, "lora_alpha": 8.0, "dim": 32}, "rds": {}}[method]})
    code, _, err, results = run_cli("run", "--method", method, "--task", "lds", "--suite", "tulu", *sets,
                                    cache=tmp_path / "cache")
    assert code == 0, err
    record = json.loads(next(results.rglob("*.json")).read_text())
    assert record["status"] == "ok" and -1 <= record["metrics"]["lds"]["value"] <= 1
    meta = json.loads(next((tmp_path / "cache" / "warmup").rglob("meta.json")).read_text())
    assert meta["steps"] == 2 and meta["n_warmup"] == 4  # the warm-up model, from the UltraChat rows


def test_selection_on_a_paper_suite_fine_tunes_the_pretrained_base(run_cli, tmp_path, tiny_pretrained):
    """With lm.retrain_from = "base", selection's fine-tuning starts where the ground truth's does."""
    sets = _sets({**MIRRORS["flan"], **SMALL_LM, "lm.model": tiny_pretrained})
    code, _, err, results = run_cli("run", "--method", "tfidf", "--task", "selection", "--suite", "flan", *sets,
                                    "--task-set", "k=2", "--task-set", "random_seeds=1", "--task-set",
                                    "max_new_tokens=3", cache=tmp_path / "cache")
    assert code == 0, err
    record = json.loads(next(results.rglob("*.json")).read_text())
    assert record["status"] == "ok" and 0 <= record["metrics"]["f1"]["value"] <= 1
    assert not (tmp_path / "cache" / "warmup").exists()
