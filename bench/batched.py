"""Batched retraining: K copies of a built target LM trained at once, each on its own subset and seed.

A retraining job of an embedded suite fine-tunes a 0.4M-parameter Llama for ~64 steps of 32 short examples.
One by one, each step is ~450 small operations, and its matrix products are already near this CPU's GEMM
rate: what batching can win is the per-operation overhead (by running K models in each operation) and the
arithmetic that the loss never needs. `StackedLlama` holds the K models' weights as stacked tensors
`[K, ...]` and runs one forward/backward for all of them:

- every linear layer is one `torch.bmm` over the K models (q/k/v and gate/up fused into one product each);
- the linear layers see only real tokens: each model's batch is packed (no padding rows), and unpacked to
  the padded layout only for attention;
- the last layer's output projection and MLP, and the LM head, run only at the positions whose next token
  is a label (response and EOS tokens). Nothing else reaches the loss, so this is exact, not an
  approximation; with short responses it removes most of the last layer and the vocabulary product;
- the optimiser is one `torch.optim.AdamW` over the stacked tensors. AdamW is elementwise, so this is K
  independent optimisers; gradient clipping takes each model's own norm.

Each model sees exactly what `TargetLM.train` would give it: its own subset, the batch order of its own
seed, the same AdamW, the loss averaged over its batch's label tokens. The reference is `transformers`'
`LlamaForCausalLM`: `tests/test_batched.py` checks losses and gradients against it through
`torch.func.functional_call`, and K batched trainings against K one-by-one ones. Results agree to float
rounding (the products have other shapes), not bit for bit.

Why not `torch.func.vmap` over `functional_call` of the `transformers` model (what PROTOTYPE.md tried)?
Measured here on the `small` suite's shapes, vmap gave 22 ms per model-step at K = 8-32 against 20 ms one
by one: the model is GEMM-bound on padded tokens, and vmap batches the products without removing any.
The gains come from the packing and the label-position trimming, which a generic model call cannot do.

Supported: `LlamaForCausalLM` in float32 with the default rotary embedding, no biases, SiLU, no dropout
(the embedded suites' built LMs, and SmolLM2-135M). Other target LMs (Qwen2's biased attention, bf16) train
one by one.

A top-layers recipe (`lm.train_layers` = N) trains only the top N decoder layers and the final norm. Every
job of a suite starts from the same frozen embeddings and lower layers, so their output on the pool and on
the evaluated split is computed once per process (`shared_prefix`, a `Prefix` of each real token's hidden
state) and each step runs the top layers alone from it, for K jobs at once; the frozen LM head is one
tensor shared by the K copies. Measured on SmolLM2-135M, top 2 of 30 layers: `benchmarks/pretrained.py`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


def keep_freed_memory() -> None:
    """Keep freed heap memory in the process instead of returning it to the OS (glibc only; else nothing).

    A step allocates and frees tens of MB of activations. With glibc's defaults each such block is unmapped
    when freed and page-faulted in again on the next step; measured here, that cost about a fifth of a
    batched step. This is PyTorch's CPU tuning advice (a caching allocator such as jemalloc or tcmalloc)
    done with glibc's own `mallopt`: blocks up to 1 GiB come from the heap, which is not trimmed.
    """
    import ctypes
    import ctypes.util

    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return
    _MALLOC_TUNED = True
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = getattr(libc, "mallopt", None)
    except OSError:
        mallopt = None
    if mallopt is not None:
        mallopt(_M_MMAP_THRESHOLD, 1 << 30)
        mallopt(_M_TRIM_THRESHOLD, 1 << 31)


_MALLOC_TUNED = False
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers (malloc.h)


def supports(model) -> bool:
    """Whether `model` can be trained by `StackedLlama` (else one model at a time)."""
    cfg = getattr(model, "config", None)
    if cfg is None or type(model).__name__ != "LlamaForCausalLM":
        return False
    rope = getattr(cfg, "rope_parameters", None) or {}
    return (next(model.parameters()).dtype == torch.float32 and rope.get("rope_type", "default") == "default"
            and not getattr(cfg, "attention_bias", False) and not getattr(cfg, "mlp_bias", False)
            and getattr(cfg, "hidden_act", "silu") == "silu" and not getattr(cfg, "attention_dropout", 0.0)
            and getattr(cfg, "pretraining_tp", 1) == 1)


def group_size(model, *, batch_size: int, max_length: int, cap: int = 16, budget_bytes: int = 2 << 30) -> int:
    """K for a model: as many copies as fit `budget_bytes` (weights, grads, Adam moments, activations), <= cap.

    One copy costs 16 bytes per parameter (weight, gradient, two moments) plus its activations, about 40
    floats of width `hidden` or `intermediate` per token and layer, kept for the backward pass.
    """
    if not supports(model):
        return 1
    cfg = model.config
    params = sum(p.numel() for p in model.parameters())
    per_token = 40 * max(cfg.hidden_size, cfg.intermediate_size) * cfg.num_hidden_layers
    per_model = 16 * params + 4 * per_token * batch_size * max_length
    return int(max(1, min(cap, budget_bytes // per_model)))


@dataclass
class Packed:
    """The token layout of one step: K models' batches of b rows, packed for the linear layers.

    Shapes: T packed tokens, Q loss positions per model (the maxima over models; shorter models padded).

    Attributes:
        tokens: long [K, T], token ids at the packed positions.
        positions: long [K, T], each token's position in its row (for the rotary embedding).
        unpack: long [K * b * L], index into the packed rows of all models (`[K * T]`), giving the padded
            layout for attention.
        pack: long [K * T], index into the padded rows `[K * b * L]` of each packed token.
        allowed: bool [K * b, 1, L, L], causal and key-padding attention mask.
        query_padded: long [K * Q], padded-layout index of each loss position.
        query_packed: long [K * Q], packed index of each loss position.
        targets: long [K, Q], the next token (the label) at each loss position.
        valid: bool [K, Q], the loss position exists (models with fewer are padded).
        row_of_query: long [K, Q], which of the b rows a loss position belongs to.
        rows: b.
        hidden: float [K, T, H], the frozen layers' output at the packed tokens (a `Prefix`'s rows), or None
            when the stack starts at the embeddings.
    """

    tokens: torch.Tensor
    positions: torch.Tensor
    unpack: torch.Tensor
    pack: torch.Tensor
    allowed: torch.Tensor
    query_padded: torch.Tensor
    query_packed: torch.Tensor
    targets: torch.Tensor
    valid: torch.Tensor
    row_of_query: torch.Tensor
    rows: int
    hidden: torch.Tensor | None = None


@dataclass
class Prefix:
    """The frozen lower layers' output at every real token of an `Encoded`, computed once.

    What every job of a top-layers recipe (`lm.train_layers`) would otherwise recompute at each step.

    Attributes:
        hidden: float [sum of lengths, H], the input of decoder layer `first_layer` at each real token, rows
            one after another.
        offsets: long [n], where each row starts in `hidden`.
        lengths: long [n], each row's real tokens.
        first_layer: the lowest trained layer.
    """

    hidden: torch.Tensor
    offsets: torch.Tensor
    lengths: torch.Tensor
    first_layer: int

    def take(self, rows: torch.Tensor) -> Prefix:
        """The states of rows `rows` (repeats allowed), as `Encoded.take` takes their tokens."""
        lengths = self.lengths[rows]
        offsets = _row_starts(lengths)
        # token i of the new layout comes from its row's start in the old one, plus its place in the row
        shift = torch.repeat_interleave(self.offsets[rows] - offsets, lengths)
        index = torch.arange(int(lengths.sum())) + shift
        return Prefix(self.hidden.index_select(0, index), offsets, lengths, self.first_layer)


def _row_starts(lengths: torch.Tensor) -> torch.Tensor:
    """Where each row starts when rows of these lengths are laid one after another."""
    starts = torch.zeros_like(lengths)
    starts[1:] = torch.cumsum(lengths, 0)[:-1]
    return starts


class _Stop(Exception):
    """Ends a forward pass once the first trained layer's input is known."""


