"""A code-version bump rebuilds every cache entry that depends on the bumped code, and only those."""

import json

import pytest

from bench import versions
from bench.api import RunContext, methods
from bench.cache import Cache
from bench.suites import load_suite


def _entries(root):
    return {p.parent.name + "/" + p.name for p in root.glob("*/*") if p.is_dir() and (p / "args.json").exists()}


def _run(cache_dir):
    """Warm-up LM, retraining jobs, an AirRep model and LESS's LoRA on the tiny suite."""
    suite = load_suite("tiny", [("ground_truth.num_subsets", 4)])
    ctx = RunContext(suite, cache=Cache(cache_dir))
    ctx.ground_truth()
    for name in ("airrep", "less"):
        cls = methods.get(name)
        method = cls(cls.smoke_config())
        ctx.setup(method)


@pytest.mark.slow
def test_bumping_a_code_version_rebuilds_what_depends_on_it(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    _run(cache)
    first = _entries(cache)
    kinds = {e.split("/")[0] for e in first}
    assert {"warmup", "retrain", "airrep", "less"} <= kinds
    for entry in first:  # every key records the code versions it was built with
        args = json.loads((cache / entry / "args.json").read_text())
        assert "code_versions" in args, entry

    _run(cache)  # nothing changed: nothing new
    assert _entries(cache) == first

    monkeypatch.setattr(versions, "RETRAIN", "bumped")
    _run(cache)
    new = _entries(cache) - first
    # retraining jobs and what is built from them (AirRep's model) are rebuilt; the warm-up LM and LESS's LoRA,
    # which no retraining feeds, are not
    assert {e.split("/")[0] for e in new} == {"retrain", "airrep"}

    monkeypatch.setattr(versions, "LM", "bumped")
    before = _entries(cache)
    _run(cache)
    assert {e.split("/")[0] for e in _entries(cache) - before} == {"warmup", "retrain", "airrep", "less"}
