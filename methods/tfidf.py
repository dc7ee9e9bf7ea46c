"""TF-IDF cosine similarity (scikit-learn), the lexical baseline of the AirRep paper."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from sklearn.feature_extraction.text import TfidfVectorizer  # at import, not inside the timed index phase

from bench.api import ConfigError, Examples, Features, Method, MethodConfig, Role, register_method


@dataclass(frozen=True, kw_only=True)
class TfIdfConfig(MethodConfig):
    """Options passed to `sklearn.feature_extraction.text.TfidfVectorizer`."""

    ngram_max: int = field(default=1, metadata={"help": "Use word n-grams of length 1..ngram_max."})
    sublinear_tf: bool = field(default=False, metadata={"help": "Replace tf with 1 + log(tf)."})
    min_df: int = field(default=1, metadata={"help": "Ignore terms in fewer than min_df training examples."})
    max_features: int | None = field(default=None, metadata={"help": "Keep the most frequent terms only."})
    token_pattern: str = field(default=r"(?u)\b\w+\b", metadata={
        "help": "Token regex; unlike scikit-learn's default it keeps one-character tokens (digits)."})
    fields: Literal["both", "response"] = field(default="both", metadata={"omit_default": True,
        "help": "Text vectorised: the prompt and the response (the method), or the response alone (a control: "
                "what matching the answer's words alone gives, e.g. on a suite whose label is in the answer)."})

    def __post_init__(self) -> None:
        if self.ngram_max < 1:
            raise ConfigError(f"tfidf.ngram_max must be >= 1, got {self.ngram_max}")
        if self.min_df < 1:
            raise ConfigError(f"tfidf.min_df must be >= 1, got {self.min_df}")
        if self.max_features is not None and self.max_features < 1:
            raise ConfigError(f"tfidf.max_features must be >= 1, got {self.max_features}")
        if self.fields not in ("both", "response"):
            raise ConfigError(f"tfidf.fields must be both or response, got {self.fields!r}")


@register_method("tfidf", config=TfIdfConfig)
class TfIdf(Method):
    """TF-IDF vectors of "Question: prompt / Answer: response", cosine similarity (paper Appendix E).

    `fit` learns the vocabulary and IDF weights from the training pool (timed with indexing); `featurize`
    transforms with the fitted vectoriser (the pool's rows computed while fitting are reused). Rows are
    L2-normalised, so the default dot product is the cosine. Features are sparse (CSR); storage counts
    the CSR arrays.

    Deviation from scikit-learn's defaults: the token pattern keeps one-character tokens. The default
    pattern drops them, which erases single digits and so most of the content of arithmetic prompts.
    """

    search_space = {"ngram_max": (1, 2), "sublinear_tf": (False, True), "min_df": (1, 2)}

    family = "representation"  # as the AirRep paper groups it (Section 5)

    def __init__(self, config: TfIdfConfig | None = None) -> None:
        super().__init__(config)
        self._vectorizer = None

    def fit(self, examples: Examples) -> None:
        """Fit the vocabulary and IDF weights on the training pool."""
        c = self.config
        self._vectorizer = TfidfVectorizer(ngram_range=(1, c.ngram_max), sublinear_tf=c.sublinear_tf,
                                           min_df=c.min_df, max_features=c.max_features, norm="l2",
                                           token_pattern=c.token_pattern)
        self.keep_pool_rows(examples, self._vectorizer.fit_transform(self._texts(examples)).tocsr())

    def _texts(self, examples: Examples) -> list[str]:
        return [e.response if self.config.fields == "response" else e.text() for e in examples]

    def featurize(self, examples: Examples, role: Role) -> Features:
        """Sparse TF-IDF rows, float64 CSR [n, vocabulary]."""
        if self._vectorizer is None:
            raise RuntimeError("tfidf: fit(pool) must run before featurize")
        kept = self.kept_pool_rows(examples)  # train and test rows are the same transform
        if kept is not None:
            return kept
        return self._vectorizer.transform(self._texts(examples)).tocsr()
