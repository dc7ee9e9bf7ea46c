"""The mislabel task's reference rows: the attributed model's own loss and gradient norm on each example.

Noisy-label detection by self-influence is judged against these (dattri's and quanda's noisy-label
benchmarks; Pruthi et al. 2020 compare TracIn's self-influence with the loss): a wrong response is one the
model fits badly, so its loss and its gradient are large whether or not a method attributes anything. A
self-influence method earns its place only where it separates corrupted examples better than they do.

Both rows are baselines of the mislabel task alone (`Method.tasks`): their score of a pair is the product
of the two examples' values, which ranks every test example's pool the same way, so it answers no
attribution question. The mislabel task reads the diagonal, value squared, which orders the pool as the
value does (both are >= 0).

The model is the method context's `warmup_lm()`: in the mislabel task, the suite's start LM fine-tuned on
the corrupted pool (`bench.api.TrainedOn`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.api import Examples, Features, Method, MethodConfig, MethodContext, Role, progress, register_method


@dataclass(frozen=True, kw_only=True)
class SelfScoreConfig(MethodConfig):
    """Options of the loss and gradient-norm rows."""

    batch_size: int = field(default=32, metadata={"help": "Examples per forward pass."})

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            from bench.api import ConfigError

            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")


class _SelfScore(Method):
    """A value per example under the attributed model; a pair scores the product of its two values."""

    family = "baseline"
    tasks = ("mislabel",)
    config_cls = SelfScoreConfig

    def __init__(self, config: SelfScoreConfig | None = None) -> None:
        super().__init__(config)
        self._lm: Any = None

    def setup(self, ctx: MethodContext) -> None:
        """The attributed model (`ctx.warmup_lm()`)."""
        self._lm = ctx.warmup_lm()

    def values(self, examples: Examples) -> np.ndarray:  # pragma: no cover - abstract in spirit
        raise NotImplementedError

    def featurize(self, examples: Examples, role: Role) -> Features:
        """The example's value, float64 [n, 1]."""
        if self._lm is None:
            raise RuntimeError(f"{self.name}: setup() first")
        return self.values(examples).reshape(-1, 1)


@register_method("loss", config=SelfScoreConfig)
class LossBaseline(_SelfScore):
    """The attributed model's loss on each example: mean cross-entropy over its response and EOS tokens.

    The harness's per-example loss (`TargetLM.losses`), the quantity the ground truth measures.
    """

    def values(self, examples: Examples) -> np.ndarray:
        """Per-example loss, float64 [n]."""
        return self._lm.losses(self._lm.encode(list(examples)))


@register_method("grad_norm", config=SelfScoreConfig)
class GradNormBaseline(_SelfScore):
    """The Euclidean norm of each example's loss gradient, over every parameter that fine-tuning updates.

    Every trainable parameter (`TargetLM.trainable_names`: the whole model, or under a top-layers recipe the
    top layers and the final norm), not a projection: the unprojected, unpreconditioned self-influence
    |g|^2, square-rooted. One forward pass per batch, then one backward pass per example through it.
    """

    def values(self, examples: Examples) -> np.ndarray:
        """Per-example gradient norm, float64 [n]."""
        import torch

        from bench.api import per_example_loss

        lm = self._lm
        names = set(lm.trainable_names())
        params = [p for n, p in lm.model.named_parameters() if n in names]
        enc = lm.encode(list(examples))
        n = len(enc.lengths)
        out = np.empty(n, dtype=np.float64)
        lm.model.eval()
        bs = self.config.batch_size
        with progress(total=n, desc=f"{self.name}", unit="ex") as bar:
            for start in range(0, n, bs):
                idx = torch.arange(start, min(start + bs, n))
                batch = {k: v.to(lm.device) for k, v in enc.batch(idx).items()}
                logits = lm.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
                losses = per_example_loss(logits, batch["labels"])
                for j in range(len(idx)):
                    grads = torch.autograd.grad(losses[j], params, retain_graph=j < len(idx) - 1,
                                                allow_unused=True)
                    out[start + j] = float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads if g is not None)))
                bar.update(len(idx))
        return out
