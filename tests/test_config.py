import pytest

from bench.cache import Cache
from bench.config import from_dict, parse_override
from bench.errors import ConfigError, ConfigMismatchError
from bench.suites import GroundTruthSpec, SuiteSpec, load_suite


def test_unknown_key_suggests():
    with pytest.raises(ConfigError, match="unknown option 'num_subset'. Did you mean 'num_subsets'"):
        from_dict(GroundTruthSpec, {"num_subset": 4})


def test_wrong_type_names_field():
    with pytest.raises(ConfigError, match="num_subsets: expected an integer"):
        from_dict(GroundTruthSpec, {"num_subsets": "many"})


@pytest.mark.parametrize("fraction", [0.0, 1.0, 1.5, -0.1])
def test_fraction_outside_open_interval(fraction):
    with pytest.raises(ConfigError, match="fraction must be in"):
        GroundTruthSpec(fraction=fraction)


def test_nested_suite_round_trip():
    suite = load_suite("tiny")
    from bench.config import to_jsonable

    again = from_dict(SuiteSpec, to_jsonable(suite.spec))
    assert again == suite.spec


def test_parse_override():
    assert parse_override("a=3") == ("a", 3)
    assert parse_override("a=x y") == ("a", "x y")
    assert parse_override("a=[1,2]") == ("a", [1, 2])
    with pytest.raises(ConfigError):
        parse_override("novalue")


def test_cache_refuses_other_arguments(tmp_path):
    cache = Cache(tmp_path)
    path = cache.entry("thing", {"a": 1})
    assert cache.entry("thing", {"a": 1}) == path
    # simulate a key collision / tampered manifest: same directory, other recorded arguments
    (path / "args.json").write_text('{"a": 2}')
    with pytest.raises(ConfigMismatchError, match="a: cached 2, requested 1"):
        cache.entry("thing", {"a": 1})
    assert (path / "args.json").exists()  # nothing deleted
