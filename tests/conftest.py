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
        code = main([*argv, "--cache-dir", str(cache or tiny_cache), "--results-dir", str(results)])
        out, err = capsys.readouterr()
        return code, out, err, results

    return call
