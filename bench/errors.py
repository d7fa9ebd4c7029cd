"""User-facing errors: UserError, which the CLI turns into exit code 2, and KnobError, a builder's
refusal of one knob that the model zoo re-raises under its config key.

A message names where (file, key), what was given, what is allowed and how to fix it,
so that a researcher never has to read a traceback to correct a typo.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

__all__ = ["KnobError", "UserError", "clip", "did_you_mean"]

MAX_ECHO = 200  # characters of user input a message repeats


class UserError(ValueError):
    """Bad input from the user (config, CLI flag, data path): exit code 2, no traceback."""

    exit_code = 2


class KnobError(UserError):
    """A builder refused the value of one of its knobs: `knob=value: why`. Builders are called
    by their knob names; the zoo's entry point re-raises it under the config key (`model.rates`)."""

    def __init__(self, knob: str, value: str, why: str) -> None:
        self.knob, self.value, self.why = knob, value, why
        super().__init__(f"{knob}={value}: {why}")

    def keyed(self, section: str) -> UserError:
        return UserError(f"{section}.{self.knob}={self.value}: {self.why}")


def did_you_mean(given: str, allowed: Iterable[str], *, n: int = 3) -> str:
    """' (did you mean 'x'?)' for the closest allowed names, or '' when nothing is close."""
    close = difflib.get_close_matches(str(given), [str(a) for a in allowed], n=n, cutoff=0.6)
    if not close:
        return ""
    return " (did you mean " + " or ".join(repr(c) for c in close) + "?)"


def clip(text: Any, limit: int = MAX_ECHO) -> str:
    """`text` as a message may repeat it: at most `limit` characters, the rest counted."""
    s = str(text)
    return s if len(s) <= limit else f"{s[:limit]}... ({len(s) - limit} more characters)"
