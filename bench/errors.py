"""User-facing errors: one exception type that the CLI turns into exit code 2.

A message names where (file, key), what was given, what is allowed and how to fix it,
so that a researcher never has to read a traceback to correct a typo.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["UserError", "did_you_mean"]


class UserError(ValueError):
    """Bad input from the user (config, CLI flag, data path): exit code 2, no traceback."""

    exit_code = 2


def did_you_mean(given: str, allowed: Iterable[str], *, n: int = 3) -> str:
    """' (did you mean 'x'?)' for the closest allowed names, or '' when nothing is close."""
    close = difflib.get_close_matches(str(given), [str(a) for a in allowed], n=n, cutoff=0.6)
    if not close:
        return ""
    return " (did you mean " + " or ".join(repr(c) for c in close) + "?)"
