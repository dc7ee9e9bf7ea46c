"""Provenance that cannot drift: code hashes in fingerprints, the sentinel record, `bench migrate`."""

import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SENTINEL = next((ROOT / "tests" / "sentinel").rglob("*.json"))


def test_plugin_hash_follows_the_modules_it_imports(tmp_path, monkeypatch):
    from bench.provenance import plugin_hash

    pkg = tmp_path / "pluginpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "helper.py").write_text("SCALE = 1\n")
    (pkg / "method.py").write_text("class M:\n    def f(self):\n        from pluginpkg.helper import SCALE\n"
                                   "        return SCALE\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    cls = importlib.import_module("pluginpkg.method").M
    before = plugin_hash(cls)
    (pkg / "helper.py").write_text("SCALE = 2\n")  # a lazily imported helper: still part of the hash
    assert plugin_hash(cls) != before
    (pkg / "helper.py").write_text("SCALE = 1\n")
    assert plugin_hash(cls) == before
    for name in [m for m in sys.modules if m.startswith("pluginpkg")]:
        del sys.modules[name]


def test_the_fingerprint_holds_the_code_hash(monkeypatch):
    from bench import provenance
    from bench.runner import RunRequest, _prepare

    request = RunRequest(method="tfidf", task="lds", suite="tiny")
    before = _prepare(request).common["fingerprint"]
    monkeypatch.setattr(provenance, "core_hash", lambda: "another harness")
    assert _prepare(request).common["fingerprint"] != before


def test_the_sentinel_reproduces_and_a_tampered_copy_fails(tmp_path, tiny_cache, capsys):
    from bench.cli.main import main

    assert main(["check-record", str(SENTINEL), "--cache-dir", str(tiny_cache)]) == 0
    assert "reproduce" in capsys.readouterr().out
    raw = json.loads(SENTINEL.read_text())
    raw["per_example"]["lds"][3] += 0.05  # what a silent change of the metric's code would do
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(raw))
    assert main(["check-record", str(tampered), "--cache-dir", str(tiny_cache)]) == 1
    assert "FAILED: 1 of" in capsys.readouterr().out


def test_migrate_rewrites_v1_records_once(tmp_path, capsys):
    from bench.cli.main import main

    shutil.copy(ROOT / "tests" / "data" / "records" / "v1_lds.json", tmp_path / "r.json")
    assert main(["migrate", str(tmp_path), "--check"]) == 1
    assert main(["migrate", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "r.json").read_text())
    # the draws it was made with stay declared: not clustered, so no caption can claim they were
    assert record["schema_version"] == 2 and record["clusters"] is None
    assert record["metrics"]["lds"]["draws"] == "test examples (independent) x subsets"
    assert main(["migrate", str(tmp_path), "--check"]) == 0  # current: nothing to do
    assert "would change 0 of 1" in capsys.readouterr().out.splitlines()[-1]
