"""bench.stats: hand-computed tests, draws, Holm; compare() is what the leaderboard shows; the ceiling's oracle."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from bench import stats
from bench.results import RunRecord, read_records

ROOT = Path(__file__).resolve().parent.parent


def test_mcnemar_hand_computed():
    # 4 discordant examples, all one way: two-sided exact p = 2 * (1/2)^4 = 0.125
    a, b = [0] * 4 + [1] * 10, [1] * 4 + [1] * 10
    assert stats.mcnemar_p(a, b) == pytest.approx(0.125)
    # 6 a-only, 1 b-only: 2 * P(X >= 6), X ~ Bin(7, 1/2) = 2 * 8/128
    a, b = [1] * 6 + [0] + [1] * 3, [0] * 6 + [1] + [1] * 3
    assert stats.mcnemar_p(a, b) == pytest.approx(16 / 128)
    assert stats.mcnemar_p([1, 0], [1, 0]) == 1.0


def test_holm_hand_computed():
    # p sorted 0.01, 0.02, 0.04 with m = 3: 0.03, max(0.03, 0.04) = 0.04, max(0.04, 0.04) = 0.04
    adj = stats.holm({"x": 0.04, "y": 0.01, "z": 0.02})
    assert adj == pytest.approx({"y": 0.03, "z": 0.04, "x": 0.04})
    assert stats.holm({"a": 0.6, "b": 0.5}) == pytest.approx({"b": 1.0, "a": 1.0})


def test_bootstrap_p_and_percentiles():
    assert stats.percentile([1, 2, 3, 4], 50) == pytest.approx(np.percentile([1, 2, 3, 4], 50))
    assert stats.percentile_interval([None, 1.0, float("nan"), 3.0]) == pytest.approx(
        (np.percentile([1, 3], 2.5), np.percentile([1, 3], 97.5)))
    reps = np.random.default_rng(0).normal(0.1, 0.05, 2000)
    # z = 0.1 / 0.05 = 2 -> two-sided p = erfc(2 / sqrt 2) = 0.0455
    assert stats.bootstrap_p(0.1, reps) == pytest.approx(math.erfc(2 / math.sqrt(2)), rel=0.05)
    assert stats.bootstrap_p(0.0, [0.0, 0.0]) == 1.0 and stats.bootstrap_p(0.2, [0.2, 0.2]) == 0.0


def test_draw_weights_iid_and_clustered():
    rng = np.random.default_rng(0)
    w = stats.draw_weights(10, rng=rng, n_resamples=50)
    assert w.shape == (50, 10) and np.all(w.sum(axis=1) == 10)
    clusters = ["a"] * 6 + ["b"] * 3 + ["c"]
    w = stats.draw_weights(10, rng=np.random.default_rng(1), n_resamples=400, clusters=clusters)
    # the cluster bootstrap: a drawn cluster brings all its examples, each as often as the cluster was drawn
    for members in (slice(0, 6), slice(6, 9), slice(9, 10)):
        assert np.all(w[:, members] == w[:, members][:, :1])
    assert np.all(w[:, [0, 6, 9]].sum(axis=1) == 3)  # 3 clusters drawn per replicate
    assert np.any(w[:, 0] == 0)  # a whole cluster is sometimes left out
    # the same generator state gives the same draws (what makes methods' replicates pair)
    again = stats.draw_weights(10, rng=np.random.default_rng(1), n_resamples=400, clusters=clusters)
    np.testing.assert_array_equal(w, again)
    assert stats.units(clusters, 10) == 3 and stats.units(None, 10) == 10


def test_t_reference_matches_scipy_and_is_wider_than_the_normal():
    from scipy import stats as sps

    for t, df in ((2.0, 15), (3.5, 7), (0.1, 300), (5.0, 1)):
        assert stats.t_two_sided_p(t, df) == pytest.approx(2 * sps.t.sf(t, df), rel=1e-9)
    reps = list(np.random.default_rng(0).normal(0.1, 0.025, 1000))  # t about 4
    assert stats.bootstrap_p(0.1, reps, df=7) > 10 * stats.bootstrap_p(0.1, reps)  # 8 clusters: far less sure


def test_a_comparisons_interval_excludes_zero_exactly_when_its_p_is_below_alpha():
    """The difference's CI and p-value share the bootstrap's standard error and t reference (8 clusters, as
    `qa`): a percentile interval of the same replicates is narrower and excluded 0 beside p = 0.07."""
    from scipy import stats as sps

    assert stats.t_quantile(0.05, 7) == pytest.approx(sps.t.ppf(0.975, 7), rel=1e-9)
    assert stats.t_quantile(0.05, None) == pytest.approx(1.959964, rel=1e-6)
    rng = np.random.default_rng(0)
    seen = set()
    for point in np.linspace(0.0, 0.06, 25):
        reps = list(rng.normal(point, 0.0125, 1000))
        low, high = stats.bootstrap_interval(point, reps, df=7)
        p = stats.bootstrap_p(point, reps, df=7)
        assert (low > 0 or high < 0) == (p < 0.05), (point, low, high, p)
        percentile = stats.percentile_interval(reps)
        seen.add((p < 0.05, percentile[0] > 0))
    assert (False, True) in seen  # the percentile interval alone would have said otherwise somewhere
    assert all(np.isnan(stats.bootstrap_interval(0.1, [0.1])))  # too few replicates: NaNs


def test_clustered_interval_is_wider_when_clusters_differ():
    """Examples that share a cluster effect: the clustered CI is wider than the one that treats them as iid."""
    rng = np.random.default_rng(0)
    clusters = np.repeat(np.arange(10), 30)
    values = rng.normal(size=10)[clusters] + rng.normal(scale=0.3, size=300)
    iid = stats.replicate_means(values, stats.draw_weights(300, rng=np.random.default_rng(1), n_resamples=1000))
    clu = stats.replicate_means(values, stats.draw_weights(300, rng=np.random.default_rng(1), n_resamples=1000,
                                                           clusters=clusters.tolist()))
    assert np.std(clu) > 3 * np.std(iid)
    # the cluster bootstrap's SE is the between-cluster one, sd(cluster means) / sqrt(10), less (G - 1) / G
    cluster_means = np.array([values[clusters == g].mean() for g in range(10)])
    assert np.std(clu) == pytest.approx(cluster_means.std(ddof=1) / math.sqrt(10), rel=0.15)


def _record(method: str, value: float, reps: list[float], per_example: list[float] | None = None,
            test: str = "bootstrap") -> RunRecord:
    return RunRecord(suite="s", suite_version="1", task="t", method=method, method_family="baseline",
                     method_config={}, task_config={}, fingerprint=method * 4, status="ok",
                     metrics={"m": {"value": value, "ci_low": 0, "ci_high": 1, "higher_is_better": True,
                                    "n": len(per_example) if per_example else 1000,
                                    "test": test, "replicates": reps}},
                     per_example={"m": per_example or []}, cost={}, env={}, seed=0, started_at="", created_at="",
                     headline="m", pairing="k", data="d")


def test_column_ranks_with_holm():
    rng = np.random.default_rng(0)
    base = rng.normal(size=1000)
    rows = {"hi": _record("hi", 0.5, list(0.5 + 0.01 * base)),
            "hi2": _record("hi2", 0.49, list(0.49 + 0.01 * base + 0.002 * rng.normal(size=1000))),

            "lo": _record("lo", 0.2, list(0.2 + 0.01 * base))}
    col = stats.column(rows, "m")
    assert col.rank == {"hi": 1, "hi2": 2, "lo": 3}  # hi2 is below hi by 0.01 with an SE of 0.002
    assert col.bold["hi"] and not col.bold["lo"]
    c = stats.compare(rows["hi"], rows["lo"], "m")
    assert c.diff == pytest.approx(0.3) and c.p < 1e-10 and c.ci_low == pytest.approx(0.3)
    other = _record("x", 0.3, [0.3] * 10)
    with pytest.raises(stats.NotComparable, match="replicates"):
        stats.compare(rows["hi"], other, "m")
    # an unpaired row: no ranks are claimed at all, bold only for what is not below the best
    col = stats.column({**rows, "x": other}, "m")
    assert col.rank == {} and col.bold["x"] is False


def test_mcnemar_guards_the_bootstrap_on_few_discordant_pairs():
    # 4 of 40 examples, all one way: the bootstrap alone would call it (p < 0.05), the exact McNemar does not
    a = [1.0] * 4 + [1.0] * 36
    b = [0.0] * 4 + [1.0] * 36
    rng = np.random.default_rng(0)
    w = stats.draw_weights(40, rng=rng, n_resamples=2000)
    ra, rb = stats.replicate_means(np.array(a), w), stats.replicate_means(np.array(b), w)
    c_boot = stats.compare(_record("a", 1.0, list(ra), a), _record("b", 0.9, list(rb), b), "m")
    c_mc = stats.compare(_record("a", 1.0, list(ra), a, "mcnemar"), _record("b", 0.9, list(rb), b, "mcnemar"), "m")
    assert c_boot.p < 0.05 and c_mc.p == pytest.approx(0.125)


def _committed_columns():
    records = read_records(ROOT / "leaderboard" / "results")
    from leaderboard.select import latest

    cells = latest(records)
    columns: dict[tuple[str, str], dict[str, RunRecord]] = {}
    for (suite, task, row), r in cells.items():
        columns.setdefault((suite, task), {})[row] = r
    return columns


def test_compare_verdicts_are_the_leaderboards_bold_and_ranks():
    """For every column of the committed records: the leaderboard's marks are compare() + Holm, pair by pair."""
    from leaderboard.fmt import judged_cells

    text = (ROOT / "LEADERBOARD.md").read_text(encoding="utf-8")
    checked = 0
    for (_suite, _task), rows in _committed_columns().items():
        ok = {m: r for m, r in rows.items() if r.status == "ok" and r.headline in r.metrics}
        if len(ok) < 2 or next(iter(ok.values())).metrics[next(iter(ok.values())).headline]["test"] == "none":
            continue
        metric = next(iter(ok.values())).headline
        names = sorted(ok)
        pvalues = {}
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                pvalues[(a, b)] = stats.compare(ok[a], ok[b], metric).p  # raises if unpaired: a test failure
        adjusted = stats.holm(pvalues)
        cells = judged_cells(ok, metric, {})
        running = 1
        for m in sorted(names, key=lambda m: (-ok[m].metrics[metric]["value"], m)):  # ranks monotone in value
            above = sum(1 for o in names if o != m and adjusted[tuple(sorted((m, o)))] < stats.ALPHA
                        and ok[o].metrics[metric]["value"] > ok[m].metrics[metric]["value"])
            running = max(running, 1 + above)
            assert cells[m].endswith(f"({running})"), (m, metric, cells[m])
            assert cells[m].startswith("**") == (running == 1)
            if metric in ("lds", "f1", "auc", "loo"):
                assert cells[m] in text  # the committed LEADERBOARD.md shows exactly this cell
            checked += 1
    assert checked > 50


