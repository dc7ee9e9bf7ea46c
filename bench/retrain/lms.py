"""The target LMs that retraining starts from: the suite's warm-up LM, the pretrained base, the whole-pool LM.

Each is a cache entry (`bench.cache.build`) keyed on the suite's data and LM recipe and the code versions that
produced it.
"""

from __future__ import annotations

from pathlib import Path

from bench import versions
from bench.cache import Cache, build, peek_built, peek_meta
from bench.errors import ConfigError
from bench.suites import Suite


def lm_args(suite: Suite) -> dict:
    """What determines the suite's target LM: its data and recipe (the code versions are added per artefact).

    The drawn data (`Suite.drawn_fingerprint`): a dev split carved from the test split changes no model; job
    tables that evaluate test or dev positions add `heldout_args`.
    """
    return {"suite": suite.name, "data": suite.drawn_fingerprint, "lm": suite.spec.lm}


def heldout_args(suite: Suite, eval_split: str) -> dict:
    """What a job table that evaluates positions of the test or dev split adds to its key.

    Which drawn test examples those are (`Suite.data_fingerprint`); nothing without a dev split (the keys stay
    as they were).
    """
    if suite.spec.dev is None or eval_split not in ("test", "dev"):
        return {}
    return {"heldout": suite.data_fingerprint}


# the fine-tuning settings: they shape retraining jobs, never the base or the warm-up LM
_FINETUNE_ONLY = ("retrain_from", "finetune_lr", "finetune_epochs", "eval_batch_size")


def model_args(suite: Suite) -> dict:
    """What determines the base and warm-up LMs: `lm_args` less the fine-tuning settings.

    So regimes that differ only in fine-tuning (where it starts, its lr, its subsets) share one cached base
    and warm-up LM, the same weights whatever machine or thread count built them.
    """
    from bench.config import to_jsonable

    lm = {k: v for k, v in to_jsonable(suite.spec.lm).items() if k not in _FINETUNE_ONLY}
    return {"suite": suite.name, "data": suite.drawn_fingerprint, "lm": lm}


# an ensemble member's seeds: the suite's initialisation seed plus this stride times the member, far from the
# small shifts of `--replicate N` (which moves the initialisation seed by N)
MEMBER_SEED_STRIDE = 1000


def _warmup_args(suite: Suite, member: int) -> dict:
    if member < 0:
        raise ValueError(f"an ensemble member is >= 0, got {member}")
    return model_args(suite) if member == 0 else {**model_args(suite), "ensemble_member": member}


def warmup_built(suite: Suite, cache: Cache, member: int = 0) -> bool:
    """Whether the suite's warm-up model (or ensemble member `member`) is in the cache (touches nothing)."""
    return peek_built(cache, "warmup", _warmup_args(suite, member), versions.of("lm"))


def warmup_cost(suite: Suite, cache: Cache, member: int = 0) -> float | None:
    """Seconds that building the cached warm-up model took (None when it is not built).

    A member's (> 0) is its own warm-up alone: less the shared base LM it continued from.
    """
    meta = peek_meta(cache, "warmup", _warmup_args(suite, member), versions.of("lm"))
    if meta is None:
        return None
    return meta.get("wall_s") - ((meta.get("base_wall_s") or 0.0) if member else 0.0)


def ensemble_refusal(suite: Suite) -> str | None:
    """Why the warm-up LMs of an ensemble (members > 0) would all be one model on `suite`, or None.

    A pretrained or built base LM is the same for every member; without warm-up steps nothing tells them apart.
    """
    spec = suite.spec.lm
    if (spec.model is not None or spec.base_steps) and not (spec.warmup_steps and suite.split("warmup")):
        return (f"suite {suite.name}: warm-up LMs of an ensemble would all be the same model (a pretrained or "
                "base LM and no warm-up steps); give the suite a warm-up")
    return None


