import numpy as np
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
