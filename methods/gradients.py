"""Shared machinery of the gradient-based methods (LoGra, TracIn, DsDm, LESS): one place, four users.

- `per_example_gradients` runs a model over encoded examples in batches under a `logix` session and yields
  each batch's per-example gradients of the tracked linear modules, flattened in a fixed module order.
  logix computes them from forward/backward hooks (outer products of a module's input and output
  gradient, summed over tokens), so a batch of b examples costs one forward and one backward pass.
- The loss is the harness's per-example loss (mean cross-entropy over the response and EOS tokens), the
  same quantity the ground truth measures; the batch loss is the sum over examples, so the per-example
  gradients are exactly those of each example's own loss.
- `RowWriter` writes feature rows to an `.npy` file chunk by chunk with plain file writes (the rows of a
  large pool are never held in memory, not even as dirty pages of a mapping) and reads the result back
  memory-mapped, so the pool's gradient store costs disk, not RAM.
- `unit_normalize` is the unit normalisation of LoGra / TracIn / LESS.
- `Handles` keeps the examples of a pairwise method (EK-FAC, DataInf, TrackStar) for its `score`.
- `tracked_modules` names the linear modules a method differentiates: those matching its `modules` option
  that training updates (under `lm.train_layers`, the top layers only).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from bench.api import (
    ConfigError,
    MethodConfig,
    MethodContext,
    compute_prefix,
    per_example_loss,
    prefix_states,
    runs_from_prefix,
    top_layer_losses,
)

_LOGIX_LOGGER = "AnaLog"  # the name logix gives its stdout logger


LOGIX_INSTALL = "pip install --no-deps --ignore-requires-python logix-ai==0.1.1"


def check_logix() -> None:
    """Preflight: logix must be importable (it is installed apart from the project, see the README)."""
    import importlib.util

    if importlib.util.find_spec("logix") is None:
        raise ConfigError(f"the gradient methods need logix-ai, which is not installed: run `{LOGIX_INSTALL}`")


def import_logix():
    """Import logix with its INFO chatter (module lists, LoRA notices) on stdout turned down to warnings."""
    import logix
    from logix.utils import get_logger

    get_logger()  # creates the logger at INFO on first call; lower it afterwards
    logging.getLogger(_LOGIX_LOGGER).setLevel(logging.WARNING)
    return logix


@dataclass(frozen=True, kw_only=True)
class GradientConfig(MethodConfig):
    """Options shared by the gradient-based methods."""

    batch_size: int = field(default=32, metadata={"help": "Examples per forward/backward pass."})
    modules: tuple[str, ...] = field(default=("mlp",), metadata={
        "help": "Substrings of the linear modules whose gradients are used (paper: all MLP layers); under a "
                "top-layers recipe (lm.train_layers) only those of the trained layers."})
    normalize: bool = field(default=True, metadata={"help": "Unit-normalise the gradient vectors."})
    seed: int = field(default=0, metadata={"help": "Seed of random projections / initialisations."})

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.modules:
            raise ConfigError("modules must name at least one module (e.g. modules=mlp)")


def tracked_modules(lm, patterns: Sequence[str], method: str | None = None) -> list[str]:
    """The linear modules of `lm` whose names contain one of `patterns` and whose weights training updates.

    Under a top-layers recipe (`lm.train_layers` = N) only the top N decoder layers train, in the ground
    truth and in the warm-up, so a gradient method differentiates those layers' modules only: gradients of
    frozen weights describe a change that no retraining makes. Without the recipe every matching module.
    Exact names (logix and peft match them as substrings / suffixes; the dots keep `layers.2.` from matching
    `layers.28.`).

    Raises:
        ConfigError: no trained linear module matches.
    """
    import torch

    trained = set(lm.trainable_names())
    found = [n for n, m in lm.model.named_modules() if isinstance(m, torch.nn.Linear)
             and any(s in n for s in patterns) and f"{n}.weight" in trained]
    if not found:
        raise ConfigError(f"{method + ': ' if method else ''}no trained linear layer of the target LM matches "
                          f"modules={list(patterns)}"
                          + (f" (lm.train_layers = {lm.spec.train_layers} trains the top layers only)"
                             if lm.spec.train_layers else ""))
    return found


def unit_normalize(rows):  # torch.Tensor [b, d] -> same
    """Rows divided by their L2 norm (zero rows stay zero)."""
    return rows / rows.norm(dim=1, keepdim=True).clamp(min=1e-12)


def batches(n: int, size: int) -> Iterator[np.ndarray]:
    """Consecutive index blocks of `size` over `range(n)`."""
    for start in range(0, n, size):
        yield np.arange(start, min(start + size, n))


def per_example_gradients(run, lm, examples: Sequence[Any], *, batch_size: int,
                          path: Sequence[tuple[str, str]] | None = None,
                          bar=None) -> Iterator[tuple[np.ndarray, Any, Any]]:
    """Yield `(indices, flat [b, d] float32, raw log)` per batch, in order.

    Under a top-layers recipe (`lm.train_layers`), the frozen layers' output of `examples` is computed once
    and kept for every pass over the same examples and weights (`FrozenInputs`), and each batch runs the
    trained layers alone, with the LM head at the labelled positions only (`bench.api.top_layer_losses`):
    the same losses and gradients, without re-running 28 of SmolLM2's 30 layers and its 49K-word head at
    every position on each pass.

    Args:
        run: a `logix.LogIX` that watches the model with its statistics set up (`run.setup(...)`).
        lm: the harness's `TargetLM` (its `model` and `device`).
        examples: the examples, tokenised batch by batch where every layer trains (memory does not grow with
            their number; under a top-layers recipe their tokens and at most `_KEEP_BYTES` of states are held).
        batch_size: examples per pass.
        path: module order of the flattened rows; default the order logix tracks them in; empty: no rows
            (a pass that only collects statistics).
        bar: a progress bar to advance by each batch's size.
    """
    import torch
    from logix.utils import flatten_log

    model = lm.model
    model.eval()
    frozen = FrozenInputs.of(lm, examples)
    for idx in batches(len(examples), batch_size):
        if frozen is None:
            enc = lm.encode([examples[i] for i in idx])
            batch = enc.batch(torch.arange(len(idx)))
        else:
            batch, states = frozen.batch(idx)
        batch = {k: v.to(lm.device) for k, v in batch.items()}
        with run(data_id=[int(i) for i in idx], mask=batch["attention_mask"]), warnings.catch_warnings():
            # the embeddings are frozen, so the first tracked layer's inputs need no gradient: expected
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            model.zero_grad(set_to_none=True)
            if frozen is None:
                logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
                losses = per_example_loss(logits, batch["labels"])
            else:
                losses = top_layer_losses(frozen.model, frozen.first, states.to(lm.device), batch)
            losses.sum().backward()
        _, log = run.get_log()
        order = path if path is not None else run.state.get_state("model_module")["path"]
        yield idx, (flatten_log(log, order).float() if order else None), log
        if bar is not None:
            bar.update(len(idx))
    model.zero_grad(set_to_none=True)


class FrozenInputs:
    """The input of a top-layers LM's first trained layer for a set of examples: what every pass reuses.

    Kept (up to `_KEEP_BYTES` of states, the `_KEEP` example sets used last) under the identity of the frozen
    weights (storage and in-place version of each, and the tensors themselves, held by weak reference) and a
    digest of the tokens, so LoGra's statistics and gradient passes over the pool run the frozen layers once,
    and a deep copy, an edit of a frozen weight or a new model in an earlier one's freed storage never reads
    stale states. Sets larger than that (paper-scale pools) run the frozen layers batch by batch, on every
    pass.
    """

    _memo: ClassVar[OrderedDict[tuple, Any]] = OrderedDict()

    def __init__(self, model, first: int, enc, prefix) -> None:
        self.model, self.first, self.enc, self.prefix = model, first, enc, prefix

    @classmethod
    def of(cls, lm, examples: Sequence[Any]) -> FrozenInputs | None:
        """None where nothing is frozen (every layer trains) or the model type cannot run from a prefix."""
        import hashlib

        first = lm.first_trainable_layer()
        model = lm.model.get_base_model() if hasattr(lm.model, "get_base_model") else lm.model  # peft: its LM
        if first == 0 or not runs_from_prefix(model):
            return None
        enc = lm.encode(examples)
        frozen = [p for n, p in model.named_parameters()
                  if not n.startswith("model.layers.") or int(n.split(".")[2]) < first]
        digest = hashlib.sha1(enc.input_ids.numpy().tobytes() + enc.lengths.numpy().tobytes()).hexdigest()
        key = (first, digest, tuple((p.data_ptr(), p._version) for p in frozen))
        refs, prefix = cls._memo.get(key, ((), None))
        if prefix is not None and len(refs) == len(frozen) and all(r() is p for r, p in zip(refs, frozen, strict=True)):
            cls._memo.move_to_end(key)  # least recently used goes first
        else:  # another model whose weights took freed storage of an earlier one never matches: identity counts
            prefix = None
            if int(enc.lengths.sum()) * int(model.config.hidden_size) * 4 <= _KEEP_BYTES:
                prefix = compute_prefix(model, enc, first)
                cls._memo[key] = (tuple(weakref.ref(p) for p in frozen), prefix)
                cls._memo.move_to_end(key)
                while len(cls._memo) > _KEEP:
                    cls._memo.popitem(last=False)
        return cls(model, first, enc, prefix)

    def batch(self, idx: np.ndarray, width: int | None = None):  # -> (Encoded.batch dict, float [b, L, H])
        """Rows `idx`: their tokens (`Encoded.batch`) and their frozen layers' output, padded alike.

        `width`: the states' padded length (default: the batch's longest row, as `Encoded.batch` trims).
        """
        import torch

        rows = torch.as_tensor(idx, dtype=torch.long)
        batch = self.enc.batch(rows)
        width = batch["input_ids"].shape[1] if width is None else width
        if self.prefix is not None:
            return batch, prefix_states(self.prefix, rows, width)
        part = self.enc.take(rows)
        return batch, prefix_states(compute_prefix(self.model, part, self.first), torch.arange(len(rows)), width)


_KEEP, _KEEP_BYTES = 2, 1 << 30  # the pool and the queries; SmolLM2's 800-example pool holds ~160 MB


def new_logix(root: Path, name: str, **config: Any):
    """A fresh `logix.LogIX` whose files live under `root` (never the working directory)."""
    import yaml

    logix = import_logix()
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"root_dir": str(root), **config}))
    return logix.LogIX(project=name, config=str(path))


class RowWriter:
    """Float32 rows [n, d] appended to an `.npy` file with plain writes; `finish()` maps the file read-only."""

    def __init__(self, path: Path, n: int, d: int) -> None:
        self.path, self.n, self.d, self.rows = path, n, d, 0
        self._f = open(path, "wb")  # noqa: SIM115 - closed in finish()
        np.lib.format.write_array_header_2_0(self._f, {"descr": np.dtype(np.float32).str, "fortran_order": False,
                                                      "shape": (n, d)})

    def write(self, rows: np.ndarray) -> None:
        """Append rows (float32, C order, width d)."""
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        if rows.ndim != 2 or rows.shape[1] != self.d:
            raise ValueError(f"expected rows of width {self.d}, got shape {rows.shape}")
        self._f.write(rows.tobytes())
        self.rows += rows.shape[0]

    def finish(self) -> np.ndarray:
        """Close the file and return it memory-mapped (read-only)."""
        self._f.close()
        if self.rows != self.n:
            raise RuntimeError(f"{self.path}: wrote {self.rows} rows, expected {self.n}")
        return np.load(self.path, mmap_mode="r")


def _remove_orphans(base: Path) -> None:
    """Remove scratch directories left by processes that no longer run (a killed run cannot clean up)."""
    for d in base.iterdir():
        parts = d.name.rsplit("-", 2)
        if len(parts) != 3 or not parts[1].isdigit():
            continue
        try:
            os.kill(int(parts[1]), 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except PermissionError:  # another user's live process
            pass


class Scratch:
    """A private directory for one method instance (under the harness cache), removed with the instance."""

    def __init__(self, owner: object, ctx: MethodContext | None, prefix: str) -> None:
        base = Path(ctx.cache.root) / "scratch" if ctx is not None else Path(tempfile.gettempdir())
        base.mkdir(parents=True, exist_ok=True)
        if ctx is not None:
            _remove_orphans(base)
        self.path = Path(tempfile.mkdtemp(prefix=f"{prefix}-{os.getpid()}-", dir=base))
        self._count = 0
        weakref.finalize(owner, shutil.rmtree, self.path, True)

    def writer(self, name: str, n: int, d: int) -> RowWriter:
        """A `RowWriter` for a new file `name-K.npy` (earlier files stay valid while they are mapped)."""
        self._count += 1
        return RowWriter(self.path / f"{name}-{self._count}.npy", n, d)


class Handles:
    """The examples a pairwise method keeps for `score`, as it has no per-example features.

    A handle is an example's place here; the same example (id, prompt, response) always gets the same handle.
    """

    def __init__(self) -> None:
        self._kept: list = []
        self._index: dict[tuple[str, str, str], int] = {}

    def of(self, examples: Sequence[Any]) -> np.ndarray:
        """Handles [n, 1] int64 of `examples`, keeping those not seen before."""
        out = np.empty((len(examples), 1), dtype=np.int64)
        for j, e in enumerate(examples):
            key = (e.id, e.prompt, e.response)
            if key not in self._index:
                self._index[key] = len(self._kept)
                self._kept.append(e)
            out[j, 0] = self._index[key]
        return out

    def examples(self, features: Any) -> list:
        """The examples that handles [n, 1] stand for, in order."""
        return [self._kept[int(i)] for i in np.asarray(features)[:, 0]]

