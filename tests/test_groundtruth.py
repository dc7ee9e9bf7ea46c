import json

import numpy as np

from bench.cache import Cache
from bench.retrain import RetrainSpec, retrain_table, subset_masks
from bench.suites import load_suite


def test_subset_masks_exact_size_and_deterministic():
    m = subset_masks(10, 6, 0.3, seed=1)
    assert m.shape == (6, 10) and m.dtype == bool
    assert (m.sum(1) == 3).all()
    np.testing.assert_array_equal(m, subset_masks(10, 6, 0.3, seed=1))
    assert not np.array_equal(m, subset_masks(10, 6, 0.3, seed=2))
    assert len({row.tobytes() for row in m}) > 1


def test_resume_recomputes_only_missing_jobs_with_identical_results(tiny_cache):
    suite = load_suite("tiny")
    cache = Cache(tiny_cache)
    spec = RetrainSpec(suite_ref="tiny", cache_root=str(tiny_cache))
    kwargs = dict(num_subsets=6, fraction=0.25, seed=7)
    first, ran = retrain_table(spec, suite, cache, **kwargs)
    assert ran == 6 and first.losses.shape == (6, 64) and first.masks.shape == (6, 400)
    # the subsets differ, so the losses do too: the table is not constant over subsets
    assert np.ptp(first.losses, axis=0).mean() > 1e-3
    job_dir = next(p for p in (tiny_cache / "retrain").iterdir()
                   if json.loads((p / "args.json").read_text())["seed"] == 7) / "jobs"
    (job_dir / "00002.npz").unlink()
    (job_dir / "00004.npz").unlink()
    mtime = (job_dir / "00000.npz").stat().st_mtime_ns
    again, ran = retrain_table(spec, suite, cache, **kwargs)
    assert ran == 2
    assert (job_dir / "00000.npz").stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(again.losses, first.losses)  # retraining is deterministic
    _, ran = retrain_table(spec, suite, cache, **kwargs)
    assert ran == 0
    # growing M reuses every finished job: the first 6 subsets of 8 are the same subsets
    bigger, ran = retrain_table(spec, suite, cache, **{**kwargs, "num_subsets": 8})
    assert ran == 2
    np.testing.assert_array_equal(bigger.masks[:6], first.masks)
    np.testing.assert_array_equal(bigger.losses[:6], first.losses)
    smaller, ran = retrain_table(spec, suite, cache, **{**kwargs, "num_subsets": 3})
    assert ran == 0 and smaller.losses.shape == (3, 64)


def test_suite_overrides_reach_the_retraining_jobs(run_cli, tmp_path):
    """Workers rebuild the suite from its reference *and* its --suite-set overrides (a job used to see the
    TOML's data and LM recipe, so a data override gave losses of the wrong test set)."""
    import json

    code, _, err, results = run_cli("run", "--method", "random", "--task", "lds", "--suite", "tiny",
                                    "--suite-set", "data.generator.n_test=32",
                                    "--suite-set", "ground_truth.num_subsets=4", cache=tmp_path / "cache")
    assert code == 0, err
    record = json.loads(next(results.rglob("*.json")).read_text())
    assert record["extra"]["n_test"] == 32


def test_bfloat16_target_lm_trains_retrains_and_gives_finite_losses(tmp_path):
    import torch

    from bench.api import RunContext
    from bench.cache import Cache
    from bench.suites import load_suite

    suite = load_suite("tiny", [("lm.dtype", "bfloat16"), ("ground_truth.num_subsets", 3)])
    ctx = RunContext(suite, cache=Cache(tmp_path / "cache"))
    lm = ctx.warmup_lm()
    assert next(lm.model.parameters()).dtype == torch.bfloat16
    table = ctx.ground_truth()
    assert table.losses.shape == (3, 64) and np.isfinite(table.losses).all()
    assert not np.array_equal(table.losses[0], table.losses[1])


def test_bench_groundtruth_still_exports_the_retrain_packages_names():
    import bench.groundtruth
    import bench.retrain

    assert bench.groundtruth.__all__ == bench.retrain.__all__
    assert all(getattr(bench.groundtruth, n) is getattr(bench.retrain, n) for n in bench.retrain.__all__)
