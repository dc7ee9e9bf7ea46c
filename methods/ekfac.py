"""EK-FAC influence functions through `kronfluence` (Grosse et al. 2023), on the suite's warm-up target LM."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from bench.api import (
    ConfigError,
    Examples,
    Features,
    Method,
    MethodContext,
    Role,
    per_example_loss,
    register_method,
    top_layer_losses,
)
from methods.gradients import FrozenInputs, GradientConfig, Handles, Scratch, tracked_modules

KRONFLUENCE_INSTALL = "pip install --no-deps kronfluence==1.0.1 einconv==0.1.0"


@dataclass(frozen=True, kw_only=True)
class EKFACConfig(GradientConfig):
    """Options of EK-FAC influence; `modules`, `batch_size` and `seed` as for the other gradient methods."""

    strategy: Literal["ekfac", "kfac", "diagonal", "identity"] = field(default="ekfac", metadata={
        "help": "kronfluence's Hessian approximation: EK-FAC (default), K-FAC, the diagonal, or none (identity: "
                "the plain gradient inner product)."})
    damping: float | None = field(default=1e-8, metadata={
        "help": "Damping added to the approximate Hessian (kronfluence's default 1e-8); unset (None): 0.1 x "
                "the mean eigenvalue, kronfluence's heuristic."})
    empirical_fisher: bool = field(default=False, metadata={
        "help": "Fit the factors on the examples' own labels (empirical Fisher) instead of labels sampled from "
                "the model (the true Fisher, kronfluence's default)."})
    query_batch_size: int = field(default=64, metadata={
        "help": "Test examples whose preconditioned gradients are held at once (memory: this x the tracked "
                "parameters x 4 bytes); each batch is one pass over the pool."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.damping is not None and self.damping < 0:
            raise ConfigError(f"ekfac.damping must be >= 0 or unset, got {self.damping}")
        if self.query_batch_size < 1:
            raise ConfigError(f"ekfac.query_batch_size must be >= 1, got {self.query_batch_size}")


def check_kronfluence() -> None:
    """Preflight: kronfluence (and einconv and opt_einsum, which it imports) must be importable."""
    import importlib.util

    if any(importlib.util.find_spec(m) is None for m in ("kronfluence", "einconv", "opt_einsum")):
        raise ConfigError(f"the ekfac method needs kronfluence, which is not installed: run `{KRONFLUENCE_INSTALL}`")


@register_method("ekfac", config=EKFACConfig)
class EKFAC(Method):
    """EK-FAC influence `g_test^T (G + damping)^-1 g_train` through kronfluence's `Analyzer`.

    Recipe (kronfluence's, as in Grosse et al. 2023 and bergson/kronfluence's LM examples): the warm-up
    target LM (the model LoGra, TracIn and DsDm differentiate) is wrapped by `prepare_model`; the linear
    modules named by `modules` (the MLP layers by default, as LoGra's; under a top-layers recipe those of the
    trained layers only) are tracked; `fit_all_factors` fits the activation and gradient covariances on the
    pool with labels sampled from the model (true Fisher), eigendecomposes them and fits the eigenvalue
    corrections; `compute_pairwise_scores` preconditions each test example's gradient and takes its inner
    product with every pool example's gradient. Higher is more helpful (an upweighted pool example lowers
    the test loss), the harness's convention. Nothing is projected: the gradients are exact, so storage is
    the factors (what a new query needs, beside the pool's recomputed gradients).

    Under a top-layers recipe (`lm.train_layers`) the frozen layers' output of each example set is computed
    once (`methods.gradients.FrozenInputs`) and each of kronfluence's passes runs the trained layers alone
    from it, with the LM head at labelled positions only (`bench.api.top_layer_losses`, which also draws the
    true Fisher's targets there): SmolLM2's 28 frozen layers run once per set, not once per pass, for sets
    whose states fit `FrozenInputs`' budget (1 GiB); a larger set runs them row by row on every pass.

    The loss on both sides is the harness's per-example loss (mean cross-entropy over the response and EOS
    tokens, what the ground truth measures), as for the other gradient methods; kronfluence's examples sum
    token losses. The method has no per-example features (`pairwise`): `featurize` keeps the examples and
    returns handles to them, and `score` runs kronfluence on the two sets (the score phase holds the pairwise
    pass, the index phase the factor fit); `dim` is the gradient dimension and `storage_bytes` the factors'.
    """

    search_space = {"damping": (1e-8, 1e-5, 1e-2, None), "strategy": ("ekfac", "kfac")}

    family = "gradient"
    pairwise = True

    def __init__(self, config: EKFACConfig | None = None) -> None:
        super().__init__(config)
        self._lm = None
        self._model = None
        self._analyzer = None
        self._scratch: Scratch | None = None
        self._handles = Handles()
        self._factors = ""
        self._info: dict[str, Any] = {}
        self._calls = 0

    @classmethod
    def smoke_config(cls) -> EKFACConfig:
        """Small batches."""
        return EKFACConfig(batch_size=8, query_batch_size=8)

    def check(self) -> None:
        """Preflight: kronfluence must be installed."""
        check_kronfluence()

    def setup(self, ctx: MethodContext) -> None:
        """Load the warm-up LM and wrap its tracked modules for kronfluence."""
        from kronfluence.analyzer import Analyzer, prepare_model

        self._scratch = Scratch(self, ctx, "ekfac")
        lm = ctx.warmup_lm()
        names = tracked_modules(lm, self.config.modules, self.name)
        modules = dict(lm.model.named_modules())
        self._info = {"modules": names, "strategy": self.config.strategy,
                      "grad_dim": int(sum(modules[n].weight.numel() for n in names)),
                      "model_params": int(sum(p.numel() for p in lm.model.parameters()))}
        # float32 whatever the LM's dtype (kronfluence's eigendecompositions), a copy: prepare_model wraps in place
        model = copy.deepcopy(lm.model).float().eval()
        task = _LMTask(names, self.config.empirical_fisher, lm.first_trainable_layer())
        self._model = prepare_model(model, task)
        self._lm = lm
        self._analyzer = Analyzer(analysis_name="ekfac", model=self._model, task=task,
                                  cpu=not str(ctx.device).startswith("cuda"), disable_tqdm=True,
                                  output_dir=str(self._scratch.path), disable_model_save=True)

    def _dataset(self, examples: Examples):
        return _Rows(self._lm, examples)

    def fit(self, examples: Examples) -> None:
        """Fit the EK-FAC factors on the pool."""
        import torch
        from kronfluence.arguments import FactorArguments

        if self._analyzer is None:
            raise RuntimeError("ekfac: setup(ctx) must run before fit")
        self._calls += 1
        self._factors = f"factors{self._calls}"
        with torch.random.fork_rng():  # the true Fisher's sampled labels: seeded, the caller's RNG kept
            torch.manual_seed(self.config.seed)
            self._analyzer.fit_all_factors(factors_name=self._factors, dataset=self._dataset(examples),
                                           per_device_batch_size=self.config.batch_size,
                                           factor_args=FactorArguments(strategy=self.config.strategy),
                                           overwrite_output_dir=True)
        self._info["factor_bytes"] = _factor_bytes(self._analyzer.factors_output_dir(self._factors),
                                                   self.config.strategy)

    def featurize(self, examples: Examples, role: Role) -> Features:
        """Handles [n, 1]: each example's number among those this instance keeps for `score`."""
        if not self._factors:
            raise RuntimeError("ekfac: fit(pool) must run before featurize")
        return self._handles.of(examples)

    def score(self, test_features: Features, train_features: Features) -> np.ndarray:
        """Pairwise influence (kronfluence) of the train handles' examples on the test handles', [n_test, n_train]."""
        from kronfluence.arguments import ScoreArguments

        self._calls += 1
        name = f"scores{self._calls}"
        test, train = self._handles.examples(test_features), self._handles.examples(train_features)
        self._analyzer.compute_pairwise_scores(
            scores_name=name, factors_name=self._factors, query_dataset=self._dataset(test),
            train_dataset=self._dataset(train), per_device_query_batch_size=self.config.query_batch_size,
            per_device_train_batch_size=self.config.batch_size,
            score_args=ScoreArguments(damping_factor=self.config.damping), overwrite_output_dir=True)
        return self._analyzer.load_pairwise_scores(name)["all_modules"].double().numpy()

    def dim(self, train_features: Features) -> int:
        """The tracked parameters (nothing is projected)."""
        return int(self._info.get("grad_dim", 0))

    def storage_bytes(self, train_features: Features) -> int:
        """The factors that scoring reads, on disk.

        EK-FAC: the eigenvectors and eigenvalue corrections of every tracked module; the covariances they came
        from are left out.
        """
        return int(self._info.get("factor_bytes", 0))

    def info(self) -> dict[str, Any]:
        """Tracked modules, gradient dimension, factor bytes."""
        return dict(self._info)


def _factor_bytes(directory, strategy: str) -> int:
    """Bytes of the factor files that kronfluence's preconditioning under `strategy` reads (its `FactorConfig`)."""
    from kronfluence.factor.config import FactorConfig, FactorStrategy

    needs = FactorConfig.CONFIGS[FactorStrategy(strategy)]
    kinds = [kind for kind, used in (("covariance", needs.requires_covariance_matrices_for_precondition),
                                     ("eigen", needs.requires_eigendecomposition_for_precondition),
                                     ("lambda", needs.requires_lambda_matrices_for_precondition)) if used]
    return int(sum(p.stat().st_size for p in directory.rglob("*.safetensors") if any(k in p.stem for k in kinds)))


class _Rows:
    """Examples as a map-style dataset of dicts (kronfluence's loaders stack them into batches).

    Under a top-layers recipe each row also carries its frozen layers' output (`FrozenInputs`, padded like
    its tokens), and the task runs the trained layers alone from it.
    """

    def __init__(self, lm, examples: Examples) -> None:
        self.frozen = FrozenInputs.of(lm, examples)
        self.enc = self.frozen.enc if self.frozen is not None else lm.encode(examples)

    def __len__(self) -> int:
        return len(self.enc.lengths)

    def __getitem__(self, i: int) -> dict[str, Any]:
        row = {"input_ids": self.enc.input_ids[i], "attention_mask": self.enc.attention_mask[i],
               "labels": self.enc.labels[i]}
        if self.frozen is not None:
            row["states"] = self.frozen.batch(np.array([i]), width=self.enc.input_ids.shape[1])[1][0]
        return row


def _trim(batch: dict[str, Any]) -> dict[str, Any]:
    width = int(batch["attention_mask"].sum(1).max())
    return {k: v[:, :width] for k, v in batch.items()}


def _losses(batch: dict[str, Any], model, first: int, draw: bool):
    """The harness's per-example losses of a batch: from the frozen layers' output where the rows carry it."""
    import torch

    b = _trim(batch)
    if "states" in b:
        return top_layer_losses(model, first, b.pop("states"), b, draw=draw)
    logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
    labels = b["labels"]
    if draw:  # the true Fisher: targets drawn from the model at the labelled positions
        with torch.no_grad():
            probs = torch.softmax(logits[:, :-1].float(), dim=-1)
            drawn = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1).reshape(probs.shape[:2])
        labels = labels.clone()
        labels[:, 1:] = torch.where(labels[:, 1:] != -100, drawn, -100)
    return per_example_loss(logits, labels)


class _LMTask:
    """kronfluence's `Task` for the harness's target LM (a kronfluence subclass, built on first use)."""

    def __new__(cls, names: list[str], empirical: bool, first: int):
        from kronfluence.task import Task

        class LMTask(Task):
            def compute_train_loss(self, batch, model, sample: bool = False):
                return _losses(batch, model, first, sample and not empirical).sum()

            def compute_measurement(self, batch, model):
                return _losses(batch, model, first, False).sum()

            def get_influence_tracked_modules(self):
                return list(names)

            def get_attention_mask(self, batch):
                return _trim(batch)["attention_mask"]

        return LMTask()
