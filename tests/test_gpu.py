"""CUDA paths: accounting with CUDA events and peak allocated memory, training and retraining on the GPU,
the paper recipe in bfloat16. Marked `gpu`: skipped without CUDA, run with `python -m pytest -m gpu`."""

import json
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.gpu

PRESETS = Path(__file__).parent / "data" / "presets"


def test_cuda_phases_are_timed_with_events_and_report_peak_allocated_memory():
    import torch

    from bench.accounting import Accountant

    acct = Accountant(device="cuda")
    with acct.phase("alloc"):
        x = torch.ones(8192, 8192, device="cuda")  # 256 MiB
        y = x @ x  # asynchronous device work, which the events time
        del x, y
    (phase,) = acct.phases
    assert phase.memory_kind == "cuda_max_allocated" and phase.device == "cuda"
    assert phase.peak_bytes >= 256 * 2**20 and phase.wall_s > 0


def test_an_lds_run_on_cuda_records_the_device_and_gpu_hours(run_cli, tmp_path):
    from bench.costmodel import HARNESS_PHASES, gpu_hours

    code, _, err, results = run_cli("run", "--method", "tfidf", "--task", "lds", "--suite", "tiny", "--device", "cuda",
                                    "--suite-set", "ground_truth.num_subsets=4", cache=tmp_path / "cache")
    assert code == 0, err
    record = json.loads(next(results.rglob("*.json")).read_text())
    assert record["env"]["device"] == "cuda" and record["env"]["device_name"]
    phases = record["cost"]["phases"]
    assert all(p["memory_kind"] == "cuda_max_allocated" for p in phases)
    assert gpu_hours(phases, HARNESS_PHASES) > 0


def test_retraining_on_cuda_agrees_with_cpu(tmp_path):
    from bench.cache import Cache
    from bench.retrain import RetrainSpec, retrain_table
    from bench.suites import load_suite

    tables = {}
    for device in ("cpu", "cuda"):
        suite = load_suite("tiny")
        cache = Cache(tmp_path / device)
        spec = RetrainSpec(suite_ref="tiny", cache_root=str(cache.root), device=device)
        tables[device], _ = retrain_table(spec, suite, cache, num_subsets=2, fraction=0.5, seed=0)
    assert np.array_equal(tables["cpu"].masks, tables["cuda"].masks)
    np.testing.assert_allclose(tables["cuda"].losses, tables["cpu"].losses, rtol=2e-2)


def test_the_bf16_chat_recipe_runs_a_gradient_method_on_cuda(run_cli, tmp_path, tiny_pretrained):
    sets = {"data.preset.source": PRESETS / "tulu_mirror", "data.preset.warmup_source": PRESETS / "ultrachat_mirror",
            "data.preset.n_train": 12, "data.preset.n_test": 6, "data.preset.n_warmup": 4, "lm.model": tiny_pretrained,
            "lm.max_length": 64, "lm.warmup_steps": 2, "lm.batch_size": 4, "lm.finetune_epochs": 1,
            "ground_truth.num_subsets": 3, "methods.logra": {"rank": 2}}
    argv = ["run", "--method", "logra", "--task", "lds", "--suite", "tulu", "--device", "cuda"]
    for key, value in sets.items():
        argv += ["--suite-set", f"{key}={json.dumps(str(value) if isinstance(value, Path) else value)}"]
    code, _, err, results = run_cli(*argv, cache=tmp_path / "cache")
    assert code == 0, err
    record = json.loads(next(results.rglob("*.json")).read_text())
    assert record["status"] == "ok" and record["cost"]["peak_bytes"] > 0
