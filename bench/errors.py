"""Domain errors.

Every error a user can cause by what they typed or the files they pointed at is a `BenchError`. The CLI
prints its message as one line and exits with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class BenchError(Exception):
    """A user-facing error: the message says what is wrong and what to do."""


class UnknownPluginError(BenchError, KeyError):
    """A method, task or suite name that the registry does not know."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class DuplicatePluginError(BenchError, ValueError):
    """Two plugins registered under the same name."""


class ConfigError(BenchError, ValueError):
    """A configuration value that is out of range, of the wrong type, or unknown."""


class DataError(BenchError, ValueError):
    """A dataset file or split that cannot be used (malformed row, missing column, empty split)."""


class ConfigMismatchError(BenchError, ValueError):
    """A cached artefact was produced from different arguments than the ones requested."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ' Did you mean 'x'?' for the closest choice, or '' when none is close."""
    close = difflib.get_close_matches(name, sorted(choices), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


class HeldOutError(BenchError, PermissionError):
    """Code that tunes on the dev split asked for the test split (`Suite.sealed`)."""
