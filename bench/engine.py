"""Training and evaluation on built objects (model, optimiser, scheduler, loss, loaders).

The trainer checkpoints (model, optimiser, scheduler, AMP scaler, RNG states, position,
history) every `checkpoint_every` epochs and whenever `request_checkpoint()` is called (the
launcher calls it on preemption), resumes from a checkpoint, stops on a non-finite loss and
reports the run as `diverged`. Shuffling is re-seeded per epoch from (seed, epoch), so a run
resumed at an epoch boundary sees the same batches as one that was never interrupted.
"""

from __future__ import annotations

import itertools
import math
import random
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from bench.distributed import SINGLE, World, all_sum, gather_objects
from bench.errors import UserError
from bench.metrics import SegMetrics
from bench.optim import make_optimizer, make_scheduler  # noqa: F401  (re-exported)

__all__ = [
    "StopForRequeue",
    "TrainSpec",
    "Trainer",
    "evaluate",
    "make_optimizer",
    "make_scheduler",
    "read_checkpoint",
    "resolve_device",
]


def _legacy_safe_globals() -> list[Any]:
    """The numpy types an older aspp-bench checkpoint holds (its numpy RNG state as an array):
    array reconstruction only, nothing that runs code."""
    out: list[Any] = [np.ndarray, np.dtype]
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
    out.append(_reconstruct)
    out += [type(np.dtype(t)) for t in ("uint32", "int64", "float64")]
    return out


def read_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint with `weights_only=True`: tensors and plain types only, so a shared file
    cannot run code when it is opened. A file that needs arbitrary unpickling, or that is
    truncated or not a checkpoint, is a UserError naming the file (exit 2), never a traceback."""
    import pickle
    import zipfile

    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: checkpoint not found")
    if not zipfile.is_zipfile(p):
        size = p.stat().st_size
        raise UserError(
            f"{p}: not a readable checkpoint ({'empty file' if size == 0 else f'{size} bytes, not a torch zip archive'}"
            "; truncated or overwritten); delete it (a run then starts afresh) or give the checkpoint.pt of a "
            "finished run"
        )
    try:
        with torch.serialization.safe_globals(_legacy_safe_globals()):
            ckpt = torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        import re

        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        first = f"it asks for {found.group(1)}" if found else type(e).__name__
        raise UserError(
            f"{p}: refused: it holds objects that only arbitrary unpickling can load, which can run code "
            f"({first}). aspp-bench loads checkpoints with weights_only=True; only checkpoints of tensors and "
            "plain types (as aspp-bench writes them) are accepted"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as e:
        raise UserError(f"{p}: not a readable checkpoint ({type(e).__name__}: {str(e)[:200]}); delete it") from None
    if not isinstance(ckpt, dict):
        raise UserError(f"{p}: not an aspp-bench checkpoint (a {type(ckpt).__name__}, expected a mapping)")
    return ckpt


FIRST_LOSSES = 20  # how many of the first steps' losses a result records (the global batch's, any world size)
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("train.device=cuda: CUDA is not available on this machine; use cpu or auto")
    return torch.device(name)


@dataclass
class TrainSpec:
    """How long and how to train; the rest arrives as built objects."""

    epochs: int | None = 5
    iters: int | None = None
    eval_every: int = 1
    checkpoint_every: int = 1
    amp: str = "none"
    channels_last: bool = False
    compile: bool = False
    grad_clip: float | None = None
    seed: int = 0
    aux_weight: float = 0.4
    divergence_factor: float = 1e3  # a loss this many times the first step's loss has diverged
    progress: bool | None = None  # None: a bar only when stderr is a terminal
    progress_every_s: float = 30.0  # without a bar (a Slurm log): a progress line this often


@dataclass
class _State:
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


def _rng_state() -> dict[str, Any]:
    """Every RNG's state as tensors and plain types, so the checkpoint loads with weights_only."""
    name, key, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state = {
        "torch": torch.get_rng_state(),
        "numpy": (str(name), torch.from_numpy(key.astype(np.int64)), int(pos), int(has_gauss), float(cached)),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, key, pos, has_gauss, cached = state["numpy"]
    key = key.numpy() if isinstance(key, torch.Tensor) else np.asarray(key)
    np.random.set_state((name, key.astype(np.uint32), pos, has_gauss, cached))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def main_logits(out: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
    return out["out"] if isinstance(out, dict) else out


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    *,
    num_classes: int,
    ignore_index: int | None,
    class_names: list[str] | tuple[str, ...],
    device: torch.device,
    amp: str = "none",
    size_buckets: bool = True,
    channels_last: bool = False,
    world: World = SINGLE,
) -> dict[str, Any]:
    """Every metric of `bench.metrics` over the whole loader (streaming confusion matrix); logits
    are compared in fp32 whatever the autocast dtype. In a cell of several ranks each scores its
    share of the images and the confusion matrices are summed before any metric is computed."""
    model.eval()
    metrics = SegMetrics(
        num_classes, ignore_index=ignore_index, class_names=class_names, device=device, size_buckets=size_buckets
    )
    with torch.inference_mode():
        for images, masks in loader:
            images = images.to(device, non_blocking=True)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=AMP_DTYPES.get(amp, torch.float32), enabled=amp != "none"):
                logits = main_logits(model(images)).float()
            metrics.update(logits.argmax(1), masks)
    metrics.sum_over(world)
    return metrics.compute()