@torch.no_grad()
def compute_prefix(model, data, first_layer: int, batch_size: int = 32) -> Prefix:
    """Run `model` (a `transformers` decoder) up to decoder layer `first_layer` on every row of `data`.

    The pass stops at that layer (a pre-hook catches its input): the layers above cost nothing. Rows are right
    padded, so a real token's state does not depend on the padding after it; they go through in order of
    length, so a batch pads to about its own rows' length, not to that of the longest row in the split.
    """
    layers = model.model.layers
    captured: list[torch.Tensor] = []

    def hook(module, args, kwargs):
        captured.append((args[0] if args else kwargs["hidden_states"]).detach())
        raise _Stop

    handle = layers[first_layer].register_forward_pre_hook(hook, with_kwargs=True)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    n = len(data.lengths)
    rows: list[torch.Tensor | None] = [None] * n
    by_length = torch.argsort(data.lengths, stable=True)
    try:
        for start in range(0, n, batch_size):
            idx = by_length[start: start + batch_size]
            batch = data.batch(idx)
            captured.clear()
            try:
                model.model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device))
            except _Stop:
                pass
            states = captured[0].float()
            for j, row in enumerate(idx.tolist()):  # each row's real tokens (right padding: the first ones)
                rows[row] = states[j, : int(data.lengths[row])]
    finally:
        handle.remove()
        model.train(was_training)
    return Prefix(torch.cat(rows) if n else torch.zeros(0, model.config.hidden_size),  # type: ignore[arg-type]
                  _row_starts(data.lengths), data.lengths.clone(), first_layer)


