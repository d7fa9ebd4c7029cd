"""bench/optim.py: optimisers and schedules, and the defaults their builders declare."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import bench.optim  # noqa: F401  (registers the optimisers and schedules)
from bench.configure.config import load_run_config
from bench.configure.identity import resolve
from bench.optim import make_optimizer, make_scheduler
from bench.registry import optimizers, schedulers


def _with_builder(monkeypatch, registry, name, builder) -> None:  # type: ignore[no-untyped-def]
    entry = registry.get(name)
    monkeypatch.setitem(registry._entries, name, dataclasses.replace(entry, builder=builder))


def test_the_implied_momentum_and_power_are_the_builders_own_defaults(monkeypatch) -> None:
    """identity.resolve wrote 0.9 by optimiser name beside the builders' own defaults: a builder
    declaring another default was recorded with 0.9 (and a new optimiser's momentum dropped)."""

    def sgd(params, *, lr, weight_decay=0.0, momentum=0.5):  # type: ignore[no-untyped-def]
        return torch.optim.SGD(params, lr=lr, momentum=momentum)

    def poly(optimizer, *, total_iters, power=2.0):  # type: ignore[no-untyped-def]
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: 1.0)

    _with_builder(monkeypatch, optimizers, "sgd", sgd)
    _with_builder(monkeypatch, schedulers, "poly", poly)
    cfg = resolve(load_run_config(None, ["optim.name=sgd", "optim.schedule=poly"]))
    assert cfg.optim.momentum == 0.5 and cfg.optim.power == 2.0


@pytest.mark.parametrize(("name", "momentum"), [("sgd", 0.9), ("adam", None), ("adamw", None)])
def test_momentum_is_recorded_only_where_it_applies(name: str, momentum: float | None) -> None:
    cfg = resolve(load_run_config(None, [f"optim.name={name}", "optim.momentum=0.9"]))
    assert cfg.optim.momentum == momentum


def test_builders_take_their_own_defaults_when_none_is_given() -> None:
    p = [torch.nn.Parameter(torch.zeros(2))]
    opt = make_optimizer("sgd", p, lr=0.1, weight_decay=0.0, momentum=None)
    assert opt.param_groups[0]["momentum"] == 0.9
    sched = make_scheduler("poly", opt, total_iters=10, power=None)
    assert sched.lr_lambdas[0](5) == pytest.approx(0.5**0.9)
