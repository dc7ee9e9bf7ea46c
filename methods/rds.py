"""RDS: mean-pooled last-layer hidden states of the warm-up target LM, dot product."""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.api import (
    ConfigError,
    Examples,
    Features,
    Method,
    MethodConfig,
    MethodContext,
    Role,
    mean_pool,
    register_method,
)


@dataclass(frozen=True, kw_only=True)
class RDSConfig(MethodConfig):
    """Options of the representation-based data selection baseline."""

    batch_size: int = field(default=256, metadata={"help": "Forward batch size."})
    normalize: bool = field(default=False, metadata={"help": "L2-normalise the pooled states (cosine)."})

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"rds.batch_size must be >= 1, got {self.batch_size}")


@register_method("rds", config=RDSConfig)
class RDS(Method):
    """Representation-based data selection (Zhang et al. 2018 / LESS's RDS baseline), paper Appendix E.

    Each example is run through the suite's warm-up target LM as it is trained (`<bos> prompt <sep>
    response <eos>`); the last layer's hidden states (after the final norm) are averaged over all
    non-padding tokens; the score is the dot product.
    """

    search_space = {"normalize": (False, True)}

    family = "representation"

    def __init__(self, config: RDSConfig | None = None) -> None:
        super().__init__(config)
        self._lm = None

    def setup(self, ctx: MethodContext) -> None:
        """Load (or train) the suite's warm-up LM."""
        self._lm = ctx.warmup_lm()

    def featurize(self, examples: Examples, role: Role) -> Features:
        """Mean-pooled last hidden states, float32 [n, hidden_size]."""
        import torch

        if self._lm is None:
            raise RuntimeError("rds: setup(ctx) must run before featurize")
        lm = self._lm
        enc = lm.encode(examples)
        out = torch.empty((len(examples), lm.model.config.hidden_size), dtype=torch.float32)
        bs = self.config.batch_size
        with torch.inference_mode():
            for start in range(0, len(examples), bs):
                idx = torch.arange(start, min(start + bs, len(examples)))
                batch = enc.batch(idx)
                # the decoder alone: its last state is the LM's last hidden state (after the final norm),
                # without the LM head's logits at every position or every layer's states
                hidden = lm.model.base_model(input_ids=batch["input_ids"].to(lm.device),
                                             attention_mask=batch["attention_mask"].to(lm.device)).last_hidden_state
                out[idx] = mean_pool(hidden, batch["attention_mask"].to(lm.device)).float().cpu()
        if self.config.normalize:
            out = out / out.norm(dim=1, keepdim=True).clamp(min=1e-12)
        return out.numpy()