def shared_prefix(model, data, first_layer: int, start: dict[str, torch.Tensor]) -> Prefix:
    """`compute_prefix` of `data` with `model` holding the weights `start`, computed once per (rows, weights).

    Kept in `data.memo` under the identity of `start` (held there too, so the identity cannot be reused): the
    retraining workers load the same start weights for every group, so the pool and the evaluated split are
    run through the frozen layers once per process. Rows taken from another `Encoded` (leave-one-out's pool
    with copies of the left-out rows) take their states from that one's.
    """
    key = ("prefix", id(start), first_layer)
    hit = data.memo.get(key)
    if hit is None:
        parent = data.memo.get("parent")  # rows taken from another `Encoded` (`Encoded.take`): reuse its states
        prefix = shared_prefix(model, parent[0], first_layer, start).take(parent[1]) if parent is not None \
            else compute_prefix(model, data, first_layer)
        hit = data.memo[key] = (start, prefix)
    return hit[1]


# decoders whose first layer takes `inputs_embeds` as given (no embedding scale), so a `Prefix`'s states can be fed
PREFIX_MODEL_TYPES = ("llama", "qwen2", "mistral")


class _PassThrough(torch.nn.Module):
    """Stands in for a frozen decoder layer whose output is already known: returns its input."""

    def forward(self, hidden_states, *args, **kwargs):  # noqa: D102
        return hidden_states


def prefix_states(prefix: Prefix, rows: torch.Tensor, width: int) -> torch.Tensor:
    """The states of `rows`, right-padded to `width` as `Encoded.batch` pads their tokens: float [b, width, H].

    Padding positions hold zeros; causal attention with the padding masked out never reads them for a real
    token.
    """
    rows = torch.as_tensor(rows, dtype=torch.long)
    lengths = prefix.lengths[rows]
    pos = torch.arange(width)
    real = pos[None] < lengths[:, None]
    at = (prefix.offsets[rows][:, None] + pos[None])[real].to(prefix.hidden.device)
    out = prefix.hidden.new_zeros((len(rows), width, prefix.hidden.shape[1]))
    out[real.to(out.device)] = prefix.hidden.index_select(0, at)
    return out