class _ProgressLine:
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
            f"{ips:.1f} img/s, ETA {_duration(eta)}"
        )


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {sec:02d} s" if m else f"{sec} s"


class StopForRequeue(Exception):
    """Raised on every rank but 0 of a cell that stops for a preemption or time-limit signal:
    the checkpoint is written and rank 0 requeues the job; the other ranks have nothing to add."""


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
        on_epoch: Callable[[dict[str, Any]], None] | None = None,
        world: World = SINGLE,
    ) -> None:
        if spec.amp not in ("none", "bf16", "fp16"):
            raise UserError(f"train.amp={spec.amp!r}: allowed are none, bf16, fp16")
        if spec.amp == "fp16" and device.type != "cuda":
            raise UserError("train.amp=fp16 needs CUDA; use train.amp=bf16 on the CPU")
        self.model = model.to(device)
        if spec.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.world = world
        forward: nn.Module = self.model
        if world.distributed:  # gradients averaged over the ranks; rank 0's weights broadcast at the start
            from torch.nn.parallel import DistributedDataParallel

            forward = DistributedDataParallel(self.model, device_ids=[device.index] if device.type == "cuda" else None)
        # the compiled forward shares the model's parameters; checkpoints and evaluation use the model
        self._forward = torch.compile(forward) if spec.compile else forward
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.loss_fn = loss_fn.to(device)
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
        self.on_epoch = on_epoch  # called with each epoch's history entry (e.g. TensorBoard)
        self.scaler = torch.amp.GradScaler(device.type, enabled=spec.amp == "fp16")
        self.state = _State()
        self._checkpoint_requested = threading.Event()
        self.in_step = False  # True from the start of a step until its counters are updated
        self._at_boundary: Callable[[], None] | None = None
        self._stop_requested = threading.Event()  # several ranks: a signal seen by this rank
        self.on_stop: Callable[[], None] | None = None  # several ranks: what rank 0 does once all stopped
        self._stop_agreed = False  # several ranks: this step's all-reduced flags
        self._checkpoint_agreed = False
        self.checkpoint_saved_at: int | None = None  # the iteration the agreed stop checkpointed
        per_epoch = len(train_loader)
        if per_epoch == 0:
            raise UserError("the training split has fewer images than data.batch_size; lower data.batch_size")
        self.total_iters = spec.iters if spec.iters else (spec.epochs or 1) * per_epoch
        self.total_epochs = math.ceil(self.total_iters / per_epoch)

    # ---------------------------------------------------------------- checkpoints

    def request_checkpoint(self) -> None:
        """Ask for a checkpoint at the next iteration boundary (safe from a signal handler)."""
        self._checkpoint_requested.set()

    def at_step_boundary(self, fn: Callable[[], None]) -> None:
        """Run `fn` now if no step is in flight, else as soon as the current one has ended.

        For signal handlers that must not return into the training loop (submitit's preemption
        handler checkpoints and exits): a checkpoint taken mid-step could hold an optimiser step
        applied to some parameters and not others, with the iteration counter not yet advanced."""
        if self.world.distributed:  # the ranks first agree on the step after which they all stop
            self._stop_requested.set()
        elif self.in_step:
            self._at_boundary = fn
        else:
            fn()

    def save_checkpoint(self, path: Path | None = None) -> Path:
        path = path or self.checkpoint_path
        if path is None:
            raise ValueError("no checkpoint path")
        rng = _rng_state()
        ranks = gather_objects(rng, self.world)  # a collective: every rank calls save_checkpoint
        if not self.world.main:
            return path
        payload = {
            "identity": self.identity,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "state": self.state.__dict__,
            "rng": rng,
        }
        if self.world.distributed:  # the weights are the same on every rank; the augmentation RNGs are not
            payload["rng_ranks"] = ranks
        from bench.store import atomic_path

        with atomic_path(path) as tmp:  # a checkpoint is whole or absent, never half-written
            torch.save(payload, tmp)
        return path

    def load_checkpoint(self, path: Path) -> None:
        ckpt = read_checkpoint(path, map_location=self.device)
        theirs = ckpt.get("identity")
        if self.identity is not None and theirs is not None and theirs != self.identity:
            raise UserError(
                f"{path}: this checkpoint belongs to run {theirs}, not to run {self.identity} (another resolved "
                "config); refusing to resume from it. Train into the folder of that run, or into a new folder"
            )
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.state = _State(**ckpt["state"])
        ranks = ckpt.get("rng_ranks")
        if self.world.distributed and ranks is not None and len(ranks) == self.world.size:
            _set_rng_state(ranks[self.world.rank])
        elif self.world.distributed or ranks is not None:  # saved by another number of ranks
            _set_rng_state(ckpt["rng"])
            if not self.world.main:
                torch.manual_seed(self.spec.seed * 1_000_003 + 7919 * self.world.rank + self.state.iteration)
            self.log(
                f"{path} was written by {len(ranks) if ranks else 1} rank(s), this cell has {self.world.size}: the "
                "weights, optimiser and position resume exactly, the augmentation random streams do not"
            )
        else:
            _set_rng_state(ckpt["rng"])
        where = f"epoch {self.state.epoch}" + (
            f", batch {self.state.batch_in_epoch}" if self.state.batch_in_epoch else ""
        )
        self.log(f"resumed from {path} at {where} (iteration {self.state.iteration}/{self.total_iters})")

    # ---------------------------------------------------------------- training

    def _step(self, images: torch.Tensor, masks: torch.Tensor) -> float:
        images = images.to(self.device, non_blocking=True)
        masks = masks.to(self.device, non_blocking=True)
        if self.spec.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        amp_dtype = AMP_DTYPES.get(self.spec.amp, torch.float32)
        with torch.autocast(self.device.type, dtype=amp_dtype, enabled=self.spec.amp != "none"):
            out = self._forward(images)
        # the loss in fp32 whatever the autocast dtype (bf16 logits would round the log-softmax)
        if isinstance(out, dict):
            loss = self.loss_fn(out["out"].float(), masks)
            if "aux" in out:
                loss = loss + self.spec.aux_weight * self.loss_fn(out["aux"].float(), masks)
        else:
            loss = self.loss_fn(out.float(), masks)
        if self.world.distributed:  # one small all-reduce: the global batch's loss and any rank's stop signal
            flags = torch.tensor(
                [
                    float(loss.detach()),
                    float(self._stop_requested.is_set()),
                    float(self._checkpoint_requested.is_set()),
                ],
                dtype=torch.float64,
                device=self.device,
            )
            all_sum(flags, self.world)
            self._stop_agreed = bool(flags[1] > 0)
            self._checkpoint_agreed = bool(flags[2] > 0)
            mean = float(flags[0]) / self.world.size
            if not math.isfinite(mean):  # every rank sees it: none of them steps
                return float("nan")
        elif not torch.isfinite(loss):
            return float("nan")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.spec.grad_clip:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.spec.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return mean if self.world.distributed else float(loss.detach())

    def _progress(self, total: int, initial: int):  # type: ignore[no-untyped-def]
        from tqdm import tqdm

        enabled = self.spec.progress if self.spec.progress is not None else sys.stderr.isatty()
        enabled = enabled and self.world.main
        return tqdm(total=total, initial=initial, disable=not enabled, unit="it", dynamic_ncols=True, leave=False)

    def evaluate(self) -> dict[str, Any]:
        return evaluate(
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

    def _diverged(self, loss: float) -> str | None:
        """Why the run has diverged at this loss, or None: a non-finite loss, or a finite one that
        exploded (Adam at lr 1e6 reaches 1e19 without ever being NaN)."""
        st = self.state
        if not math.isfinite(loss):
            return "non-finite loss"
        if st.first_loss is None:
            st.first_loss = loss
        elif loss > self.spec.divergence_factor * max(st.first_loss, 1e-6):
            return f"loss {loss:.3g} is over {self.spec.divergence_factor:g} x the first step's {st.first_loss:.3g}"
        return None

    def _end_epoch(self) -> dict[str, Any] | None:
        """Close the running epoch: history entry (with its evaluation when due), log, checkpoint."""
        st = self.state
        st.epoch += 1
        st.batch_in_epoch = 0
        entry: dict[str, Any] = {
            "epoch": st.epoch,
            "iteration": st.iteration,
            "loss": st.epoch_loss_sum / st.epoch_loss_count if st.epoch_loss_count else None,
            "lr": self.optimizer.param_groups[0]["lr"],
        }
        st.epoch_loss_sum, st.epoch_loss_count = 0.0, 0
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

    def fit(self) -> dict[str, Any]:
        if self.checkpoint_path is not None and self.checkpoint_path.is_file():
            self.load_checkpoint(self.checkpoint_path)
        else:
            seed_everything(self.spec.seed)
            if not self.world.main:  # rank 0 draws the single process's augmentations, the others their own
                seed_everything(self.spec.seed * 1_000_003 + 7919 * self.world.rank)
        st = self.state
        per_epoch = len(self.train_loader)
        bar = self._progress(self.total_iters, st.iteration)
        ticker = _ProgressLine(self, every_s=self.spec.progress_every_s) if bar.disable and self.world.main else None
        last_metrics: dict[str, Any] | None = None
        status = "done"
        why = ""
        try:
            # a checkpoint taken after an epoch's last step (a preemption there) still owes that
            # epoch its history entry and evaluation
            if st.batch_in_epoch and (st.batch_in_epoch >= per_epoch or st.iteration >= self.total_iters):
                last_metrics = self._end_epoch()
            while st.iteration < self.total_iters:
                epoch = st.epoch
                self.model.train()
                gen = getattr(self.train_loader, "generator", None)
                if gen is not None:
                    gen.manual_seed(self.spec.seed * 1_000_003 + epoch)
                skip = st.batch_in_epoch
                sampler = getattr(self.train_loader, "sampler", None)
                if skip and hasattr(sampler, "skip_next"):  # resumed mid-epoch: skip without loading
                    sampler.skip_next(skip * (self.train_loader.batch_size or 1))
                    skip = 0
                batches = iter(self.train_loader)
                if skip:  # another sampler: load and drop the trained batches
                    batches = itertools.islice(batches, skip, None)
                t0 = time.perf_counter()
                for images, masks in batches:
                    self.in_step = True
                    loss = self._step(images, masks)
                    st.iteration += 1
                    st.batch_in_epoch += 1
                    st.images_seen += len(images) * self.world.size  # the global batch
                    reason = self._diverged(loss)
                    if len(st.first_losses) < FIRST_LOSSES:
                        st.first_losses.append(loss)
                    if reason is None:
                        st.epoch_loss_sum += loss
                        st.epoch_loss_count += 1
                    self.in_step = False
                    if reason is not None:
                        status, why = "diverged", reason
                        self.log(f"{reason} at iteration {st.iteration} (epoch {epoch + 1}): run diverged")
                        break
                    if self._at_boundary is not None:
                        st.train_seconds += time.perf_counter() - t0
                        t0 = time.perf_counter()
                        fn, self._at_boundary = self._at_boundary, None
                        fn()
                    bar.update(1)
                    if ticker is not None:
                        ticker.tick(st.train_seconds + time.perf_counter() - t0)
                    if bar.n % 10 == 0 or bar.n == self.total_iters:
                        elapsed = st.train_seconds + time.perf_counter() - t0
                        bar.set_postfix(loss=f"{loss:.3f}", ips=f"{st.images_seen / max(elapsed, 1e-9):.1f}")
                    if st.iteration >= self.total_iters:
                        break
                    if self.world.distributed and self._stop_agreed:
                        st.train_seconds += time.perf_counter() - t0
                        self._stop_all_ranks()
                    if self.world.distributed:
                        requested = self._checkpoint_agreed
                    else:
                        requested = self._checkpoint_requested.is_set()
                    if requested:
                        st.train_seconds += time.perf_counter() - t0
                        t0 = time.perf_counter()
                        self._checkpoint_requested.clear()
                        self.save_checkpoint()
                        self.log(f"checkpoint on request at epoch {epoch}, batch {st.batch_in_epoch}")
                st.train_seconds += time.perf_counter() - t0
                if status == "diverged":
                    break
                last_metrics = self._end_epoch()
        finally:
            bar.close()
        if status == "done" and last_metrics is None:
            last_metrics = self.evaluate()
        return {
            "status": status,
            # a diverged run has no result to report: the metrics of its last evaluation before
            # diverging stay in its history, never in the result's (and the table's) metrics
            "metrics": last_metrics if status == "done" else None,
            "diverged": why or None,
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
