import json

import pytest

from bench.data import Columns, load_examples
from bench.errors import DataError

COLS = Columns(prompt="inputs", response="targets", labels={"task": "task"})


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


ROWS = [{"inputs": "What is 1+1?", "targets": "2", "task": "add"},
        {"inputs": "Opposite of hot?", "targets": "cold", "task": "antonym"}]


def test_jsonl_json_and_parquet_load_the_same(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    a = load_examples(str(_write_jsonl(tmp_path / "d.jsonl", ROWS)), columns=COLS)
    (tmp_path / "d.json").write_text(json.dumps(ROWS))
    b = load_examples(str(tmp_path / "d.json"), columns=COLS)
    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "d.parquet")
    c = load_examples(str(tmp_path / "d.parquet"), columns=COLS)
    assert a == b == c
    assert a[1].prompt == "Opposite of hot?" and a[1].response == "cold" and a[1].labels == {"task": "antonym"}


def test_malformed_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n\n" + '{"inputs": "x", "targets": \n')
    with pytest.raises(DataError, match=r"bad\.jsonl:3: invalid JSON"):
        load_examples(str(path), columns=COLS)


def test_missing_column(tmp_path):
    path = _write_jsonl(tmp_path / "d.jsonl", [{"inputs": "a", "answer": "b", "task": "t"}])
    with pytest.raises(DataError, match="missing column 'targets'.*available columns: answer, inputs, task"):
        load_examples(str(path), columns=COLS)


def test_non_text_value_names_row(tmp_path):
    path = _write_jsonl(tmp_path / "d.jsonl", [ROWS[0], {"inputs": None, "targets": "x", "task": "t"}])
    with pytest.raises(DataError, match=r"d\.jsonl:2: column 'inputs' must be text"):
        load_examples(str(path), columns=COLS)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_examples(str(tmp_path / "nope.jsonl"), columns=COLS)
