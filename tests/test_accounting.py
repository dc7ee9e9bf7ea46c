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
