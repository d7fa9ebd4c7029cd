"""Training progress: tqdm's bar on a terminal; off a terminal (a Slurm or local-executor log) a
line at a steady interval with iteration, epoch, running loss, images/s and ETA. Only rank 0 of
a distributed cell reports.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from tqdm import tqdm

from bench.run.training import TrainState

__all__ = ["ProgressLine", "duration", "progress_bar"]


def progress_bar(wanted: bool | None, *, main: bool, total: int, initial: int) -> Any:
    """tqdm's bar; `wanted` None: only when stderr is a terminal. Disabled on ranks other than 0."""
    enabled = (wanted if wanted is not None else sys.stderr.isatty()) and main
    return tqdm(total=total, initial=initial, disable=not enabled, unit="it", dynamic_ncols=True, leave=False)


class ProgressLine:
    """Off a terminal (a Slurm or local-executor log) a tqdm bar prints nothing useful: one line
    at a steady interval instead, with iteration, epoch, running loss, images/s and ETA, of the
    `state` a trainer advances in place, told through `log`."""

    def __init__(
        self, state: TrainState, *, total_iters: int, total_epochs: int, log: Callable[[str], None], every_s: float
    ) -> None:
        self.state, self.total_iters, self.total_epochs, self.log = state, total_iters, total_epochs, log
        self.every_s = every_s
        self.start_iter = state.iteration
        self.start_images = state.images_seen
        self.start_s = state.train_seconds
        self.last = time.monotonic()

    def tick(self, train_seconds: float) -> None:
        now = time.monotonic()
        if now - self.last < self.every_s:
            return
        self.last = now
        st = self.state
        done = st.iteration - self.start_iter
        spent = max(train_seconds - self.start_s, 1e-9)
        ips = (st.images_seen - self.start_images) / spent
        eta = (self.total_iters - st.iteration) * spent / max(done, 1)
        loss = st.epoch_loss_sum / st.epoch_loss_count if st.epoch_loss_count else float("nan")
        self.log(
            f"iteration {st.iteration}/{self.total_iters} (epoch {st.epoch + 1}/{self.total_epochs}) loss {loss:.4f} "
            f"{ips:.1f} img/s, ETA {duration(eta)}"
        )


def duration(seconds: float) -> str:
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {sec:02d} s" if m else f"{sec} s"
