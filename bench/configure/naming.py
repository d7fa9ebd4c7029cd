"""How a factor, a value, a table row and a sweep cell are named wherever they are shown:
report columns and captions, regress and plan rows, status lines, TensorBoard run names."""

from __future__ import annotations

import json
import math
from typing import Any

from bench.configure.config import LIST_SEP

__all__ = ["cell_label", "factor_names", "is_missing", "row_label", "value_text"]


def factor_names(axes: list[str]) -> dict[str, str]:
    """Column names for the factors: the key's last part (`model.rates` -> rates, `loss.name` ->
    loss), the full key where two factors would share a name."""

    def short(a: str) -> str:
        parts = a.split(".")
        return parts[-2] if parts[-1] == "name" and len(parts) > 1 else parts[-1]

    names = {a: short(a) for a in axes}
    clash = {n for n in names.values() if list(names.values()).count(n) > 1}
    return {a: (a if n in clash else n) for a, n in names.items()}


def is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or str(v) in ("nan", "None", "<NA>", "")


def value_text(v: Any) -> str:
    """A factor's value as a reader reads it: `3,6,9,12`, yes/no, 0.001, `-` where it does not apply."""
    if is_missing(v):
        return "-"
    if isinstance(v, bool) or str(v) in ("True", "False"):
        return "yes" if str(v) == "True" else "no"
    if isinstance(v, list | tuple):
        return LIST_SEP.join(value_text(x) for x in v)
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def row_label(row: Any, axes: list[str], empty: str = "all runs") -> str:
    """One table row (a configuration) by its factors: `arch=aspp_unet, rates=3,6,9,12`."""
    names = factor_names(axes)
    return ", ".join(f"{names[a]}={value_text(row[a])}" for a in axes) if axes else empty


def cell_label(varying: dict[str, Any]) -> str:
    """One sweep cell by the values its grid gave it, as written in the sweep file:
    `model.arch="unet", train.seed=0`."""
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in varying.items())
