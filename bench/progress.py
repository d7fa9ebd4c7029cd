"""Training progress: tqdm's bar on a terminal; off a terminal (a Slurm or local-executor log) a
line at a steady interval with iteration, epoch, running loss, images/s and ETA. Only rank 0 of
a distributed cell reports.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.engine import Trainer

__all__ = ["ProgressLine", "duration", "progress_bar"]


def progress_bar(wanted: bool | None, *, main: bool, total: int, initial: int) -> Any:
    """tqdm's bar; `wanted` None: only when stderr is a terminal. Disabled on ranks other than 0."""
    from tqdm import tqdm

    enabled = (wanted if wanted is not None else sys.stderr.isatty()) and main
    return tqdm(total=total, initial=initial, disable=not enabled, unit="it", dynamic_ncols=True, leave=False)


class ProgressLine:
    """Off a terminal (a Slurm or local-executor log) a tqdm bar prints nothing useful: one line
    at a steady interval instead, with iteration, epoch, running loss, images/s and ETA."""

    def __init__(self, trainer: Trainer, *, every_s: float) -> None:
        self.t = trainer
        self.every_s = every_s
        self.start_iter = trainer.state.iteration
        self.start_images = trainer.state.images_seen
        self.start_s = trainer.state.train_seconds
        self.last = time.monotonic()

    def tick(self, train_seconds: float) -> None:
        now = time.monotonic()
        if now - self.last < self.every_s:
            return
        self.last = now
        st, t = self.t.state, self.t
        done = st.iteration - self.start_iter
        spent = max(train_seconds - self.start_s, 1e-9)
        ips = (st.images_seen - self.start_images) / spent
        eta = (t.total_iters - st.iteration) * spent / max(done, 1)
        loss = st.epoch_loss_sum / st.epoch_loss_count if st.epoch_loss_count else float("nan")
        t.log(
            f"iteration {st.iteration}/{t.total_iters} (epoch {st.epoch + 1}/{t.total_epochs}) loss {loss:.4f} "
            f"{ips:.1f} img/s, ETA {duration(eta)}"
        )


def duration(seconds: float) -> str:
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {sec:02d} s" if m else f"{sec} s"