def warmup_lm(suite: Suite, cache: Cache, device: str = "cpu", member: int = 0):  # -> (TargetLM, meta dict)
    """Return the suite's warm-up target LM and its metadata, training and caching it on first use.

    The tokenizer is trained on the text of every split; the model is trained for `lm.warmup_steps` steps
    on the `warmup` split (no steps when that split is empty), from the built base LM when the suite has
    one (`lm.base_steps`), else from the random initialisation. Its `wall_s` includes the base's.

    `member` > 0: an independently warmed-up LM of the same recipe for ensembles (TRAK's), its seeds moved by
    `MEMBER_SEED_STRIDE * member`: its own order of warm-up batches, and its own initialisation where the
    model starts from random weights (a pretrained or built base LM is the same for every member, as the
    paper's checkpoints all start from the released model). Cached under its own key; member 0 is the
    suite's warm-up LM itself.
    """
    import dataclasses

    from bench.lm import TargetLM, load_pretrained_lm

    spec = suite.spec.lm
    if member:
        if (why := ensemble_refusal(suite)) is not None:
            raise ConfigError(why)
        spec = dataclasses.replace(spec, init_seed=spec.init_seed + MEMBER_SEED_STRIDE * member)

    def produce(directory: Path) -> dict:
        import time

        t0 = time.perf_counter()
        base_s = 0.0
        if spec.model is not None:  # a pretrained LM with its own tokenizer
            lm = load_pretrained_lm(spec.model, device, spec=spec, seed=spec.init_seed)
        elif spec.base_steps:  # continued from the built base LM (its cost counts: the warm-up needs it)
            lm, base_meta = base_lm(suite, cache, device)
            base_s, t0 = base_meta["wall_s"], time.perf_counter()
        else:
            lm = TargetLM.create(suite.tokenizer_texts(by_harness=True), spec, device)
        warm = suite.split("warmup")
        losses: list[float] = []
        if warm and spec.warmup_steps:
            losses = lm.train(lm.encode(warm), lr=spec.warmup_lr, seed=spec.init_seed, steps=spec.warmup_steps,
                              desc=f"warm-up {suite.name}")
        _save_lm_dir(lm, directory)
        return {"wall_s": base_s + time.perf_counter() - t0, "base_wall_s": base_s, "steps": len(losses),
                "n_warmup": len(warm), "final_loss": losses[-1] if losses else None, "vocab_size": len(lm.tokenizer)}

    directory, meta, _ = build(cache, "warmup", _warmup_args(suite, member), versions.of("lm"), produce)
    return _load_lm_dir(spec, directory, device), meta  # as a later cache hit sees it, also the first time


def base_lm(suite: Suite, cache: Cache, device: str = "cpu"):  # -> (TargetLM, meta dict)
    """A built suite's base LM, trained and cached on first use: the paper's pretrained model, in small.

    The tokenizer is trained on the text of every split (as the warm-up LM's); the model is trained for
    `lm.base_steps` steps on the `pretrain` split (open-item tasks only, disjoint from every other split)
    at `lm.warmup_lr`. The warm-up LM continues from it, and `lm.retrain_from = "base"` retrains from it.
    """
    from bench.lm import TargetLM

    spec = suite.spec.lm
    if spec.model is not None or not spec.base_steps:
        raise ValueError(f"suite {suite.name}: a built base LM needs lm.base_steps > 0 and no lm.model")

    def produce(directory: Path) -> dict:
        import time

        t0 = time.perf_counter()
        corpus = suite.require("pretrain")
        lm = TargetLM.create(suite.tokenizer_texts(by_harness=True), spec, device)
        losses = lm.train(lm.encode(corpus), lr=spec.warmup_lr, seed=spec.init_seed, steps=spec.base_steps,
                          desc=f"base LM {suite.name}")
        _save_lm_dir(lm, directory)
        return {"wall_s": time.perf_counter() - t0, "steps": len(losses), "n_pretrain": len(corpus),
                "final_loss": losses[-1] if losses else None, "vocab_size": len(lm.tokenizer)}

    directory, meta, _ = build(cache, "base", model_args(suite), versions.of("lm"), produce)
    return _load_lm_dir(spec, directory, device), meta


def _save_lm_dir(lm, directory: Path) -> None:
    """Save a trained LM into a cache entry (`save_lm`, or `save_pretrained_lm` for a pretrained one)."""
    from bench.lm import save_lm, save_pretrained_lm

    (save_pretrained_lm if lm.spec.model is not None else save_lm)(lm, directory)


def _load_lm_dir(spec, directory: Path, device: str):  # -> TargetLM
    """Load what `_save_lm_dir` wrote into a cache entry."""
    from bench.lm import load_lm, load_pretrained_lm

    if spec.model is not None:
        return load_pretrained_lm(str(directory / "model"), device, spec=spec)
    return load_lm(directory, spec, device)


