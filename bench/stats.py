"""The one statistics layer: bootstrap draws (plain and clustered), intervals, paired tests, Holm, `compare`.

Every interval, significance test and rank in the harness comes from here: tasks draw their bootstrap
replicates with `draw_weights` / `replicate_means`, and the leaderboard and `bench compare` judge pairs of
records with `compare` and a column of records with `column`. Nothing else implements a test.

The comparison half (`compare`, `column`, `holm`, the McNemar tests, intervals from stored replicates) is pure
Python, so that the leaderboard, which imports it, runs without numpy or torch; the resampling half imports
numpy when called.

Which test applies to a metric is declared by the task in the record (`Metric.test`):
- `bootstrap`: the paired bootstrap. Two records of one suite and pairing key hold replicates under the same
  draws (test examples, or clusters of them each with all its examples, and on LDS the retrained subsets); the
  difference's replicates give its percentile CI, and its two-sided p-value comes from their standard error
  with a t reference (degrees of freedom: the independent units less one, clusters where the suite declares
  them): 1,000 replicates cannot resolve a p-value below 0.002, and Holm's correction over a column of k
  methods needs p-values down to 0.05 / (k (k - 1) / 2).
- `mcnemar`: 0/1 outcomes per example (classification hits). The same paired bootstrap, and the exact
  two-sided McNemar test on the discordant examples; the larger p-value counts. A bootstrap of a few
  discordant pairs is anti-conservative (4 of 320 examples, all one way, give a bootstrap p near 0.05 and a
  McNemar p of 0.125); McNemar alone treats clustered examples as independent.
- `none`: an interval that does not pair (e.g. a Wilson interval); no test, no rank.

Ranks and bold over a column (one suite, one metric) use Holm's step-down correction over every pair of the
column's methods at `ALPHA`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from bench.results import RunRecord

ALPHA = 0.05  # two-sided level of every test, familywise over a column after Holm
ROUND_DIGITS = 6  # replicates kept in records: far below their spread, and keeps the JSON small

BOOTSTRAP, MCNEMAR, NO_TEST = "bootstrap", "mcnemar", "none"
TESTS = (BOOTSTRAP, MCNEMAR, NO_TEST)


# -- resampling (numpy, imported when called) ---------------------------------------------------------------

def draw_weights(n: int, *, rng: np.random.Generator, n_resamples: int,
                 clusters: Sequence[Any] | None = None) -> np.ndarray:
    """Bootstrap draws of `n` examples as counts: float [n_resamples, n], how often each example is drawn.

    Without `clusters`, the examples are drawn independently with replacement (`n` per replicate). With
    `clusters` (one id per example), the cluster bootstrap: the clusters are drawn with replacement and each
    drawn cluster brings all its examples (Davison & Hinkley 1997, section 3.8; Field & Welsh 2007). Examples
    of one cluster (a task, a source, a shared context) are not independent, and an interval that treats
    them as such is too narrow. Deviation from the issue's wording ("clusters, with test examples inside
    them"): a second stage that also resamples examples within clusters overstated the variance by 1.5-1.7x
    in a simulation of these suites' layouts at low within-cluster correlation, so examples are not
    resampled again. With few clusters (8 on `qa`) the cluster bootstrap's variance is low by about
    (G - 1) / G; `bootstrap_p` uses a t reference with G - 1 degrees of freedom for that reason.

    The draws depend only on `n`, the cluster layout and `rng`: every method evaluated on the same examples
    with the same generator state gets the same draws, so their replicates pair.
    """
    import numpy as np

    if clusters is None:
        draws = rng.integers(0, n, size=(n_resamples, n))
        return np.stack([np.bincount(d, minlength=n) for d in draws]).astype(np.float64)
    if len(clusters) != n:
        raise ValueError(f"{len(clusters)} cluster ids for {n} examples")
    ids = sorted(set(clusters), key=str)
    index = {g: i for i, g in enumerate(ids)}
    member_of = np.array([index[c] for c in clusters])
    picks = rng.integers(0, len(ids), size=(n_resamples, len(ids)))
    copies = np.stack([np.bincount(p, minlength=len(ids)) for p in picks]).astype(np.float64)  # [B, G]
    return copies[:, member_of]


def units(clusters: Sequence[Any] | None, n: int) -> int:
    """The independent units a bootstrap resamples: the clusters, or the `n` examples."""
    return len(set(clusters)) if clusters is not None else n


def replicate_means(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted mean of `values` (NaN excluded) under each draw of `draw_weights`, float [n_resamples]."""
    import numpy as np

    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    clean = np.where(finite, values, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (weights @ clean) / (weights @ finite.astype(np.float64))


def replicate_macro_means(values: np.ndarray, groups: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Mean over groups of the within-group weighted mean, under each bootstrap draw, float [B].

    A group's weight in the mean is how many times it was drawn (its total weight over its size: each drawn
    copy of a cluster draws as many examples as it has, `bench.stats.draw_weights`); a group with no draw is
    left out of that replicate.
    """
    import numpy as np

    values = np.asarray(values, dtype=np.float64)
    out = np.zeros(len(weights))
    total = np.zeros(len(weights))
    for g in sorted(set(groups.tolist())):
        inside = groups == g
        w = weights[:, inside]
        mass = w.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = (w @ values[inside]) / mass
        copies = mass / inside.sum()
        drawn = mass > 0
        out[drawn] += copies[drawn] * mean[drawn]
        total[drawn] += copies[drawn]
    with np.errstate(invalid="ignore", divide="ignore"):
        return out / total


def draws_label(clusters: dict[str, Any] | None) -> str:
    """What `draw_weights` resamples, as a metric's `draws` says it: the clusters or the test examples."""
    return f"{clusters['kind']} clusters > test examples" if clusters else "test examples"


def rounded(replicates: Sequence[float] | np.ndarray) -> list[float | None]:
    """Replicates as the record keeps them: `ROUND_DIGITS` decimals, NaN as None."""
    return [None if v is None or not math.isfinite(float(v)) else round(float(v), ROUND_DIGITS) for v in replicates]


# -- intervals and tests (pure Python) ----------------------------------------------------------------------

def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation (numpy's default)."""
    xs = sorted(values)
    if not xs:
        return math.nan
    pos = (len(xs) - 1) * q / 100
    lo = math.floor(pos)
    return xs[lo] + (xs[min(lo + 1, len(xs) - 1)] - xs[lo]) * (pos - lo)


def percentile_interval(replicates: Sequence[float | None]) -> tuple[float, float]:
    """The 2.5 / 97.5 percentiles of bootstrap replicates (None and NaN dropped); NaNs if none is left."""
    reps = [float(v) for v in replicates if v is not None and math.isfinite(float(v))]
    return (percentile(reps, 2.5), percentile(reps, 97.5)) if reps else (math.nan, math.nan)


def _betacf(a: float, b: float, x: float) -> float:
    """The continued fraction of the regularised incomplete beta function (modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_two_sided_p(t: float, df: float) -> float:
    """Two-sided p-value of Student's t with `df` degrees of freedom: I_{df / (df + t^2)}(df / 2, 1 / 2)."""
    if not math.isfinite(t):
        return 0.0
    if df <= 0:
        return 1.0
    return _betainc(df / 2.0, 0.5, df / (df + t * t))


def t_quantile(p: float, df: float | None) -> float:
    """The t with two-sided p-value `p` under Student's t with `df` degrees of freedom (normal when None)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"a two-sided p-value in (0, 1) has a t quantile, got {p}")
    tail = (lambda t: math.erfc(t / math.sqrt(2))) if df is None else (lambda t: t_two_sided_p(t, df))
    low, high = 0.0, 1.0
    while tail(high) > p:  # the tail falls as t grows
        high *= 2.0
    for _ in range(200):
        mid = (low + high) / 2.0
        low, high = (mid, high) if tail(mid) > p else (low, mid)
    return (low + high) / 2.0


def bootstrap_interval(point: float, replicates: Sequence[float | None], df: float | None = None,
                       alpha: float = 0.05) -> tuple[float, float]:
    """The (1 - alpha) interval of a paired difference that matches `bootstrap_p`: point +- t x sd(replicates).

    The same standard error and t reference as the p-value, so the interval excludes 0 exactly when p < alpha
    (a percentile interval of 1,000 replicates over 8 clusters is narrower than the t reference and could
    exclude 0 beside a p above alpha). NaNs with fewer than two finite replicates.
    """
    sd = _replicate_sd(replicates)
    if sd is None:
        return (math.nan, math.nan)
    half = t_quantile(alpha, df) * sd
    return (point - half, point + half)


def _replicate_sd(replicates: Sequence[float | None]) -> float | None:
    """The standard deviation of the finite bootstrap replicates (the difference's standard error).

    None with fewer than two.
    """
    reps = [float(v) for v in replicates if v is not None and math.isfinite(float(v))]
    if len(reps) < 2:
        return None
    mean = sum(reps) / len(reps)
    return math.sqrt(sum((v - mean) ** 2 for v in reps) / (len(reps) - 1))


def bootstrap_p(point: float, replicates: Sequence[float], df: float | None = None) -> float:
    """Two-sided p-value that a paired difference is 0, from its bootstrap replicates' standard error.

    t = |point| / sd(replicates), referred to Student's t with `df` degrees of freedom (the independent units
    less one: test examples, or clusters), or to the normal when `df` is None. 1,000 replicates cannot
    resolve a percentile p-value below 0.002, which Holm over a column needs; a normal tail with 16 test
    examples (LOO) or 8 clusters (`qa`) would overstate significance. A difference with no spread is
    significant unless it is 0.
    """
    sd = _replicate_sd(replicates)
    if sd is None:
        return 1.0
    if sd == 0:
        return 1.0 if point == 0 else 0.0
    t = abs(point) / sd
    return math.erfc(t / math.sqrt(2)) if df is None else t_two_sided_p(t, df)


def mcnemar_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Exact two-sided McNemar p-value of paired 0/1 outcomes: 2 P(X >= max(a only, b only)), X ~ Bin(n, 1/2)."""
    a_only = sum(1 for x, y in zip(a, b, strict=True) if x > y)
    b_only = sum(1 for x, y in zip(a, b, strict=True) if y > x)
    n = a_only + b_only
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(max(a_only, b_only), n + 1)) / 2**n
    return min(1.0, 2 * tail)


def holm(pvalues: Mapping[Any, float]) -> dict[Any, float]:
    """Holm's step-down adjusted p-values (familywise error over the family given)."""
    order = sorted(pvalues, key=lambda k: (pvalues[k], str(k)))
    m = len(order)
    out: dict[Any, float] = {}
    running = 0.0
    for i, key in enumerate(order):
        running = max(running, min(1.0, (m - i) * pvalues[key]))
        out[key] = running
    return out


def wilcoxon_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided Wilcoxon signed-rank p-value of per-example differences (scipy), NaN pairs dropped.

    It holds fixed what the per-example values do not resample (on LDS, the subsets): conditional.
    """
    import numpy as np
    from scipy import stats

    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    diff = x[ok] - y[ok]
    return float(stats.wilcoxon(diff).pvalue) if diff.size and np.any(diff != 0) else 1.0


# -- records ------------------------------------------------------------------------------------------------

class NotComparable(ValueError):
    """Two records cannot be paired on a metric; the message says why."""


@dataclass(frozen=True)
class Comparison:
    """Record a's metric against record b's, paired: the difference a - b, its CI and p-value.

    `p` is the two-sided p-value of the metric's own test (`test`) for this pair alone; `column` adds the
    Holm-adjusted one of a whole column. The CI is `bootstrap_interval`'s: it excludes 0 exactly when the
    bootstrap's p is below 0.05 (McNemar, which can only raise p on 0/1 outcomes, is not in the interval).
    """

    metric: str
    test: str
    value_a: float
    value_b: float
    diff: float
    ci_low: float
    ci_high: float
    p: float
    n: int
    n_replicates: int
    higher_is_better: bool = True

    @property
    def significant(self) -> bool:
        """Whether this pair alone differs at `ALPHA` (no correction for other pairs)."""
        return self.p < ALPHA


def _values(record: RunRecord, metric: str) -> list[float]:
    return [math.nan if v is None else float(v) for v in record.per_example.get(metric, [])]


def why_not_comparable(a: RunRecord, b: RunRecord, metric: str) -> str | None:
    """Why two records cannot be paired on `metric` (None if they can)."""
    for r in (a, b):
        if r.status != "ok" or metric not in r.metrics:
            return f"the {r.method} record has no '{metric}'"
    test = a.metrics[metric].get("test", NO_TEST)
    if test != b.metrics[metric].get("test", NO_TEST):
        return f"their '{metric}' are judged by different tests"
    if test == NO_TEST:
        return f"'{metric}' declares no paired test"
    if (a.suite, a.suite_version, a.regime, a.task) != (b.suite, b.suite_version, b.regime, b.task):
        return "they are of different suites, suite versions, regimes or tasks"
    if a.pairing is None or a.data != b.data or a.pairing != b.pairing:
        return "their data, ground truth or draws differ (another suite option, version or pairing)"
    if test == MCNEMAR:
        va, vb = _values(a, metric), _values(b, metric)
        if not va or len(va) != len(vb):
            return "they do not hold the per-example outcomes of the same examples"
        if bool(a.metrics[metric].get("replicates")) != bool(b.metrics[metric].get("replicates")):
            return "one keeps replicates of it and the other does not"
        return None
    ra, rb = a.metrics[metric].get("replicates"), b.metrics[metric].get("replicates")
    if not ra or not rb:
        return f"the {(a if not ra else b).method} record keeps no replicates of '{metric}'"
    if len(ra) != len(rb):
        return "they hold different numbers of replicates"
    return None


def compare(a: RunRecord, b: RunRecord, metric: str) -> Comparison:
    """Pair record a with record b on `metric` with the metric's declared test.

    Raises:
        NotComparable: other suites, data, draws, or no paired statistics (the message says which).
    """
    problem = why_not_comparable(a, b, metric)
    if problem is not None:
        raise NotComparable(problem)
    ma, mb = a.metrics[metric], b.metrics[metric]
    diff = float(ma["value"]) - float(mb["value"])
    higher = bool(ma.get("higher_is_better", True))
    reps_a, reps_b = ma.get("replicates"), mb.get("replicates")
    d = [x - y for x, y in zip(reps_a or [], reps_b or [], strict=True) if x is not None and y is not None]
    n = ma.get("n") or len(a.per_example.get(metric, []))
    df = units(a.clusters["ids"] if a.clusters else None, int(n or 0)) - 1
    low, high = bootstrap_interval(diff, d, df=max(df, 1))
    p = bootstrap_p(diff, d, df=max(df, 1)) if d else 1.0
    if ma["test"] == MCNEMAR:  # the bootstrap of a few discordant pairs is anti-conservative: McNemar guards it
        exact = mcnemar_p(_values(a, metric), _values(b, metric))
        p = max(p, exact) if d else exact  # records without replicates (older ones): McNemar alone
    return Comparison(metric, ma["test"], float(ma["value"]), float(mb["value"]), diff, low, high, p, int(n or 0),
                      len(d), higher)


@dataclass(frozen=True)
class Column:
    """A column of rows (one suite, one metric) judged together: Holm-adjusted pairs, bold and ranks.

    `adjusted[(a, b)]` (a < b by name) is the pair's Holm-adjusted p-value over every pair of the column.
    `rank`: 1 + the rows significantly better, made monotone in value (a row never ranks above a row with a
    better value: significance need not be transitive); `bold`: rank 1. When some pair cannot be compared,
    no rank is claimed and bold marks the rows not significantly worse than the best.
    """

    metric: str
    comparisons: dict[tuple[str, str], Comparison]
    adjusted: dict[tuple[str, str], float]
    bold: dict[str, bool]
    rank: dict[str, int]
    best: str | None


def better(column: Column, a: str, b: str) -> bool:
    """Whether row a is significantly better than row b in the column (Holm-adjusted)."""
    key = (a, b) if a < b else (b, a)
    if key not in column.adjusted or column.adjusted[key] >= ALPHA:
        return False
    c = column.comparisons[key]
    sign = 1 if key[0] == a else -1
    return sign * c.diff * (1 if c.higher_is_better else -1) > 0


def column(records: Mapping[str, RunRecord], metric: str) -> Column:
    """Judge every pair of `records` (row name -> record) on `metric`; Holm over the column's pairs."""
    ok = {m: r for m, r in records.items() if r.status == "ok" and metric in r.metrics}
    if not ok:
        return Column(metric, {}, {}, {}, {}, None)
    higher = bool(next(iter(ok.values())).metrics[metric].get("higher_is_better", True))
    best = max(ok, key=lambda m: ((1 if higher else -1) * float(ok[m].metrics[metric]["value"]), m))
    comparisons: dict[tuple[str, str], Comparison] = {}
    complete = True
    names = sorted(ok)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            try:
                comparisons[(a, b)] = compare(ok[a], ok[b], metric)
            except NotComparable:
                complete = False
    adjusted = holm({k: c.p for k, c in comparisons.items()})
    result = Column(metric, comparisons, adjusted, {}, {}, best)
    if complete:
        sign = 1 if higher else -1
        running = 1
        # 1 + the rows significantly better, made monotone in value: a row never ranks above a better-valued one
        for m in sorted(ok, key=lambda m: (-sign * float(ok[m].metrics[metric]["value"]), m)):
            running = max(running, 1 + sum(better(result, other, m) for other in ok if other != m))
            result.rank[m] = running
            result.bold[m] = running == 1
    else:  # some pair cannot be compared: bold only what is not below the best, no ranks
        for m in ok:
            key = (m, best) if m < best else (best, m)
            result.bold[m] = m == best or key in comparisons and not better(result, best, m)
    return result


def above_baseline(records: Mapping[str, RunRecord], metric: str, baseline: str = "random") -> set[str] | None:
    """The rows significantly better than the `baseline` row on `metric`.

    Each row against the baseline with the metric's own test, Holm over those comparisons (the family of the
    question "does anything beat the baseline").

    None when the question cannot be answered: no successful baseline row, or a row that cannot be compared
    with it (no paired statistics).
    """
    ok = {m: r for m, r in records.items() if r.status == "ok" and metric in r.metrics}
    if baseline not in ok:
        return None
    comparisons = {}
    for m, r in ok.items():
        if m == baseline:
            continue
        try:
            comparisons[m] = compare(r, ok[baseline], metric)
        except NotComparable:
            return None
    adjusted = holm({m: c.p for m, c in comparisons.items()})
    return {m for m, c in comparisons.items()
            if adjusted[m] < ALPHA and c.diff * (1 if c.higher_is_better else -1) > 0}


@dataclass(frozen=True)
class RankAgreement:
    """How far two columns (suites, regimes) order the same methods alike (`rank_agreement`)."""

    methods: tuple[str, ...]
    tau: float
    ci_low: float
    ci_high: float
    n_replicates: int
    median: float  # of the replicates' tau: tends to be below `tau` where rows are within noise of each other
    flips: tuple[tuple[str, str], ...]  # (x, y): x significantly above y in column A, y above x in B


def _tau(x: Sequence[float], y: Sequence[float]) -> float:
    from scipy.stats import kendalltau

    return float(kendalltau(x, y).statistic)


def rank_agreement(a: Mapping[str, RunRecord], b: Mapping[str, RunRecord], metric: str,
                   leave_out: Sequence[str] = ("random",)) -> RankAgreement | None:
    """Kendall tau-b between two columns' orders of their common rows, its bootstrap interval, the flips.

    The interval takes the records' bootstrap replicates pairwise (replicate i of every row of A against
    replicate i of every row of B): rows of one column share their draws, so each replicate is an order of
    the whole column; when a column's rows do not (another pairing key or replicate count) there is no
    interval (NaN). It covers what the replicates resample (test clusters, subsets), not another training
    seed or another draw of the data. Where rows are within noise of each other, the replicates' orders
    tend to agree less than the point values' do, so their tau (median `median`) tends to fall below
    `tau`, and the interval may not contain it: it says how much of the agreement the test draws could
    undo. `leave_out` rows (the random baseline, last by construction) do not count. Flips are judged
    among the common rows only (Holm over their pairs), a smaller family than a leaderboard column's. None
    when fewer than 3 common rows have the metric.
    """
    def usable(r: RunRecord) -> bool:
        return r.status == "ok" and metric in r.metrics

    names = tuple(sorted(m for m in a if m in b and m not in leave_out and usable(a[m]) and usable(b[m])))
    if len(names) < 3:
        return None
    tau = _tau([a[m].metrics[metric]["value"] for m in names], [b[m].metrics[metric]["value"] for m in names])
    reps_a = [a[m].metrics[metric].get("replicates") or [] for m in names]
    reps_b = [b[m].metrics[metric].get("replicates") or [] for m in names]
    # replicate i orders a whole column only if its rows drew alike: one pairing key, one replicate count
    shared = all(len({c[m].pairing for m in names}) == 1 and len({len(r) for r in reps}) == 1
                 for c, reps in ((a, reps_a), (b, reps_b)))
    n = min(len(r) for r in reps_a + reps_b) if shared else 0
    taus = []
    for i in range(n):
        x, y = [r[i] for r in reps_a], [r[i] for r in reps_b]
        if None not in x and None not in y:
            taus.append(_tau(x, y))
    finite = [t for t in taus if t == t]
    low, high = percentile_interval(finite) if finite else (float("nan"), float("nan"))
    median = percentile(finite, 50) if finite else float("nan")
    col_a, col_b = column({m: a[m] for m in names}, metric), column({m: b[m] for m in names}, metric)
    flips = tuple((x, y) for x in names for y in names
                  if x != y and better(col_a, x, y) and better(col_b, y, x))
    return RankAgreement(names, tau, low, high, len(taus), median, flips)
