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
    query_fraction: float = field(default=0.5, metadata={
        "help": "Share of each task's test examples that select (the queries); the others are evaluated."})
    seeds: int = field(default=3, metadata={
        "help": "Fine-tuning seeds of every selection; their spread enters the CI (two-way bootstrap)."})
    max_new_tokens: int = field(default=32, metadata={"help": "Greedy generation length (paper: 64)."})
    bootstrap_resamples: int = field(default=1000, metadata={"help": "Bootstrap resamples for the 95% CI."})

    def __post_init__(self) -> None:
        if self.k is not None and self.k < 1:
            raise ConfigError(f"selection.k must be >= 1, got {self.k}")
        if not 0.0 < self.k_fraction <= 1.0:
            raise ConfigError(f"selection.k_fraction must be in (0, 1], got {self.k_fraction}")
        if self.random_seeds < 1 or self.max_new_tokens < 1 or self.bootstrap_resamples < 100:
            raise ConfigError("selection: random_seeds and max_new_tokens must be >= 1, bootstrap_resamples >= 100")
        if not 0.0 < self.query_fraction < 1.0 or self.seeds < 1:
            raise ConfigError(f"selection: query_fraction must be in (0, 1) and seeds >= 1, got "
                              f"{self.query_fraction}, {self.seeds}")


