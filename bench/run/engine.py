"""The training loop on built objects (model, optimiser, scheduler, loss, loaders).

The trainer checkpoints (model, optimiser, scheduler, AMP scaler, RNG states, position,
history) every `checkpoint_every` epochs and whenever `request_checkpoint()` is called (the
launcher calls it on preemption), resumes from a checkpoint, stops on a non-finite or exploding
loss and reports the run as `diverged`. Shuffling is re-seeded per epoch from (seed, epoch), so a
run resumed at an epoch boundary sees the same batches as one that was never interrupted. The
checkpoint file itself is bench.run.checkpoint's, the scoring bench.run.evaluate's, the progress report
bench.run.progress's.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from bench.data.loaders import epoch_batches
from bench.distributed import SINGLE, World, gather_objects
from bench.errors import UserError
from bench.precision import PRECISIONS, canonical
from bench.run.checkpoint import (
    pack,
    rank_seed,
    read_checkpoint,
    restore_rng,
    rng_state,
    seed_everything,
    unpack,
    write_checkpoint,
)
from bench.run.evaluate import evaluate_model
from bench.run.progress import ProgressLine, progress_bar
from bench.run.step import OptimStep
from bench.run.stopping import StepRequests, StopForRequeue
from bench.run.training import TrainSpec, TrainState

__all__ = ["StopForRequeue", "TrainSpec", "Trainer"]  # TrainSpec: the argument Trainer takes


class Trainer:
    """Fits a model; `fit()` returns {'status': 'done'|'diverged', 'metrics', 'train', ...}.

    With `world` of several ranks (bench.distributed) the model is trained under
    DistributedDataParallel: every step all-reduces the loss (the reported loss is the global
    batch's mean, so every rank takes the same divergence decision) together with a stop flag, so
    that a signal reaching any rank stops all of them after the same step; checkpoints hold every
    rank's RNG state and only rank 0 writes them."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        loss_fn: nn.Module,
        train_loader: DataLoader,
        val_loader: DataLoader,
        *,
        spec: TrainSpec,
        device: torch.device,
        num_classes: int,
        ignore_index: int | None,
        class_names: list[str] | tuple[str, ...],
        checkpoint_path: Path | None = None,
        log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr),
        identity: str | None = None,
        earlier_identities: tuple[str, ...] = (),
        on_epoch: Callable[[dict[str, Any]], None] | None = None,
        world: World = SINGLE,
    ) -> None:
        if canonical(spec.amp) not in PRECISIONS:  # a TrainSpec built in code, not from a config
            raise UserError(f"train.amp={spec.amp!r}: allowed are {', '.join(PRECISIONS)}")
        if spec.amp == "fp16" and device.type != "cuda":
            raise UserError("train.amp=fp16 needs CUDA; use train.amp=bf16 on the CPU")
        self.world = world
        self.requests = StepRequests(world)  # what signal handlers ask, done at a step boundary
        self.stepper = OptimStep(model, optimizer, scheduler, loss_fn, spec=spec, device=device, requests=self.requests)
        self.model = self.stepper.model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.train_loader = train_loader
        self.val_loader = val_loader
        self.spec = spec
        self.device = device
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.class_names = class_names
        self.checkpoint_path = checkpoint_path
        self.log = log
        self.identity = identity  # the run_id a checkpoint is bound to (None: unbound)
        self.earlier_identities = earlier_identities  # its ids under earlier identity rules
        self.on_epoch = on_epoch  # called with each epoch's history entry (e.g. TensorBoard)
        self.state = TrainState()
        self.on_stop: Callable[[], None] | None = None  # several ranks: what rank 0 does once all stopped
        self.checkpoint_saved_at: int | None = None  # the iteration the agreed stop checkpointed
        per_epoch = len(train_loader)
        if per_epoch == 0:
            raise UserError("the training split has fewer images than data.batch_size; lower data.batch_size")
        self.total_iters = spec.iters if spec.iters else (spec.epochs or 1) * per_epoch
        self.total_epochs = math.ceil(self.total_iters / per_epoch)

    # ---------------------------------------------------------------- checkpoints

    @property
    def loss_fn(self) -> nn.Module:
        return self.stepper.loss_fn

    @property
    def scaler(self) -> torch.amp.GradScaler:
        return self.stepper.scaler

    @property
    def in_step(self) -> bool:
        return self.requests.in_step

    def request_checkpoint(self) -> None:
        """Ask for a checkpoint at the next iteration boundary (safe from a signal handler)."""
        self.requests.request_checkpoint()

    def at_step_boundary(self, fn: Callable[[], None]) -> None:
        """Run `fn` (a handler that checkpoints and exits) at the next step boundary: bench.run.stopping."""
        self.requests.at_step_boundary(fn)

    def _stateful(self) -> dict[str, Any]:
        return {"model": self.model, "optimizer": self.optimizer, "scheduler": self.scheduler, "scaler": self.scaler}

    def save_checkpoint(self, path: Path | None = None) -> Path:
        """A collective: every rank calls it (their RNG states are gathered), rank 0 writes."""
        path = path or self.checkpoint_path
        if path is None:
            raise ValueError("no checkpoint path")
        rng = rng_state()
        ranks = gather_objects(rng, self.world)
        if self.world.main:
            payload = pack(self.identity, self._stateful(), self.state, rng, ranks if self.world.distributed else None)
            write_checkpoint(path, payload)
        return path

    def load_checkpoint(self, path: Path) -> None:
        ckpt = read_checkpoint(path, map_location=self.device)
        self.state = unpack(ckpt, self._stateful(), identity=self.identity, path=path,
                            earlier=self.earlier_identities)  # fmt: skip
        note = restore_rng(ckpt, self.world, seed=self.spec.seed, iteration=self.state.iteration)
        if note:
            self.log(f"{path} was {note}")
        where = f"epoch {self.state.epoch}" + (
            f", batch {self.state.batch_in_epoch}" if self.state.batch_in_epoch else ""
        )
        self.log(f"resumed from {path} at {where} (iteration {self.state.iteration}/{self.total_iters})")

    # ---------------------------------------------------------------- training

    def _step(self, images: torch.Tensor, masks: torch.Tensor) -> float:
        return self.stepper(images, masks)

    def evaluate(self) -> dict[str, Any]:
        return evaluate_model(
            self.model,
            self.val_loader,
            num_classes=self.num_classes,
            ignore_index=self.ignore_index,
            class_names=self.class_names,
            device=self.device,
            amp=self.spec.amp,
            channels_last=self.spec.channels_last,
            world=self.world,
        )

    def _end_epoch(self) -> dict[str, Any] | None:
        """Close the running epoch: history entry (with its evaluation when due), log, checkpoint."""
        st = self.state
        entry = st.close_epoch(self.optimizer.param_groups[0]["lr"])
        done = st.iteration >= self.total_iters
        metrics = None
        if st.epoch % self.spec.eval_every == 0 or done:
            metrics = self.evaluate()
            entry.update(miou=metrics["miou"], pixel_acc=metrics["pixel_acc"])
        st.history.append(entry)
        if self.on_epoch is not None and self.world.main:
            self.on_epoch(entry)
        loss_txt = f"{entry['loss']:.4f}" if entry["loss"] is not None else "-"
        self.log(
            f"epoch {st.epoch}/{self.total_epochs} loss {loss_txt}"
            + (f" val mIoU {100 * entry['miou']:.2f}" if "miou" in entry else "")
        )
        if self.checkpoint_path is not None and (st.epoch % self.spec.checkpoint_every == 0 or done):
            self.save_checkpoint()
        return metrics

    def _stop_all_ranks(self) -> None:
        """Every rank has finished the same step: checkpoint (a collective; rank 0 writes), then
        rank 0 hands over to the launcher (requeue and exit), the others stop."""
        path = self.save_checkpoint()
        self.log(
            f"stop signal: all {self.world.size} ranks stopped after iteration {self.state.iteration}; "
            f"checkpoint saved to {path}"
        )
        self.checkpoint_saved_at = self.state.iteration
        if self.world.main and self.on_stop is not None:
            self.on_stop()  # requeues and exits, or raises when it cannot requeue
        raise StopForRequeue(f"{self.world.describe()} stopped at iteration {self.state.iteration} for a requeue")

    def _begin(self) -> None:
        """Resume from the checkpoint, or seed a fresh run: rank 0 draws the single process's
        augmentations, the other ranks their own."""
        if self.checkpoint_path is not None and self.checkpoint_path.is_file():
            self.load_checkpoint(self.checkpoint_path)
            return
        seed_everything(self.spec.seed)
        if not self.world.main:
            seed_everything(rank_seed(self.spec.seed, self.world.rank))

    def _checkpoint_if_requested(self) -> None:
        if self.requests.take_checkpoint():
            self.save_checkpoint()
            self.log(f"checkpoint on request at epoch {self.state.epoch}, batch {self.state.batch_in_epoch}")

    def _train_epoch(self, bar: Any, ticker: ProgressLine | None) -> str | None:
        """Train the running epoch to its end (or the run's); why it diverged, or None. The clock
        (train_seconds) runs only while steps run, never while a checkpoint is written."""
        st = self.state
        self.model.train()
        t0 = time.perf_counter()

        def lap() -> None:
            nonlocal t0
            st.train_seconds += time.perf_counter() - t0
            t0 = time.perf_counter()

        batches = epoch_batches(self.train_loader, self.spec.seed, st.epoch, skip=st.batch_in_epoch)
        try:
            while True:
                # the step starts with loading its batch: augmentation draws from the RNG that a
                # checkpoint saves, so a signal landing mid-load waits for the step's end too
                self.requests.in_step = True
                batch = next(batches, None)
                if batch is None:
                    break
                images, masks = batch
                loss = self._step(images, masks)
                reason = st.count_step(
                    loss, len(images) * self.world.size, divergence_factor=self.spec.divergence_factor
                )
                self.requests.in_step = False
                if reason is not None:
                    self.log(f"{reason} at iteration {st.iteration} (epoch {st.epoch + 1}): run diverged")
                    return reason
                deferred = self.requests.take_deferred()
                if deferred is not None:  # a handler that checkpoints (and usually exits)
                    lap()
                    deferred()
                    t0 = time.perf_counter()
                bar.update(1)
                elapsed = st.train_seconds + time.perf_counter() - t0
                if ticker is not None:
                    ticker.tick(elapsed)
                if bar.n % 10 == 0 or bar.n == self.total_iters:
                    bar.set_postfix(loss=f"{loss:.3f}", ips=f"{st.images_seen / max(elapsed, 1e-9):.1f}")
                if st.iteration >= self.total_iters:
                    return None
                if self.world.distributed and self.requests.stop_agreed:
                    lap()
                    self._stop_all_ranks()
                lap()
                self._checkpoint_if_requested()
                t0 = time.perf_counter()
        finally:
            self.requests.in_step = False
            st.train_seconds += time.perf_counter() - t0
        deferred = self.requests.take_deferred()  # a signal during the epoch's last (empty) fetch
        if deferred is not None:
            deferred()
        return None

    def fit(self) -> dict[str, Any]:
        with self.requests.held():
            self._begin()
        st = self.state
        bar = progress_bar(self.spec.progress, main=self.world.main, total=self.total_iters, initial=st.iteration)
        ticker = (
            ProgressLine(
                st,
                total_iters=self.total_iters,
                total_epochs=self.total_epochs,
                log=self.log,
                every_s=self.spec.progress_every_s,
            )  # fmt: skip
            if bar.disable and self.world.main
            else None
        )
        last_metrics: dict[str, Any] | None = None
        why = None
        try:
            # a checkpoint taken after an epoch's last step (a preemption there) still owes that
            # epoch its history entry and evaluation
            if st.batch_in_epoch and (st.batch_in_epoch >= len(self.train_loader) or st.iteration >= self.total_iters):
                with self.requests.held():
                    last_metrics = self._end_epoch()
            while st.iteration < self.total_iters and why is None:
                why = self._train_epoch(bar, ticker)
                if why is None:
                    with self.requests.held():
                        last_metrics = self._end_epoch()
        finally:
            bar.close()
        if why is None and last_metrics is None:
            last_metrics = self.evaluate()
        return self._result("diverged" if why else "done", why, last_metrics)

    def _result(self, status: str, why: str | None, metrics: dict[str, Any] | None) -> dict[str, Any]:
        st = self.state
        return {
            "status": status,
            # a diverged run has no result to report: the metrics of its last evaluation before
            # diverging stay in its history, never in the result's (and the table's) metrics
            "metrics": metrics if status == "done" else None,
            "diverged": why,
            "train": {
                "epochs": st.epoch,
                "iterations": st.iteration,
                "total_iterations": self.total_iters,
                "train_seconds": st.train_seconds,
                "images_per_s": st.images_seen / st.train_seconds if st.train_seconds else None,
                "history": st.history,
                "first_losses": st.first_losses,
            },
        }
