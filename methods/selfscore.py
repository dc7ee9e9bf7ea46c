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

from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.api import Examples, Features, Method, MethodConfig, MethodContext, Role, progress, register_method


@dataclass(frozen=True, kw_only=True)
class SelfScoreConfig(MethodConfig):
    """The loss and gradient-norm rows have no options: the attributed model and the harness's loss decide them."""


class _SelfScore(Method):
    """A value per example under the attributed model; a pair scores the product of its two values."""

    family = "baseline"
    tasks = ("mislabel",)
    config_cls = SelfScoreConfig

    def __init__(self, config: SelfScoreConfig | None = None) -> None:
        super().__init__(config)
        self._lm: Any = None
        self._memo: tuple[tuple, np.ndarray] | None = None  # the last set's values: the task asks train, then test

    def setup(self, ctx: MethodContext) -> None:
        """The attributed model (`ctx.warmup_lm()`)."""
        self._lm = ctx.warmup_lm()

    def values(self, examples: Examples) -> np.ndarray:  # pragma: no cover - abstract in spirit
        raise NotImplementedError

    def featurize(self, examples: Examples, role: Role) -> Features:
        """The example's value, float64 [n, 1]."""
        if self._lm is None:
            raise RuntimeError(f"{self.name}: setup() first")
        key = tuple((e.id, e.prompt, e.response) for e in examples)  # the examples themselves, as `Handles`
        if self._memo is None or self._memo[0] != key:
            self._memo = (key, self.values(examples))
        return self._memo[1].reshape(-1, 1).copy()


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
    |g|^2, square-rooted. One forward and backward pass per example, on its own tokens (no padding).
    """

    def values(self, examples: Examples) -> np.ndarray:
        """Per-example gradient norm, float64 [n]."""
        import torch

        from bench.api import per_example_loss

        lm = self._lm
        names = set(lm.trainable_names())
        params = [p for n, p in lm.model.named_parameters() if n in names]
        enc = lm.encode(list(examples))
        out = np.empty(len(enc.lengths), dtype=np.float64)
        lm.model.eval()
        with progress(total=len(out), desc=self.name, unit="ex") as bar:
            for i in range(len(out)):
                batch = {k: v.to(lm.device) for k, v in enc.batch(torch.tensor([i])).items()}
                logits = lm.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
                grads = torch.autograd.grad(per_example_loss(logits, batch["labels"])[0], params, allow_unused=True)
                out[i] = float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads if g is not None)))
                bar.update(1)
        return out
