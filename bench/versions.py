"""Code versions of the harness's numerical components, in one place (standard library only).

Bump one when what it names changes its numbers for the same inputs. Every cache key of an artefact holds
the versions of the code that produced it, and every result record's fingerprint holds all of them (with
the method's and the task's own `code_version`), so a bump rebuilds what depends on it, and only that.
"""

from __future__ import annotations

LM = "1"  # bench.lm: tokenisation, training and evaluation of the target LM
RETRAIN = "3"  # bench.retrain: retraining jobs (3: trained in groups)
BATCHED = "1"  # bench.batched: K target LMs trained at once
GENERATOR = "2"  # bench.generator: the embedded suites' generated data (2: splits disjoint by item)
METRICS = "1"  # bench.metrics: LDS, bootstrap intervals, F1
STATS = "1"  # bench.stats: how bootstrap draws are made (part of every pairing key: other draws never pair)


def harness() -> dict[str, str]:
    """Every harness component's code version, by name."""
    return {"lm": LM, "retrain": RETRAIN, "batched": BATCHED, "generator": GENERATOR, "metrics": METRICS,
            "stats": STATS}


def of(*names: str) -> dict[str, str]:
    """The code versions of the named components (read now, so that a bump in a test takes effect)."""
    table = harness()
    return {name: table[name] for name in names}
