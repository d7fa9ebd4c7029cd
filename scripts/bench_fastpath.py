"""Training images/s of the fast path against today's fp32 default, loader included.

aspp_unet (width 16) at 180x240, batch 8, Adam, the default augmentation, on synthetic data of that
size (or real CamVid with --camvid ROOT). Each variant trains `--iters` steps through the real
Trainer (data loading, augmentation, autocast, optimiser; evaluation and checkpoints outside the
timed window); variants alternate within each repetition, so a change in machine load hits all of
them alike. Prints the median images/s of each variant with its range, the ratio of each variant
to fp32 within every repetition (median and range), and the loader alone (images/s it can feed).

    python scripts/bench_fastpath.py [--iters 20] [--reps 3] [--variants fp32,bf16,bf16+cl] [--camvid ROOT]
                                     [--scale 0.8,1.25]

Variants: fp32 (train.amp none), bf16 (autocast bf16), +cl (channels_last), +compile (torch.compile;
its compilation is part of the run's time, as it is for a cell).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from bench.config import load_run_config
from bench.data import build_dataset, make_loader
from bench.engine import Trainer, TrainSpec
from bench.losses import build_loss
from bench.models import build_model
from bench.optim import make_optimizer, make_scheduler
from bench.profile import device_name


def data(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    sets = [f"data.size=[{args.height},{args.width}]", f"data.batch_size={args.batch}"]
    if args.scale:
        sets.append(f"data.augment.scale=[{args.scale}]")
    if args.camvid:
        sets += ["data.name=camvid", f"data.root={args.camvid}"]
    else:
        sets += ["data.name=synthetic", f"data.count={args.batch * args.iters}"]
    cfg = load_run_config(None, sets)
    from bench.runner import build_data

    train, _ = build_data(cfg)
    return cfg, train


def loader_of(cfg, train):  # type: ignore[no-untyped-def]
    return make_loader(build_dataset(train, train=True, data_cfg=cfg.data), batch_size=cfg.data.batch_size,
                       shuffle=True, num_workers=cfg.data.num_workers, seed=0)  # fmt: skip


def run(variant: str, cfg, train, iters: int) -> float:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = build_model("aspp_unet", width=16, num_classes=train.num_classes)
    opt = make_optimizer("adam", model.parameters(), lr=3e-3, weight_decay=0.0, momentum=None)
    sched = make_scheduler("poly", opt, total_iters=iters, power=0.9)
    spec = TrainSpec(
        iters=iters,
        epochs=None,
        eval_every=10**6,
        checkpoint_every=10**6,
        amp="bf16" if "bf16" in variant else "none",
        channels_last="+cl" in variant,
        compile="+compile" in variant,
        progress=False,
    )
    loader = loader_of(cfg, train)
    t = Trainer(model, opt, sched, build_loss("ce", ignore_index=train.ignore_index, weight=None), loader, loader,
                spec=spec, device=torch.device("cpu"), num_classes=train.num_classes,
                ignore_index=train.ignore_index, class_names=train.class_names, log=lambda m: None)  # fmt: skip
    t.evaluate = lambda: {"miou": 0.0, "pixel_acc": 0.0}  # the final evaluation is not training
    return t.fit()["train"]["images_per_s"]


def loader_alone(cfg, train, iters: int) -> float:  # type: ignore[no-untyped-def]
    loader = loader_of(cfg, train)
    n, t0 = 0, time.perf_counter()
    while n < iters * cfg.data.batch_size:
        for images, _ in loader:
            n += len(images)
            if n >= iters * cfg.data.batch_size:
                break
    return n / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--height", type=int, default=180)
    p.add_argument("--width", type=int, default=240)
    p.add_argument("--variants", default="fp32,bf16,bf16+cl")
    p.add_argument("--camvid", help="CamVid root (SegNet layout); default: synthetic data of the same size")
    p.add_argument("--scale", help="random scale augmentation, e.g. 0.8,1.25 (the CamVid recipe); default none")
    a = p.parse_args()
    variants = [v.strip() for v in a.variants.split(",")]
    cfg, train = data(a)
    load0 = os.getloadavg()[0]
    print(f"# {device_name('cpu')}, {torch.get_num_threads()} threads, torch {torch.__version__}; aspp_unet width 16, "
          f"batch {a.batch}, {a.height}x{a.width}, {'CamVid' if a.camvid else 'synthetic'}, {a.iters} iterations, "
          f"{a.reps} alternating repetitions; load average at start {load0:.2f}")  # fmt: skip
    run(variants[0], cfg, train, 3)  # warm-up (allocator, oneDNN primitive caches)
    ips: dict[str, list[float]] = {v: [] for v in variants}
    for r in range(a.reps):
        for v in variants:
            ips[v].append(run(v, cfg, train, a.iters))
        print(f"rep {r + 1}: " + ", ".join(f"{v} {ips[v][-1]:.2f}" for v in variants) + " img/s", flush=True)
    feed = [loader_alone(cfg, train, a.iters) for _ in range(a.reps)]
    base = ips[variants[0]]
    print(f"\n| variant | images/s median (min-max) | ratio to {variants[0]} per repetition, median (min-max) |")
    print("|---|---:|---:|")
    for v in variants:
        ratios = [x / b for x, b in zip(ips[v], base, strict=True)]
        print(f"| {v} | {statistics.median(ips[v]):.2f} ({min(ips[v]):.2f}-{max(ips[v]):.2f}) | "
              f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}) |")  # fmt: skip
    print(f"| loader alone | {statistics.median(feed):.1f} ({min(feed):.1f}-{max(feed):.1f}) | - |")
    print(f"load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
