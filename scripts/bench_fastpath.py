"""Training images/s of the fast path against today's fp32 default, loader included.

aspp_unet (width 16) at 180x240, batch 8, Adam, the default augmentation, on synthetic data of that
size (or real CamVid with --camvid ROOT); another network with --arch/--width. Each variant trains
`--iters` steps through the real Trainer (data loading, augmentation, autocast, optimiser;
evaluation and checkpoints outside the timed window); variants alternate within each repetition,
so a change in machine load hits all of them alike. Prints the median images/s of each variant with
its range, the ratio of each variant to the first within every repetition (median and range), the
training FLOP rate of each variant as a fraction of the compute limit of its dtype (the best of
bench.profile.limits' kernels) measured in the same run, and the loader alone (images/s it can feed). `--breakdown VARIANT` traces a few steps of
that variant with torch.profiler and prints where the step's self time goes (convolutions, batch
norm, activations, upsampling, the optimiser, copies and casts, the rest). `--json FILE` writes
it all.

    python scripts/bench_fastpath.py [--iters 20] [--reps 3] [--variants fp32,bf16,bf16+cl] [--camvid ROOT]
                                     [--scale 0.8,1.25] [--device cpu|cuda] [--arch A] [--width W]
                                     [--breakdown bf16+cl] [--json FILE]

Variants: fp32 (train.amp none), bf16 (autocast bf16), fp16 (autocast fp16 with a grad scaler;
CUDA), +cl (channels_last), +compile (torch.compile; its compilation is part of the run's time, as
it is for a cell), +fused (Adam's fused implementation instead of torch's default for-each/loop).
Training FLOPs are taken as 3x the forward FLOPs (torch's flop counter on the meta device).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections import defaultdict

import torch

from bench.configure.config import load_run_config
from bench.data import build_dataset, make_loader
from bench.losses import build_loss
from bench.models import build_model
from bench.optim import make_optimizer, make_scheduler
from bench.profile import ProfileSpec, device_name
from bench.profile.limits import compute_limit
from bench.run.engine import Trainer, TrainSpec
from bench.run.resources import step_gflop


def data(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    sets = [f"model.arch={args.arch}", f"data.size=[{args.height},{args.width}]", f"data.batch_size={args.batch}"]
    if args.model_width is not None:
        sets.append(f"model.width={args.model_width}")
    if args.scale:
        sets.append(f"data.augment.scale=[{args.scale}]")
    if args.camvid:
        sets += ["data.name=camvid", f"data.root={args.camvid}"]
    else:
        sets += ["data.name=synthetic", f"data.count={args.batch * args.iters}"]
    cfg = load_run_config(None, sets)
    from bench.run.runner import build_data

    train, _ = build_data(cfg)
    return cfg, train


def loader_of(cfg, train):  # type: ignore[no-untyped-def]
    return make_loader(build_dataset(train, train=True, data_cfg=cfg.data), batch_size=cfg.data.batch_size,
                       shuffle=True, num_workers=cfg.data.num_workers, seed=0)  # fmt: skip


def dtype_of(variant: str) -> str:
    return "bf16" if "bf16" in variant else "fp16" if "fp16" in variant else "fp32"


def trainer(variant: str, cfg, train, iters: int, device: str) -> Trainer:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = build_model(cfg.model.arch, **cfg.model.knobs())
    if "+fused" in variant:
        opt = torch.optim.Adam(model.parameters(), lr=3e-3, fused=True)
    else:
        opt = make_optimizer("adam", model.parameters(), lr=3e-3, weight_decay=0.0, momentum=None)
    sched = make_scheduler("poly", opt, total_iters=iters, power=0.9)
    amp = {"fp32": "none"}.get(dtype_of(variant), dtype_of(variant))
    spec = TrainSpec(
        iters=iters,
        epochs=None,
        eval_every=10**6,
        checkpoint_every=10**6,
        amp=amp,
        channels_last="+cl" in variant,
        compile="+compile" in variant,
        progress=False,
    )
    loader = loader_of(cfg, train)
    t = Trainer(model, opt, sched, build_loss("ce", ignore_index=train.ignore_index, weight=None), loader, loader,
                spec=spec, device=torch.device(device), num_classes=train.num_classes,
                ignore_index=train.ignore_index, class_names=train.class_names, log=lambda m: None)  # fmt: skip
    t.evaluate = lambda: {"miou": 0.0, "pixel_acc": 0.0}  # the final evaluation is not training
    return t


def run(variant: str, cfg, train, iters: int, device: str = "cpu") -> float:  # type: ignore[no-untyped-def]
    return trainer(variant, cfg, train, iters, device).fit()["train"]["images_per_s"]


# where a step's self time goes: the first category whose words an operator's name contains
CATEGORIES = (
    ("convolution", ("conv", "mkldnn_convolution")),
    ("batch norm", ("batch_norm", "native_batch_norm")),
    ("activation", ("relu", "threshold", "clamp", "hardtanh", "sigmoid", "silu")),
    ("upsampling", ("upsample", "interpolate")),
    ("optimiser", ("adam", "_foreach", "addcdiv", "addcmul", "lerp", "sqrt")),
    ("copies and casts", ("copy_", "to_copy", "contiguous", "clone", "_to_copy")),
    ("loss", ("nll", "cross_entropy", "log_softmax")),
)


def breakdown(variant: str, cfg, train, device: str, steps: int = 6) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Share of the step's self time (CPU, or CUDA kernels on a GPU) per category, over `steps`
    steps after two of warm-up."""
    from torch.profiler import ProfilerActivity, profile

    t = trainer(variant, cfg, train, steps + 2, device)
    batches = iter(loader_of(cfg, train))
    for _ in range(2):
        images, masks = next(batches)
        t._step(images, masks)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=acts) as prof:
        for _ in range(steps):
            try:
                images, masks = next(batches)
            except StopIteration:
                batches = iter(loader_of(cfg, train))
                images, masks = next(batches)
            t._step(images, masks)
    share: dict[str, float] = defaultdict(float)
    for e in prof.key_averages():
        us = e.self_device_time_total if device == "cuda" else e.self_cpu_time_total
        name = e.key.lower()
        cat = next((c for c, words in CATEGORIES if any(w in name for w in words)), "other")
        share[cat] += us
    total = sum(share.values()) or 1.0
    return {c: v / total for c, v in sorted(share.items(), key=lambda kv: -kv[1])}


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
    p.add_argument("--arch", default="aspp_unet")
    p.add_argument("--model-width", type=int, default=16, help="model.width (aspp_unet's channels); 0: the arch's own")
    p.add_argument("--variants", default="fp32,bf16,bf16+cl")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--camvid", help="CamVid root (SegNet layout); default: synthetic data of the same size")
    p.add_argument("--scale", help="random scale augmentation, e.g. 0.8,1.25 (the CamVid recipe); default none")
    p.add_argument("--breakdown", help="a variant whose step is traced: where its time goes")
    p.add_argument("--json", help="write every figure to this file")
    a = p.parse_args()
    a.model_width = a.model_width or None
    variants = [v.strip() for v in a.variants.split(",")]
    cfg, train = data(a)
    fwd = (step_gflop(cfg) or 0.0) / a.batch  # forward GFLOPs per image
    load0 = os.getloadavg()[0]
    threads = torch.get_num_threads()
    where = device_name(a.device)
    print(f"# {where} ({a.device}), {threads} threads, torch {torch.__version__}; {a.arch} "
          f"{'width ' + str(a.model_width) if a.model_width else ''}, batch {a.batch}, {a.height}x{a.width}, "
          f"{'CamVid' if a.camvid else 'synthetic'}, {a.iters} iterations, {a.reps} alternating repetitions; "
          f"{fwd:.2f} forward GFLOPs per image; load average at start {load0:.2f}", flush=True)  # fmt: skip
    run(variants[0], cfg, train, 3, a.device)  # warm-up (allocator, oneDNN primitive caches)
    ips: dict[str, list[float]] = {v: [] for v in variants}
    for r in range(a.reps):
        for v in variants:
            ips[v].append(run(v, cfg, train, a.iters, a.device))
        print(f"rep {r + 1}: " + ", ".join(f"{v} {ips[v][-1]:.2f}" for v in variants) + " img/s", flush=True)
    peaks = {}
    for dtype in sorted({dtype_of(v) for v in variants}):
        spec = ProfileSpec(input=(3, 8, 8), device=a.device, dtype=dtype)
        peaks[dtype] = compute_limit(spec)[0]
    feed = [loader_alone(cfg, train, a.iters) for _ in range(a.reps)]
    base = ips[variants[0]]
    rows = []
    print(f"\n| variant | images/s median (min-max) | ratio to {variants[0]} per repetition, median (min-max) "
          "| training GFLOP/s | fraction of its dtype's compute limit |")  # fmt: skip
    print("|---|---:|---:|---:|---:|")
    for v in variants:
        ratios = [x / b for x, b in zip(ips[v], base, strict=True)]
        dtype = dtype_of(v)
        gflops = 3 * fwd * statistics.median(ips[v])
        rows.append({"variant": v, "images_per_s": ips[v], "ratio": ratios, "train_gflops": gflops,
                     "peak_dtype": dtype, "peak_fraction": gflops / peaks[dtype]})  # fmt: skip
        print(f"| {v} | {statistics.median(ips[v]):.2f} ({min(ips[v]):.2f}-{max(ips[v]):.2f}) | "
              f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}) | {gflops:.1f} | "
              f"{gflops / peaks[dtype]:.2f} of {dtype} {peaks[dtype]:.0f} |")  # fmt: skip
    print(f"| loader alone | {statistics.median(feed):.1f} ({min(feed):.1f}-{max(feed):.1f}) | - | - | - |")
    print("\ncompute limit (best of bench.profile.limits' kernels) measured in this run: "
          + ", ".join(f"{k} {v:.1f} GFLOP/s" for k, v in peaks.items()))
    shares = None
    if a.breakdown:
        shares = breakdown(a.breakdown, cfg, train, a.device)
        print(f"\nwhere a {a.breakdown} step's self time goes: "
              + ", ".join(f"{c} {100 * x:.0f}%" for c, x in shares.items())
              + f" (outside convolutions: {100 * (1 - shares.get('convolution', 0.0)):.0f}%)")  # fmt: skip
    load1 = os.getloadavg()[0]
    print(f"load average at end {load1:.2f}")
    if a.json:
        record = {"device": a.device, "device_name": where, "threads": threads, "torch": torch.__version__,
                  "arch": a.arch, "model_width": a.model_width, "batch": a.batch, "size": [a.height, a.width],
                  "forward_gflop_per_image": fwd, "iters": a.iters, "reps": a.reps, "rows": rows,
                  "loader_images_per_s": feed, "matmul_peak_gflops": peaks, "breakdown": shares,
                  "breakdown_variant": a.breakdown, "load_avg": [load0, load1]}  # fmt: skip
        with open(a.json, "w") as f:
            json.dump(record, f, indent=1)


if __name__ == "__main__":
    main()
