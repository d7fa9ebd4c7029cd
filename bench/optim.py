"""Optimisers and learning-rate schedules by name (registries `optimizers`, `schedulers`), as
models, losses and datasets are: `optim.name` and `optim.schedule` pick a builder; each takes the
common keywords and uses those that apply to it. A builder's signature is the one place its
defaults live: a keyword it declares with a default applies and takes that default where the
config gives none (sgd's momentum, poly's power; identity.resolve records it from there), one it
declares with None does not apply (adam's momentum, cosine's power) and is dropped from a run's
identity."""

from __future__ import annotations

from typing import Any

import torch

from bench.errors import UserError
from bench.registry import optimizers, schedulers

__all__ = ["make_optimizer", "make_scheduler"]


@optimizers.register("adam", paper="Kingma and Ba, Adam, ICLR 2015")
def adam(params: Any, *, lr: float, weight_decay: float = 0.0, momentum: float | None = None) -> torch.optim.Optimizer:
    """torch.optim.Adam (L2 weight decay in the gradient); momentum does not apply."""
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


@optimizers.register("adamw", paper="Loshchilov and Hutter, Decoupled Weight Decay Regularization, ICLR 2019")
def adamw(params: Any, *, lr: float, weight_decay: float = 0.0, momentum: float | None = None) -> torch.optim.Optimizer:
    """torch.optim.AdamW (decoupled weight decay); momentum does not apply."""
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


@optimizers.register("sgd")
def sgd(params: Any, *, lr: float, weight_decay: float = 0.0, momentum: float = 0.9) -> torch.optim.Optimizer:
    """torch.optim.SGD with momentum (0.9 unless optim.momentum says otherwise), as the papers train."""
    return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay, momentum=momentum)


@schedulers.register("poly", paper="Chen et al., DeepLab (the 'poly' policy), arXiv:1606.00915")
def poly(
    optimizer: torch.optim.Optimizer, *, total_iters: int, power: float = 0.9
) -> torch.optim.lr_scheduler.LRScheduler:
    """lr x (1 - t/T)^power, stepped per iteration.

    Written as the closed form in a LambdaLR rather than torch's PolynomialLR: PolynomialLR
    updates the rate multiplicatively step by step, which differs from the closed form in the last
    bits, and every committed result was trained with the closed form (training from scratch turns
    the last bit into points of mIoU)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: max(0.0, 1 - t / total_iters) ** power)


@schedulers.register("cosine")
def cosine(
    optimizer: torch.optim.Optimizer, *, total_iters: int, power: float | None = None
) -> torch.optim.lr_scheduler.LRScheduler:
    """Cosine annealing to 0 over the run (torch's CosineAnnealingLR); power does not apply."""
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_iters)


@schedulers.register("none")
def constant(
    optimizer: torch.optim.Optimizer, *, total_iters: int, power: float | None = None
) -> torch.optim.lr_scheduler.LRScheduler:
    """A constant learning rate."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: 1.0)


def make_optimizer(name: str, params: Any, *, lr: float, weight_decay: float, momentum: float | None):
    try:
        entry = optimizers.get(name)
    except UserError as e:
        raise UserError(f"optim.name={name!r}: {e}") from None
    given = {} if momentum is None else {"momentum": momentum}  # None: the builder's own default
    return entry.builder(params, lr=lr, weight_decay=weight_decay, **given)


def make_scheduler(name: str, optimizer: torch.optim.Optimizer, *, total_iters: int, power: float | None):
    """Stepped once per iteration."""
    try:
        entry = schedulers.get(name)
    except UserError as e:
        raise UserError(f"optim.schedule={name!r}: {e}") from None
    given = {} if power is None else {"power": power}  # None: the builder's own default
    return entry.builder(optimizer, total_iters=total_iters, **given)
