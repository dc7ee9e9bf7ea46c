"""Examples and loaders for user data (local JSONL / JSON / Parquet files or a `datasets` hub name)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import ConfigError, DataError


@dataclass(frozen=True)
class Example:
    """One training or test example.

    Attributes:
        id: unique within its split.
        prompt: the instruction / input text.
        response: the target text the LM is trained to produce.
        labels: label kind → value (e.g. `{"task": "antonym", "family": "lexical"}`).
    """

    id: str
    prompt: str
    response: str
    labels: Mapping[str, str] = field(default_factory=dict)

    def question(self, max_prompt_words: int = 256) -> str:
        """The prompt in the AirRep authors' format: `Question: {prompt}` newline `Answer:`.

        As in the authors' code, the prompt's whitespace is collapsed and it is cut to its first
        `max_prompt_words` words.
        """
        return "Question: " + " ".join(self.prompt.split()[:max_prompt_words]) + "\nAnswer:"

    def text(self, max_prompt_words: int = 256) -> str:
        """Prompt and response in the AirRep paper's format, used by text-based methods."""
        return f"{self.question(max_prompt_words)} {self.response}"


Examples = Sequence[Example]


@dataclass(frozen=True, kw_only=True)
class Columns:
    """Which columns of a table hold the prompt, the response and the labels."""

    prompt: str = "prompt"
    response: str = "response"
    labels: Mapping[str, str] = field(default_factory=dict)  # label kind -> column
    id: str | None = None


_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}


def local_path(source: str, base_dir: Path | None = None) -> Path:
    """`source` as a local path: `~` expanded, relative paths resolved against `base_dir` (the suite file's)."""
    path = Path(source).expanduser()
    return base_dir / path if base_dir is not None and not path.is_absolute() else path


HUB_PREFIX = "hf://"


def local_file(ref: str, base_dir: Path | None = None, *, what: str) -> Path:
    """A local file for `ref`: a path (relative to `base_dir`) or `hf://owner/dataset/path/in/repo`.

    A hub file is downloaded by `huggingface_hub` into its cache (which honours `HF_HUB_OFFLINE`).

    Raises:
        ConfigError: a hub reference without a file path.
        DataError: the file is missing, or cannot be fetched (one line saying to use a local copy).
    """
    if ref.startswith(HUB_PREFIX):
        parts = ref[len(HUB_PREFIX):].split("/")
        if len(parts) < 3:
            raise ConfigError(f"{what}: '{ref}' must look like hf://owner/dataset/path/to/file")
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

        try:
            return Path(hf_hub_download("/".join(parts[:2]), "/".join(parts[2:]), repo_type="dataset"))
        except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
            raise DataError(f"{what}: cannot fetch {ref} ({type(exc).__name__}); without the hub, point it at "
                            f"a local copy of the file") from exc
    path = local_path(ref, base_dir)
    if not path.is_file():
        raise DataError(f"{what}: no file {path}")
    return path


def load_examples(source: str, *, columns: Columns, split: str = "train", base_dir: Path | None = None,
                  limit: int | None = None) -> list[Example]:
    """Load examples from a local file or a hub dataset through `datasets.load_dataset`.

    Args:
        source: a path to a `.jsonl`, `.json` or `.parquet` file (relative to `base_dir`), or a hub dataset
            name such as `Muennighoff/flan` (needs network access or a populated HF cache).
        columns: the column mapping.
        split: the split of a hub dataset.
        base_dir: directory that relative paths are resolved against.
        limit: keep only the first `limit` rows.

    Raises:
        DataError: unreadable or malformed file, missing column, or a row whose value is not text.
    """
    if source.startswith(HUB_PREFIX):  # one file of a hub dataset repository, read as a local file
        source = str(local_file(source, base_dir, what=f"data source {source}"))
    path = local_path(source, base_dir)
    is_local = path.suffix.lower() in _FORMATS or path.exists()
    if is_local:
        if not path.is_file():
            raise DataError(f"{path}: no such file")
        fmt = _FORMATS.get(path.suffix.lower())
        if fmt is None:
            raise DataError(f"{path}: unsupported file type '{path.suffix}' (use .jsonl, .json or .parquet)")
        line_of_row = _check_json_syntax(path) if fmt == "json" else None
        if line_of_row == []:
            return []  # an empty JSON Lines file is an empty split; datasets cannot load it
        label = str(path)
        table = _load_dataset(fmt, data_files=str(path), split="train", what=label)
    else:
        line_of_row = None
        label = f"hub dataset '{source}' split '{split}'"
        table = _load_dataset(source, split=split, what=label)
    return _rows_to_examples(table, columns, label, line_of_row, limit)


