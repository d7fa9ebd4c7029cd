"""Trainer overhead: images/s of bench.run.engine.Trainer vs a bare PyTorch loop.

Same model (aspp_unet, CPU preset), batch, optimiser, loss and in-memory data; evaluation and
checkpointing are outside the timed window for both (the Trainer's are set beyond the run).
Alternating repetitions, median and spread reported. Target: within 5%.

    python scripts/bench_trainer.py [--iters 60] [--reps 5] [--size 96]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from bench.configure.config import load_run_config
from bench.data import build_dataset, make_loader
from bench.data.synthetic import make_synthetic
from bench.losses import build_loss
from bench.models import build_model
from bench.optim import make_optimizer, make_scheduler
from bench.profile import device_name
from bench.run.engine import Trainer, TrainSpec


def setup(size: int, batch: int, iters: int):  # type: ignore[no-untyped-def]
    data = make_synthetic(split="train", size=(size, size), count=batch * iters, classes=6)
    cfg = load_run_config(None, []).data
    loader = make_loader(build_dataset(data, train=True, data_cfg=cfg), batch_size=batch, shuffle=True, seed=0)
    torch.manual_seed(0)
    model = build_model("aspp_unet", width=16, num_classes=6)
    opt = make_optimizer("adam", model.parameters(), lr=1e-3, weight_decay=0.0, momentum=0.9)
    sched = make_scheduler("poly", opt, total_iters=iters, power=0.9)
    return model, opt, sched, build_loss("ce", ignore_index=255, weight=None), loader


def bare(size: int, batch: int, iters: int) -> float:
    model, opt, sched, loss_fn, loader = setup(size, batch, iters)
    model.train()
    t0 = time.perf_counter()
    n = 0
    for images, masks in loader:
        loss = loss_fn(model(images), masks)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        n += len(images)
    return n / (time.perf_counter() - t0)


def trainer(size: int, batch: int, iters: int) -> float:
    model, opt, sched, loss_fn, loader = setup(size, batch, iters)
    spec = TrainSpec(epochs=1, eval_every=10**6, checkpoint_every=10**6, progress=False)
    t = Trainer(
        model,
        opt,
        sched,
        loss_fn,
        loader,
        loader,
        spec=spec,
        device=torch.device("cpu"),
        num_classes=6,
        ignore_index=255,
        class_names=[str(i) for i in range(6)],
        checkpoint_path=None,
        log=lambda m: None,
    )
    t.evaluate = lambda: {"miou": 0.0, "pixel_acc": 0.0}  # the final evaluation is not training
    r = t.fit()
    return r["train"]["images_per_s"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iters", type=int, default=60)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--batch", type=int, default=8)
    a = p.parse_args()
    bare(a.size, a.batch, 5)  # warm-up
    b, t = [], []
    for _ in range(a.reps):
        b.append(bare(a.size, a.batch, a.iters))
        t.append(trainer(a.size, a.batch, a.iters))
    mb, mt = statistics.median(b), statistics.median(t)
    print(
        f"# {device_name('cpu')}, {torch.get_num_threads()} threads, torch {torch.__version__}; aspp_unet width 16, "
        f"batch {a.batch}, {a.size}x{a.size}, {a.iters} iterations x {a.reps} alternating repetitions"
    )
    print(f"bare loop : median {mb:.1f} img/s (min {min(b):.1f}, max {max(b):.1f})")
    print(f"Trainer   : median {mt:.1f} img/s (min {min(t):.1f}, max {max(t):.1f})")
    print(f"Trainer / bare = {mt / mb:.3f} ({100 * (mt / mb - 1):+.1f}%)")


if __name__ == "__main__":
    main()
