"""Typed, frozen configs: JSON round-trip, strict parsing from dicts/TOML/CLI, and fingerprints.

A config is a `@dataclass(frozen=True, kw_only=True)` whose fields hold JSON scalars, tuples or nested
frozen dataclasses. `from_dict` rejects unknown keys (with a "did you mean") and wrong types, naming the
field; range checks live in each config's `__post_init__` and raise `ConfigError`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from bench.errors import ConfigError, did_you_mean

C = TypeVar("C")


def canonical_json(obj: Any) -> str:
    """Serialise `obj` deterministically (sorted keys, no whitespace) for hashing."""
    return json.dumps(to_jsonable(obj), sort_keys=True, separators=(",", ":"), allow_nan=False)


def fingerprint(obj: Any) -> str:
    """Return the sha256 hex digest of the canonical JSON of `obj`."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()


def to_jsonable(obj: Any) -> Any:
    """Convert dataclasses, tuples and mappings into plain JSON values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        # a field added after records and caches were keyed on its config says `omit_default`: at its default
        # it is left out, so that every earlier key and fingerprint stays what it was
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if not (f.metadata.get("omit_default") and getattr(obj, f.name) == f.default)}
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    return obj


def from_dict(cls: type[C], data: Mapping[str, Any], *, where: str = "") -> C:
    """Build the frozen dataclass `cls` from a mapping, checking keys and types.

    Args:
        cls: the config dataclass.
        data: field name → value (nested dataclasses as nested mappings, tuples as lists).
        where: a prefix for error messages, e.g. "suite 'small' [lm]".

    Raises:
        ConfigError: unknown key, wrong type, or a value `__post_init__` rejects.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where or cls.__name__}: expected a table of options, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            raise ConfigError(
                f"{where or cls.__name__}: unknown option '{key}'.{did_you_mean(key, fields)} "
                f"Valid options: {', '.join(sorted(fields))}"
            )
        label = f"{where}.{key}" if where else key
        kwargs[key] = _coerce(hints[key], value, label)
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a missing required field
        raise ConfigError(f"{where or cls.__name__}: {exc}") from exc


def _coerce(tp: Any, value: Any, label: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        errors = []
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, label)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{label}: invalid value {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{label}: expected one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{label}: expected a list, got {value!r}")
        item = args[0] if args else Any
        return tuple(_coerce(item, v, f"{label}[{i}]") for i, v in enumerate(value))
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{label}: expected a table, got {value!r}")
        vt = args[1] if len(args) == 2 else Any
        return {str(k): _coerce(vt, v, f"{label}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if dataclasses.is_dataclass(value):
            return value
        return from_dict(tp, value, where=label)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{label}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{label}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{label}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{label}: expected a string, got {value!r}")
        return value
    return value


def parse_override(text: str) -> tuple[str, Any]:
    """Parse a CLI override `key=value`; the value is read as JSON when it parses, else as a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"option '{text}' is not of the form key=value (e.g. --set max_features=5000)")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip(), value


def help_lines(cls: type) -> list[str]:
    """One line per field: name, default and the `help` metadata, for `bench list` / `--help`."""
    out = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else "(required)"
        out.append(f"{f.name} = {default!r}: {f.metadata.get('help', '')}")
    return out
