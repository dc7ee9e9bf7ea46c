"""Give a suite back in the layouts the field reads: its examples in order, and its ground truth.

- `export_examples(suite, out)`: `train.jsonl` and `test.jsonl`, the exact examples (and their order) that
  a score matrix for `bench run --method scores` must index: rows = test examples, columns = train.
- `export_suite(suite, out, cache)`: the same plus the other splits, `lds.jsonl` in the AirRep authors'
  layout (`{"train_subset": [...], "test_loss": [...]}`, one line per retrained subset; STRIDE reads it
  too) with each seed's losses in `test_loss_seeds`, a `suite.toml` that reads the export back as a
  suite with released ground truth, and a `README.md` with the recipe and the tda-bench version.
- `export_model(suite, out, cache)`: the target LM that every model-based method uses (the warm-up LM:
  the checkpoint the gradient methods linearise and RDS embeds with), written with `save_pretrained` with
  its tokenizer into `model/`, every split tokenised with the harness's loss mask into `tokenized/`
  (`datasets` on disk), and `model.json` (the parameters retraining updates, the loss), so that a peer
  library computes scores on the same model and examples without reaching into the harness.

Every file is written atomically into the output folder; a failure leaves no partial file.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

import bench
from bench.cache import Cache, atomic_write_text
from bench.config import to_jsonable
from bench.errors import ConfigError
from bench.suites import SPLITS, Suite


def example_row(example: Any, position: int) -> dict[str, Any]:
    """One example as exported: its position, id, prompt, response, labels and the text methods featurise."""
    return {"index": position, "id": example.id, "prompt": example.prompt, "response": example.response,
            "labels": dict(example.labels), **{f"label_{k}": v for k, v in example.labels.items()},
            "text": example.text()}


def _jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def check_out_dir(out: Path) -> Path:
    """Create `out` (a folder) or fail with one line before any work."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out '{out}' is a file; give a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create --out '{out}': {exc.strerror or exc}") from None
    return out


def export_examples(suite: Suite, out: Path, splits: tuple[str, ...] = ("train", "test")) -> dict[str, int]:
    """Write `<split>.jsonl` for each of `splits` that is not empty; returns rows written per file."""
    return _write_splits(suite, check_out_dir(out), splits)


def _write_splits(suite: Suite, out: Path, splits: tuple[str, ...]) -> dict[str, int]:
    written = {}
    for name in splits:
        examples = suite.split(name)  # type: ignore[arg-type]
        if not examples:
            continue
        atomic_write_text(out / f"{name}.jsonl", _jsonl([example_row(e, i) for i, e in enumerate(examples)]))
        written[f"{name}.jsonl"] = len(examples)
    return written


def lds_rows(table: Any, dev: Any = None) -> list[dict[str, Any]]:
    """The ground truth as the authors' `lds.jsonl` rows (plus `test_loss_seeds` when seeds were kept).

    `dev`: the dev split's table of the same jobs (`RunContext.ground_truth("dev")`), written beside as
    `dev_loss` (and `dev_loss_seeds`), one loss per row of `dev.jsonl`.
    """
    rows = []
    for m in range(table.masks.shape[0]):
        row: dict[str, Any] = {"train_subset": [int(i) for i in table.masks[m].nonzero()[0]],
                               "test_loss": [float(v) for v in table.losses[m]]}
        if dev is not None:
            row["dev_loss"] = [float(v) for v in dev.losses[m]]
        for name, t in (("test", table), ("dev", dev)):
            if t is not None and t.seed_losses is not None and t.seed_losses.shape[0] > 1:
                row[f"{name}_loss_seeds"] = [[float(v) for v in t.seed_losses[s, m]]
                                             for s in range(t.seed_losses.shape[0])]
        rows.append(row)
    return rows


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot write {value} to TOML")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string: JSON's escapes are TOML's
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise ValueError(f"cannot write {type(value).__name__} to TOML")


def _toml_table(name: str, values: dict[str, Any]) -> list[str]:
    lines = [f"[{name}]"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in values.items() if v is not None]
    return lines + [""]


