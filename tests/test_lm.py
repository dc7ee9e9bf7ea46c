import numpy as np
import pytest
import torch

from bench.data import Example
from bench.lm import TargetLM, per_example_loss
from bench.suites import LMSpec

SPEC = LMSpec(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, max_length=24, batch_size=8)


def _examples(n=32):
    return [Example(id=str(i), prompt=f"What is {i % 7} + 1?", response=str(i % 7 + 1)) for i in range(n)]


def _lm():
    ex = _examples()
    return TargetLM.create([t for e in ex for t in (e.prompt, e.response)], SPEC)


def test_loss_covers_response_and_eos_only():
    lm = _lm()
    enc = lm.encode(_examples(4))
    for row_ids, row_labels in zip(enc.input_ids, enc.labels, strict=True):
        kept = row_ids[row_labels != -100].tolist()
        sep = lm.tokenizer.convert_tokens_to_ids("<sep>")
        eos = lm.tokenizer.convert_tokens_to_ids("<eos>")
        assert kept[-1] == eos and sep not in kept and len(kept) == 2  # one digit + EOS
    logits = torch.randn(2, 5, 11)
    labels = torch.tensor([[-100, -100, 3, 4, -100], [-100, 1, -100, -100, -100]])
    manual0 = torch.nn.functional.cross_entropy(logits[0, [1, 2]], torch.tensor([3, 4]))
    manual1 = torch.nn.functional.cross_entropy(logits[1, [0]], torch.tensor([1]))
    torch.testing.assert_close(per_example_loss(logits, labels), torch.stack([manual0, manual1]))


def test_training_is_seeded_and_lowers_loss_and_generation_decodes():
    lm = _lm()
    enc = lm.encode(_examples())
    init = lm.state_dict()
    before = lm.losses(enc)
    lm.train(enc, lr=5e-3, seed=3, epochs=20)
    after = lm.losses(enc)
    assert after.mean() < 0.5 * before.mean()
    first = lm.state_dict()
    lm.load_state_dict(init)
    lm.train(enc, lr=5e-3, seed=3, epochs=20)
    np.testing.assert_array_equal(lm.losses(enc), after)
    assert all(torch.equal(first[k], v) for k, v in lm.state_dict().items())


def test_batched_greedy_generation_matches_one_by_one_and_teacher_forcing():
    lm = _lm()
    lm.train(lm.encode(_examples()), lr=5e-3, seed=0, epochs=10)
    prompts = ["What is 3 + 1?", "What is 1 + 1 + 1 + 1?", "What is 12 + 1?"]  # unequal lengths: left padding
    batched = lm.generate(prompts, max_new_tokens=3)
    assert batched == [lm.generate([p], max_new_tokens=3)[0] for p in prompts]
    for prompt, text in zip(prompts, batched, strict=True):
        ids = lm.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        head = [lm.tokenizer.bos_token_id, *ids, lm.tokenizer.sep_token_id]
        with torch.no_grad():
            first = int(lm.model(input_ids=torch.tensor([head])).logits[0, -1].argmax())
        if first == lm.tokenizer.eos_token_id:
            assert text == ""
        else:
            assert text.split()[0] == lm.tokenizer.convert_ids_to_tokens(first)


def test_prompt_is_truncated_from_the_left_to_keep_the_response():
    lm = _lm()
    long = Example(id="x", prompt=" ".join(["What is 3 + 1?"] * 20), response="4")
    enc = lm.encode([long])
    assert enc.input_ids.shape[1] <= SPEC.max_length
    assert (enc.labels != -100).sum() == 2


def _pretrained(path, **kw):
    from bench.lm import load_pretrained_lm
    from bench.suites import LMSpec

    spec = LMSpec(model=str(path), **{"max_length": 64, **kw})
    return load_pretrained_lm(str(path), spec=spec)


def test_chat_template_puts_the_loss_on_the_assistant_turn_and_its_closing(tiny_pretrained):
    lm = _pretrained(tiny_pretrained, chat_template=True)
    enc = lm.encode([Example(id="a", prompt="what   is 2 + 2", response="four"),
                     Example(id="b", prompt="say hi", response="hi there")])
    tok = lm.tokenizer
    full = tok.decode(enc.input_ids[0][: int(enc.lengths[0])])
    assert full == tok.apply_chat_template([{"role": "user", "content": "Question: what is 2 + 2\nAnswer:"},
                                            {"role": "assistant", "content": "four"}], tokenize=False)
    labels = enc.labels[1][enc.labels[1] != -100]
    assert tok.decode(labels) == "hi there<|im_end|>\n"
    # without the template: the authors' plain format, the loss on " response" + EOS
    plain = _pretrained(tiny_pretrained).encode([Example(id="a", prompt="say hi", response="hi there")])
    assert tok.decode(plain.input_ids[0]) == "Question: say hi\nAnswer: hi there" + tok.eos_token
    assert tok.decode(plain.labels[0][plain.labels[0] != -100]) == " hi there" + tok.eos_token


def test_chat_template_truncation_keeps_the_closing_and_generation_stops_at_it(tiny_pretrained):
    lm = _pretrained(tiny_pretrained, chat_template=True, max_length=16)
    enc = lm.encode([Example(id="a", prompt="a long prompt " * 20, response="word " * 40)])
    assert int(enc.lengths[0]) == 16 and enc.labels[0][0] == -100  # one prompt token kept, the rest response
    assert enc.input_ids[0][-2:].tolist() == lm.tokenizer("<|im_end|>\n", add_special_tokens=False)["input_ids"]
    assert lm._ids["<eos>"] == lm.tokenizer.convert_tokens_to_ids("<|im_end|>")


def test_gradient_clipping_bounds_the_update(tiny_pretrained):
    moved = {}
    for clip in (None, 1e-12):
        lm = _pretrained(tiny_pretrained, max_grad_norm=clip, batch_size=2)
        before = {k: v.detach().clone() for k, v in lm.model.named_parameters()}
        lm.train(lm.encode([Example(id="a", prompt="x y", response="z")] * 2), lr=1e-2, seed=0, steps=1)
        moved[clip] = max(float((p.detach() - before[k]).abs().max()) for k, p in lm.model.named_parameters())
    # Adam's first step moves every weight by ~lr whatever the gradient's scale, unless the clipped
    # gradient falls below Adam's eps
    assert moved[None] > 5e-3 and moved[1e-12] < 1e-5


def test_lm_recipe_fields_that_need_a_pretrained_model_say_so():
    from bench.errors import ConfigError
    from bench.suites import LMSpec

    for kw in ({"retrain_from": "base"}, {"chat_template": True}):
        with pytest.raises(ConfigError, match="lm.model"):
            LMSpec(**kw)
    with pytest.raises(ConfigError, match="max_grad_norm"):
        LMSpec(max_grad_norm=0.0)
    with pytest.raises(ConfigError, match="weight_decay"):
        LMSpec(weight_decay=-0.1)