def top_layer_losses(model, first_layer: int, states: torch.Tensor, batch: dict[str, torch.Tensor], *,
                     draw: bool = False) -> torch.Tensor:
    """`per_example_loss` of a batch, run from the input of decoder layer `first_layer` (`prefix_states`).

    The model's own modules run, so hooks on them (logix's) see what they see in a full pass; the layers
    below `first_layer` pass their input through for this call. The LM head runs only at the positions whose
    next token is a label (nothing else reaches the loss), and the token losses are computed in
    `per_example_loss`'s layout, so the values are the full pass's to float rounding (`tests/test_batched.py`).

    Args:
        model: a `transformers` causal LM of a `PREFIX_MODEL_TYPES` type (not a `peft` wrapper: its base model).
        first_layer: the lowest decoder layer to run.
        states: float [b, L, H], the input of that layer at every position (zeros at padding).
        batch: `Encoded.batch`'s `attention_mask` and `labels`, [b, L].
        draw: score targets drawn from the model's own next-token distribution (torch's global generator) at
            the labelled positions instead of the labels: the true Fisher's loss (kronfluence's `sample`).

    Returns:
        float [b], differentiable with respect to the parameters of the layers that ran.
    """
    layers = model.model.layers
    below = [layers[i] for i in range(first_layer)]
    try:
        for i in range(first_layer):
            layers[i] = _PassThrough()
        hidden = model.model(inputs_embeds=states.to(model.dtype),
                             attention_mask=batch["attention_mask"]).last_hidden_state
    finally:
        for i, layer in enumerate(below):
            layers[i] = layer
    labels = batch["labels"]
    nxt = torch.full_like(labels, -100)
    nxt[:, :-1] = labels[:, 1:]  # position p predicts the token at p + 1
    rows, pos = (nxt != -100).nonzero(as_tuple=True)
    logits = model.lm_head(hidden[rows, pos]).float()  # [N, V]
    targets = nxt[rows, pos]
    if draw:
        with torch.no_grad():
            targets = torch.multinomial(torch.softmax(logits, dim=-1), 1)[:, 0]
    # [1, V, N] as per_example_loss's [n, V, L]: the same reduction kernel, the same token losses
    tok = F.cross_entropy(logits.T[None], targets[None], reduction="none")[0]
    count = torch.bincount(rows, minlength=len(labels)).clamp(min=1)
    return torch.zeros(len(labels), dtype=tok.dtype, device=tok.device).index_add(0, rows, tok) / count