def pool_lm(suite: Suite, cache: Cache, device: str = "cpu"):  # -> (TargetLM, meta dict)
    """The retraining start model fine-tuned on the whole pool as a retraining job is on a subset; cached.

    What generates Alpaca's seen test responses (`bench respond`): the paper's "model trained on the full
    training set".
    """
    spec, seed = suite.spec.lm, suite.spec.ground_truth.seed

    def produce(directory: Path) -> dict:
        import time

        pool = suite.require("train")
        lm = start_lm(suite, cache, device)
        t0 = time.perf_counter()
        losses = lm.train(lm.encode(pool), lr=spec.finetune_lr, seed=seed, epochs=spec.finetune_epochs,
                          desc=f"fine-tune on the {suite.name} pool")
        _save_lm_dir(lm, directory)
        return {"wall_s": time.perf_counter() - t0, "steps": len(losses), "n_pool": len(pool),
                "final_loss": losses[-1] if losses else None}

    directory, meta, _ = build(cache, "pool_lm", {**lm_args(suite), "seed": seed}, versions.of("lm", "retrain"),
                               produce)
    return _load_lm_dir(spec, directory, device), meta


def trained_key(suite: Suite, examples, *, seed: int, epochs: int | None = None, lr: float | None = None,
                member: int = 0) -> dict:
    """What determines `trained_lm`'s model: the suite's LM, the examples' text and ids, the recipe, the member."""
    from bench.config import fingerprint

    spec = suite.spec.lm
    return {**lm_args(suite), "examples": fingerprint([[e.id, e.prompt, e.response] for e in examples]),
            "seed": seed + MEMBER_SEED_STRIDE * member,
            "epochs": spec.finetune_epochs if epochs is None else epochs,
            "lr": spec.finetune_lr if lr is None else lr, "member": member}


def trained_lm(suite: Suite, cache: Cache, examples, *, seed: int, what: str, device: str = "cpu",
               epochs: int | None = None, lr: float | None = None, member: int = 0):  # -> (TargetLM, meta, cached)
    """The retraining start model fine-tuned on `examples` (the suite's recipe unless `epochs` / `lr`); cached.

    A model trained on another pool than the suite's, e.g. the mislabel task's corrupted pool, so that
    self-influence is computed on a model that saw the corrupted examples (as dattri and quanda run it). Keyed
    by `trained_key`; `what` names it in the progress bar. `member` > 0 (an ensemble's member): where the
    suite retrains from its warm-up LM, it starts from that member's own warm-up LM (`warmup_lm`); where it
    retrains from a base LM, from that base, as member 0. Either way its batch order's seed moves by
    `MEMBER_SEED_STRIDE * member`.

    Returns:
        (the LM; metadata: `wall_s` of the fine-tuning, `steps`, `n_examples`, `final_loss`; whether the cache
        held it).
    """
    args = trained_key(suite, examples, seed=seed, epochs=epochs, lr=lr, member=member)

    def produce(directory: Path) -> dict:
        import time

        if member and suite.spec.lm.retrain_from == "warmup":
            lm = warmup_lm(suite, cache, device, member)[0]
        else:
            lm = start_lm(suite, cache, device)
        t0 = time.perf_counter()
        losses = lm.train(lm.encode(list(examples)), lr=args["lr"], seed=args["seed"], epochs=args["epochs"],
                          desc=what)
        _save_lm_dir(lm, directory)
        return {"wall_s": time.perf_counter() - t0, "steps": len(losses), "n_examples": len(examples),
                "final_loss": losses[-1] if losses else None}

    directory, meta, cached = build(cache, "trained_lm", args, versions.of("lm", "retrain"), produce)
    return _load_lm_dir(suite.spec.lm, directory, device), meta, cached


def start_lm(suite: Suite, cache: Cache, device: str = "cpu"):  # -> TargetLM
    """The model every retraining job starts from: the warm-up LM, or the base (`lm.retrain_from`).

    The base is a pretrained `lm.model`, or a built suite's base LM (`base_lm`).
    """
    lm_spec = suite.spec.lm
    if lm_spec.retrain_from == "base":
        if lm_spec.model is None:
            return base_lm(suite, cache, device)[0]
        from bench.lm import load_pretrained_lm

        return load_pretrained_lm(str(lm_spec.model), device, spec=lm_spec, seed=lm_spec.init_seed)
    return warmup_lm(suite, cache, device)[0]