def released_suite_toml(suite: Suite, written: dict[str, int]) -> str:
    """A suite file that reads the exported splits and `lds.jsonl` (released ground truth)."""
    spec = to_jsonable(suite.spec)
    labels = sorted({k for e in suite.split("train") + suite.split("test") for k in e.labels})
    data: dict[str, Any] = {"prompt_column": "prompt", "response_column": "response", "id_column": "id",
                            "label_columns": {k: f"label_{k}" for k in labels}}
    lines = [f"# Exported by tda-bench {bench.__version__} from suite '{suite.name}' v{suite.spec.version}.",
             f"name = {_toml_value(suite.name + '-export')}", f"version = {_toml_value(str(suite.spec.version))}",
             f"description = {_toml_value('Export of ' + suite.name + ': its splits and released ground truth.')}",
             *([f"clusters = {_toml_value(suite.spec.clusters)}  # how test examples cluster, for the bootstrap"]
               if suite.spec.clusters else []),
             ""]
    lines += _toml_table("data", data)
    for name in SPLITS:
        if f"{name}.jsonl" in written:
            lines += _toml_table(f"data.{name}", {"source": f"{name}.jsonl"})
    gt = suite.spec.ground_truth
    lines += [f"# the ground truth in lds.jsonl: {gt.num_subsets} subsets of {gt.fraction} of the pool, seed "
              f"{gt.seed}, {gt.seeds_per_subset} training seed(s) each; data fingerprint {suite.data_fingerprint}"]
    lines += _toml_table("ground_truth", {"released": "lds.jsonl"})
    lines += _toml_table("lm", spec["lm"])
    for method, options in sorted((spec.get("methods") or {}).items()):
        lines += _toml_table(f"methods.{method}", options)
    return "\n".join(lines)


def export_suite(suite: Suite, out: Path, cache: Cache, *, device: str = "cpu", model: bool = False) -> dict[str, int]:
    """Write every split, `lds.jsonl`, `suite.toml` and `README.md`; returns rows written per file.

    The ground truth is the suite's (computed and cached on first use, as by `bench run`). With `model`, also
    the target LM and the tokenised splits (`export_model`), described in the README.
    """
    from bench.api import RunContext

    out = check_out_dir(out)
    ctx = RunContext(suite, cache=cache, device=device)
    table = ctx.ground_truth()
    dev = ctx.ground_truth("dev") if suite.spec.dev is not None else None  # the same jobs' other columns
    tokenized = export_model(suite, out, cache, device=device) if model else {}
    written = _write_splits(suite, out, (*SPLITS, "dev"))
    for name in (*SPLITS, "dev"):  # a split this suite lacks must not stay behind from an earlier export
        if f"{name}.jsonl" not in written:
            (out / f"{name}.jsonl").unlink(missing_ok=True)
    written.update(tokenized)
    if not model:  # an earlier export's model must not stay beside splits it was not made with
        for name in ("model", "tokenized"):
            shutil.rmtree(out / name, ignore_errors=True)
        (out / "model.json").unlink(missing_ok=True)
    rows = lds_rows(table, dev)
    atomic_write_text(out / "lds.jsonl", _jsonl(rows))
    written["lds.jsonl"] = len(rows)
    atomic_write_text(out / "suite.toml", released_suite_toml(suite, written))
    gt = suite.spec.ground_truth
    recipe = json.dumps(to_jsonable(suite.spec), indent=2, sort_keys=True)
    files = "\n".join(f"- `{name}`: {n} rows" for name, n in written.items())
    title = f"{suite.name} v{suite.spec.version}, exported by tda-bench {bench.__version__}"
    atomic_write_text(out / "README.md", f"""# {title}

{suite.spec.description}

{files}
- `suite.toml`: reads this folder back as a suite whose ground truth is `lds.jsonl`
  (`bench run --method M --task lds --suite suite.toml`).

`train.jsonl` and `test.jsonl` are in the order a score matrix must follow: `scores[i, j]` is test row `i`
against train row `j` (`index` in each row). `lds.jsonl` is the AirRep authors' layout: one line per
retrained subset, `train_subset` (row indices into `train.jsonl`) and `test_loss` (one loss per row of
`test.jsonl`, the mean over {gt.seeds_per_subset} training seed(s)), with each seed's losses in
`test_loss_seeds` when there are several (the noise ceiling needs them). {gt.num_subsets} subsets of a
fraction {gt.fraction} of the pool, drawn with seed {gt.seed}; the loss is the mean cross-entropy over the response
and EOS tokens. Data fingerprint `{suite.data_fingerprint}`.{DEV_README if dev is not None else ""}

{MODEL_README if model else ""}## Suite recipe

```json
{recipe}
```
""")
    return written


DEV_README = """

`dev.jsonl` is the suite's dev split (held out from the test split by content; what `bench tune` tunes on),
and each `lds.jsonl` line's `dev_loss` (and `dev_loss_seeds`) its losses after the same training runs. The
suite that `suite.toml` reads back has no dev split: tune on the original suite."""

MODEL_README = """## The target LM

- `model/`: the model the model-based methods of tda-bench use (the suite's warm-up LM: the checkpoint the
  gradient methods linearise; LESS starts its LoRA warm-up from it), in float32, with its tokenizer:
  `AutoModelForCausalLM.from_pretrained("model")`, `AutoTokenizer.from_pretrained("model")`. Retraining for
  the ground truth starts from it, or from the base model where `model.json` says `retrain_from = base`.
- `tokenized/`: each split tokenised as the harness tokenises it (`datasets.load_from_disk("tokenized")`),
  rows in the order of the `.jsonl` files, unpadded: `input_ids`, `attention_mask`, `labels` (-100 where
  no loss is taken: the prompt; the loss is on the response and what closes it).
- `model.json`: the parameters that retraining updates (a gradient method should differentiate those
  alone), the modules the harness's gradient methods track, and the loss.

"""

