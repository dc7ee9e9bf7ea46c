"""Scores from a file (`--method scores`): every score-only task computes the same metrics as the plugin."""

import json

import numpy as np
import pytest

from bench.api import methods


def _tfidf_scores(ctx):
    """tfidf's own score matrix of the tiny suite, computed through the plugin."""
    method = methods.get("tfidf")()
    train, test = ctx.featurize_suite(method)
    return method.score(test, train)


@pytest.fixture
def tfidf_file(tmp_path, tiny_cache):
    from bench.testing import tiny_context

    path = tmp_path / "tfidf.npy"
    np.save(path, _tfidf_scores(tiny_context(tiny_cache)))
    return path


@pytest.mark.parametrize("task", ["lds", "classification", "selection"])
def test_a_score_file_gives_the_plugins_numbers_to_the_last_digit(run_cli, tfidf_file, task):
    code, _, err, results = run_cli("run", "--method", "tfidf", "--task", task, "--suite", "tiny")
    assert code == 0, err
    code, out, err, _ = run_cli("run", "--method", "scores", "--set", f"path={tfidf_file}", "--set", "name=mine",
                                "--task", task, "--suite", "tiny")
    assert code == 0, err
    plugin = json.loads(next(results.rglob(f"tiny/{task}/tfidf/*.json")).read_text())
    ours = json.loads(next(results.rglob(f"tiny/{task}/scores/*.json")).read_text())
    assert ours["metrics"] == plugin["metrics"]
    assert ours["per_example"] == plugin["per_example"]
    assert ours["label"] == "mine (external)" and ours["method_family"] == "external"
    info = ours["extra"]["method_info"]
    assert info["sha256"] == __import__("hashlib").sha256(tfidf_file.read_bytes()).hexdigest()
    assert info["shape"] == [64, 400]


def test_another_file_is_another_record_and_row(run_cli, tfidf_file, tmp_path):
    other = tmp_path / "other.npy"
    np.save(other, -np.load(tfidf_file))
    for path, name in ((tfidf_file, "a"), (other, "b")):
        code, _, err, results = run_cli("run", "--method", "scores", "--set", f"path={path}", "--set",
                                        f"name={name}", "--task", "lds", "--suite", "tiny")
        assert code == 0, err
    records = [json.loads(p.read_text()) for p in results.rglob("tiny/lds/scores/*.json")]
    assert sorted(r["label"] for r in records) == ["a (external)", "b (external)"]
    lds = {r["label"]: r["metrics"]["lds"]["value"] for r in records}
    assert lds["a (external)"] == pytest.approx(-lds["b (external)"])  # negated scores, mirrored ranks
    from leaderboard.render import render

    board = render(results)
    assert "a (external)" in board and "b (external)" in board


def test_the_columns_follow_the_exported_train_order(run_cli, tfidf_file, tmp_path):
    """A matrix whose columns are in another order is another method; put back in the exported order, the same."""
    code, _, err, results = run_cli("export-examples", "--suite", "tiny", "--out", str(tmp_path / "ex"))
    assert code == 0, err
    ids = [json.loads(line)["id"] for line in (tmp_path / "ex" / "train.jsonl").read_text().splitlines()]
    perm = np.random.default_rng(0).permutation(len(ids))
    scores = np.load(tfidf_file)
    shuffled = tmp_path / "shuffled.npy"
    np.save(shuffled, scores[:, perm])  # column j is train example perm[j]
    back = tmp_path / "back.npy"
    np.save(back, np.load(shuffled)[:, np.argsort(perm)])  # the user's fix: columns in the exported order
    values = {}
    for path in (tfidf_file, shuffled, back):
        code, _, err, results = run_cli("run", "--method", "scores", "--set", f"path={path}", "--set",
                                        f"name={path.stem}", "--task", "lds", "--suite", "tiny")
        assert code == 0, err
    for p in results.rglob("tiny/lds/scores/*.json"):
        r = json.loads(p.read_text())
        values[r["label"]] = r["metrics"]["lds"]["value"]
    assert values["back (external)"] == values["tfidf (external)"]
    assert abs(values["shuffled (external)"]) < 0.5 * values["tfidf (external)"]


