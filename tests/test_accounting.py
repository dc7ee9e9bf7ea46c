import numpy as np

from bench.accounting import Accountant


def test_phase_records_wall_time_memory_and_count():
    acct = Accountant()
    with acct.phase("index", count=5) as ph:
        block = np.ones(64 * 1024 * 1024 // 8)  # 64 MiB that must show in the peak RSS
        block.sum()
        ph.cached_count = 2
    del block
    (phase,) = acct.phases
    assert phase.name == "index" and phase.count == 5 and phase.cached_count == 2
    assert phase.wall_s > 0 and phase.memory_kind == "process_rss" and phase.device == "cpu"
    assert phase.peak_bytes > 64 * 1024 * 1024
    assert acct.total("index") == phase.wall_s


def test_nested_phases_both_recorded():
    acct = Accountant()
    with acct.phase("setup"):
        with acct.phase("setup/inner"):
            pass
    assert [p.name for p in acct.phases] == ["setup/inner", "setup"]
    acct.record_storage(1000, 10)
    assert acct.storage_bytes == 1000 and acct.n_train_stored == 10


def test_gpu_hours_count_cuda_phases_at_their_original_cost():
    from bench.costmodel import HARNESS_PHASES, METHOD_PHASES, gpu_hours

    def ph(name, wall, device="cuda:0", cached=False, orig=None):
        return {"name": name, "wall_s": wall, "device": device, "cached": cached, "original_wall_s": orig}

    # in the accountant's order: a phase is appended when it ends, so setup's parts come before it
    phases = [ph("ground_truth", 1.0, cached=True, orig=3600.0), ph("setup/train", 90.0),
              ph("setup/generate", 9.0, cached=True, orig=1800.0), ph("setup", 100.0), ph("index", 360.0),
              ph("eval", 999.0)]
    # setup as its parts (a cached one at its original cost) plus the 1 s of setup that no part covers
    assert gpu_hours(phases, METHOD_PHASES) == (1.0 + 90.0 + 1800.0 + 360.0) / 3600
    assert gpu_hours(phases, HARNESS_PHASES) == 1.0
    assert gpu_hours([ph("index", 360.0, device="cpu")], METHOD_PHASES) is None


def test_method_cost_counts_the_setup_that_its_parts_do_not_cover():
    """A TRAK ensemble's setup (the order of a committed record): the shared warm-up LM loaded inside it (the
    harness's), cached member warm-ups (its parts, at what producing them cost), and the members' own
    loading (covered by no part)."""
    from bench.costmodel import method_cost_s, nested_in_setup, setup_cost_s

    def ph(name, wall, cached=False, orig=None):
        return {"name": name, "wall_s": wall, "cached": cached, "original_wall_s": orig}

    phases = [ph("ground_truth", 0.1, cached=True, orig=75.0), ph("warmup", 2.0, cached=True, orig=3.4),
              ph("setup/ensemble_warmup_1", 0.5, cached=True, orig=40.0), ph("setup", 3.5), ph("index", 30.0),
              ph("score", 5.0)]
    assert [p["name"] for p in nested_in_setup(phases)] == ["warmup", "setup/ensemble_warmup_1"]
    assert method_cost_s(phases) == 40.0 + 1.0 + 30.0 + 5.0
    assert setup_cost_s(phases) == 41.0
    # the shared warm-up trained inside the first method's setup is not that method's (smollm2's logra record)
    trained = [ph("ground_truth", 0.2, cached=True, orig=9.0), ph("warmup", 328.4), ph("setup", 328.4)]
    assert setup_cost_s(trained) == 0.0 and method_cost_s(trained) == 0.0
    # a warm-up the ground truth triggered ends before it, outside setup
    outside = [ph("warmup", 50.0), ph("ground_truth", 60.0), ph("setup", 4.0), ph("index", 1.0)]
    assert nested_in_setup(outside) == [] and method_cost_s(outside) == 5.0
    assert setup_cost_s([ph("index", 1.0)]) is None
