"""Numeric precision, spelled one way for training (`train.amp`) and profiling (`profile
--dtype`): fp32, bf16 or fp16. Names only, so the config schema reads them without importing
torch: `getattr(torch, PRECISIONS[name])` is the dtype a name stands for."""

from __future__ import annotations

from typing import Any

# name -> the torch dtype's attribute name; fp32 is full precision (training: no autocast)
PRECISIONS = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
# Spellings read for compatibility: `train.amp: none` (fp32 throughout) came first
ALIASES = {"none": "fp32"}


def canonical(value: Any) -> Any:
    """The one spelling of a precision (an alias mapped, anything else returned as given, for the
    caller's own validation to refuse)."""
    return ALIASES.get(value, value) if isinstance(value, str) else value