def test_safetensors_is_read_like_npy(run_cli, tfidf_file, tmp_path):
    from safetensors.numpy import save_file

    st = tmp_path / "tfidf.safetensors"
    save_file({"scores": np.load(tfidf_file)}, str(st))
    for path in (tfidf_file, st):
        code, _, err, results = run_cli("run", "--method", "scores", "--set", f"path={path}", "--set", "name=x",
                                        "--task", "lds", "--suite", "tiny", "--label", path.suffix)
        assert code == 0, err
    values = {json.loads(p.read_text())["label"]: json.loads(p.read_text())["metrics"]["lds"]["value"]
              for p in results.rglob("tiny/lds/scores/*.json")}
    assert values[".npy"] == values[".safetensors"]


def _bad(tmp_path, name, array=None, raw=None):
    path = tmp_path / name
    if raw is not None:
        path.write_bytes(raw)
    else:
        np.save(path, array, allow_pickle=True)
    return path


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: _bad(p, "t.npy", np.zeros((400, 64))), "(transposed? rows are test examples)"),
    (lambda p: _bad(p, "s.npy", np.zeros((64, 399))), "expected [n_test, n_train] = [64, 400]"),
    (lambda p: _bad(p, "n.npy", np.full((64, 400), np.nan)), "25600 non-finite scores (the first at test 0"),
    (lambda p: _bad(p, "o.npy", np.array([{"a": 1}], dtype=object)), "not a plain numeric array"),
    (lambda p: _bad(p, "b.npy", np.zeros((64, 400), dtype=bool)), "dtype bool is not numeric"),
    (lambda p: _bad(p, "v.npy", np.zeros(64)), "expected a 2-D matrix"),
    (lambda p: _bad(p, "cut.npy", raw=b"\x93NUMPY\x01\x00"), "cannot read it as .npy"),
    (lambda p: p / "missing.npy", "does not exist"),
    (lambda p: _bad(p, "x.pkl", raw=b"\x80\x04"), "must end in .npy or .safetensors"),
])
def test_a_bad_score_file_gets_one_line(run_cli, tmp_path, make, message):
    path = make(tmp_path)
    code, out, err, results = run_cli("run", "--method", "scores", "--set", f"path={path}", "--task", "lds",
                                      "--suite", "tiny")
    lines = [line for line in err.strip().splitlines() if line]
    assert code == 2 and len(lines) == 1 and message in lines[0], err
    assert not results.exists() or not list(results.rglob("*.json"))


def test_tasks_that_need_features_refuse_scores_and_all_leaves_them_out(run_cli, tfidf_file):
    code, _, err, results = run_cli("run", "--method", "scores", "--set", f"path={tfidf_file}", "--task",
                                    "crossover", "--suite", "tiny")
    assert code == 2 and "measures a method's own features and costs" in err
    assert not results.exists() or not list(results.rglob("*.json"))
    code, out, err, _ = run_cli("plan", "--method", "all", "--task", "lds", "--suite", "tiny")
    assert code == 0, err
    planned = [line.split()[0] for line in out.splitlines() if line.startswith("    ")]  # the cell lines
    assert "scores" in methods.names() and "scores" not in planned
    own = [n for n in methods.names() if methods.get(n).tasks is not None]
    # the mislabel task's own rows stay out of an LDS plan; the pooling ablations (LDS alone) are in it
    assert set(own) == {"loss", "grad_norm", "logra_attn", "gte_attn"}
    assert not {"loss", "grad_norm"} & set(planned) and {"logra_attn", "gte_attn"} <= set(planned)
    assert len(planned) == len(methods.names()) - 3 and "tfidf" in planned  # less scores, loss, grad_norm
