"""Hashes of the code that ran, for record fingerprints (standard library only).

A module is hashed as its syntax tree without docstrings, so an edit of prose, comments or layout does not
make records out of date; any change of code does.

Named code versions (`bench.versions`, a plugin's `code_version`) are bumped by hand and can be forgotten; a
hash of the source cannot. A record's fingerprint holds both: the harness core (every module of the `bench`
package), the method's module and the first-party modules it imports (found by reading the source, lazy
imports inside functions included), and the task's likewise. Any edit to them makes an older record of the
same request out of date (`bench run` runs it again), while the cache of retraining jobs, keyed by the
named versions, stays valid.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

CORE = Path(__file__).resolve().parent  # the bench package


def normalised_source(path: Path) -> str:
    """The module's code as its syntax tree, without docstrings: comments, layout and prose do not count."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body \
                and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, annotate_fields=False)


def _digest(files: dict[str, Path]) -> str:
    """sha256 over (name, normalised source) pairs in name order: independent of where the checkout lies."""
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + normalised_source(files[name]).encode() + b"\0")
    return h.hexdigest()


@functools.lru_cache(maxsize=1)
def core_hash() -> str:
    """sha256 of every Python module of the harness (the `bench` package)."""
    return _digest({f.relative_to(CORE.parent).as_posix(): f for f in CORE.rglob("*.py")})


def _module_file(name: str) -> Path | None:
    module = sys.modules.get(name)
    path = getattr(module, "__file__", None)
    if path is None:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            return None
        path = spec.origin if spec is not None else None
    return Path(path).resolve() if path and str(path).endswith(".py") else None


def _first_party_imports(path: Path, module: str, package: str) -> set[str]:
    """Module names under `package` that the source of `module` at `path` imports (anywhere in it)."""
    out: set[str] = set()
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == package)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against the importing module's package
                parts = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            if base.split(".")[0] != package:
                continue
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)  # `from pkg import module`
    return out


def plugin_hash(cls: type[Any]) -> str:
    """sha256 of a plugin class's module and the modules of its own top-level package that it imports."""
    name = cls.__module__
    package = name.split(".")[0]
    seen: dict[str, Path] = {}
    todo = [name]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        path = _module_file(current)
        if path is None:
            continue
        seen[current] = path
        todo += sorted(_first_party_imports(path, current, package) - set(seen))
    return _digest(seen) if seen else "unknown"


def code_hashes(method_cls: type[Any], task_cls: type[Any]) -> dict[str, str]:
    """The code hashes a record's numbers depend on: the harness core, the method's code, the task's."""
    return {"harness": core_hash(), "method": plugin_hash(method_cls), "task": plugin_hash(task_cls)}
