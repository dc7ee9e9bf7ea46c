"""BM25 (bm25s): the lexical retrieval baseline of DATE-LM, bergson's leaderboard and the TrackStar paper."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from bench.api import ConfigError, Examples, Features, Method, MethodConfig, Role, register_method

BM25S_INSTALL = "pip install bm25s==0.3.11"


@dataclass(frozen=True, kw_only=True)
class BM25Config(MethodConfig):
    """Options passed to `bm25s.BM25` and `bm25s.tokenize`."""

    k1: float = field(default=1.5, metadata={"help": "Term-frequency saturation k1 (bm25s' default)."})
    b: float = field(default=0.75, metadata={"help": "Document-length normalisation b (bm25s' default)."})
    variant: Literal["lucene", "robertson", "atire", "bm25l", "bm25+"] = field(default="lucene", metadata={
        "help": "bm25s' scoring variant (its `method`); those without a non-occurrence term only."})
    stopwords: Literal["en", "none"] = field(default="en", metadata={
        "help": "Drop bm25s' English stopwords from documents and queries, or keep every token."})
    token_pattern: str = field(default=r"(?u)\b\w+\b", metadata={
        "help": "Token regex; unlike bm25s' default it keeps one-character tokens (digits), as TF-IDF here."})

    def __post_init__(self) -> None:
        if self.k1 < 0 or not 0 <= self.b <= 1:
            raise ConfigError(f"bm25 needs k1 >= 0 and 0 <= b <= 1, got k1={self.k1}, b={self.b}")
        if self.variant in ("bm25l", "bm25+"):
            raise ConfigError(f"bm25.variant = {self.variant!r} adds a score for absent terms, which a sparse "
                              f"query-document product leaves out: use lucene, robertson or atire")


@register_method("bm25", config=BM25Config)
class BM25(Method):
    """BM25 of each test example (the query) against each pool example (a document), through `bm25s`.

    `fit` indexes the pool with `bm25s.BM25.index`: bm25s precomputes every (document, term) BM25 weight,
    IDF included, as a sparse matrix. The pool's features are that matrix's rows (CSR [n_train, V]); a test
    example's are the counts of its tokens in the pool's vocabulary (CSR [n_test, V]; tokens the pool never
    has score nothing). Their dot product is exactly bm25s' `get_scores` of the query, which sums the
    document's weight of each query token, repeats included (`tests/test_representation_methods.py` checks it against
    `get_scores`). Text is "Question: prompt / Answer: response" on both sides, as for TF-IDF.

    Deviations from bm25s' defaults: the token pattern keeps one-character tokens (bm25s' pattern of 2+ characters drops
    single digits, most of an arithmetic prompt's content), as the TF-IDF baseline does; no stemmer. Not
    symmetric: the features of a pool example and of a test example differ, so the pool's rows are never
    reused as queries.
    """

    search_space = {"k1": (0.9, 1.2, 1.5, 2.0), "b": (0.4, 0.75)}

    family = "representation"  # lexical, grouped with TF-IDF as the AirRep paper groups it

    def __init__(self, config: BM25Config | None = None) -> None:
        super().__init__(config)
        self._vocab: dict[str, int] | None = None
        self._pool_rows: dict[str, int] = {}
        self._weights = None

    def check(self) -> None:
        """bm25s must be importable."""
        import importlib.util

        if importlib.util.find_spec("bm25s") is None:
            raise ConfigError(f"the bm25 method needs bm25s, which is not installed: run `{BM25S_INSTALL}`")

    def _tokens(self, examples: Examples) -> list[list[str]]:
        import bm25s

        c = self.config
        return bm25s.tokenize([e.text() for e in examples], token_pattern=c.token_pattern,
                              stopwords="en" if c.stopwords == "en" else [], return_ids=False,
                              show_progress=False)

    def fit(self, examples: Examples) -> None:
        """Index the pool: bm25s' (document, term) weights, kept as the pool's rows."""
        import bm25s
        import scipy.sparse as sp

        c = self.config
        index = bm25s.BM25(k1=c.k1, b=c.b, method=c.variant)
        index.index(self._tokens(examples), show_progress=False)
        s = index.scores  # CSC by term: column t holds the documents that contain term t and their weights
        by_term = sp.csc_matrix((s["data"], s["indices"], s["indptr"]), shape=(s["num_docs"], len(s["indptr"]) - 1))
        # bm25s adds an empty token to the vocabulary that no document holds (it has no column): left out
        self._vocab = {t: i for t, i in index.vocab_dict.items() if i < by_term.shape[1]}
        self._pool_rows = {e.id: i for i, e in enumerate(examples)}
        self._weights = by_term.tocsr().astype(np.float64)
        self.keep_pool_rows(examples, self._weights)

    def featurize(self, examples: Examples, role: Role) -> Features:
        """Pool: BM25 weights, float64 CSR [n, V]; test: query token counts in the pool's vocabulary."""
        import scipy.sparse as sp

        if self._vocab is None:
            raise RuntimeError("bm25: fit(pool) must run before featurize")
        if role == "train":  # documents: rows of the indexed pool (BM25 weights depend on the whole pool)
            kept = self.kept_pool_rows(examples)
            if kept is not None:
                return kept
            rows = [self._pool_rows.get(e.id) for e in examples]
            if any(r is None for r in rows):
                raise ConfigError("bm25 weighs documents against the pool it indexed: featurise pool examples "
                                  "as `train`, or fit on the set first")
            return self._weights[rows]
        rows, cols = [], []
        for i, tokens in enumerate(self._tokens(examples)):
            ids = [self._vocab[t] for t in tokens if t in self._vocab]
            rows += [i] * len(ids)
            cols += ids
        # duplicate (row, column) pairs are summed: a repeated query token counts as often as it appears
        return sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(examples), self._weights.shape[1]))

    def info(self) -> dict[str, Any]:
        """The pool's vocabulary size."""
        return {"vocabulary": len(self._vocab) if self._vocab is not None else None}
