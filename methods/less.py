"""LESS (Xia et al. 2024): LoRA gradients with Adam's moments, random projection, cosine similarity."""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

from bench.api import (
    ConfigError,
    Examples,
    Features,
    Method,
    MethodContext,
    Role,
    atomic_path,
    build,
    code_versions,
    config_dict,
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

CODE_VERSION = "3"  # bump when the cached LoRA warm-up changes numerically (2: keyed by code versions; 3: entries
# written between 0210832 and ca982bb may hold adapters of the mislabel task's model under the suite's key)
_BETAS, _EPS = (0.9, 0.999), 1e-8  # LESS's Adam constants (those of the warm-up optimiser)
_BLOCK_BYTES = 64 * 2**20  # at most this much of the projection matrix is materialised at once


@dataclass(frozen=True, kw_only=True)
class LESSConfig(GradientConfig):
    """Options of LESS; defaults are the paper's (Appendix E) for a 0.5B model, suites scale them."""

    modules: tuple[str, ...] = field(default=("q_proj", "k_proj", "v_proj", "o_proj"), metadata={
        "help": "Linear layers that get LoRA adapters (LESS's official targets: the attention projections)."})
    lora_rank: int = field(default=128, metadata={"help": "LoRA rank r."})
    lora_alpha: float = field(default=512.0, metadata={"help": "LoRA alpha (scaling alpha / r)."})
    lora_dropout: float = field(default=0.1, metadata={"help": "LoRA dropout during the warm-up."})
    epochs: int = field(default=4, metadata={"help": "Epochs of LoRA warm-up on the suite's warmup split."})
    lr: float = field(default=2e-5, metadata={"help": "Learning rate of the LoRA warm-up (AdamW, constant)."})
    dim: int = field(default=8192, metadata={"help": "Random projection dimension (paper: 8192; 768 for selection)."})
    proj_type: Literal["rademacher", "normal"] = field(default="rademacher", metadata={
        "help": "Entries of the random projection matrix (traker's ProjectionType)."})
    project_batch: int = field(default=512, metadata={"help": "Gradient rows projected per call."})

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("lora_rank", "epochs", "dim", "project_batch"):
            if getattr(self, name) < 1:
                raise ConfigError(f"less.{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.lora_dropout < 1:
            raise ConfigError(f"less.lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if not (self.lr > 0 and self.lora_alpha > 0):
            raise ConfigError("less.lr and less.lora_alpha must be > 0")


@register_method("less", config=LESSConfig)
class LESS(Method):
    """LESS via `peft` LoRA and `traker`'s projector, final checkpoint only, as in the AirRep paper.

    Recipe (official LESS, AirRep paper Appendix E): LoRA adapters (peft) on the warm-up target LM are
    trained for `epochs` epochs with AdamW; per-example gradients of the LoRA weights are taken at the final
    checkpoint; training-example gradients are corrected with Adam's moments, g' = m' / sqrt(v' + eps) where
    m' = b1 m + (1 - b1) g and v' = b2 v + (1 - b2) g^2; test gradients stay plain (SGD) gradients; both
    are projected with a random Rademacher matrix (traker's `BasicProjector`, seed 0, as LESS's code) and
    compared by cosine similarity. The LoRA warm-up and its optimiser moments are cached.

    Deviations: one checkpoint instead of LESS's four (as the paper); the LoRA warm-up uses the suite's
    warmup split (the data every gradient method's warm-up model saw) rather than 5% of the pool;
    per-example gradients come in batches through logix's hooks instead of LESS's batch size 1 (the same
    numbers, much faster); the LoRA warm-up runs at a constant learning rate.
    """

    search_space = {"lora_rank": (8, 16, 32), "lr": (1e-4, 1e-3, 1e-2)}
    size_option, size_values = "dim", (384, 1536, 8192)  # the random projection's dimension

    family = "gradient"

    def __init__(self, config: LESSConfig | None = None) -> None:
        super().__init__(config)
        self._lm = None
        self._moments: dict[str, tuple[Any, Any]] = {}
        self._projector = None
        self._device = "cpu"
        self._scratch: Scratch | None = None
        self._info: dict[str, Any] = {}

    @classmethod
    def smoke_config(cls) -> LESSConfig:
        """A rank-4 LoRA, one epoch, 64 dimensions."""
        return LESSConfig(lora_rank=4, lora_alpha=16.0, epochs=1, lr=1e-3, dim=64, batch_size=8)

    def check(self) -> None:
        """Logix (per-example gradients) must be installed."""
        check_logix()

    # -- setup: LoRA warm-up, cached ----------------------------------------------------------------------
    def setup(self, ctx: MethodContext) -> None:
        """Add LoRA adapters to the warm-up LM; train them (or load the cached ones) with their Adam moments."""
        import torch
        from peft import LoraConfig, get_peft_model
        from safetensors.torch import load_file, save_file

        c = self.config
        self._scratch = Scratch(self, ctx, "less")
        self._device = ctx.device
        lm = ctx.warmup_lm()
        found = tracked_modules(lm, c.modules, self.name)  # under lm.train_layers, the trained top layers' only
        torch.manual_seed(c.seed)
        with warnings.catch_warnings():  # peft calls a transformers API deprecated in v5; nothing to act on
            warnings.filterwarnings("ignore", category=FutureWarning)
            lm.model = get_peft_model(lm.model, LoraConfig(
                r=c.lora_rank, lora_alpha=c.lora_alpha, lora_dropout=c.lora_dropout,
                target_modules=found, bias="none", task_type="CAUSAL_LM"))
        params = {n: p for n, p in lm.model.named_parameters() if p.requires_grad}
        # the targets follow from `modules` and the LM spec (its train_layers) in the key
        args = {"suite": ctx.suite.name, "data": ctx.suite.drawn_fingerprint, "lm": config_dict(ctx.suite.spec.lm),
                "lora": {k: getattr(c, k) for k in ("modules", "lora_rank", "lora_alpha", "lora_dropout", "epochs",
                                                    "lr", "seed")}}
        if (model := ctx.model_key()) is not None:  # another model than the suite's (the mislabel task's)
            args["model"] = model

        def produce(directory):
            import time

            t0 = time.perf_counter()
            opt = torch.optim.AdamW(params.values(), lr=c.lr, betas=_BETAS, eps=_EPS, weight_decay=0.0)
            losses = lm.train(lm.encode(ctx.suite.split("warmup")), lr=c.lr, seed=c.seed, epochs=c.epochs,
                              desc="less LoRA warm-up", optimizer=opt)
            state = {}
            for n, p in params.items():
                state[f"weight/{n}"] = p.detach().clone()
                state[f"exp_avg/{n}"] = opt.state[p]["exp_avg"].detach().clone()
                state[f"exp_avg_sq/{n}"] = opt.state[p]["exp_avg_sq"].detach().clone()
            with atomic_path(directory / "lora.safetensors") as tmp:
                save_file(state, str(tmp))
            return {"wall_s": time.perf_counter() - t0, "steps": len(losses), "final_loss": losses[-1]}

        with ctx.phase("setup/lora_warmup") as ph:
            # keyed by the warm-up LM's code (it starts from that model) and LESS's own
            directory, meta, was_built = build(ctx.cache, "less", args, {**code_versions("lm"), "less": CODE_VERSION},
                                               produce)
            state = load_file(str(directory / "lora.safetensors"))
            if was_built:
                ph.cached, ph.original_wall_s = True, meta["wall_s"]
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(state[f"weight/{n}"])
        self._lm, self._moments = lm, {n: (state[f"exp_avg/{n}"], state[f"exp_avg_sq/{n}"]) for n in params}
        self._info = {"lora_params": int(sum(p.numel() for p in params.values())), "warmup": meta}

    # -- featurisation --------------------------------------------------------------------------------------
    def featurize(self, examples: Examples, role: Role) -> Features:
        """Projected, unit-normalised LoRA gradients; Adam-corrected for training examples."""
        import torch

        if self._lm is None:
            raise RuntimeError("less: setup(ctx) must run before featurize")
        c, lm = self.config, self._lm
        run = new_logix(self._scratch.path, f"less-{role}")
        run.watch(lm.model, name_filter=["lora_A", "lora_B"])
        run.setup({"grad": ["log"]})
        path = run.state.get_state("model_module")["path"]
        names = [f"{module}.weight" for module, _ in path]
        avg = torch.cat([self._moments[n][0].reshape(-1) for n in names])
        avg_sq = torch.cat([self._moments[n][1].reshape(-1) for n in names])
        projector = self._get_projector(int(avg.numel()))
        writer = self._scratch.writer(role, len(examples), c.dim)
        pending: list[torch.Tensor] = []

        def flush() -> None:
            if pending:
                rows = projector.project(torch.cat(pending), model_id=0)
                writer.write((unit_normalize(rows) if c.normalize else rows).cpu().numpy())
                pending.clear()

        with progress(total=len(examples), desc=f"less gradients ({role})", unit="ex") as bar:
            for _idx, grads, _log in per_example_gradients(run, lm, examples, batch_size=c.batch_size,
                                                           bar=bar):
                if role == "train":
                    m = _BETAS[0] * avg + (1 - _BETAS[0]) * grads
                    v = _BETAS[1] * avg_sq + (1 - _BETAS[1]) * grads**2
                    grads = m / torch.sqrt(v + _EPS)
                pending.append(grads)
                if sum(len(p) for p in pending) >= c.project_batch:
                    flush()
            flush()
        run.clear()
        return writer.finish()

    def _get_projector(self, grad_dim: int):
        if self._projector is None:
            import torch
            from trak.projectors import BasicProjector, ProjectionType

            block = max(1, min(self.config.dim, _BLOCK_BYTES // (4 * grad_dim)))
            self._projector = BasicProjector(grad_dim=grad_dim, proj_dim=self.config.dim, seed=0,
                                             proj_type=ProjectionType(self.config.proj_type), device=self._device,
                                             block_size=block, dtype=torch.float32)
            self._info.update(grad_dim=grad_dim, projection_blocks=math.ceil(self.config.dim / block))
        return self._projector

    def info(self) -> dict[str, Any]:
        """LoRA size, gradient dimension before projection, the warm-up's cost and final loss."""
        return copy.deepcopy(self._info)

