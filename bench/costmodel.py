"""Cost arithmetic of the crossover analysis (paper Section 9): stdlib only, shared by the task and the leaderboard.

A method's cost of attributing a pool of N training examples is `setup_s + N * per_example_s`: a one-time
setup (warm-up training; AirRep's data generation and training) and a per-example cost (featurising the
example, plus scoring it against the test set). Two such lines cross at most once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

CrossKind = Literal["above", "below", "always", "never"]


@dataclass(frozen=True)
class CostProfile:
    """Measured costs of one method, in seconds of the device it ran on."""

    setup_s: float
    per_example_s: float

    def total(self, n: float) -> float:
        """Seconds to attribute a pool of `n` examples, setup included."""
        return self.setup_s + n * self.per_example_s

    def capacity(self, budget_s: float) -> float:
        """Examples attributable within `budget_s` seconds, setup included (0 if the setup does not fit)."""
        if budget_s < self.setup_s:
            return 0.0
        if self.per_example_s <= 0:
            return math.inf
        return (budget_s - self.setup_s) / self.per_example_s


@dataclass(frozen=True)
class Crossover:
    """Where `a` becomes cheaper than `b`.

    Attributes:
        kind: "above": a is cheaper for pools larger than `n_star`; "below": a is cheaper for pools smaller
            than `n_star`; "always" / "never": at every pool size a is (not) at most as costly as b.
        n_star: the pool size where the totals are equal (None for always / never).
        cost_s: the total cost of either at `n_star`.
    """

    kind: CrossKind
    n_star: float | None = None
    cost_s: float | None = None

    def describe(self, a: str = "a", b: str = "b") -> str:
        """One line, e.g. 'airrep is cheaper than logra beyond 475,000 examples (5.6 h)'."""
        if self.kind == "always":
            return f"{a} is never more costly than {b}"
        if self.kind == "never":
            return f"{a} is never cheaper than {b}"
        where = "beyond" if self.kind == "above" else "below"
        return f"{a} is cheaper than {b} {where} {format_count(self.n_star)} examples ({format_seconds(self.cost_s)})"


def crossover(a: CostProfile, b: CostProfile) -> Crossover:
    """The pool size at which `a`'s total cost equals `b`'s, and on which side `a` is cheaper."""
    d_setup = a.setup_s - b.setup_s
    d_per = a.per_example_s - b.per_example_s
    if d_setup <= 0 and d_per <= 0:
        return Crossover("always")
    if d_setup >= 0 and d_per >= 0:
        return Crossover("never")
    n_star = -d_setup / d_per
    return Crossover("above" if d_per < 0 else "below", n_star, a.total(n_star))


def within_noise(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two cost profiles' per-example costs overlap within the range of their repeats.

    `a`, `b`: profiles as `RunContext.profile` returns them (`per_example`: min and max over the repeats). No
    range on either side: False (nothing says they are equal).
    """
    ra, rb = a.get("per_example"), b.get("per_example")
    if not ra or not rb:
        return False
    return ra["min"] <= rb["max"] and rb["min"] <= ra["max"]


def format_count(n: float | None) -> str:
    """1234567 -> '1.2M', 475000 -> '475K', 830 -> '830'; inf -> '∞'."""
    if n is None:
        return "—"
    if math.isinf(n):
        return "∞"
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if n >= scale:
            value = n / scale
            return f"{value:.1f}{suffix}" if value < 100 else f"{value:.0f}{suffix}"
    return f"{n:.0f}"


def format_seconds(s: float | None) -> str:
    """Seconds as s / min / h / days with 2-3 significant digits."""
    if s is None:
        return "—"
    if s < 0.1:
        return f"{s * 1e3:.3g} ms"
    if s < 120:
        return f"{s:.3g} s"
    if s < 7200:
        return f"{s / 60:.3g} min"
    if s < 2 * 86400:
        return f"{s / 3600:.3g} h"
    return f"{s / 86400:.3g} days"


METHOD_PHASES = ("setup", "index", "query", "score")  # charged to the method; `setup/...` are setup's parts
# shared by every method of a suite (`attributed_lm`: the model a task attributes instead of the warm-up LM)
HARNESS_PHASES = ("warmup", "attributed_lm", "ground_truth")


def phase_cost_s(phase: dict) -> float:
    """A recorded phase's cost: what producing it took.

    Its original cost where it was loaded from the cache (`cached`) or resumed from cached work (`cached_count`,
    e.g. training continued from a checkpoint), when that cost is known; else the time it took here.
    """
    original = phase.get("original_wall_s")
    partly = phase.get("cached") or phase.get("cached_count")
    return float(original if partly and original is not None else phase["wall_s"])


def method_cost_s(phases: list[dict]) -> float:
    """The method's seconds among recorded phases: setup (its parts at their original cost), featurisation, scoring.

    Cached setup work counts what producing it cost, not the time to load it; the shared warm-up LM, loaded or
    trained inside the method's setup, is the harness's (`_charged`).
    """
    return _charged(phases, lambda p: _named(p, METHOD_PHASES))


def setup_cost_s(phases: list[dict]) -> float | None:
    """The one-time cost charged to a method: its setup (parts at their original cost, see `_charged`)."""
    if not any(p["name"] == "setup" for p in phases):
        return None
    return _charged(phases, lambda p: p["name"] == "setup" or p["name"].startswith("setup/"))


def _named(phase: dict, names: tuple[str, ...]) -> bool:
    return phase["name"] in names or phase["name"].split("/")[0] in names


def nested_in_setup(phases: list[dict]) -> list[dict]:
    """The phases that ran inside the method's `setup`: its `setup/...` parts and a `warmup` it triggered.

    (A task's model to attribute, `attributed_lm`, is a `warmup` here.)

    The accountant appends a phase when it ends, and phases never overlap but by nesting, so the phases nested
    in `setup` are the run of them right before it in the list (a `warmup` the ground truth triggered comes
    before `ground_truth`, which ends the run).
    """
    names = [p["name"] for p in phases]
    if "setup" not in names:
        return []
    end = len(names) - 1 - names[::-1].index("setup")
    start = end
    while start > 0 and (names[start - 1].startswith("setup/") or names[start - 1] in ("warmup", "attributed_lm")):
        start -= 1
    return phases[start:end]


def _charged(phases: list[dict], keep) -> float:
    """Seconds of the phases `keep` accepts, `setup` counted once.

    Its `setup/...` parts at their original cost, plus what of setup's own time no nested phase covers (e.g. a
    TRAK ensemble's members' model loading beside their cached warm-ups); a `warmup` nested in it (the suite's
    warm-up LM, shared by every method) is not the method's.
    """
    nested = nested_in_setup(phases)
    total = 0.0
    for p in phases:
        if not keep(p):
            continue
        if p["name"] == "setup":
            total += max(0.0, phase_cost_s(p) - sum(float(q["wall_s"]) for q in nested))
        else:
            total += phase_cost_s(p)
    return total


def gpu_hours(phases: list[dict], names: tuple[str, ...]) -> float | None:
    """GPU-hours of the recorded phases named `names` that ran on a CUDA device; None if none did.

    `setup` counts as its `setup/...` parts plus what of it no nested phase covers (`_charged`). A ground truth
    that ran as one job per GPU records the sum of the jobs' times, i.e. GPU time, not wall time.
    """
    def keep(p: dict) -> bool:
        return str(p.get("device", "")).startswith("cuda") and _named(p, names)

    if not any(keep(p) for p in phases):
        return None
    return _charged(phases, keep) / 3600.0
