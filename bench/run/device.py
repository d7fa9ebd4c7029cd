"""Where and in what precision a run computes: `train.device` resolved to a torch device, and
autocast at `train.amp` (bench.precision's names), for the training step and evaluation alike."""

from __future__ import annotations

from typing import Any

import torch

from bench.errors import UserError
from bench.precision import PRECISIONS, canonical

__all__ = ["autocast", "resolve_device"]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("train.device=cuda: CUDA is not available on this machine; use cpu or auto")
    return torch.device(name)


def autocast(device: torch.device, amp: str) -> Any:
    """torch.autocast at the run's train.amp (fp32: disabled)."""
    amp = canonical(amp)
    return torch.autocast(device.type, dtype=getattr(torch, PRECISIONS[amp]), enabled=amp != "fp32")
