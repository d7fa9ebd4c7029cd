"""Model cost: parameters (total, trainable, per part)."""

from __future__ import annotations

from typing import Any

from torch import nn

__all__ = ["count_params", "parse_input"]

from bench.errors import UserError


def count_params(model: nn.Module) -> dict[str, Any]:
    """Total and trainable parameters, and the split by part (backbone, context, head, ...),
    so that a context module's own cost is visible next to the backbone's."""
    from bench.models import model_parts

    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    by_part = {name: sum(p.numel() for p in part.parameters()) for name, part in model_parts(model).items()}
    return {
        "params": total,
        "params_m": total / 1e6,
        "params_trainable": trainable,
        "params_by_part": by_part,
    }


def parse_input(text: str) -> tuple[int, int, int]:
    """'3x520x520' -> (3, 520, 520)."""
    parts = text.lower().split("x")
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if len(shape) != 3 or any(s < 1 for s in shape):
        raise UserError(f"--input {text!r}: expected CxHxW with positive integers, e.g. 3x520x520")
    return shape  # type: ignore[return-value]
