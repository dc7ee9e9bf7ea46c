"""One generic registry for methods and tasks: decorator registration plus lazy entry-point discovery.

In-tree plugins are declared in pyproject.toml under the `bench.methods` / `bench.tasks` entry-point
groups exactly like out-of-tree ones, so there is a single discovery path. Entry points stay lazy:
listing names and summaries imports nothing heavy; the first `get(name)` imports the plugin module, whose
`@register_*` decorator checks the base class and the name.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from bench.errors import DuplicatePluginError, UnknownPluginError, did_you_mean

T = TypeVar("T")


@dataclass(frozen=True)
class _Lazy:
    target: str  # "module:attr"


class Registry(Generic[T]):
    """Name → plugin class, filled by decorators and by an entry-point group."""

    def __init__(self, kind: str, group: str, base: type) -> None:
        self.kind = kind
        self.group = group
        self.base = base
        self._entries: dict[str, type[T] | _Lazy] = {}
        self._discovered = False

    # -- registration -------------------------------------------------------------------------------
    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        """Class decorator registering `cls` under `name`."""

        def decorate(cls: type[T]) -> type[T]:
            if not (isinstance(cls, type) and issubclass(cls, self.base)):
                raise TypeError(f"{self.kind} '{name}': {cls!r} is not a subclass of {self.base.__name__}")
            self._discover()
            existing = self._entries.get(name)
            if isinstance(existing, _Lazy):
                module, _, attr = existing.target.partition(":")
                if (cls.__module__, cls.__qualname__) != (module, attr):
                    raise DuplicatePluginError(
                        f"{self.kind} '{name}' is declared by entry point {existing.target} but registered "
                        f"by {cls.__module__}:{cls.__qualname__}; rename one of them"
                    )
            elif existing is not None and existing is not cls:
                raise DuplicatePluginError(
                    f"{self.kind} '{name}' is already registered by {existing.__module__}:"
                    f"{existing.__qualname__}; pick another name"
                )
            cls.name = name  # type: ignore[attr-defined]
            self._entries[name] = cls
            return cls

        return decorate

    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        for ep in importlib.metadata.entry_points(group=self.group):
            current = self._entries.get(ep.name)
            if current is None:
                self._entries[ep.name] = _Lazy(ep.value)
            elif isinstance(current, _Lazy) and current.target != ep.value:
                raise DuplicatePluginError(
                    f"{self.kind} '{ep.name}' is declared by two entry points ({current.target} and "
                    f"{ep.value}); uninstall one of the packages"
                )

    # -- lookup ---------------------------------------------------------------------------------------
    def names(self) -> list[str]:
        """All registered names, sorted."""
        self._discover()
        return sorted(self._entries)

    def get(self, name: str) -> type[T]:
        """Return the plugin class for `name`, importing its module on first use."""
        self._discover()
        entry = self._entries.get(name)
        if entry is None:
            raise UnknownPluginError(
                f"no {self.kind} '{name}'.{did_you_mean(name, self._entries)} "
                f"Available: {', '.join(self.names())} (run 'bench list')."
            )
        if isinstance(entry, _Lazy):
            module, _, attr = entry.target.partition(":")
            obj = getattr(importlib.import_module(module), attr)
            entry = self._entries[name]
            if entry is not obj:  # the module's decorator must have registered it under this name
                raise DuplicatePluginError(
                    f"entry point {self.kind} '{name}' points at {module}:{attr}, which does not register "
                    f"itself as '{name}' (add @register_{self.kind}('{name}'))"
                )
        return entry  # type: ignore[return-value]

    def summary(self, name: str) -> str:
        """First docstring line of the plugin.

        A plugin not yet imported is read from its source with `ast`, so `bench list` imports no plugin
        module (and therefore no torch).
        """
        self._discover()
        entry = self._entries.get(name)
        if entry is None:
            return self.get(name).__doc__ or ""  # raises UnknownPluginError
        if isinstance(entry, _Lazy):
            doc = _docstring_from_source(entry.target)
        else:
            doc = entry.__doc__ or ""
        lines = doc.strip().splitlines()
        return lines[0] if lines else ""


def _docstring_from_source(target: str) -> str:
    module, _, attr = target.partition(":")
    try:
        spec = importlib.util.find_spec(module)
    except ModuleNotFoundError:
        return ""
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return ""
    with open(spec.origin, encoding="utf-8") as fh:
        tree = ast.parse(fh.read())
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == attr:
            return ast.get_docstring(node) or ""
    return ""
