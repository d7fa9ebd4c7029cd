"""Stop and checkpoint requests: what a signal handler (preemption, time limit) may ask of a
running trainer, and the step boundary at which it happens.

A handler never acts in the middle of a step: a checkpoint taken there could hold an optimiser
step applied to some parameters and not others. Alone, the trainer runs the handler's action
as soon as the running step has ended. In a cell of several ranks the signal may reach one rank
only: every step all-reduces [loss, stop, checkpoint] (one 3-number all-reduce), so all ranks
learn of it after the same step, checkpoint together and stop together.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable, Iterator

import torch

from bench.distributed import World, all_sum

__all__ = ["StepRequests", "StopForRequeue"]


class StopForRequeue(Exception):
    """Raised on every rank but 0 of a cell that stops for a preemption or time-limit signal:
    the checkpoint is written and rank 0 requeues the job; the other ranks have nothing to add."""


class StepRequests:
    def __init__(self, world: World) -> None:
        self.world = world
        self.in_step = False  # True from the start of a step until its counters are updated
        self._checkpoint = threading.Event()
        self._stop = threading.Event()  # several ranks: a signal seen by this rank
        self._deferred: Callable[[], None] | None = None
        self.stop_agreed = False  # several ranks: this step's all-reduced flags
        self.checkpoint_agreed = False

    def request_checkpoint(self) -> None:
        """A checkpoint at the next step boundary (safe from a signal handler)."""
        self._checkpoint.set()

    def at_step_boundary(self, fn: Callable[[], None]) -> None:
        """Run `fn` now if no step is in flight, else as soon as the running one has ended. With
        several ranks, ask for the agreed stop instead (the ranks first agree on the step)."""
        if self.world.distributed:
            self._stop.set()
        elif self.in_step:
            self._deferred = fn
        else:
            fn()

    def agree(self, loss: torch.Tensor, device: torch.device) -> float:
        """Several ranks: all-reduce the loss with the stop and checkpoint flags; the global
        batch's mean loss (NaN on every rank when any rank's is not finite)."""
        flags = torch.tensor(
            [float(loss.detach()), float(self._stop.is_set()), float(self._checkpoint.is_set())],
            dtype=torch.float64,
            device=device,
        )
        all_sum(flags, self.world)
        self.stop_agreed = bool(flags[1] > 0)
        self.checkpoint_agreed = bool(flags[2] > 0)
        mean = float(flags[0]) / self.world.size
        return mean if math.isfinite(mean) else float("nan")

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Hold a handler's action for the block (loading a checkpoint, closing an epoch: a
        checkpoint taken inside would be half of one state); run it, if one came, when the block
        has ended normally."""
        self.in_step = True
        try:
            yield
        finally:
            self.in_step = False
        fn = self.take_deferred()
        if fn is not None:
            fn()

    def take_deferred(self) -> Callable[[], None] | None:
        """The action a handler deferred to this boundary, once."""
        fn, self._deferred = self._deferred, None
        return fn

    def take_checkpoint(self) -> bool:
        """Whether a checkpoint is due at this boundary (agreed by all ranks where several), once."""
        due = self.checkpoint_agreed if self.world.distributed else self._checkpoint.is_set()
        if due:
            self._checkpoint.clear()
        return due
