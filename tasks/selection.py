"""Data selection (paper Figure 4, Appendix G): fine-tune on the training examples a method ranks highest."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from bench.api import (
    ConfigError,
    DataError,
    Method,
    Metric,
    RunContext,
    Task,
    TaskConfig,
    TaskOutput,
    draws_label,
    method_cost_s,
    register_task,
    replicate_macro_means,
    unigram_f1,
)


@dataclass(frozen=True, kw_only=True)
class SelectionConfig(TaskConfig):
    """Options of the selection task."""

    k: int | None = field(default=None, metadata={"help": "Examples kept per task (default: k_fraction of the pool)."})
    k_fraction: float = field(default=0.05, metadata={
        "help": "k as a share of the pool when k is not given (the paper keeps 1,000 of 100,000 per task)."})
    label: str = field(default="task", metadata={"help": "Label kind that defines the tasks."})
    random_seeds: int = field(default=3, metadata={"help": "Random selections of k per task to compare with."})
    max_new_tokens: int = field(default=32, metadata={"help": "Greedy generation length (paper: 64)."})
    bootstrap_resamples: int = field(default=1000, metadata={"help": "Bootstrap resamples for the 95% CI."})

    def __post_init__(self) -> None:
        if self.k is not None and self.k < 1:
            raise ConfigError(f"selection.k must be >= 1, got {self.k}")
        if not 0.0 < self.k_fraction <= 1.0:
            raise ConfigError(f"selection.k_fraction must be in (0, 1], got {self.k_fraction}")
        if self.random_seeds < 1 or self.max_new_tokens < 1 or self.bootstrap_resamples < 100:
            raise ConfigError("selection: random_seeds and max_new_tokens must be >= 1, bootstrap_resamples >= 100")


def best_ranks(scores: np.ndarray) -> np.ndarray:
    """For each training example, the best (lowest, 0-based) rank it reaches over the given test examples.

    Args:
        scores: float [n_test, n_train], higher = more helpful.

    Returns:
        int [n_train].
    """
    order = np.argsort(-scores, axis=1, kind="stable")
    ranks = np.empty_like(order)
    rows = np.arange(scores.shape[0])[:, None]
    ranks[rows, order] = np.arange(scores.shape[1])[None, :]
    return ranks.min(axis=0)


def select_top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """The k training examples with the best max-rank selection (ties: the lower index first)."""
    best = best_ranks(scores)
    return np.argsort(best, kind="stable")[:k]


@register_task("selection", config=SelectionConfig)
class Selection(Task):
    """Data selection (paper Fig. 4): per task, fine-tune on the top-k training examples, unigram F1.

    For each task label of the test split, every training example is ranked by the best rank it reaches for
    any test example of that task; the k best are kept; the target LM is fine-tuned on them from the warm-up
    weights (the ground truth's starting point and recipe) and greedily generates the answers of that task's
    test examples; unigram F1 against the references, averaged over tasks. Compared with `random_seeds`
    random selections of k and with fine-tuning on the whole pool. The selection cost is the method's time
    to score the pool (setup + featurisation + scoring), reported beside the F1 as in the paper's figure.
    The CI resamples the suite's clusters (tasks) and the test examples in them.
    """

    code_version = "2"  # 2: clustered draws of tasks and examples, pairing by the harness

    def run(self, method: Method, ctx: RunContext) -> TaskOutput:
        """Select, fine-tune, generate, score; the same for the random and full-pool references."""
        cfg = self.config
        train, test = ctx.suite.split("train"), ctx.suite.split("test")
        missing = next((e for e in test if cfg.label not in e.labels), None)
        if missing is not None:
            raise DataError(f"selection: test example '{missing.id}' has no '{cfg.label}' label")
        k = cfg.k if cfg.k is not None else max(1, round(cfg.k_fraction * len(train)))
        k = min(k, len(train))
        phases_before = len(ctx.acct.phases)
        train_features, test_features = ctx.featurize_suite(method)
        scores = ctx.score(method, test_features, train_features)
        # what scoring the pool cost the method, cached work (AirRep's training, LESS's LoRA) at its original cost
        selection_cost = method_cost_s([dataclasses.asdict(p) for p in ctx.acct.phases[phases_before:]])
        labels = np.array([e.labels[cfg.label] for e in test])
        tasks = sorted(set(labels.tolist()))
        requests, where = [], []  # one fine-tuning per (task, selection); where its answers go
        selected: dict[str, list[int]] = {}
        for t_index, task in enumerate(tasks):
            test_ids = np.flatnonzero(labels == task).tolist()
            chosen = select_top_k(scores[test_ids], k)
            selected[task] = chosen.tolist()
            requests.append((chosen.tolist(), ctx.seed * 1000 + t_index, test_ids))
            where.append(("method", 0, test_ids))
            for r in range(cfg.random_seeds):
                pick = ctx.rng(3, t_index, r).choice(len(train), size=k, replace=False)
                requests.append((pick.tolist(), ctx.seed * 1000 + t_index, test_ids))
                where.append(("random", r, test_ids))
        requests.append((list(range(len(train))), ctx.seed, list(range(len(test)))))
        where.append(("full", 0, list(range(len(test)))))
        with ctx.acct.phase("eval", count=len(requests)) as ph:
            answers, produced_s, ran = ctx.finetune_answers(requests, max_new_tokens=cfg.max_new_tokens,
                                                           desc=f"selection {method.name}")
            ph.cached_count = len(requests) - ran
            lm = ctx.start_lm()  # its tokenizer normalises the references as it does the answers
            refs = lm.tokenizer.batch_decode(lm.tokenizer([e.response for e in test],
                                                          add_special_tokens=False)["input_ids"])
            f1 = {"method": np.zeros((1, len(test))), "random": np.zeros((cfg.random_seeds, len(test))),
                  "full": np.zeros((1, len(test)))}
            for (kind, row, test_ids), outputs in zip(where, answers, strict=True):
                f1[kind][row, test_ids] = [unigram_f1(o, refs[i]) for o, i in zip(outputs, test_ids, strict=True)]
        method_f1, random_f1, full_f1 = f1["method"][0], f1["random"], f1["full"][0]
        clusters = ctx.clusters(test)
        unit = draws_label(clusters)
        draws = ctx.draws(len(test), 4, n_resamples=cfg.bootstrap_resamples, clusters=clusters)

        def macro(values: np.ndarray) -> Metric:
            # the macro mean over tasks under the same draws for every method and reference: paired
            return Metric.from_replicates(float(np.mean([values[labels == t].mean() for t in tasks])),
                                          replicate_macro_means(values, labels, draws), draws=unit, n=len(values))

        random_mean = random_f1.mean(axis=0)
        metrics = {"f1": macro(method_f1), "f1_random": macro(random_mean), "f1_full": macro(full_f1)}
        per_task = {task: {"method": float(method_f1[labels == task].mean()),
                           "random": float(random_mean[labels == task].mean()),
                           "full": float(full_f1[labels == task].mean())} for task in tasks}
        return TaskOutput(
            metrics=metrics,
            per_example={"f1": method_f1.tolist(), "f1_random": random_mean.tolist(), "f1_full": full_f1.tolist()},
            extra={"k": k, "n_train": len(train), "tasks": tasks, "per_task": per_task,
                   "random_seed_means": [float(np.mean([random_f1[r, labels == t].mean() for t in tasks]))
                                         for r in range(cfg.random_seeds)],
                   "selection_cost_s": selection_cost, "dim": method.dim(train_features), "selected": selected,
                   "finetune_s": produced_s},
            headline="f1", pairing={"n_test": len(test), "k": k, "n_resamples": cfg.bootstrap_resamples},
            clusters=clusters,
        )
