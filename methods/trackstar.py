"""TrackStar (Chang et al. 2025) through EleutherAI's `bergson`, on the suite's warm-up target LM."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.api import (
    ConfigError,
    Examples,
    Features,
    Method,
    MethodContext,
    Role,
    register_method,
    save_pretrained_lm,
    tokenized_rows,
)
from methods.gradients import GradientConfig, Handles, Scratch, tracked_modules

BERGSON_INSTALL = "pip install --no-deps bergson==2.5.1"
_NEEDS = ("bergson", "jaxtyping", "ml_dtypes", "natsort", "petname", "simple_parsing", "torchopt")


@dataclass(frozen=True, kw_only=True)
class TrackStarConfig(GradientConfig):
    """Options of TrackStar; `modules` and `normalize` as for the other gradient methods."""

    projection_dim: int = field(default=16, metadata={
        "help": "bergson's per-module projection: each tracked module's gradient is projected on both sides to "
                "projection_dim x projection_dim (bergson's default 16; LoGra's rank r gives the same r x r)."})
    mix_hessians: bool = field(default=True, metadata={
        "help": "Mix the test set's autocorrelation matrix into the pool's (TrackStar's task-specific Hessian, "
                "Chang et al. A.1.3); off: the pool's alone."})
    target_downweight_components: int | None = field(default=None, metadata={
        "help": "The mixing weight makes the pool's and the test set's sorted eigenvalue curves cross at this "
                "component; unset: the paper's share, 1,000 of 65,536 projected dimensions, of this projection "
                "(bergson's fixed default 1000 is 4% of a 24,576-dim projection, and beyond the test set's rank "
                "on small test sets, where it mixes in the test set's matrix alone)."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.projection_dim < 1:
            raise ConfigError(f"trackstar.projection_dim must be >= 1, got {self.projection_dim}")
        if self.target_downweight_components is not None and self.target_downweight_components < 1:
            raise ConfigError("trackstar.target_downweight_components must be >= 1, got "
                              f"{self.target_downweight_components}")


def check_bergson() -> None:
    """Preflight: bergson and the modules it imports must be importable (and import)."""
    import importlib.util

    missing = [m for m in _NEEDS if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f"the trackstar method needs bergson, and {', '.join(missing)} is not installed: run "
                          f"`pip install -e .` (bergson's needs) and `{BERGSON_INSTALL}`")
    try:
        import bergson.cli.trackstar  # noqa: F401 - e.g. a torch without torch.distributed.fsdp.fully_shard
    except ImportError as e:
        raise ConfigError(f"the trackstar method's bergson does not import here ({e}); it needs torch >= 2.6 "
                          f"and `{BERGSON_INSTALL}`") from None


@register_method("trackstar", config=TrackStarConfig)
class TrackStar(Method):
    """TrackStar: unit-normalised, Hessian-preconditioned, projected gradient inner products, through bergson.

    Recipe (Chang et al., "Scalable Influence and Fact Tracing for Large Language Model Pretraining", ICLR
    2025, as bergson 2.5.1's `trackstar` pipeline runs it): each tracked module's per-example gradient of the
    warm-up target LM (the model LoGra, TracIn, DsDm and EK-FAC differentiate) is projected on both sides with
    Rademacher matrices (`projection_dim`^2 entries per module); per module, the autocorrelation (uncentred
    second moment) of the pool's projected gradients R_train and that of the test set's R_eval are mixed as
    `lambda R_eval + (1 - lambda) R_train`, lambda chosen so that the two sorted eigenvalue curves (all
    modules pooled) cross at `target_downweight_components` (the paper's task-specific Hessian, A.1.3;
    `info()["mixing_lambda"]`); test and pool gradients are multiplied by its damped inverse square root
    (bergson's `damped_inverse`: eigenvalues plus 0.1 x their mean, which sets the weight of the directions
    the few thousand gradients behind each 4,096-dim matrix leave unseen) and unit-normalised (`normalize`;
    off: the inverse on the test side only), and the score is their inner product. Higher is more helpful,
    the harness's convention. The loss is the harness's per-example loss (bergson's `loss_reduction="mean"`:
    mean cross-entropy over the labelled tokens; the rows carry the harness's labels, -100 off the response),
    on the modules the other gradient methods track (the MLP linear layers by default; under a top-layers
    recipe, those of the trained layers).

    Transductive, as published: the preconditioner mixes in the autocorrelation of the test examples being
    scored (their gradients only, no ground truth), so a test example's scores depend on which others are
    scored with it: `score(test[rows])` is not `score(test)[rows]`. Every other method here scores each test
    example on its own; `mix_hessians=False` gives the pool's matrix alone.

    bergson runs from files, as a researcher would run it: `setup` writes the warm-up LM with
    `save_pretrained` (float32) and its tokenizer; `fit` writes the pool's tokenised rows (`datasets` on
    disk) and runs the pipeline's first step, the pool's autocorrelation matrices (bergson's `hessian`
    command; the index phase); `score` writes the test and train rows and runs `bergson.cli.trackstar.trackstar`
    on them with the pool's step reused (`resume`), reads bergson's score store and removes the run's files.
    bergson computes the pool's gradients again in `score` (it keeps no gradient index), and places the model
    itself: on CUDA device 0 where CUDA is available, on the CPU otherwise, whatever the run's `--device`.

    Deviations, and why:
    - No optimizer-state correction: TrackStar divides gradients by Adam's second moments at the end of
      training; the harness's warm-up does not keep its optimizer state, and the retraining that makes the
      ground truth starts its own optimizer. Without it the preconditioner is the mixed autocorrelation alone.
    - Projection: `projection_dim` per side per module (bergson's layout), not the paper's 2^16 in total;
      the suites set it to match LoGra's storage (`[methods.trackstar]` in the suite files), and the mixing's
      component count follows the paper's share of the projected dimension (1,000 of 65,536).
    - Batches: bergson packs examples into token batches no longer than the model's context
      (`max_position_embeddings`), its rule.

    The method has no per-example features of its own (`pairwise`): `featurize` keeps the examples and
    returns handles; `dim` is the projected dimension and `storage_bytes` what a new query needs, the pool's
    autocorrelation matrices and their eigenvalues (the pool's gradients are recomputed, not stored).
    """

    search_space = {"projection_dim": (16, 32, 64, 128), "mix_hessians": (True, False)}
    size_option, size_values = "projection_dim", (4, 8, 16, 32, 64)

    family = "gradient"
    pairwise = True

    def __init__(self, config: TrackStarConfig | None = None) -> None:
        super().__init__(config)
        self._lm = None
        self._scratch: Scratch | None = None
        self._root: Path | None = None
        self._model_dir: Path | None = None
        self._exclude = ""
        self._token_batch = 0
        self._pool_hessian: Path | None = None
        self._pool_eigenvalues: dict = {}
        self._handles = Handles()
        self._info: dict[str, Any] = {}
        self._calls = 0

    @classmethod
    def smoke_config(cls) -> TrackStarConfig:
        """A small projection."""
        return TrackStarConfig(projection_dim=4, target_downweight_components=4)

    def check(self) -> None:
        """Preflight: bergson must be installed."""
        check_bergson()

    def setup(self, ctx: MethodContext) -> None:
        """Write the warm-up LM for bergson and name the linear modules it must leave out."""
        import torch

        lm = ctx.warmup_lm()
        names = tracked_modules(lm, self.config.modules, self.name)
        self._scratch = Scratch(self, ctx, "trackstar")
        self._root = self._scratch.path.resolve()  # bergson resolves paths from its own run folders
        self._model_dir = self._root / "model"
        with _quiet():
            save_pretrained_lm(lm, self._model_dir)
        # bergson tracks every linear module of the base model (names without its `model.` prefix) that its
        # `filter_modules` (comma-separated patterns) does not exclude: exclude all but the tracked ones
        base = lm.model.base_model
        prefix = lm.model.base_model_prefix + "."
        tracked = {n[len(prefix):] if n.startswith(prefix) else n for n in names}
        self._exclude = ",".join(n for n, m in base.named_modules()
                                 if isinstance(m, torch.nn.Linear) and n not in tracked)
        context = int(lm.model.config.max_position_embeddings)
        self._token_batch = min(context, self.config.batch_size * int(lm.spec.max_length))
        self._lm = lm
        modules = dict(lm.model.named_modules())
        p = self.config.projection_dim
        self._info = {"modules": names, "projection_dim": p, "dim": p * p * len(names),
                      "grad_dim": int(sum(modules[n].weight.numel() for n in names)),
                      "token_batch_size": self._token_batch}

    def _write(self, examples: Examples, name: str) -> Path:
        from datasets import Dataset

        path = self._root / name
        with _quiet():
            Dataset.from_dict(tokenized_rows(self._lm, examples)).save_to_disk(str(path))
        return path

    def _index_cfg(self, run_path: Path, data: Path):
        from bergson.config.config import DataConfig, DistributedConfig, TrackstarIndexConfig

        return TrackstarIndexConfig(run_path=str(run_path), model=str(self._model_dir), precision="fp32",
                                    data=DataConfig(dataset=str(data)), projection_dim=self.config.projection_dim,
                                    projection_seed=self.config.seed, loss_reduction="mean",
                                    token_batch_size=self._token_batch, filter_modules=self._exclude or None,
                                    distributed=DistributedConfig(nproc_per_node=1))  # no process per GPU

    def fit(self, examples: Examples) -> None:
        """The pool's autocorrelation matrices: the first step of bergson's TrackStar pipeline."""
        from bergson.cli.commands import Hessian
        from bergson.config.config import HessianConfig

        if self._lm is None:
            raise RuntimeError("trackstar: setup(ctx) must run before fit")
        self._calls += 1
        pool = self._write(examples, f"pool{self._calls}")
        self._pool_hessian = self._root / f"pool{self._calls}_hessian"
        with _quiet():  # bergson's `hessian` command, as its pipeline's first step runs it
            Hessian(hessian_cfg=HessianConfig(method="autocorrelation"),
                    index_cfg=self._index_cfg(self._pool_hessian, pool)).execute()
        # the pool's eigenvalues, for the mixing weight of every later score (its eigenvectors are not needed)
        self._pool_eigenvalues = _eigenvalues(self._pool_hessian)
        # what mixing a new query's matrix in reads: the pool's matrices and their eigenvalues
        self._info["hessian_bytes"] = int((self._pool_hessian / "hessians.pth").stat().st_size
                                          + self._info["dim"] * 4)

    def featurize(self, examples: Examples, role: Role) -> Features:
        """Handles [n, 1]: each example's number among those this instance keeps for `score`."""
        if self._pool_hessian is None:
            raise RuntimeError("trackstar: fit(pool) must run before featurize")
        return self._handles.of(examples)

    def score(self, test_features: Features, train_features: Features) -> np.ndarray:
        """TrackStar scores (bergson) of the train handles' examples for the test handles', [n_test, n_train]."""
        from bergson.cli.trackstar import trackstar
        from bergson.config.config import PreprocessConfig, QuerySetConfig, TrackstarConfig
        from bergson.data import load_scores

        self._calls += 1
        test, train = self._handles.examples(test_features), self._handles.examples(train_features)
        run = self._root / f"run{self._calls}"
        run.mkdir()
        try:
            os.symlink(self._pool_hessian, run / "value_hessian")  # step 1 done in fit: `resume` skips it
            cfg = TrackstarConfig(query=QuerySetConfig(dataset=str(self._write(test, f"test{self._calls}"))),
                                  preprocess_cfg=PreprocessConfig(unit_normalize=self.config.normalize),
                                  target_downweight_components=self._components(),
                                  mix_hessians=self.config.mix_hessians, stats_sample_size=None, resume=True)
            with _quiet():
                trackstar(self._index_cfg(run, self._write(train, f"train{self._calls}")), cfg)
            store = load_scores(run / "scores")
            scores = np.asarray(store[:], dtype=np.float64)
            if scores.shape != (len(train), len(test)) or not store.is_written():
                raise RuntimeError(f"trackstar: bergson's score store at {run / 'scores'} is incomplete")
            if self.config.mix_hessians:
                self._info["mixing_lambda"] = _mixing_lambda(run / "query_hessian", self._pool_eigenvalues,
                                                             self._components())
        finally:  # a run's matrices are ~1 GB on small: nothing of it is needed again
            shutil.rmtree(run, ignore_errors=True)
            for name in (f"test{self._calls}", f"train{self._calls}"):
                shutil.rmtree(self._root / name, ignore_errors=True)
        return scores.T

    def _components(self) -> int:
        """The mixing's component count: the option, else the paper's 1,000 of 65,536 projected dimensions."""
        if self.config.target_downweight_components is not None:
            return self.config.target_downweight_components
        return max(1, round(1000 * self._info["dim"] / 65536))

    def dim(self, train_features: Features) -> int:
        """Projected dimension: projection_dim^2 per tracked module."""
        return int(self._info.get("dim", 0))

    def storage_bytes(self, train_features: Features) -> int:
        """The pool's autocorrelation matrices and their eigenvalues, which mixing a new query's in reads."""
        return int(self._info.get("hessian_bytes", 0))

    def info(self) -> dict[str, Any]:
        """Tracked modules, projection, token batch size, the last score's mixing weight lambda."""
        return dict(self._info)


def _eigenvalues(hessian: Path) -> dict:
    """Module -> (eigenvalues, None) of a bergson autocorrelation step's folder, as `compute_lambda` reads them."""
    from bergson.gradients import GradientProcessor

    return {name: (values, None) for name, (values, _) in GradientProcessor.load(hessian).hessians_eigen.items()}


def _mixing_lambda(query: Path, pool: dict, components: int) -> float:
    """The weight of the test set's matrix in the mix, as bergson's `mix` computed it (`compute_lambda`)."""
    from bergson.utils.math import compute_lambda

    return float(compute_lambda(_eigenvalues(query), pool, components))


@contextlib.contextmanager
def _quiet():
    """Keep bergson's step banners (print), INFO logs and progress bars off the harness's output.

    Its own bars, `datasets`' and `transformers`'; other lines on stderr (warnings) pass, after the call.
    """
    import datasets
    from transformers.utils import logging as hf_logging

    bars = datasets.is_progress_bar_enabled(), hf_logging.is_progress_bar_enabled()
    disabled = logging.root.manager.disable
    datasets.disable_progress_bars()
    hf_logging.disable_progress_bar()
    logging.disable(logging.INFO)  # bergson's loggers reset their own level to INFO on creation
    err = io.StringIO()
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            yield
    finally:
        logging.disable(disabled)
        kept = [line for line in err.getvalue().splitlines() if line.strip() and "\r" not in line and "%|" not in line]
        if kept:
            sys.stderr.write("\n".join(kept) + "\n")
        if bars[0]:
            datasets.enable_progress_bars()
        if bars[1]:
            hf_logging.enable_progress_bar()
