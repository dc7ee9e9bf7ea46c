"""Reading and writing AirRep models: the published layout, and resumable training checkpoints.

Weights are safetensors; the optimiser state holds tensors and numbers only (loaded weights-only).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from bench.api import ConfigError, atomic_path
from methods.airrep.model import _airrep_model_cls


def save_airrep(model, tokenizer, directory: Path) -> None:
    """Write a trained model in the authors' layout, atomically (temp dir, then rename).

    config.json holds the BERT config with model_type airrep; model.safetensors the `bert.*` and
    `projector.*` weights; the tokenizer files sit beside them.
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        config = {**model.bert.config.to_dict(), "model_type": "airrep", "architectures": ["AirRepModel"]}
        (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
        state = {f"bert.{k}": v.detach().contiguous() for k, v in model.bert.state_dict().items()}
        state.update({f"projector.{k}": v.detach().contiguous() for k, v in model.projector.state_dict().items()})
        save_file(state, str(tmp / "model.safetensors"))
        tokenizer.save_pretrained(str(tmp))
        if directory.exists():
            shutil.rmtree(directory)
        os.replace(tmp, directory)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


_CONFIG_DROP = ("model_type", "architectures", "auto_map", "transformers_version", "torch_dtype", "dtype")


def load_airrep(ref: str, device: str = "cpu"):  # -> (tokenizer, AirRepModel)
    """Load a trained AirRep from a local directory or a hub id (`sunweiwei/AirRep-Flan-Small` layout).

    A hub id is fetched with `huggingface_hub.snapshot_download`, which respects `HF_HUB_OFFLINE`.

    Raises:
        ConfigError: not found, or not in the AirRep layout.
    """
    import torch
    from safetensors.torch import load_file
    from torch import nn
    from transformers import AutoTokenizer, BertConfig, BertModel

    path = Path(ref).expanduser()
    if not path.exists():
        if ref.startswith(("/", ".", "~")):
            raise ConfigError(f"airrep checkpoint '{ref}': no such directory")
        try:
            from huggingface_hub import snapshot_download

            path = Path(snapshot_download(repo_id=ref))
        except Exception as exc:  # hub errors come in many types; one line for the user either way
            raise ConfigError(f"airrep checkpoint '{ref}': cannot be fetched ({type(exc).__name__}: "
                              f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''})") from exc
    config_path, weights_path = path / "config.json", path / "model.safetensors"
    if not config_path.is_file() or not weights_path.is_file():
        raise ConfigError(f"airrep checkpoint '{ref}': expected config.json and model.safetensors in {path}")
    raw = json.loads(config_path.read_text())
    config = BertConfig(**{k: v for k, v in raw.items() if k not in _CONFIG_DROP})
    bert = BertModel(config, add_pooling_layer=False)
    state = load_file(str(weights_path))
    bert_state = {k[len("bert."):]: v.float() for k, v in state.items()
                  if k.startswith("bert.") and not k.startswith("bert.pooler.")}
    missing, _ = bert.load_state_dict(bert_state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or "projector.weight" not in state:
        absent = missing[:3] or ["projector.weight"]
        raise ConfigError(f"airrep checkpoint '{ref}': weights missing ({', '.join(absent)}, ...)")
    projector = nn.Linear(config.hidden_size, config.hidden_size)
    with torch.no_grad():
        projector.weight.copy_(state["projector.weight"].float())
        projector.bias.copy_(state["projector.bias"].float())
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the config's model_type "airrep" is unknown to AutoConfig: expected here
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"airrep checkpoint '{ref}': no tokenizer in {path}") from exc
    finally:
        hf_logging.set_verbosity(verbosity)
    model = _airrep_model_cls()(bert, projector)
    return tokenizer, model.to(device).eval()


def trainable_state(model) -> dict:
    """Copies of the parameters being trained."""
    return {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}


def save_checkpoint(directory: Path, model, opt, step: int, history: list, best: dict, train_s: float) -> None:
    """Write a resumable training checkpoint; `state.json` last (it marks the checkpoint complete)."""
    import torch
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / "weights.safetensors") as tmp:
        save_file({k: v.contiguous() for k, v in trainable_state(model).items()}, str(tmp))
    with atomic_path(directory / "best.safetensors") as tmp:
        save_file({k: v.contiguous() for k, v in best["state"].items()}, str(tmp))
    with atomic_path(directory / "optimizer.pt") as tmp:
        torch.save(opt.state_dict(), tmp)
    state = {"step": step, "history": history, "best": {"step": best["step"], "lds": best["lds"]}, "train_s": train_s}
    with atomic_path(directory / "state.json") as tmp:  # written last: the checkpoint is complete
        tmp.write_text(json.dumps(state))


def load_checkpoint(directory: Path, model, opt) -> dict | None:
    """Restore the model and optimiser from the checkpoint, if there is one; return its state."""
    import torch
    from safetensors.torch import load_file

    state_path = directory / "state.json"
    if not state_path.exists():
        return None
    state = json.loads(state_path.read_text())
    model.load_state_dict(load_file(str(directory / "weights.safetensors")), strict=False)
    opt.load_state_dict(torch.load(directory / "optimizer.pt", weights_only=True))
    return state


def load_best(directory: Path) -> dict:
    """The weights of the best held-out step so far."""
    from safetensors.torch import load_file

    return load_file(str(directory / "best.safetensors"))
