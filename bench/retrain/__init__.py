"""Retraining: the start LMs (`lms`), one job-table mechanism (`jobs`) and the four tables built on it (`tables`).

The ground truth of LDS and AirRep's training data (random subsets of a pool), data selection's answers,
leave-one-out's losses and the removal task's are all fine-tuning runs from the suite's start LM, cached one
file per job; `jobs` holds what they share (cache check, damaged entries, warm-up, executor groups, atomic
writes), `tables` what differs (each family's cache key, job files, group computation and reader).
"""

from __future__ import annotations

from bench.retrain.jobs import RetrainSpec, discard_damaged, group_size
from bench.retrain.lms import (
    base_lm,
    ensemble_refusal,
    pool_lm,
    start_lm,
    trained_key,
    trained_lm,
    warmup_built,
    warmup_cost,
    warmup_lm,
)
from bench.retrain.tables import (
    GenerateJob,
    GroundTruth,
    LooJob,
    RemovalJob,
    RetrainJob,
    generate_jobs,
    job_file,
    job_seed,
    load_table,
    loo_table,
    plan_table,
    probe_table,
    removal_table,
    retrain_table,
    run_generate_group,
    run_loo_group,
    run_removal_group,
    run_retrain_group,
    run_retrain_job,
    subset_mask,
    subset_masks,
)

__all__ = [
    "GenerateJob", "GroundTruth", "LooJob", "RemovalJob", "RetrainJob", "RetrainSpec", "discard_damaged",
    "generate_jobs", "group_size", "job_file", "job_seed", "load_table", "loo_table", "plan_table", "pool_lm",
    "probe_table", "removal_table", "retrain_table", "run_generate_group", "run_loo_group", "run_removal_group",
    "run_retrain_group", "run_retrain_job", "start_lm", "subset_mask", "trained_key", "trained_lm",
    "subset_masks", "warmup_built", "warmup_cost", "warmup_lm", "base_lm", "ensemble_refusal",
]
