"""Executors: Ray and sharded runs produce exactly the local executor's ground truth on `tiny` (groups of 4 jobs:
shard i of n takes the groups g with g mod n = i)."""

import time

import numpy as np
import pytest

from bench.api import RunContext
from bench.cache import Cache
from bench.executors import LocalExecutor, RayExecutor, ShardExecutor, ShardIncomplete
from bench.suites import load_suite


def _ground_truth(cache_dir, executor):
    ctx = RunContext(load_suite("tiny"), cache=Cache(cache_dir), executor=executor)
    return ctx.ground_truth()


@pytest.mark.slow
def test_ray_executor_gives_the_local_ground_truth(tmp_path):
    pytest.importorskip("ray")
    import ray

    local = _ground_truth(tmp_path / "local", LocalExecutor())
    executor = RayExecutor(local_cpus=2)
    t0 = time.perf_counter()
    remote = _ground_truth(tmp_path / "ray", executor)
    wall = time.perf_counter() - t0
    ray.shutdown()
    np.testing.assert_array_equal(remote.masks, local.masks)
    # Ray runs each task with one thread, this process with two: MKL's batched weight-gradient products
    # split their reduction by thread, so the tables agree to float rounding, not bit for bit
    np.testing.assert_allclose(remote.losses, local.losses, rtol=1e-5, atol=1e-6)
    assert not np.array_equal(remote.losses[0], remote.losses[1])
    assert len(executor.summaries) == local.masks.shape[0] // 4  # one task per group of 4 jobs
    assert all(len(s["out_paths"]) == 4 and s["wall_s"] > 0 for s in executor.summaries)
    print(f"\nray: start-up {executor.startup_s:.1f} s, {local.masks.shape[0]} jobs in {wall:.1f} s "
          f"(local jobs {local.wall_s.sum():.1f} s)")


def test_shards_together_give_the_local_ground_truth(tmp_path):
    local = _ground_truth(tmp_path / "local", LocalExecutor())
    with pytest.raises(ShardIncomplete, match=r"shard 0/3: 8 job\(s\) ran, 8 of 16"):
        _ground_truth(tmp_path / "sharded", ShardExecutor(0, 3))
    with pytest.raises(ShardIncomplete):
        _ground_truth(tmp_path / "sharded", ShardExecutor(2, 3))
    sharded = _ground_truth(tmp_path / "sharded", ShardExecutor(1, 3))  # the last shard completes the table
    np.testing.assert_array_equal(sharded.losses, local.losses)
    np.testing.assert_array_equal(sharded.masks, local.masks)


def test_shard_cli_exits_0_without_a_record_and_bad_shards_are_one_line(run_cli, tmp_path):
    code, out, err, results = run_cli("run", "--method", "random", "--task", "lds", "--suite", "tiny",
                                      "--shard", "0/4", cache=tmp_path / "c")
    assert code == 0 and "shard 0/4: 4 job(s) ran" in err and "rerun without --shard" in err
    assert not results.exists() or not any(results.rglob("*.json"))
    for bad in ("4/4", "x", "1/0"):
        code, _, err, _ = run_cli("run", "--method", "random", "--task", "lds", "--suite", "tiny", "--shard", bad)
        assert code == 2 and err.count("\n") == 1 and "--shard" in err


def test_ray_jobs_take_the_suites_gpus_per_job_on_cuda_only():
    from bench.executors import get_executor

    assert get_executor("ray", device="cuda:0", gpus_per_job=0.5).num_gpus == 0.5
    assert get_executor("ray", device="cpu", gpus_per_job=0.5).num_gpus == 0
    from bench.errors import ConfigError
    from bench.suites import load_suite

    with pytest.raises(ConfigError, match="gpus_per_job"):
        load_suite("tiny", [("ground_truth.gpus_per_job", 0)])


def test_forked_workers_give_the_local_ground_truth(tmp_path):
    local = _ground_truth(tmp_path / "local", LocalExecutor())
    forked = _ground_truth(tmp_path / "forked", LocalExecutor(workers=2))
    np.testing.assert_array_equal(forked.masks, local.masks)
    # each worker has one thread, this process two: equal to float rounding (see LocalExecutor)
    np.testing.assert_allclose(forked.losses, local.losses, rtol=1e-5, atol=1e-6)
    assert not np.array_equal(forked.losses[0], forked.losses[1])


def test_a_forked_workers_error_reaches_the_caller_and_finished_groups_stay(tmp_path):
    class Job:
        def __init__(self, i):
            self.out_path = tmp_path / f"{i}.done"

    def fn(group):
        for job in group:
            if job.out_path.name == "5.done":
                raise ValueError("job 5 is broken")
            job.out_path.write_text("ok")

    jobs = [Job(i) for i in range(8)]
    with pytest.raises(ValueError, match="job 5 is broken"):
        LocalExecutor(workers=2).run(fn, jobs, desc="test", group_size=2)
    assert not (tmp_path / "5.done").exists() and (tmp_path / "0.done").exists()
    assert LocalExecutor(workers=2).run(lambda g: [j.out_path.write_text("ok") for j in g], jobs, desc="again",
                                        group_size=2) == 1  # only job 5 was missing (its group ran whole)
    assert all(j.out_path.exists() for j in jobs)


def test_workers_options_that_cannot_work_are_one_line(run_cli):
    from bench.errors import ConfigError
    from bench.executors import get_executor

    for extra, words in ((["--workers", "0"], "at least 1"), (["--workers", "2", "--executor", "ray"], "local")):
        code, _, err, _ = run_cli("run", "--method", "random", "--task", "lds", "--suite", "tiny", *extra)
        assert code == 2 and err.count("\n") == 1 and words in err, err
    with pytest.raises(ConfigError, match="CPU"):
        get_executor("local", device="cuda:0", workers=2)
    assert get_executor("local", workers=2).workers == 2 and get_executor("local", shard="0/2", workers=2).workers == 2


def test_a_forked_workers_unpicklable_error_arrives_as_its_name_and_message(tmp_path):
    class Local(Exception):  # a class defined here cannot be pickled back to the parent
        pass

    class Job:
        def __init__(self, i):
            self.out_path = tmp_path / f"{i}.done"

    def fn(group):
        raise Local("the data is odd")

    with pytest.raises(RuntimeError, match="Local: the data is odd"):
        LocalExecutor(workers=2).run(fn, [Job(i) for i in range(4)], desc="test", group_size=2)
