"""DataInf influence (Kwon et al. 2024) through `dattri`'s `IFAttributorDataInf`, on the suite's warm-up target LM."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.api import (
    ConfigError,
    Examples,
    Features,
    Method,
    MethodContext,
    Role,
    per_example_loss,
    progress,
    register_method,
)
from methods.gradients import GradientConfig, Handles, tracked_modules

DATTRI_INSTALL = "pip install --no-deps dattri==0.3.0"


@dataclass(frozen=True, kw_only=True)
class DataInfConfig(GradientConfig):
    """Options of DataInf; `modules`, `batch_size` and `seed` as for the other gradient methods."""

    damping_scale: float = field(default=0.1, metadata={
        "help": "DataInf's damping rule: module l's lambda_l = this x the mean squared entry of its pool "
                "gradients (the paper's 0.1)."})
    damping: float | None = field(default=None, metadata={
        "help": "One fixed damping lambda for every module instead of the rule (unset: the rule)."})
    max_gib: float = field(default=8.0, metadata={
        "help": "Refuse a pool whose gradients (n x tracked parameters x 4 bytes, held twice while dattri caches "
                "them) need more GiB than this."})
    query_batch_size: int = field(default=32, metadata={
        "help": "Test examples transformed at once (dattri's transform holds this squared x the largest module's "
                "parameters x 4 bytes)."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.damping_scale > 0:
            raise ConfigError(f"datainf.damping_scale must be > 0, got {self.damping_scale}")
        if self.damping is not None and not self.damping > 0:
            raise ConfigError(f"datainf.damping must be > 0 or unset, got {self.damping}")
        if self.query_batch_size < 1:
            raise ConfigError(f"datainf.query_batch_size must be >= 1, got {self.query_batch_size}")
        if not self.max_gib > 0:
            raise ConfigError(f"datainf.max_gib must be > 0, got {self.max_gib}")


def check_dattri() -> None:
    """Preflight: dattri must be importable."""
    import importlib.util

    if importlib.util.find_spec("dattri") is None:
        raise ConfigError(f"the datainf method needs dattri, which is not installed: run `{DATTRI_INSTALL}`")


@register_method("datainf", config=DataInfConfig)
class DataInf(Method):
    """DataInf: `g_test^T H_lambda^-1 g_train` with DataInf's closed-form inverse, through dattri.

    Recipe (Kwon et al., "DataInf: Efficiently Estimating Data Influence in LoRA-tuned LLMs and Diffusion
    Models", ICLR 2024, as dattri 0.3.0 implements it): per tracked module l, the damped empirical Fisher
    `(1/n) sum_i g_il g_il^T + lambda I` over the pool's n per-example gradients is inverted by swapping the
    inverse and the average (Sherman-Morrison per example): `q_l = (1/(n lambda)) sum_i (v_l - (g_il . v_l) /
    (lambda + |g_il|^2) g_il)` for a test gradient v; the score is `sum_l g_train,l . q_l`. dattri's
    `AttributionTask` takes per-example gradients with `torch.func` (`vmap` of `grad`) of the harness's
    per-example loss (mean cross-entropy over the response and EOS tokens) through the warm-up target LM (the
    model LoGra, TracIn, DsDm and EK-FAC differentiate), run with eager attention (SDPA's mask code breaks
    `vmap`). Only the tracked weights require grad: dattri differentiates those and splits its per-module
    inverse by them (given a `layer_name` subset instead, dattri 0.3.0 splits the subset at the boundaries of
    every trainable parameter, a wrong split). `IFAttributorDataInf.cache` collects the pool's gradients;
    `generate_test_rep` and `transform_test_rep` give each test example's q; the scores are the pool's cached
    gradients times q. Higher is more helpful (an upweighted pool example lowers the test loss), the
    harness's convention.

    Deviations, and why:
    - The modules are the other gradient methods' (the MLP linear layers by default; under a top-layers recipe
      those of the trained layers), not LoRA adapters: the ground truth fine-tunes the full weights, so the
      Hessian of interest is theirs. Nothing is projected (DataInf's LoRA layers are small; here a module has
      up to 32K parameters on the built LMs), so storage is the pool's gradients, which DataInf's inverse is
      made of.
    - DataInf's approximation (swapping the inverse and the average) errs more the larger a module is (the
      paper's bound grows with d_l); its LoRA modules are small, these up to 32K parameters. The damping is the
      paper's per-module rule (`lambda_l = 0.1 x mean_i |g_il|^2 / d_l`), reached through dattri's single
      `regularization` by rescaling each module's gradients (`fit`); a fixed `damping` is one lambda for all.
    - Size: the pool's gradients are held in memory (`max_gib` refuses what does not fit: e.g. SmolLM2's two
      trained layers, 5.3M parameters, need 17 GB for 800 examples, twice that while dattri caches them).
    - The cost is dattri's: an extra pass over the pool measures the damping; its transform visits the
      pool's gradients one by one for every batch of test examples (time and memory traffic grow as
      n_train x n_test x parameters; two matrix products would do it in one pass), and its gradients run the
      whole LM for every example (no shared frozen layers under a top-layers recipe).

    The method has no per-example features (`pairwise`): `featurize` keeps the examples and returns handles,
    `fit` caches the pool's gradients (the index phase), and `score` transforms the test gradients and takes the
    products (the score phase). A train set other than the fitted pool has its gradients computed in `score`.
    """

    search_space = {"damping_scale": (0.01, 0.1, 1.0, 10.0)}

    family = "gradient"
    pairwise = True

    def __init__(self, config: DataInfConfig | None = None) -> None:
        super().__init__(config)
        self._lm = None
        self._model = None
        self._state: dict = {}
        self._weights: list[str] = []
        self._sizes: list[int] = []
        self._device = "cpu"
        self._attributor = None
        self._pool = np.empty((0, 1), dtype=np.int64)  # the fitted pool's handles
        self._handles = Handles()
        self._info: dict[str, Any] = {}

    @classmethod
    def smoke_config(cls) -> DataInfConfig:
        """Small batches."""
        return DataInfConfig(batch_size=8, query_batch_size=8)

    def check(self) -> None:
        """Preflight: dattri must be installed."""
        check_dattri()

    def setup(self, ctx: MethodContext) -> None:
        """Load the warm-up LM: a float32 copy with eager attention, only the tracked weights requiring grad."""
        lm = ctx.warmup_lm()
        names = tracked_modules(lm, self.config.modules, self.name)
        model = copy.deepcopy(lm.model).float().eval()
        model.set_attn_implementation("eager")
        # dattri differentiates the parameters that require grad; its DataInf splits its per-module inverse by
        # them too (with `layer_name` naming a subset, dattri 0.3.0 still splits by every trainable parameter)
        model.requires_grad_(False)
        for n in names:
            model.get_submodule(n).weight.requires_grad_(True)
        self._model, self._weights, self._device = model, [f"{n}.weight" for n in names], str(ctx.device)
        self._state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self._lm = lm
        modules = dict(lm.model.named_modules())
        self._sizes = [int(modules[n].weight.numel()) for n in names]
        self._info = {"modules": names, "grad_dim": int(sum(self._sizes)),
                      "model_params": int(sum(p.numel() for p in lm.model.parameters()))}

    def _task(self, scales: list[float]):
        """The harness loss as dattri's `AttributionTask`, module l's weight reparametrised as `scales[l] x p`.

        p's gradient is `scales[l]` times the weight's (the per-module damping, see `fit`). dattri loads the
        task's checkpoint into the shared model copy; it is made from the weights kept at setup.
        """
        import torch
        from dattri.task import AttributionTask

        model, factor = self._model, dict(zip(self._weights, scales, strict=True))

        def loss(params, data):  # one example (dattri vmaps over them): its tokens, mask and labels, [1, L] each
            ids, mask, labels = data
            weights = {k: v * factor[k] for k, v in params.items()}
            logits = torch.func.functional_call(model, weights, (ids,), {"attention_mask": mask}).logits
            return per_example_loss(logits, labels)[0]

        state = {k: v / factor[k] if k in factor else v for k, v in self._state.items()}
        return AttributionTask(loss_func=loss, model=model, checkpoints=state)

    def _loader(self, examples: Examples, batch_size: int, desc: str) -> _Counted:
        """The examples' tokens, masks and labels in batches, with a progress bar advanced by each batch."""
        import torch
        from torch.utils.data import DataLoader, TensorDataset

        enc = self._lm.encode(examples)
        data = TensorDataset(*(torch.as_tensor(np.asarray(a)) for a in (enc.input_ids, enc.attention_mask,
                                                                         enc.labels)))
        return _Counted(DataLoader(data, batch_size=batch_size, shuffle=False), desc)

    def _gradients(self, examples: Examples, desc: str):
        """Per-example gradients of the tracked weights through dattri's task, [n, d] float32."""
        import torch

        rows = []
        with self._loader(examples, self.config.batch_size, desc) as loader, torch.no_grad():
            for batch in loader:
                rows.append(self._attributor.generate_train_rep(0, self._on_device(batch)))
        return torch.cat(rows)

    def _on_device(self, batch) -> tuple:
        """A batch as dattri's attributors take it: [1, b, ...] on the model's device."""
        return tuple(x.to(self._device).unsqueeze(0) for x in batch)

    def fit(self, examples: Examples) -> None:
        """Set each module's damping, then cache the pool's per-example gradients (dattri's `cache`).

        DataInf damps module l with its own `lambda_l` (`damping_scale` x the mean squared entry of its pool
        gradients); dattri's attributor takes one `regularization`. The two agree exactly when module l's
        gradients are scaled by `s_l = sqrt(lambda / lambda_l)`: its term of the score with (s_l g, lambda) is
        its term with (g, lambda_l). So a first pass over the pool (the task unscaled) measures lambda_l, and
        the attributor runs on a task whose module l is reparametrised as `s_l x p` (p = weight / s_l; the
        same model, p's gradient `s_l` times the weight's), with lambda the mean of the lambda_l.
        """
        import torch
        from dattri.algorithm.influence_function import IFAttributorDataInf

        if self._model is None:
            raise RuntimeError("datainf: setup(ctx) must run before fit")
        # the probe below loads its weights into the shared model copy: no earlier attributor outlives a fit
        # that fails after it (it would score with the probe's weights, not its own)
        self._attributor = None
        need = 2 * len(examples) * self._info["grad_dim"] * 4 / 2**30
        if need > self.config.max_gib:
            raise ConfigError(f"datainf: the pool's gradients need {need:.1f} GiB ({len(examples)} examples x "
                              f"{self._info['grad_dim']:,} tracked parameters x 4 bytes, held twice while "
                              f"dattri caches them), over datainf.max_gib = {self.config.max_gib:g}: track "
                              "fewer modules (--set modules=...) or raise the limit")
        if self.config.damping is not None:
            lambdas = [float(self.config.damping)] * len(self._sizes)
        else:
            sums = np.zeros(len(self._sizes))
            probe = IFAttributorDataInf(self._task([1.0] * len(self._sizes)), device=self._device)
            with self._loader(examples, self.config.batch_size, f"{self.name} damping (pool)") as loader, \
                    torch.no_grad():  # torch.func.grad differentiates inside; nothing outside keeps a graph
                for batch in loader:
                    rows = probe.generate_train_rep(0, self._on_device(batch)).double()
                    sums += [float(block.pow(2).sum()) for block in rows.split(self._sizes, dim=1)]
            lambdas = [self.config.damping_scale * total / (len(examples) * size)
                       for total, size in zip(sums, self._sizes, strict=True)]
            if not all(lam > 0 for lam in lambdas):
                raise RuntimeError("datainf: a tracked module's pool gradients are all zero, so DataInf's damping "
                                   "rule gives it 0")
        lam = float(np.mean(lambdas))
        self._attributor = IFAttributorDataInf(self._task([float(np.sqrt(lam / lam_l)) for lam_l in lambdas]),
                                               device=self._device, regularization=lam)
        with self._loader(examples, self.config.batch_size, f"{self.name} gradients (pool)") as loader, \
                torch.no_grad():
            self._attributor.cache(loader)
        pool = self._pool_gradients()
        self._pool = self._handles.of(examples)
        self._info.update(damping=dict(zip(self._info["modules"], lambdas, strict=True)),
                          pool_bytes=int(pool.numel() * pool.element_size()))

    def _pool_gradients(self):
        # dattri keeps the cached gradients of checkpoint 0 here (pinned dattri==0.3.0; the closed-form test in
        # tests/test_gradient_methods.py checks scores made with them against brute-force gradients)
        return self._attributor._cached_train_reps[0]

    def featurize(self, examples: Examples, role: Role) -> Features:
        """Handles [n, 1]: each example's number among those this instance keeps for `score`."""
        if self._attributor is None:
            raise RuntimeError("datainf: fit(pool) must run before featurize")
        return self._handles.of(examples)

    def score(self, test_features: Features, train_features: Features) -> np.ndarray:
        """DataInf influence of the train handles' examples on the test handles', [n_test, n_train]."""
        import torch

        test = self._handles.examples(test_features)
        if np.array_equal(np.asarray(train_features), self._pool):
            g_train = self._pool_gradients()
        else:
            g_train = self._gradients(self._handles.examples(train_features), f"{self.name} gradients (train)")
        out = np.empty((len(test), len(g_train)))
        with self._loader(test, self.config.query_batch_size, f"{self.name} transform (test)") as loader:
            start = 0
            for batch in loader:
                with torch.no_grad():
                    v = self._attributor.generate_test_rep(0, self._on_device(batch))
                    q = self._attributor.transform_test_rep(0, v)
                    out[start:start + len(q)] = (q @ g_train.T).double().cpu().numpy()
                start += len(q)
        return out

    def dim(self, train_features: Features) -> int:
        """The tracked parameters (nothing is projected)."""
        return int(self._info.get("grad_dim", 0))

    def storage_bytes(self, train_features: Features) -> int:
        """The pool's cached gradients (float32), which DataInf's inverse for a new query is made of."""
        return int(self._info.get("pool_bytes", 0))

    def info(self) -> dict[str, Any]:
        """Tracked modules, gradient dimension, damping, bytes of the pool's gradients."""
        return dict(self._info)


class _Counted:
    """A data loader that advances a progress bar by each batch it yields (dattri's `cache` takes a loader).

    A context manager: the bar closes on exit.
    """

    def __init__(self, loader, desc: str) -> None:
        self.loader = loader
        self.bar = progress(total=len(loader.dataset), desc=desc, unit="ex")

    def __enter__(self):
        self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.__exit__(*exc)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            yield batch
            self.bar.update(len(batch[0]))
