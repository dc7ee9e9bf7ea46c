"""Scores computed elsewhere (dattri, kronfluence, bergson, trak, your own code), evaluated by tda-bench.

`bench run --method scores --set path=my_scores.npy --set name=mine --task lds --suite small` reads a
float matrix [n_test, n_train] whose rows follow the suite's test split and whose columns follow its
training pool, in the order `bench export-examples` writes them, and runs every task that needs only
scores (lds, classification, selection) with the harness's own metrics and CIs: no self-reported number
is taken.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.api import ConfigError, Examples, Features, Method, MethodConfig, MethodContext, Role, register_method
from bench.suites import Suite

SUFFIXES = (".npy", ".safetensors")


@dataclass(frozen=True, kw_only=True)
class ScoresConfig(MethodConfig):
    """Options of the external-scores method."""

    path: str = field(default="", metadata={
        "help": "The score file: float [n_test, n_train], .npy (no pickles) or .safetensors (one tensor)."})
    name: str = field(default="", metadata={
        "help": "The leaderboard row of these scores (default: the file's stem); shown marked as external."})

    def __post_init__(self) -> None:
        if not self.path:
            raise ConfigError("scores needs a score file: --set path=FILE.npy (or .safetensors); "
                              "see 'bench export-examples' for the order of its rows and columns")
        if Path(self.path).suffix not in SUFFIXES:
            raise ConfigError(f"scores.path '{self.path}' must end in .npy or .safetensors (pickles are never read)")

    @property
    def row_name(self) -> str:
        """The label of the leaderboard row."""
        return self.name or Path(self.path).stem


def sha256_of(path: Path) -> str:
    """The file's sha256, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_scores(path: Path) -> np.ndarray:
    """The matrix in `path`, validated as numeric, 2-D and finite; float64.

    Raises:
        ConfigError: a missing or unreadable file, a pickle, several tensors, a non-numeric dtype, another
            rank, or non-finite values, with what was found.
    """
    if not path.is_file():
        raise ConfigError(f"score file '{path}' does not exist")
    try:
        if path.suffix == ".npy":
            matrix = np.load(path, allow_pickle=False)
        else:
            from safetensors.numpy import load_file

            tensors = load_file(str(path))
            if len(tensors) != 1:
                raise ConfigError(f"{path}: holds {len(tensors)} tensors ({', '.join(sorted(tensors))}); "
                                  f"save exactly one [n_test, n_train] matrix")
            matrix = next(iter(tensors.values()))
    except ConfigError:
        raise
    except ValueError as exc:
        if "allow_pickle" in str(exc):  # numpy refuses an object (pickled) array
            raise ConfigError(f"{path}: not a plain numeric array (it holds pickled objects, which are never "
                              f"loaded); save a float matrix") from None
        raise ConfigError(f"{path}: cannot read it as {path.suffix} ({str(exc).splitlines()[0]})") from None
    except Exception as exc:  # a damaged or foreign file
        raise ConfigError(f"{path}: cannot read it as {path.suffix} ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    return validated(matrix, str(path))


def validated(matrix: np.ndarray, where: str) -> np.ndarray:
    """`matrix` as float64 after checking it is numeric, 2-D and finite; `where` names it in the error.

    Raises:
        ConfigError: another dtype, rank, or non-finite values, with what was found.
    """
    if matrix.dtype.kind not in "fiu":
        raise ConfigError(f"{where}: dtype {matrix.dtype} is not numeric; save float scores")
    if matrix.ndim != 2:
        raise ConfigError(f"{where}: shape {matrix.shape}, expected a 2-D matrix [n_test, n_train]")
    matrix = matrix.astype(np.float64)
    bad = ~np.isfinite(matrix)
    if bad.any():
        i, j = map(int, np.argwhere(bad)[0])
        raise ConfigError(f"{where}: {int(bad.sum())} non-finite scores (the first at test {i}, train {j}); "
                          f"every score must be finite")
    return matrix


@register_method("scores", config=ScoresConfig)
class Scores(Method):
    """A score matrix from a file, indexed by the suite's test split (rows) and training pool (columns).

    Features are the examples' positions in their split, so every task that only scores (LDS through
    `group_score`'s sum over members, classification, selection) reads the matrix. It has no costs of its
    own: tasks that measure them (`Task.needs_features`) refuse it, and `--method all` leaves it out.
    The record keeps the file's path and sha256 (part of its fingerprint: another file is another row).
    """

    family = "external"  # type: ignore[assignment]
    precomputed = True

    def __init__(self, config: ScoresConfig | None = None) -> None:
        super().__init__(config)
        self._matrix: np.ndarray | None = None
        self._positions: dict[str, dict[str, int]] = {}
        self._sha256: str | None = None
        self._in_memory = False

    @classmethod
    def smoke_config(cls) -> ScoresConfig:  # pragma: no cover - needs a file; tests write one
        """None: the method needs a score file (tests write one)."""
        raise NotImplementedError("scores needs a score file")

    @classmethod
    def from_array(cls, scores: Any, name: str = "array") -> Scores:
        """A method around an in-memory matrix (the Python API's `bench.evaluate`), validated like a file."""
        method = cls(ScoresConfig(path=f"{name}.npy", name=name))
        method._matrix = validated(np.asarray(scores), "scores")
        digest = hashlib.sha256(f"{method._matrix.shape}".encode())
        digest.update(np.ascontiguousarray(method._matrix).tobytes())
        method._sha256 = digest.hexdigest()
        method._in_memory = True
        return method

    def _load(self) -> np.ndarray:
        if self._matrix is None:
            path = Path(self.config.path)
            self._matrix = read_scores(path)
            self._sha256 = sha256_of(path)
        return self._matrix

    def check(self) -> None:
        """The file exists and holds a finite numeric matrix."""
        self._load()

    def check_suite(self, suite: Suite) -> None:
        """The matrix is [n_test, n_train] of the suite."""
        expected = (len(suite.split("test")), len(suite.split("train")))
        got = self._load().shape
        if got != expected:
            hint = " (transposed? rows are test examples)" if got == expected[::-1] else ""
            raise ConfigError(f"scores of shape {got} do not fit suite '{suite.name}': expected [n_test, n_train] = "
                              f"{list(expected)}{hint}; 'bench export-examples --suite {suite.name}' writes "
                              f"the examples in order")

    def identity(self) -> dict[str, Any]:
        """The scores' sha256 (another file, or the same file changed, is another record)."""
        self._load()
        return {"sha256": self._sha256}

    def setup(self, ctx: MethodContext) -> None:
        """Map the suite's example ids to the matrix's rows and columns."""
        self.check_suite(ctx.suite)
        for role in ("train", "test"):
            ids = [e.id for e in ctx.suite.split(role)]
            if len(set(ids)) != len(ids):
                raise ConfigError(f"scores: the suite's {role} split repeats an example id, so its rows cannot be "
                                  f"matched to the matrix; give every example a unique id")
            self._positions[role] = {e_id: i for i, e_id in enumerate(ids)}

    def featurize(self, examples: Examples, role: Role) -> Features:
        """Each example's position in its split, int64 [n, 1]."""
        if not self._positions:
            raise RuntimeError("scores: setup(ctx) must run before featurize")
        where = self._positions[role]
        missing = [e.id for e in examples if e.id not in where]
        if missing:
            raise ConfigError(f"scores: {role} example '{missing[0]}' is not in the suite's {role} split")
        return np.array([where[e.id] for e in examples], dtype=np.int64).reshape(-1, 1)

    def score(self, test_features: Features, train_features: Features) -> np.ndarray:
        """The file's scores of these test rows and training columns, float64 [n_test, n_train]."""
        return self._load()[np.ix_(test_features[:, 0], train_features[:, 0])]

    def dim(self, train_features: Features) -> int:
        """No feature dimension of its own: 0 (the leaderboard leaves the cell empty)."""
        return 0

    def storage_bytes(self, train_features: Features) -> int:
        """The scores are not a per-example index: 0."""
        return 0

    def info(self) -> dict[str, Any]:
        """The file, its sha256 and the matrix's shape and dtype as read."""
        matrix = self._load()
        where = "(in-memory array)" if self._in_memory else str(Path(self.config.path).resolve())
        return {"path": where, "sha256": self._sha256, "shape": list(matrix.shape), "name": self.config.row_name}
