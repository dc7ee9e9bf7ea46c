import os

import pytest

os.environ.setdefault("BENCH_PROGRESS", "0")


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory):
    """A cache shared by the tests of a session, so the tiny ground truth is trained once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def run_cli(tmp_path, tiny_cache, capsys):
    """Run `bench ...` in process; returns (exit code, stdout, stderr, results dir)."""
    from bench.cli.main import main

    results = tmp_path / "results"

    def call(*argv, cache=None):
        # respond and the exports write no records; export-examples needs no cache
        extra = [] if argv[0] in ("respond", "export", "export-examples") else ["--results-dir", str(results)]
        if argv[0] != "export-examples":
            extra += ["--cache-dir", str(cache or tiny_cache)]
        code = main([*argv, *extra])
        out, err = capsys.readouterr()
        return code, out, err, results

    return call


@pytest.fixture(scope="module")
def square_ctx(tmp_path_factory):
    """The tiny suite with a 16-wide model whose MLP layers are square (16 x 16), briefly warmed up (one per
    test module: the gradient methods' brute-force checks and the peer-agreement tests)."""
    from bench.api import RunContext
    from bench.cache import Cache
    from bench.suites import load_suite

    suite = load_suite("tiny", [("lm.hidden_size", 16), ("lm.intermediate_size", 16), ("lm.num_heads", 2),
                                ("lm.warmup_steps", 5)])
    return RunContext(suite, cache=Cache(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def tiny_pretrained(tmp_path_factory):
    """A local model directory in the hub layout (config.json, safetensors, tokenizer with a chat template):
    a 2-layer, 32-wide Qwen2 causal LM with SmolLM2's tokenizer (ChatML, as Qwen2.5's)."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    from bench.lm import smollm2_dir

    directory, gguf = smollm2_dir()
    tok = AutoTokenizer.from_pretrained(directory, gguf_file=gguf)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                         tie_word_embeddings=True, max_position_embeddings=1024))
    out = tmp_path_factory.mktemp("tiny-qwen")
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    return out


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` are skipped where CUDA is not available (and deselected by `-m "not gpu"`)."""
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items:
        return
    import torch

    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA device")
        for item in gpu_items:
            item.add_marker(skip)
