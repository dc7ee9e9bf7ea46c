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
    content_groups,
    draws_label,
    method_cost_s,
    register_task,
    replicate_macro_means,
    split_groups,
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


def seed_of(base: int, replicate: int) -> int:
    """The fine-tuning seed of a selection's `replicate`-th run (replicate 0: the seed code version 2 used)."""
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
    disjoint by content (`content_groups`: examples sharing a prompt, or a rare answer that names their item,
    stay on one side), so no selection is judged on the examples it was chosen for (the paper selects with the test
    examples it evaluates on). For each task label, every training example is ranked by the best rank it
    reaches for any query of that task; the k best are kept; the target LM is fine-tuned on them from the
    start weights (the ground truth's starting point and recipe) under each of `seeds` fine-tuning seeds and
    greedily answers the task's test prompts (all of them: a run's cache key names its prompts, so runs of code
    version 2 are read back); the evaluated examples' unigram F1 against the references,
    averaged over seeds, then over tasks. References: `random_seeds` random selections of k (each under the
    same seeds), fine-tuning on the whole pool, and the start LM itself (zero steps; the warm-up LM where the
    suite retrains from it). The
    method featurises and scores the queries only. The CI resamples the suite's clusters (on the generated
    suites whole tasks: each task's seed mean then carries its seed noise, as a task's selections train with
    seeds of their own) or, where the clusters are not the tasks, the examples and the fine-tuning seeds
    (two-way); the full pool's runs share a seed across tasks and always resample the seeds too. The same
    draws for every method: paired. The selection cost is the method's time to score the pool (setup,
    featurising the pool and the queries, scoring), reported beside the F1 as in the paper's figure.
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
        groups = content_groups(labels, [e.prompt for e in test], [e.response for e in test])
        queries, evaluated = split_groups(labels, cfg.query_fraction, ctx.rng(5), groups, what="selection")
        phases_before = len(ctx.acct.phases)
        # the method sees the queries only: the evaluated examples are neither featurised nor scored
        ctx.setup(method)
        train_features = ctx.featurize(method, train, "train")
        query_features = ctx.featurize(method, [test[i] for i in queries], "test")
        query_scores = ctx.score(method, query_features, train_features)  # [n_queries, n_train]
        query_row = {int(i): r for r, i in enumerate(queries)}
        # what scoring the pool cost the method, cached work (AirRep's training, LESS's LoRA) at its original cost
        selection_cost = method_cost_s([dataclasses.asdict(p) for p in ctx.acct.phases[phases_before:]])
        tasks = sorted(set(labels.tolist()))
        column = {int(i): c for c, i in enumerate(evaluated)}  # test position -> column of the F1 arrays
        ev_labels = labels[evaluated]
        query_set = set(queries)
        requests, where = [], []  # one fine-tuning per (task, selection, seed); where its answers go
        selected: dict[str, list[int]] = {}
        task_seeds: dict[str, list[int]] = {}
        # every test example of a task is answered (the fine-tuning's cache key names its prompts, so a run
        # that code version 2 made is read back); only the evaluated ones are scored
        task_rows = {task: [int(i) for i in np.flatnonzero(labels == task)] for task in tasks}
        for t_index, task in enumerate(tasks):
            task_ids = task_rows[task]
            query_ids = [i for i in task_ids if i in query_set]
            chosen = select_top_k(query_scores[[query_row[i] for i in query_ids]], k)
            selected[task] = chosen.tolist()
            picks = [ctx.rng(3, t_index, r).choice(len(train), size=k, replace=False) for r in range(cfg.random_seeds)]
            task_seeds[task] = [seed_of(ctx.seed * 1000 + t_index, s) for s in range(cfg.seeds)]
            for s, seed in enumerate(task_seeds[task]):
                requests.append((chosen.tolist(), seed, task_ids))
                where.append(("method", s, 0, task_ids))
                for r, pick in enumerate(picks):
                    requests.append((pick.tolist(), seed, task_ids))
                    where.append(("random", s, r, task_ids))
        for s in range(cfg.seeds):
            requests.append((list(range(len(train))), seed_of(ctx.seed, s), list(range(len(test)))))
            where.append(("full", s, 0, list(range(len(test)))))
        with ctx.acct.phase("eval", count=len(requests)) as ph:
            answers, produced_s, ran = ctx.finetune_answers(requests, max_new_tokens=cfg.max_new_tokens,
                                                           desc=f"selection {method.name}")
            ph.cached_count = len(requests) - ran
            lm = ctx.start_lm()  # its tokenizer normalises the references as it does the answers
            refs = lm.tokenizer.batch_decode(lm.tokenizer([e.response for e in test],
                                                          add_special_tokens=False)["input_ids"])
            n_ev = len(evaluated)
            f1 = {"method": np.zeros((cfg.seeds, 1, n_ev)), "random": np.zeros((cfg.seeds, cfg.random_seeds, n_ev)),
                  "full": np.zeros((cfg.seeds, 1, n_ev)), "zero": np.zeros((1, 1, n_ev))}
            # the start LM itself, no fine-tuning: what any selection has to improve on (greedy: no seed),
            # its prompts batched per task as the fine-tuned models' are
            zero = [lm.generate([test[i].prompt for i in task_rows[t]], max_new_tokens=cfg.max_new_tokens)
                    for t in tasks]
            for (kind, s, row, test_ids), outputs in zip(where + [("zero", 0, 0, task_rows[t]) for t in tasks],
                                                         answers + zero, strict=True):
                for o, i in zip(outputs, test_ids, strict=True):
                    if i in column:  # an evaluated example (queries are answered, never scored)
                        f1[kind][s, row, column[i]] = unigram_f1(o, refs[i])
            zero_f1 = f1["zero"][0, 0]
        method_f1, random_f1, full_f1 = f1["method"][:, 0], f1["random"].mean(axis=1), f1["full"][:, 0]  # [S, n]
        clusters = ctx.clusters([test[i] for i in evaluated])
        unit = draws_label(clusters)
        draws = ctx.draws(n_ev, 4, n_resamples=cfg.bootstrap_resamples, clusters=clusters)
        seed_draws = ctx.rng(6).integers(0, cfg.seeds, size=(cfg.bootstrap_resamples, cfg.seeds))

        def macro_mean(values: np.ndarray) -> float:
            return float(np.mean([values[ev_labels == t].mean() for t in tasks]))

        # a task's selections train with seeds of their own, so where whole tasks are the resampled clusters
        # the seed noise is already in each cluster's seed mean (resampling the seeds again would count it
        # twice); the full pool's run shares one seed across tasks, which only resampling the seeds captures
        seeds_in_clusters = clusters is not None and clusters.get("kind") == cfg.label

        def macro(per_seed: np.ndarray, *, one_seed_per_task: bool) -> Metric:
            """Mean over seeds of the macro F1, with replicates under the same draws for every method: paired."""
            value = float(np.mean([macro_mean(v) for v in per_seed]))
            if len(per_seed) == 1 or (one_seed_per_task and seeds_in_clusters):
                return Metric.from_replicates(value, replicate_macro_means(per_seed.mean(axis=0), ev_labels, draws),
                                              draws=unit if len(per_seed) == 1 else f"{unit} (each task's seed mean)",
                                              n=n_ev)
            reps = np.stack([replicate_macro_means(v, ev_labels, draws) for v in per_seed])  # [S, B]
            two_way = reps[seed_draws, np.arange(cfg.bootstrap_resamples)[:, None]].mean(axis=1)
            return Metric.from_replicates(value, two_way, draws=f"{unit} x fine-tuning seeds", n=n_ev)

        metrics = {"f1": macro(method_f1, one_seed_per_task=True),
                   "f1_random": macro(random_f1, one_seed_per_task=True),
                   "f1_full": macro(full_f1, one_seed_per_task=False),
                   "f1_zero": macro(zero_f1[None, :], one_seed_per_task=False)}
        per_task = {task: {"method": float(method_f1[:, ev_labels == task].mean()),
                           "random": float(random_f1[:, ev_labels == task].mean()),
                           "full": float(full_f1[:, ev_labels == task].mean()),
                           "zero": float(zero_f1[ev_labels == task].mean())} for task in tasks}
        return TaskOutput(
            metrics=metrics,
            per_example={"f1": method_f1.mean(axis=0).tolist(), "f1_random": random_f1.mean(axis=0).tolist(),
                         "f1_full": full_f1.mean(axis=0).tolist(), "f1_zero": zero_f1.tolist()},
            extra={"k": k, "n_train": len(train), "tasks": tasks, "per_task": per_task,
                   "queries": queries, "evaluated": evaluated, "seeds": task_seeds,
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