@pytest.mark.parametrize(("noise", "min_inside"), [(0.3, 0), (0.8, 7), (1.5, 7)])
def test_ceiling_against_a_simulated_oracle(noise, min_inside):
    """A perfect predictor of the expected loss reaches the reported ceiling within its CI; a noisy one does not.

    Simulated ground truth: 64 subsets, 300 test examples, 2 training seeds; each seed's loss is the subset's
    expected loss plus seed noise (split-half reliability 0.95 at noise 0.3, as on `qa` and `stereoset`;
    0.73 at 0.8, as on `small`; 0.44 at 1.5). The oracle's group score is minus the expected loss; the
    ceiling's CI is the LDS task's (test examples by bootstrap, subsets by jackknife). Measured over 8 seeds:
    the oracle is inside the CI 7 of 8 times at reliability 0.73 and 0.44; at 0.95 the ceiling is 0.0027 too
    high (sd 0.0005: Spearman-Brown applied to Spearman correlations), more than its CI's half-width
    (0.0014), so it is never inside there, and the test pins that bias below 0.005 instead. A predictor with
    an error of the signal's size is below the CI every time.
    """
    from bench.metrics import ceiling_subset_variance, lds, noise_ceiling

    inside, gaps = 0, []
    for seed in range(8):
        rng = np.random.default_rng(seed)
        m, n = 64, 300
        expected = rng.normal(size=(m, n))
        seed_losses = expected[None] + rng.normal(scale=noise, size=(2, m, n))
        losses = seed_losses.mean(axis=0)
        ceiling = noise_ceiling(seed_losses)
        w = stats.draw_weights(n, rng=np.random.default_rng(1), n_resamples=500)
        half = 1.96 * math.sqrt(np.var(stats.replicate_means(ceiling, w), ddof=1)
                                + ceiling_subset_variance(seed_losses))
        oracle = float(lds(-expected.T, losses).mean())  # group scores [n, M]
        inside += abs(oracle - float(ceiling.mean())) <= half
        gaps.append(float(ceiling.mean()) - oracle)
        noisy = lds(-(expected + rng.normal(scale=1.0, size=(m, n))).T, losses)
        assert float(noisy.mean()) < float(ceiling.mean()) - half
    assert inside >= min_inside
    assert abs(float(np.mean(gaps))) < (0.005 if noise < 0.5 else 0.02)
    assert noise_ceiling(np.stack([expected, expected])) == pytest.approx(np.ones(n))  # no seed noise: 1


