"""`bench export` / `bench export-examples`: the authors' layout, and a round trip through released ground truth."""

import json

import numpy as np
import pytest

SEEDS = ["--suite-set", "ground_truth.seeds_per_subset=2"]


def _rows(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_export_examples_writes_the_splits_in_score_matrix_order(run_cli, tmp_path):
    from bench.suites import load_suite

    code, out, err, _ = run_cli("export-examples", "--suite", "tiny", "--out", str(tmp_path / "ex"))
    assert code == 0, err
    suite = load_suite("tiny")
    for split in ("train", "test"):
        rows = _rows(tmp_path / "ex" / f"{split}.jsonl")
        assert [r["id"] for r in rows] == [e.id for e in suite.split(split)]
        assert [r["index"] for r in rows] == list(range(len(rows)))
        example = suite.split(split)[3]
        assert rows[3]["text"] == example.text() and rows[3]["labels"] == dict(example.labels)
    assert sorted(p.name for p in (tmp_path / "ex").iterdir()) == ["test.jsonl", "train.jsonl"]


def test_export_is_the_authors_layout_and_round_trips_the_lds_exactly(run_cli, tmp_path):
    out = tmp_path / "export"
    code, _, err, _ = run_cli("export", "--suite", "tiny", *SEEDS, "--out", str(out))
    assert code == 0, err
    lds_rows = _rows(out / "lds.jsonl")  # plain json reads every file
    assert len(lds_rows) == 16 and set(lds_rows[0]) == {"train_subset", "test_loss", "test_loss_seeds"}
    assert len(lds_rows[0]["test_loss"]) == len(_rows(out / "test.jsonl")) == 64
    assert len(lds_rows[0]["train_subset"]) == 200 and max(max(r["train_subset"]) for r in lds_rows) < 400
    seeds = np.array(lds_rows[5]["test_loss_seeds"])
    np.testing.assert_allclose(seeds.mean(axis=0), lds_rows[5]["test_loss"], rtol=0, atol=1e-12)
    readme = (out / "README.md").read_text()
    assert "tda-bench 0.1.0" in readme and '"num_subsets": 16' in readme
    for method in ("tfidf", "random"):
        code, _, err, results = run_cli("run", "--method", method, "--task", "lds", "--suite", "tiny", *SEEDS)
        assert code == 0, err
        code, _, err, results = run_cli("run", "--method", method, "--task", "lds", "--suite",
                                        str(out / "suite.toml"))
        assert code == 0, err
        a = json.loads(next(results.rglob(f"tiny/lds/{method}/*.json")).read_text())
        b = json.loads(next(results.rglob(f"tiny-export/lds/{method}/*.json")).read_text())
        for metric in ("lds", "ceiling"):
            for key in ("value", "ci_low", "ci_high"):
                assert abs(a["metrics"][metric][key] - b["metrics"][metric][key]) <= 1e-12, (method, metric, key)
        np.testing.assert_allclose(np.array(a["per_example"]["lds"], float), np.array(b["per_example"]["lds"], float),
                                   rtol=0, atol=1e-12)


def test_released_seeds_must_be_consistent(tmp_path):
    from bench.errors import DataError
    from bench.released import load_released

    path = tmp_path / "lds.jsonl"
    good = {"train_subset": [0, 1], "test_loss": [1.0, 2.0], "test_loss_seeds": [[1.0, 2.0], [1.0, 2.0]]}
    path.write_text(json.dumps(good) + "\n" + json.dumps({"train_subset": [2], "test_loss": [1.0, 2.0]}) + "\n")
    with pytest.raises(DataError, match=":2: test_loss_seeds must be given on every row or on none"):
        load_released(path, 4, 2)
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "test_loss_seeds": [[1.0]] * 2}) + "\n")
    with pytest.raises(DataError, match=":2: test_loss_seeds must be 2 or more lists of 2 finite losses"):
        load_released(path, 4, 2)
    path.write_text(json.dumps(good) + "\n" + json.dumps(good) + "\n")
    table = load_released(path, 4, 2)
    assert table.seed_losses.shape == (2, 2, 2)


def test_export_to_a_file_is_one_line_and_writes_nothing(run_cli, tmp_path):
    target = tmp_path / "afile"
    target.write_text("x")
    code, _, err, _ = run_cli("export", "--suite", "tiny", "--out", str(target))
    assert code == 2 and err.strip().splitlines() == [f"error: --out '{target}' is a file; give a folder"]
    assert target.read_text() == "x"


def _exported_losses(model, rows):
    """Per-example mean next-token cross-entropy over labelled tokens, one unpadded row at a time."""
    import torch

    out = []
    with torch.no_grad():
        for row in rows:
            ids, labels = torch.tensor([row["input_ids"]]), torch.tensor([row["labels"]])
            logits = model(input_ids=ids).logits[:, :-1]
            out.append(float(torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels[:, 1:])))
    return np.array(out)


