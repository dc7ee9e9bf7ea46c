"""Content-addressed artefact cache with atomic writes and argument checks.

Every cached artefact lives in a directory named by the fingerprint of the arguments that determine it,
next to an `args.json` recording those arguments. Reusing a directory whose recorded arguments differ
from the request raises `ConfigMismatchError` listing the differing keys; nothing is deleted.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.config import canonical_json, fingerprint, to_jsonable
from bench.errors import ConfigMismatchError

CACHE_ENV = "BENCH_CACHE"


def default_cache_dir() -> Path:
    """`$BENCH_CACHE`, else `$XDG_CACHE_HOME/tda-bench`, else `~/.cache/tda-bench`."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "tda-bench"


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path in the same directory; rename it onto `path` only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _diff(recorded: Any, requested: Any, prefix: str = "") -> list[str]:
    if isinstance(recorded, dict) and isinstance(requested, dict):
        out = []
        for key in sorted(set(recorded) | set(requested)):
            out += _diff(recorded.get(key), requested.get(key), f"{prefix}{key}.")
        return out
    if recorded != requested:
        return [f"{prefix.rstrip('.')}: cached {recorded!r}, requested {requested!r}"]
    return []


class Cache:
    """A directory of artefacts keyed by the fingerprint of their arguments."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def peek(self, kind: str, args: Any) -> Path:
        """The directory `entry` would return, without creating or checking anything (for planning)."""
        key = fingerprint({"kind": kind, "args": to_jsonable(args)})
        return self.root / kind / key[:16]

    def entry(self, kind: str, args: Any) -> Path:
        """Return the directory for the artefact of `kind` produced from `args`, creating it.

        Raises:
            ConfigMismatchError: the directory exists but records other arguments.
        """
        args_json = to_jsonable(args)
        key = fingerprint({"kind": kind, "args": args_json})
        path = self.root / kind / key[:16]
        manifest = path / "args.json"
        if manifest.exists():
            recorded = json.loads(manifest.read_text(encoding="utf-8"))
            if canonical_json(recorded) != canonical_json(args_json):
                diffs = "; ".join(_diff(recorded, args_json)) or "contents differ"
                raise ConfigMismatchError(
                    f"cached {kind} at {path} was made with other arguments ({diffs}); "
                    f"use another --cache-dir or remove that directory"
                )
        else:
            atomic_write_text(manifest, json.dumps(args_json, indent=2, sort_keys=True))
        return path


def build(cache: Cache, kind: str, args: Any, versions: dict[str, str],
          produce: Callable[[Path], dict[str, Any]]) -> tuple[Path, dict[str, Any], bool]:
    """The cached artefact `kind` made from `args` by code of `versions`, built by `produce` when missing.

    The key holds `args` and the code versions of everything that produced the artefact, so bumping one
    of them builds a new entry instead of silently reusing the old one. `produce(directory)` writes the
    artefact's files into the entry and returns its metadata; `meta.json` is written last and marks the
    entry complete (an interrupted build leaves no meta and is built again).

    Returns:
        (the entry's directory, its metadata, whether it was already built).
    """
    directory = cache.entry(kind, {**to_jsonable(args), "code_versions": dict(versions)})
    meta_path = directory / "meta.json"
    if meta_path.exists():
        return directory, json.loads(meta_path.read_text(encoding="utf-8")), True
    meta = produce(directory)
    atomic_write_text(meta_path, json.dumps(meta, indent=1))
    return directory, meta, False


def built_entry(cache: Cache, kind: str, args: Any, versions: dict[str, str]) -> Path | None:
    """The directory of the complete artefact `build` would return for these arguments, or None (touches nothing)."""
    directory = cache.peek(kind, {**to_jsonable(args), "code_versions": dict(versions)})
    return directory if (directory / "meta.json").exists() else None


def peek_built(cache: Cache, kind: str, args: Any, versions: dict[str, str]) -> bool:
    """Whether `build` would find the artefact complete (for planning; touches nothing)."""
    return peek_meta(cache, kind, args, versions) is not None


def peek_meta(cache: Cache, kind: str, args: Any, versions: dict[str, str]) -> dict[str, Any] | None:
    """The metadata of a complete artefact (e.g. its `wall_s`), None when it is not built (touches nothing)."""
    directory = built_entry(cache, kind, args, versions)
    return json.loads((directory / "meta.json").read_text(encoding="utf-8")) if directory is not None else None