def test_migrated_records_keep_every_value(tmp_path):
    """`bench migrate` moves a schema-1 record's keys; values, intervals and replicates are unchanged."""
    from bench.results import migrate

    raw = json.loads((ROOT / "tests" / "data" / "records" / "v1_lds.json").read_text())
    new = migrate(json.loads(json.dumps(raw)))
    assert new["schema_version"] == 2 and new["headline"] == "lds" and new["pairing"] == raw["extra"]["pairing"]
    for name, m in raw["metrics"].items():
        assert {k: new["metrics"][name][k] for k in m} == m
    assert new["metrics"]["lds"]["replicates"] == raw["extra"]["bootstrap"]["lds"]
    assert new["metrics"]["lds"]["test"] == "bootstrap" and new["metrics"]["ceiling"]["test"] == "none"
    assert "bootstrap" not in new["extra"] and "options" not in new["extra"]
    RunRecord(**new)  # reads as a current record


def test_every_committed_record_with_clusters_drew_them():
    """A record that declares clusters resampled them: each resampled metric's draws name the cluster kind.

    (A migrated schema-1 record keeps clusters=None: its draws were over independent examples.)
    """
    records = [r for r in read_records(ROOT / "leaderboard" / "results") if r.status == "ok"]
    assert records
    for r in records:
        if not r.clusters:
            continue
        kind = r.clusters["kind"]
        for name, m in r.metrics.items():
            if m.get("draws") and "test examples" in m["draws"]:
                assert f"{kind} clusters" in m["draws"], (r.suite, r.task, r.method, name, m["draws"])