@pytest.mark.parametrize("top", [False, True])
def test_export_model_is_the_warmup_lm_with_the_harness_tokens_and_losses(run_cli, tmp_path, tiny_cache, top):
    from datasets import load_from_disk
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from bench.api import RunContext
    from bench.cache import Cache
    from bench.config import parse_override
    from bench.suites import load_suite

    sets = ["--suite-set", "lm.train_layers=1"] if top else []
    out = tmp_path / "export"
    for _ in range(2):  # a second export replaces the folders and leaves no temporary one behind
        code, stdout, err, _ = run_cli("export", "--suite", "tiny", *sets, "--model", "--out", str(out))
        assert code == 0, err
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []
    assert f"{out / 'tokenized' / 'test'}: 64 rows" in stdout
    suite = load_suite("tiny", [parse_override(s) for s in sets[1::2]])
    lm = RunContext(suite, cache=Cache(tiny_cache)).warmup_lm()
    meta = json.loads((out / "model.json").read_text())
    assert meta["trained_parameters"] == lm.trainable_names() and meta["first_trained_layer"] == (1 if top else 0)
    if top:  # the frozen layer and the embeddings are not among the trained parameters
        assert not any(n.startswith(("model.layers.0.", "model.embed_tokens")) for n in meta["trained_parameters"])
    model = AutoModelForCausalLM.from_pretrained(out / "model").eval()
    bos = lm.tokenizer.convert_tokens_to_ids("<bos>")
    assert AutoTokenizer.from_pretrained(out / "model")("<bos>")["input_ids"] == [bos]
    data = load_from_disk(str(out / "tokenized"))
    assert set(data) == {"train", "test", "warmup", "airrep_train"}
    test = suite.split("test")
    enc = lm.encode(test)
    row = data["test"][7]
    n = int(enc.lengths[7])
    assert row["input_ids"] == enc.input_ids[7, :n].tolist() and row["labels"] == enc.labels[7, :n].tolist()
    assert row["labels"][0] == -100 and row["labels"][-1] != -100  # no loss on the prompt; the EOS counts
    np.testing.assert_allclose(_exported_losses(model, data["test"]), lm.losses(enc), rtol=0, atol=2e-5)
    assert "## The target LM" in (out / "README.md").read_text()


@pytest.mark.slow
def test_the_readme_kronfluence_script_scores_the_export_as_the_ekfac_method_does(run_cli, tmp_path, tiny_cache):
    """The README's script, verbatim, on the export: its LDS is the harness's `ekfac` LDS up to the true Fisher's
    sampled labels and batching."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).parents[1]
    script = (root / "examples" / "kronfluence_scores.py").read_text()
    assert script.strip() in (root / "README.md").read_text()  # the README shows the file as it stands
    assert len([line for line in script.splitlines() if line.strip()]) < 40
    out = tmp_path / "export"
    code, _, err, _ = run_cli("export", "--suite", "tiny", "--model", "--out", str(out))
    assert code == 0, err
    proc = subprocess.run([sys.executable, str(root / "examples" / "kronfluence_scores.py"), str(out),
                           str(tmp_path / "scores.npy")], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    code, _, err, results = run_cli("run", "--method", "scores", "--set", f"path={tmp_path / 'scores.npy'}",
                                    "--task", "lds", "--suite", "tiny")
    assert code == 0, err
    code, _, err, results = run_cli("run", "--method", "ekfac", "--task", "lds", "--suite", "tiny")
    assert code == 0, err
    lds = {m: json.loads(next(results.rglob(f"tiny/lds/{m}/*.json")).read_text())["metrics"]["lds"]["value"]
           for m in ("scores", "ekfac")}
    assert lds["ekfac"] > 0.15 and abs(lds["scores"] - lds["ekfac"]) < 0.03, lds


@pytest.mark.slow
def test_export_of_a_suite_with_a_dev_split_carries_the_dev_losses_of_the_same_jobs(run_cli, tmp_path):
    from bench.suites import load_suite

    dev_set = ["--suite-set", "dev.share=0.25"]
    code, _, err, _ = run_cli("export", "--suite", "tiny", *SEEDS, "--out", str(tmp_path / "plain"))
    assert code == 0, err
    code, _, err, _ = run_cli("export", "--suite", "tiny", *SEEDS, *dev_set, "--out", str(tmp_path / "dev"))
    assert code == 0, err
    suite = load_suite("tiny", [("ground_truth.seeds_per_subset", 2), ("dev.share", 0.25)])
    dev_pos, test_pos = suite.dev_positions()
    plain, rows = _rows(tmp_path / "plain" / "lds.jsonl"), _rows(tmp_path / "dev" / "lds.jsonl")
    assert [r["id"] for r in _rows(tmp_path / "dev" / "dev.jsonl")] == [e.id for e in suite.split("dev")]
    assert len(_rows(tmp_path / "dev" / "test.jsonl")) == len(test_pos)
    for a, b in zip(plain, rows, strict=True):  # the dev split's losses are the plain suite's other columns
        assert a["train_subset"] == b["train_subset"]
        np.testing.assert_allclose(b["dev_loss"], np.array(a["test_loss"])[dev_pos], atol=1e-12)
        np.testing.assert_allclose(b["test_loss"], np.array(a["test_loss"])[test_pos], atol=1e-12)
        assert np.array(b["dev_loss_seeds"]).shape == (2, len(dev_pos))
    assert "dev_loss" in (tmp_path / "dev" / "README.md").read_text()
    assert not (tmp_path / "plain" / "dev.jsonl").exists()