MODEL_LOSS = ("mean next-token cross-entropy over the positions whose label is not -100, per example: "
              "logits[:, :-1] against labels[:, 1:], as transformers' causal-LM loss with one example per batch")


def _replace_dir(out: Path, name: str, write) -> None:
    """Call `write(tmp)` on a fresh temporary folder in `out`, then swap it in as `out/name` (no partial folder)."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=out))
    try:
        write(tmp)
        final = out / name
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".old", dir=out))
            old.rmdir()
            final.rename(old)
            try:
                tmp.rename(final)
            except OSError:
                old.rename(final)  # the earlier folder back, as it was
                raise
            shutil.rmtree(old)
        else:
            tmp.rename(final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def tokenized_rows(lm: Any, examples: Any) -> dict[str, list[list[int]]]:
    """`lm.encode(examples)` without padding: `input_ids`, `attention_mask` and `labels` (-100 off the loss)."""
    enc = lm.encode(examples)
    cols: dict[str, list[list[int]]] = {"input_ids": [], "attention_mask": [], "labels": []}
    for i, n in enumerate(enc.lengths.tolist()):
        cols["input_ids"].append(enc.input_ids[i, :n].tolist())
        cols["attention_mask"].append(enc.attention_mask[i, :n].tolist())
        cols["labels"].append(enc.labels[i, :n].tolist())
    return cols


def save_pretrained_lm(lm: Any, directory: Path) -> None:
    """`save_pretrained` of a `TargetLM`'s model in float32, with its tokenizer.

    float32 as the gradient methods differentiate it, whatever its dtype; `AutoModelForCausalLM` and
    `AutoTokenizer.from_pretrained` read it back.
    """
    import copy

    import torch

    model = lm.model if lm.model.dtype == torch.float32 else copy.deepcopy(lm.model).float()
    model.save_pretrained(str(directory), safe_serialization=True)
    lm.tokenizer.save_pretrained(str(directory))


def export_model(suite: Suite, out: Path, cache: Cache, *, device: str = "cpu") -> dict[str, int]:
    """Write `model/`, `tokenized/` and `model.json`; returns rows written per tokenised split.

    `model/` is the suite's warm-up LM (trained and cached on first use, as by `bench run`), the model that
    LoGra, TracIn, DsDm, EK-FAC and RDS use and LESS starts its LoRA warm-up from, in float32 (as the
    gradient methods differentiate it, whatever the suite's `lm.dtype`) with its tokenizer;
    `AutoModelForCausalLM.from_pretrained` and `AutoTokenizer.from_pretrained` read it back. `tokenized/` is
    a `datasets.DatasetDict` with one split per non-empty suite split, rows in the order of the exported
    examples. Under a top-layers recipe (`lm.train_layers`) `model.json` lists only the top layers'
    parameters as trained: the gradient methods differentiate those alone.
    """
    from datasets import Dataset, DatasetDict

    from bench.api import RunContext

    out = check_out_dir(out)
    lm = RunContext(suite, cache=cache, device=device).warmup_lm()
    splits = {name: suite.split(name) for name in SPLITS}  # type: ignore[arg-type]
    splits = {name: examples for name, examples in splits.items() if examples}

    def write_tokenized(tmp: Path) -> None:
        DatasetDict({name: Dataset.from_dict(tokenized_rows(lm, examples))
                     for name, examples in splits.items()}).save_to_disk(str(tmp))

    _replace_dir(out, "model", lambda tmp: save_pretrained_lm(lm, tmp))
    _replace_dir(out, "tokenized", write_tokenized)
    meta = {"suite": suite.name, "suite_version": suite.spec.version, "data_fingerprint": suite.data_fingerprint,
            "tda_bench": bench.__version__, "checkpoint": "warm-up LM", "dtype": "float32",
            "suite_dtype": getattr(suite.spec.lm, "dtype", "float32"), "retrain_from": suite.spec.lm.retrain_from,
            "trained_parameters": lm.trainable_names(), "first_trained_layer": lm.first_trainable_layer(),
            "gradient_methods_track": "the nn.Linear modules whose names contain 'mlp' among the trained "
                                      "parameters (the gradient methods' default modules=mlp)",
            "loss": MODEL_LOSS, "splits": {name: len(examples) for name, examples in splits.items()}}
    atomic_write_text(out / "model.json", json.dumps(meta, indent=2) + "\n")
    return {f"tokenized/{name}": len(examples) for name, examples in splits.items()}
