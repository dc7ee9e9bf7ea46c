import subprocess
import sys

import pytest

from bench.api import Method, methods, register_method, tasks
from bench.errors import DuplicatePluginError, UnknownPluginError
from bench.registry import Registry


class _Base:
    pass


def test_entry_points_register_in_tree_plugins():
    assert {"random", "tfidf"} <= set(methods.names())
    assert "lds" in tasks.names()
    cls = methods.get("tfidf")
    assert cls.name == "tfidf" and issubclass(cls, Method)


def test_unknown_name_suggests():
    with pytest.raises(UnknownPluginError, match=r"Did you mean 'tfidf'\?.*Available: .*random.*tfidf"):
        methods.get("tfidff")


def test_duplicate_registration_is_rejected():
    reg = Registry("widget", "bench.no-such-group", _Base)

    @reg.register("a")
    class A(_Base):
        pass

    with pytest.raises(DuplicatePluginError, match="already registered"):

        @reg.register("a")
        class B(_Base):
            pass


def test_registering_over_an_entry_point_name_is_rejected():
    with pytest.raises(DuplicatePluginError, match=r"method 'tfidf' is (already registered|declared by entry point)"):

        @register_method("tfidf")
        class Impostor(Method):
            def featurize(self, examples, role):
                return None


def test_base_class_is_checked():
    reg = Registry("widget", "bench.no-such-group", _Base)
    with pytest.raises(TypeError, match="not a subclass"):
        reg.register("x")(int)


def test_list_imports_no_torch():
    code = ("import sys; from bench.cli.main import main; main(['list']); "
            "sys.exit(3 if 'torch' in sys.modules else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "tfidf" in proc.stdout and "small" in proc.stdout and "lds" in proc.stdout