def pack(input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor,
         rows: torch.Tensor | None = None, prefix: Prefix | None = None) -> Packed:
    """Pack K right-padded batches `[K, b, L]` (the `TargetLM.encode` layout) for `StackedLlama`.

    With a `prefix` (of the whole `Encoded`), `rows` [K, b] are the batch rows' indices in it, and the packed
    tokens carry the frozen layers' output from it.
    """
    k, b, width = input_ids.shape
    real = attention_mask.reshape(k, b * width).bool()
    n_real = real.sum(1)
    t = int(n_real.max())
    # stable sort puts each model's real positions first, in order; the tail of a shorter model is padding
    order = torch.argsort((~real).to(torch.int8), dim=1, stable=True)[:, :t]
    slot = torch.arange(t).expand(k, t)
    # padding positions read packed slot 0: attention masks them out as keys and never uses them as queries
    unpack = torch.zeros((k, b * width), dtype=torch.long)
    unpack.scatter_(1, order, torch.where(slot < n_real[:, None], slot, 0))
    tokens = input_ids.reshape(k, b * width).gather(1, order)
    positions = order % width
    nxt = torch.full_like(labels, -100)
    nxt[:, :, :-1] = labels[:, :, 1:]  # position p predicts the token at p + 1
    nxt = nxt.reshape(k, b * width)
    is_query = nxt != -100
    n_query = is_query.sum(1)
    q = max(1, int(n_query.max()))
    qorder = torch.argsort((~is_query).to(torch.int8), dim=1, stable=True)[:, :q]
    valid = torch.arange(q).expand(k, q) < n_query[:, None]
    causal = torch.tril(torch.ones(width, width, dtype=torch.bool))
    allowed = causal[None] & attention_mask.reshape(k * b, width).bool()[:, None, :]
    model = torch.arange(k)[:, None]
    hidden = None
    if prefix is not None:
        if rows is None:
            raise ValueError("pack: a prefix needs the batch rows' indices")
        # padding slots (past a shorter model's real tokens) read row 0's first token: never a query or a key
        at = prefix.offsets[rows.reshape(k, b).gather(1, order // width)] + positions
        at = torch.where(slot < n_real[:, None], at, 0)
        hidden = prefix.hidden.index_select(0, at.reshape(-1)).view(k, t, -1)
    return Packed(
        tokens=tokens, positions=positions,
        unpack=(unpack + model * t).reshape(-1), pack=(order + model * (b * width)).reshape(-1),
        allowed=allowed[:, None], query_padded=(qorder + model * (b * width)).reshape(-1),
        query_packed=(unpack.gather(1, qorder) + model * t).reshape(-1),
        targets=torch.where(valid, nxt.gather(1, qorder), 0), valid=valid, row_of_query=qorder // width, rows=b,
        hidden=hidden)


class _SwiGLU(torch.autograd.Function):
    """silu(gate) * up of a fused [..., 2I] gate/up product, as one autograd node.

    The backward writes the [..., 2I] gradient at once; autograd's `chunk` would assemble it from two halves
    with an extra copy of the whole activation.
    """

    @staticmethod
    def forward(ctx, gate_up: torch.Tensor) -> torch.Tensor:  # noqa: D102
        gate, up = gate_up.chunk(2, dim=-1)
        ctx.save_for_backward(gate_up)
        return F.silu(gate) * up

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        (gate_up,) = ctx.saved_tensors
        gate, up = gate_up.chunk(2, dim=-1)
        sig = torch.sigmoid(gate)
        out = torch.empty_like(gate_up)
        d_gate, d_up = out.chunk(2, dim=-1)
        torch.mul(grad, gate * sig, out=d_up)
        torch.mul(grad * up, sig * (1 + gate * (1 - sig)), out=d_gate)
        return out


class StackedLlama:
    """K copies of a `LlamaForCausalLM`'s weights as stacked leaf tensors, with a batched forward pass.

    With `first_layer` > 0 (a top-layers recipe) only decoder layers `first_layer`.. and the final norm are
    stacked and trained; the forward pass starts from a `Prefix` (the frozen layers' output), and the frozen
    LM head is one tensor shared by the K copies.
    """

    def __init__(self, model, k: int, first_layer: int = 0) -> None:
        if not supports(model):
            raise ValueError(f"StackedLlama cannot train {type(model).__name__} (see bench.batched.supports)")
        cfg = model.config
        if not 0 <= first_layer < cfg.num_hidden_layers:
            raise ValueError(f"first_layer {first_layer} is not a decoder layer of this model")
        self.first = first_layer
        self.k = k
        self.hidden = cfg.hidden_size
        self.heads = cfg.num_attention_heads
        self.kv_heads = getattr(cfg, "num_key_value_heads", None) or self.heads
        self.head_dim = getattr(cfg, "head_dim", None) or self.hidden // self.heads
        self.layers = cfg.num_hidden_layers
        self.eps = cfg.rms_norm_eps
        self.tied = bool(cfg.tie_word_embeddings)
        rotary = model.model.rotary_emb
        positions = torch.arange(cfg.max_position_embeddings, dtype=torch.float32)
        angles = positions[:, None] * rotary.inv_freq.float()[None, :]  # [P, head_dim / 2]
        # transformers rotates dimension i with i + head_dim / 2. The q and k rows are stored with each such
        # pair adjacent (dot products of q and k do not change under one permutation of both), so that the
        # rotation is one complex product per pair
        self._rotation = torch.polar(torch.full_like(angles, float(rotary.attention_scaling)), angles)
        half = self.head_dim // 2
        self._interleave = torch.stack([torch.arange(half), torch.arange(half) + half], dim=1).reshape(-1)
        self.params: dict[str, torch.Tensor] = {}
        self.head: torch.Tensor | None = None  # the frozen, shared LM head of a top-layers stack
        self.load(model)

    # -- weights --------------------------------------------------------------------------------------------
    def fuse(self, named: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Tensors under `LlamaForCausalLM`'s parameter names -> this class's fused layout (one model's)."""
        sd = named
        out = {"norm": sd["model.norm.weight"]}
        if self.first == 0:
            out["embed"] = sd["model.embed_tokens.weight"]
            if not self.tied:
                out["lm_head"] = sd["lm_head.weight"]
        for i in range(self.first, self.layers):
            pre = f"model.layers.{i}."
            out[f"{i}.ln1"] = sd[pre + "input_layernorm.weight"]
            out[f"{i}.ln2"] = sd[pre + "post_attention_layernorm.weight"]
            q, k, v = (sd[pre + f"self_attn.{p}_proj.weight"] for p in "qkv")
            out[f"{i}.qkv"] = torch.cat([self._heads(q, self._interleave), self._heads(k, self._interleave), v])
            out[f"{i}.o"] = sd[pre + "self_attn.o_proj.weight"]
            out[f"{i}.gate_up"] = torch.cat([sd[pre + "mlp.gate_proj.weight"], sd[pre + "mlp.up_proj.weight"]])
            out[f"{i}.down"] = sd[pre + "mlp.down_proj.weight"]
        return out

    def load(self, model) -> None:
        """Set every copy to `model`'s weights (fresh leaf tensors: make a new optimiser after this)."""
        named = {n: p.detach() for n, p in model.named_parameters()}
        self.params = {n: w.unsqueeze(0).repeat(self.k, *([1] * w.dim())).contiguous().requires_grad_(True)
                       for n, w in self.fuse(named).items()}
        if self.first > 0:
            self.head = named["model.embed_tokens.weight" if self.tied else "lm_head.weight"].clone()

    def parameters(self) -> list[torch.Tensor]:
        """The stacked leaf tensors, [K, ...] each."""
        return list(self.params.values())

    def state_dict(self, index: int) -> dict[str, torch.Tensor]:
        """Copy `index`'s weights under `LlamaForCausalLM`'s names (tied LM head included, as state_dict has it).

        A top-layers stack gives its trained weights only (load them over the start weights).
        """
        p = {n: w[index].detach().clone() for n, w in self.params.items()}
        q_rows, kv_rows = self.heads * self.head_dim, self.kv_heads * self.head_dim
        out = {"model.norm.weight": p["norm"]}
        if self.first == 0:
            out.update({"model.embed_tokens.weight": p["embed"],
                        "lm_head.weight": p["embed"] if self.tied else p["lm_head"]})
        for i in range(self.first, self.layers):
            pre = f"model.layers.{i}."
            q, k, v = p[f"{i}.qkv"].split([q_rows, kv_rows, kv_rows])
            q, k = self._heads(q, self._deinterleave), self._heads(k, self._deinterleave)
            gate, up = p[f"{i}.gate_up"].chunk(2)
            out.update({pre + "input_layernorm.weight": p[f"{i}.ln1"], pre + "post_attention_layernorm.weight":
                        p[f"{i}.ln2"], pre + "self_attn.q_proj.weight": q, pre + "self_attn.k_proj.weight": k,
                        pre + "self_attn.v_proj.weight": v, pre + "self_attn.o_proj.weight": p[f"{i}.o"],
                        pre + "mlp.gate_proj.weight": gate, pre + "mlp.up_proj.weight": up,
                        pre + "mlp.down_proj.weight": p[f"{i}.down"]})
        return out

    # -- forward ----------------------------------------------------------------------------------------------
    def _rms(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return weight[:, None, :] * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))

    def _heads(self, weight: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
        """Reorder the rows of a q or k projection `[heads * head_dim, hidden]` within each head."""
        rows = weight.view(-1, self.head_dim, weight.shape[-1])
        return rows[:, order].reshape(weight.shape)

    @property
    def vocab(self) -> int:
        """Rows of the LM head: the shared frozen one, or each copy's (its tied embeddings)."""
        if self.head is not None:
            return int(self.head.shape[0])
        return int((self.params["embed"] if self.tied else self.params["lm_head"]).shape[1])

    @property
    def _deinterleave(self) -> torch.Tensor:
        return torch.argsort(self._interleave)

    def token_losses(self, packed: Packed) -> torch.Tensor:
        """Cross-entropy of each loss position, float32 [K, Q] (0 where `packed.valid` is False)."""
        p, k = self.params, self.k
        t = packed.tokens.shape[1]
        hd, nh, nkv = self.head_dim, self.heads, self.kv_heads
        rows, width = packed.rows, packed.allowed.shape[-1]
        if self.first == 0:
            vocab = p["embed"].shape[1]
            flat_tokens = (packed.tokens + torch.arange(k)[:, None] * vocab).reshape(-1)
            h = p["embed"].reshape(k * vocab, -1).index_select(0, flat_tokens).view(k, t, -1)
        else:
            if packed.hidden is None:
                raise ValueError("a top-layers StackedLlama needs batches packed with their Prefix")
            h = packed.hidden
        rotation = self._rotation[:width, None, :]  # the padded layout: positions are the row positions
        mask = torch.zeros(packed.allowed.shape, dtype=h.dtype).masked_fill_(~packed.allowed, float("-inf"))
        for i in range(self.first, self.layers):
            qkv = torch.bmm(self._rms(h, p[f"{i}.ln1"]), p[f"{i}.qkv"].transpose(1, 2))
            padded = qkv.reshape(k * t, -1).index_select(0, packed.unpack).view(k * rows, width, nh + 2 * nkv, hd)
            qk, v = padded.split([nh + nkv, nkv], dim=2)
            qk = torch.view_as_real(torch.view_as_complex(qk.unflatten(-1, (hd // 2, 2))) * rotation).flatten(-2)
            q, key = (x.transpose(1, 2) for x in qk.split([nh, nkv], dim=2))
            v = v.transpose(1, 2)
            if nkv != nh:
                key, v = key.repeat_interleave(nh // nkv, dim=1), v.repeat_interleave(nh // nkv, dim=1)
            scores = torch.matmul(q, key.transpose(2, 3)) * hd ** -0.5 + mask
            att = torch.matmul(scores.softmax(dim=-1), v).transpose(1, 2).reshape(k * rows * width, nh * hd)
            if i == self.layers - 1:  # only the loss positions go further: nothing else reaches the loss
                att = att.index_select(0, packed.query_padded).view(k, -1, nh * hd)
                h = h.reshape(k * t, -1).index_select(0, packed.query_packed).view(k, -1, h.shape[-1])
            else:
                att = att.index_select(0, packed.pack).view(k, t, nh * hd)
            h = h + torch.bmm(att, p[f"{i}.o"].transpose(1, 2))
            gate_up = torch.bmm(self._rms(h, p[f"{i}.ln2"]), p[f"{i}.gate_up"].transpose(1, 2))
            h = h + torch.bmm(_SwiGLU.apply(gate_up), p[f"{i}.down"].transpose(1, 2))
        if self.head is not None:  # frozen and shared: one product for the K copies
            logits = torch.matmul(self._rms(h, p["norm"]), self.head.t())
        else:
            head = p["embed"] if self.tied else p["lm_head"]
            logits = torch.bmm(self._rms(h, p["norm"]), head.transpose(1, 2))
        ce = F.cross_entropy(logits.reshape(-1, self.vocab), packed.targets.reshape(-1), reduction="none")
        return ce.view(k, -1) * packed.valid

    def batch_losses(self, packed: Packed) -> torch.Tensor:
        """Each model's mean cross-entropy over its batch's label tokens (`transformers`' loss), float32 [K]."""
        return self.token_losses(packed).sum(1) / packed.valid.sum(1).clamp(min=1)

    def example_losses(self, packed: Packed) -> torch.Tensor:
        """Each row's mean cross-entropy over its label tokens (`bench.lm.per_example_loss`), float32 [K, b]."""
        ce = self.token_losses(packed)
        total = ce.new_zeros(self.k, packed.rows).scatter_add_(1, packed.row_of_query, ce)
        count = ce.new_zeros(self.k, packed.rows).scatter_add_(1, packed.row_of_query, packed.valid.float())
        return total / count.clamp(min=1)

    def clip_grad_norm_(self, max_norm: float) -> None:
        """Clip each model's gradient to `max_norm` by its own total norm (as `clip_grad_norm_` per model)."""
        grads = [p.grad for p in self.params.values() if p.grad is not None]
        norms = torch.stack([g.reshape(self.k, -1).pow(2).sum(1) for g in grads]).sum(0).sqrt()
        coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(coef.view(-1, *([1] * (g.dim() - 1))))


def _rows(data, index: torch.Tensor, prefix: Prefix | None = None) -> Packed:
    """The rows `index` [K, b] of an `Encoded`, trimmed to the widest, packed (with their `prefix` states)."""
    width = int(data.lengths[index].max())
    return pack(data.input_ids[index][..., :width], data.attention_mask[index][..., :width],
                data.labels[index][..., :width], rows=index, prefix=prefix)


def train_stacked(stacked: StackedLlama, data, members: Sequence[np.ndarray], seeds: Sequence[int], *, lr: float,
                  epochs: int, batch_size: int, weight_decay: float = 0.0,
                  max_grad_norm: float | None = None, prefix: Prefix | None = None) -> list[list[float]]:
    """Train copy j on rows `members[j]` of `data` with seed `seeds[j]`, exactly as `TargetLM.train` would.

    A top-layers stack takes `prefix`, the frozen layers' output on `data` (`shared_prefix`).

    Every member set must have the same size (the same number of steps for every copy). Copy j draws its
    batch order from `torch.Generator().manual_seed(seeds[j])`, one permutation of its members per epoch.

    Returns:
        The batch loss of every step, per copy.
    """
    keep_freed_memory()
    sizes = {len(m) for m in members}
    if len(sizes) != 1 or len(members) != stacked.k or len(seeds) != stacked.k:
        raise ValueError(f"train_stacked needs {stacked.k} member sets of one size and {stacked.k} seeds")
    n = sizes.pop()
    per_epoch = math.ceil(n / batch_size)
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    member_rows = [torch.as_tensor(np.asarray(m), dtype=torch.long) for m in members]
    opt = torch.optim.AdamW(stacked.parameters(), lr=lr, weight_decay=weight_decay, fused=True)
    history: list[list[float]] = [[] for _ in range(stacked.k)]
    orders: list[torch.Tensor] = []
    for step in range(per_epoch * epochs):
        start = (step % per_epoch) * batch_size
        if start == 0:
            orders = [rows[torch.randperm(n, generator=g)] for rows, g in zip(member_rows, gens, strict=True)]
        index = torch.stack([o[start: start + batch_size] for o in orders])
        losses = stacked.batch_losses(_rows(data, index, prefix))
        opt.zero_grad(set_to_none=True)
        losses.sum().backward()  # the copies share no weights: each gets its own loss's gradient
        if max_grad_norm is not None:
            stacked.clip_grad_norm_(max_grad_norm)
        opt.step()
        for j, value in enumerate(losses.detach().tolist()):
            history[j].append(value)
    return history


@torch.no_grad()
def stacked_losses(stacked: StackedLlama, data, rows_per_pass: int = 1024, prefix: Prefix | None = None,
                   logits_bytes: int = 256 << 20) -> np.ndarray:
    """Per-example mean response cross-entropy of every copy on every row of `data`, float64 [K, n].

    A top-layers stack takes `prefix`, the frozen layers' output on `data`.

    Rows are evaluated in chunks of about `rows_per_pass / K` per copy (the working set of one pass stays
    about the same whatever K), fewer where the logits of a pass (K x loss positions x vocabulary, float32)
    would exceed `logits_bytes`: SmolLM2's 49,152-token vocabulary made one pass of 4 copies x 240 rows take
    6 GiB (and more time than smaller passes). The built LMs' 4,000-token vocabularies stay within it.
    """
    n = len(data.lengths)
    labels_per_row = max(1.0, float((data.labels != -100).sum()) / max(n, 1))
    fit = int(logits_bytes // (4 * stacked.vocab * labels_per_row * stacked.k))
    batch_size = max(1, min(max(8, rows_per_pass // stacked.k), fit))
    out = np.empty((stacked.k, n), dtype=np.float64)
    for start in range(0, n, batch_size):
        index = torch.arange(start, min(start + batch_size, n)).expand(stacked.k, -1)
        out[:, start: start + index.shape[1]] = stacked.example_losses(_rows(data, index, prefix)).double().numpy()
    return out
