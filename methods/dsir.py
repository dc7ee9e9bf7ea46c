"""DSIR: importance weights of hashed n-gram features (official `data-selection` package)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from bench.api import (
    ConfigError,
    Examples,
    Features,
    Method,
    MethodConfig,
    MethodContext,
    Role,
    register_method,
)

_SMOOTH = 1e-8  # the package's smoothing in HashedNgramDSIR.fit_importance_estimator


@dataclass(frozen=True, kw_only=True)
class DSIRConfig(MethodConfig):
    """Options of the DSIR baseline (names as in `data_selection.HashedNgramDSIR`)."""

    ngrams: int = field(default=2, metadata={"help": "N in n-grams: 2 = unigrams and bigrams."})
    num_buckets: int = field(default=10000, metadata={"help": "Hash buckets of the n-gram features."})
    tokenizer: Literal["wordpunct", "word_tokenize"] = field(default="wordpunct", metadata={
        "help": "Tokeniser of the package (word_tokenize needs nltk's punkt data)."})
    target: Literal["example"] = field(default="example", metadata={
        "help": "Target distribution p_test: the test example's own n-gram distribution."})

    def __post_init__(self) -> None:
        if self.ngrams < 1 or self.num_buckets < 2:
            raise ConfigError(f"dsir: ngrams must be >= 1 and num_buckets >= 2, got {self.ngrams}, "
                              f"{self.num_buckets}")


@register_method("dsir", config=DSIRConfig)
class DSIR(Method):
    """DSIR (Xie et al. 2023): score(z, x) = (log p_z - log p_raw) . counts(x) over hashed n-gram buckets.

    Features come from the official package's `HashedNgramDSIR.featurizer` (its hashing and tokeniser);
    nothing is re-implemented. The package's selection pipeline (files, shards, resampling) is not used:
    attribution needs a score per (test, train) pair, which is the package's `importance_estimator`
    evaluated with one target distribution per test example.

    - p_raw is fitted on the training pool (`fit`), with the package's smoothing (1e-8).
    - p_z is the test example's own n-gram distribution (`target="example"`), as in the AirRep paper's
      baseline: attribution is per test example, and using the test example's task label would hand DSIR
      information no other method gets.
    - `min_example_length` is set to 0: the package's default (100 tokens) silently drops every short
      example, which here would be nearly all of them. No example is ever filtered.
    - Train features are the raw bucket counts (sparse CSR, int32); test features are the dense log-ratio
      vectors. The storage cost is the CSR counts.
    """

    search_space = {"ngrams": (1, 2, 3), "num_buckets": (1000, 10000)}

    family = "representation"

    def __init__(self, config: DSIRConfig | None = None) -> None:
        super().__init__(config)
        self._dsir = None
        self._log_raw: np.ndarray | None = None

    def _estimator(self, cache_dir: str | None = None):
        if self._dsir is None:
            from data_selection import HashedNgramDSIR

            self._dsir = HashedNgramDSIR(
                raw_datasets=[], target_datasets=[], cache_dir=cache_dir or tempfile.mkdtemp(prefix="dsir-"),
                num_proc=1, ngrams=self.config.ngrams, num_buckets=self.config.num_buckets,
                tokenizer=self.config.tokenizer, min_example_length=0)
        return self._dsir

    def setup(self, ctx: MethodContext) -> None:
        """Build the package's estimator (its scratch directory lives in the harness cache)."""
        directory = ctx.cache.root / "dsir-scratch"
        directory.mkdir(parents=True, exist_ok=True)
        self._estimator(str(directory))

    def _counts(self, examples: Examples):  # -> scipy.sparse.csr_matrix int32 [n, buckets]
        from scipy import sparse

        dsir = self._estimator()
        rows = [sparse.csr_matrix(dsir.featurizer(e.text()).astype(np.int32)) for e in examples]
        return sparse.vstack(rows, format="csr") if rows else sparse.csr_matrix((0, self.config.num_buckets))

    def fit(self, examples: Examples) -> None:
        """Fit p_raw, the pool's smoothed bucket distribution."""
        counts = self._counts(examples)
        total = np.asarray(counts.sum(axis=0)).ravel().astype(np.float64)
        self._log_raw = np.log(total / max(total.sum(), 1.0) + _SMOOTH)
        self.keep_pool_rows(examples, counts)

    def featurize(self, examples: Examples, role: Role) -> Features:
        """Train: bucket counts, CSR int32 [n, buckets]. Test: log p_z - log p_raw, float32 [n, buckets]."""
        if self._log_raw is None:
            raise RuntimeError("dsir: fit(pool) must run before featurize")
        if role == "train":
            kept = self.kept_pool_rows(examples)
            return kept if kept is not None else self._counts(examples)
        dense = self._counts(examples).toarray().astype(np.float64)
        p_test = dense / np.maximum(dense.sum(axis=1, keepdims=True), 1.0)
        return (np.log(p_test + _SMOOTH) - self._log_raw[None, :]).astype(np.float32)

    def score(self, test_features: Features, train_features: Features) -> np.ndarray:
        """(log p_z - log p_raw) . counts(x), float [n_test, n_train]."""
        return np.asarray((train_features @ test_features.astype(np.float64).T).T, dtype=np.float64)
