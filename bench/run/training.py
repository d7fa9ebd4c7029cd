"""What a training run is told and where it stands: TrainSpec (how long and how to train),
TrainState (position, clock, history: what a checkpoint records, and how a step and an epoch
advance it), and the rule that says a run has diverged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

__all__ = ["FIRST_LOSSES", "TrainSpec", "TrainState", "diverged"]


FIRST_LOSSES = 20  # how many of the first steps' losses a result records (the global batch's, any world size)


@dataclass
class TrainSpec:
    """How long and how to train; the rest arrives as built objects."""

    epochs: int | None = 5
    iters: int | None = None
    eval_every: int = 1
    checkpoint_every: int = 1
    amp: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    grad_clip: float | None = None
    seed: int = 0
    aux_weight: float = 0.4
    divergence_factor: float = 1e3  # a loss this many times the first step's loss has diverged
    progress: bool | None = None  # None: a bar only when stderr is a terminal
    progress_every_s: float = 30.0  # without a bar (a Slurm log): a progress line this often

    @classmethod
    def from_config(cls, t: Any) -> TrainSpec:
        """From a RunConfig's `train` section: every field the two share, by name (no list to keep)."""
        return cls(**{f.name: getattr(t, f.name) for f in fields(cls) if f.name in type(t).model_fields})


@dataclass
class TrainState:
    """The training loop's position and history, as a checkpoint records them."""

    epoch: int = 0  # completed epochs
    iteration: int = 0
    batch_in_epoch: int = 0  # > 0 only in a checkpoint taken mid-epoch
    train_seconds: float = 0.0
    images_seen: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    epoch_loss_sum: float = 0.0  # the running epoch's losses, so an epoch split by a preemption
    epoch_loss_count: int = 0  # reports the mean over all of its steps
    first_loss: float | None = None  # the first step's loss: the yardstick of an exploding loss
    first_losses: list[float] = field(default_factory=list)  # the first steps' losses, as recorded

    def count_step(self, loss: float, images: int, *, divergence_factor: float) -> str | None:
        """Advance past a step of `images` images (the global batch); why the run has diverged at
        its loss, or None. A diverged step's loss stays out of the epoch's mean."""
        self.iteration += 1
        self.batch_in_epoch += 1
        self.images_seen += images
        reason = diverged(loss, self.first_loss, divergence_factor)
        if reason is None and self.first_loss is None:
            self.first_loss = loss
        if len(self.first_losses) < FIRST_LOSSES:
            self.first_losses.append(loss)
        if reason is None:
            self.epoch_loss_sum += loss
            self.epoch_loss_count += 1
        return reason

    def close_epoch(self, lr: float) -> dict[str, Any]:
        """End the running epoch: its history entry (mean loss over all its steps, even across a
        resume; the learning rate), not yet appended: an evaluation may join it."""
        self.epoch += 1
        self.batch_in_epoch = 0
        entry = {
            "epoch": self.epoch,
            "iteration": self.iteration,
            "loss": self.epoch_loss_sum / self.epoch_loss_count if self.epoch_loss_count else None,
            "lr": lr,
        }
        self.epoch_loss_sum, self.epoch_loss_count = 0.0, 0
        return entry


def diverged(loss: float, first_loss: float | None, factor: float) -> str | None:
    """Why a run has diverged at this loss, or None: a non-finite loss, or a finite one over
    `factor` times the first step's (Adam at lr 1e6 reaches 1e19 without ever being NaN)."""
    if not math.isfinite(loss):
        return "non-finite loss"
    if first_loss is not None and loss > factor * max(first_loss, 1e-6):
        return f"loss {loss:.3g} is over {factor:g} x the first step's {first_loss:.3g}"
    return None