def test_rank_agreement_tau_interval_and_significant_flips():
    rng = np.random.default_rng(1)
    base = rng.normal(size=400)

    def column(values: dict[str, float], noise: float) -> dict[str, RunRecord]:
        return {m: _record(m, v, list(v + noise * base + 0.001 * rng.normal(size=400))) for m, v in values.items()}

    a = column({"p": 0.6, "q": 0.5, "r": 0.4, "s": 0.3, "random": 0.0}, 0.01)
    same = stats.rank_agreement(a, column({"p": 0.7, "q": 0.6, "r": 0.5, "s": 0.1, "random": 0.0}, 0.01), "m")
    assert same.methods == ("p", "q", "r", "s") and same.tau == pytest.approx(1.0) and same.flips == ()
    assert same.ci_low == pytest.approx(1.0) and same.median == pytest.approx(1.0) and same.n_replicates == 400
    # p and q swap places, clearly (0.1 apart, SE about 0.001): one significant flip, tau 4/6
    swapped = stats.rank_agreement(a, column({"p": 0.5, "q": 0.6, "r": 0.4, "s": 0.3}, 0.01), "m")
    assert swapped.tau == pytest.approx(4 / 6) and swapped.flips == (("p", "q"),)
    # a swap inside the noise is no flip, and the interval says the order is uncertain
    noisy = {m: _record(m, v, list(v + 0.2 * rng.normal(size=400))) for m, v in
             {"p": 0.39, "q": 0.41, "r": 0.4, "s": 0.3}.items()}
    loose = stats.rank_agreement(a, noisy, "m")
    assert loose.flips == () and loose.ci_low < 0 < loose.ci_high and loose.median < loose.ci_high
    # rows that drew differently (another pairing key) give no interval rather than a wrong one
    import dataclasses

    mixed = {**a, "s": dataclasses.replace(a["s"], pairing="other")}
    assert math.isnan(stats.rank_agreement(mixed, a, "m").ci_low)
    assert stats.rank_agreement(a, column({"p": 0.1, "q": 0.2}, 0.01), "m") is None  # fewer than 3 in common