def _load_dataset(*args: Any, what: str, **kwargs: Any) -> Any:
    import datasets  # heavy; only user data needs it

    datasets.disable_progress_bars()  # "Generating train split" bars for a local file are noise
    try:
        return datasets.load_dataset(*args, **kwargs)
    except Exception as exc:  # datasets raises many types; the user needs one line either way
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{what}: could not be loaded ({type(exc).__name__}: {first})") from exc


def jsonl_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(1-based line number, object) of each non-blank line of a JSON Lines file, streamed.

    Raises:
        DataError: `file:line` of the first line that is not UTF-8, not JSON or not a JSON object.
    """
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(_not_utf8(path, lineno, raw, exc)) from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{lineno}: invalid JSON ({exc.msg} at column {exc.colno})") from exc
            if not isinstance(row, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
            yield lineno, row


def _not_utf8(path: Path, lineno: int, raw: bytes, exc: UnicodeDecodeError) -> str:
    """The one-line message for bytes that are not UTF-8 at `exc.start` of line `raw`."""
    return (f"{path}:{lineno}: not UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); "
            f"re-encode the file as UTF-8, e.g. iconv -f latin1 -t utf-8")


def _check_json_syntax(path: Path) -> list[int] | None:
    """Validate a JSON Lines file line by line; return the 1-based line number of each row.

    A `.json` file holding one array is accepted too (rows are then numbered by position).
    """
    if path.stat().st_size >= 1 << 30:
        return None
    if path.suffix.lower() == ".json":
        data = path.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            start = data.rfind(b"\n", 0, exc.start) + 1
            line = data[start:data.find(b"\n", exc.start) if b"\n" in data[exc.start:] else len(data)]
            exc.start -= start
            raise DataError(_not_utf8(path, data.count(b"\n", 0, start) + 1, line, exc)) from None
        if text.lstrip().startswith("["):
            try:
                rows = json.loads(text)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from exc
            for i, row in enumerate(rows):
                if not isinstance(row, dict):
                    raise DataError(f"{path}: row {i + 1}: expected an object, got {type(row).__name__}")
            return None
    return [lineno for lineno, _ in jsonl_rows(path)]


def _rows_to_examples(table: Any, columns: Columns, label: str, line_of_row: list[int] | None,
                      limit: int | None) -> list[Example]:
    names = set(table.column_names)
    wanted = {"prompt": columns.prompt, "response": columns.response}
    wanted.update({f"label '{k}'": v for k, v in columns.labels.items()})
    if columns.id:
        wanted["id"] = columns.id
    for role, col in wanted.items():
        if col not in names:
            raise DataError(
                f"{label}: missing column '{col}' (the {role} column); available columns: "
                f"{', '.join(sorted(names))}. Set the column mapping in the suite's [data.columns]"
            )
    n = len(table) if limit is None else min(limit, len(table))
    out = []
    seen: set[str] = set()
    for i in range(n):
        row = table[i]
        where = f"{label}:{line_of_row[i]}" if line_of_row else f"{label}: row {i + 1}"
        values = {}
        for role, col in wanted.items():
            value = row[col]
            if isinstance(value, (int, float, bool)) and role not in ("prompt", "response"):
                value = str(value)
            if not isinstance(value, str):
                raise DataError(f"{where}: column '{col}' must be text, got {value!r}")
            values[role] = value
        if not values["response"].strip():
            raise DataError(f"{where}: empty response in column '{columns.response}'")
        ex_id = values.get("id", str(i))
        if ex_id in seen:
            raise DataError(f"{where}: duplicate id '{ex_id}' in column '{columns.id}'")
        seen.add(ex_id)
        labels = {k: values[f"label '{k}'"] for k in columns.labels}
        out.append(Example(id=ex_id, prompt=values["prompt"], response=values["response"], labels=labels))
    return out