def split_queries(labels: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[list[int], list[int]]:
    """Each task's test positions, split at random into queries (`fraction`, at least 1) and evaluated (the rest).

    Returns:
        (query positions, evaluated positions), each sorted; disjoint; every task in both.

    Raises:
        DataError: a task with fewer than 2 test examples (nothing left to evaluate).
    """
    queries: list[int] = []
    for task in sorted(set(labels.tolist())):
        rows = np.flatnonzero(labels == task)
        if rows.size < 2:
            raise DataError(f"selection: task '{task}' has {rows.size} test example; queries and evaluated "
                            f"examples need 2 or more per task")
        n_query = min(rows.size - 1, max(1, round(fraction * rows.size)))
        queries += [int(i) for i in rng.permutation(rows)[:n_query]]
    evaluated = sorted(set(range(len(labels))) - set(queries))
    return sorted(queries), evaluated


def seed_of(base: int, replicate: int) -> int:
    """The fine-tuning seed of a selection's `replicate`-th run (replicate 0: the seed of one-seed records)."""
    return base + 7919 * replicate


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

    Each task's test examples are split at random into queries (`query_fraction`) and evaluated examples,
    disjoint, so no selection is judged on the examples it was chosen for (the paper selects with the test
    examples it evaluates on). For each task label, every training example is ranked by the best rank it
    reaches for any query of that task; the k best are kept; the target LM is fine-tuned on them from the
    start weights (the ground truth's starting point and recipe) under each of `seeds` fine-tuning seeds and
    greedily generates the answers of that task's evaluated examples; unigram F1 against the references,
    averaged over seeds, then over tasks. References: `random_seeds` random selections of k (each under the
    same seeds), fine-tuning on the whole pool, and the start LM with no fine-tuning at all (zero steps). The
    CI is two-way: the suite's clusters (tasks) and the examples in them, and the fine-tuning seeds, each
    resampled (the same draws for every method: paired). The selection cost is the method's time to score the
    pool (setup + featurisation + scoring), reported beside the F1 as in the paper's figure.
    """

    code_version = "3"  # 2: clustered draws of tasks and examples, pairing by the harness; 3: held-out queries,
    # seeds in the CI, the zero-step reference

    def run(self, method: Method, ctx: RunContext) -> TaskOutput:
        """Select with the queries, fine-tune under each seed, generate for the evaluated examples, score."""
        cfg = self.config
        train, test = ctx.suite.split("train"), ctx.suite.split("test")
        missing = next((e for e in test if cfg.label not in e.labels), None)
        if missing is not None:
            raise DataError(f"selection: test example '{missing.id}' has no '{cfg.label}' label")
        k = cfg.k if cfg.k is not None else max(1, round(cfg.k_fraction * len(train)))
        k = min(k, len(train))
        labels = np.array([e.labels[cfg.label] for e in test])
        queries, evaluated = split_queries(labels, cfg.query_fraction, ctx.rng(5))
        phases_before = len(ctx.acct.phases)
        train_features, test_features = ctx.featurize_suite(method)
        scores = ctx.score(method, test_features, train_features)
        # what scoring the pool cost the method, cached work (AirRep's training, LESS's LoRA) at its original cost
        selection_cost = method_cost_s([dataclasses.asdict(p) for p in ctx.acct.phases[phases_before:]])
        tasks = sorted(set(labels.tolist()))
        column = {int(i): c for c, i in enumerate(evaluated)}  # test position -> column of the F1 arrays
        ev_labels = labels[evaluated]
        query_set = set(queries)
        requests, where = [], []  # one fine-tuning per (task, selection, seed); where its answers go
        selected: dict[str, list[int]] = {}
        for t_index, task in enumerate(tasks):
            rows = np.flatnonzero(labels == task)
            query_ids = [int(i) for i in rows if int(i) in query_set]
            eval_ids = [int(i) for i in rows if int(i) not in query_set]
            chosen = select_top_k(scores[query_ids], k)
            selected[task] = chosen.tolist()
            picks = [ctx.rng(3, t_index, r).choice(len(train), size=k, replace=False) for r in range(cfg.random_seeds)]
            for s in range(cfg.seeds):
                seed = seed_of(ctx.seed * 1000 + t_index, s)
                requests.append((chosen.tolist(), seed, eval_ids))
                where.append(("method", s, 0, eval_ids))
                for r, pick in enumerate(picks):
                    requests.append((pick.tolist(), seed, eval_ids))
                    where.append(("random", s, r, eval_ids))
        for s in range(cfg.seeds):
            requests.append((list(range(len(train))), seed_of(ctx.seed, s), evaluated))
            where.append(("full", s, 0, evaluated))
        with ctx.acct.phase("eval", count=len(requests)) as ph:
            answers, produced_s, ran = ctx.finetune_answers(requests, max_new_tokens=cfg.max_new_tokens,
                                                           desc=f"selection {method.name}")
            ph.cached_count = len(requests) - ran
            lm = ctx.start_lm()  # its tokenizer normalises the references as it does the answers
            refs = lm.tokenizer.batch_decode(lm.tokenizer([e.response for e in test],
                                                          add_special_tokens=False)["input_ids"])
            n_ev = len(evaluated)
            f1 = {"method": np.zeros((cfg.seeds, 1, n_ev)), "random": np.zeros((cfg.seeds, cfg.random_seeds, n_ev)),
                  "full": np.zeros((cfg.seeds, 1, n_ev))}
            for (kind, s, row, test_ids), outputs in zip(where, answers, strict=True):
                f1[kind][s, row, [column[i] for i in test_ids]] = [
                    unigram_f1(o, refs[i]) for o, i in zip(outputs, test_ids, strict=True)]
            # the start LM itself, no fine-tuning: what any selection has to improve on (greedy: no seed)
            zero = lm.generate([test[i].prompt for i in evaluated], max_new_tokens=cfg.max_new_tokens)
            zero_f1 = np.array([unigram_f1(o, refs[i]) for o, i in zip(zero, evaluated, strict=True)])
        method_f1, random_f1, full_f1 = f1["method"][:, 0], f1["random"].mean(axis=1), f1["full"][:, 0]  # [S, n]
        clusters = ctx.clusters([test[i] for i in evaluated])
        unit = draws_label(clusters)
        draws = ctx.draws(n_ev, 4, n_resamples=cfg.bootstrap_resamples, clusters=clusters)
        seed_draws = ctx.rng(6).integers(0, cfg.seeds, size=(cfg.bootstrap_resamples, cfg.seeds))

        def macro_mean(values: np.ndarray) -> float:
            return float(np.mean([values[ev_labels == t].mean() for t in tasks]))

        def macro(per_seed: np.ndarray) -> Metric:
            """Mean over seeds of the macro F1; replicates resample examples (in clusters) and seeds."""
            # every row under the same example draws, every method under the same draws of both: paired
            reps = np.stack([replicate_macro_means(v, ev_labels, draws) for v in per_seed])  # [S, B]
            two_way = reps[0] if len(per_seed) == 1 else \
                reps[seed_draws, np.arange(cfg.bootstrap_resamples)[:, None]].mean(axis=1)
            label = f"{unit} x fine-tuning seeds" if len(per_seed) > 1 else unit
            return Metric.from_replicates(float(np.mean([macro_mean(v) for v in per_seed])), two_way,
                                          draws=label, n=n_ev)

        metrics = {"f1": macro(method_f1), "f1_random": macro(random_f1), "f1_full": macro(full_f1),
                   "f1_zero": macro(zero_f1[None, :])}
        per_task = {task: {"method": float(method_f1[:, ev_labels == task].mean()),
                           "random": float(random_f1[:, ev_labels == task].mean()),
                           "full": float(full_f1[:, ev_labels == task].mean()),
                           "zero": float(zero_f1[ev_labels == task].mean())} for task in tasks}
        return TaskOutput(
            metrics=metrics,
            per_example={"f1": method_f1.mean(axis=0).tolist(), "f1_random": random_f1.mean(axis=0).tolist(),
                         "f1_full": full_f1.mean(axis=0).tolist(), "f1_zero": zero_f1.tolist()},
            extra={"k": k, "n_train": len(train), "tasks": tasks, "per_task": per_task,
                   "queries": queries, "evaluated": evaluated,
                   "seed_f1": {"method": [macro_mean(v) for v in method_f1],
                               "random": [macro_mean(v) for v in random_f1],
                               "full": [macro_mean(v) for v in full_f1]},
                   "random_seed_means": [float(np.mean([f1["random"][:, r, ev_labels == t].mean() for t in tasks]))
                                         for r in range(cfg.random_seeds)],
                   "selection_cost_s": selection_cost, "dim": method.dim(train_features), "selected": selected,
                   "finetune_s": produced_s},
            headline="f1", pairing={"n_test": len(test), "k": k, "n_resamples": cfg.bootstrap_resamples,
                                    "queries": queries, "seeds": cfg.seeds},
            clusters=clusters,
        )
