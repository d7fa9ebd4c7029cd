"""The GPU check: one prepared run on a machine with one NVIDIA GPU, under 8 minutes.

1. the gpu-marked tests (`pytest -m gpu`);
2. the fast-path training benchmark on CUDA (scripts/bench_fastpath.py --device cuda): fp32, bf16,
   fp16 with a grad scaler, channels_last, torch.compile, for aspp_unet at CamVid's 360x480 and
   deeplabv3 (ResNet-50) at 513x513, the papers' resolutions;
3. `aspp-bench profile` latencies with the CUDA protocol (synchronised, warm-up, median and p90 of
   torch.utils.benchmark blocks) for both networks in fp32 and fp16;
4. a 1-GPU DistributedDataParallel cell over NCCL (process group of one, bench's model and loss,
   gradients all-reduced through NCCL every step).

Each part has its own time limit; a part that fails or runs out of time is recorded as such and the
rest still run. Writes OUT/gpu_check.json and OUT/gpu_check.md (the table for docs/measurement.md).

    python scripts/gpu_check.py [--out gpu_check] [--quick]

`--quick` runs each part at a token size (the CPU-side check of the script itself: on a machine
without CUDA every CUDA part is recorded as skipped, and the CPU profile stands in for part 3).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
NETS = (  # (arch, model width, input H, W, batch): the papers' resolutions
    ("aspp_unet", 16, 360, 480, 8),
    ("deeplabv3", 0, 513, 513, 8),
)
VARIANTS = "fp32,bf16,fp16,fp16+cl,fp16+cl+compile"


def _run(cmd: list[str], timeout: float, log: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    try:
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
        log.write_text(done.stdout + "\n--- stderr ---\n" + done.stderr)
        status = "passed" if done.returncode == 0 else f"failed (exit {done.returncode})"
        tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
    except subprocess.TimeoutExpired as e:
        log.write_text(f"timed out after {timeout} s\n{e.stdout or ''}")
        status, tail = f"timed out ({timeout:.0f} s)", []
    return {"cmd": " ".join(cmd), "status": status, "seconds": round(time.perf_counter() - t0, 1), "tail": tail,
            "log": str(log)}  # fmt: skip


def ddp_cell(steps: int, device: str) -> dict[str, Any]:
    """A process group of one over NCCL (gloo on the CPU), DDP around bench's aspp_unet, `steps`
    steps of cross-entropy: the all-reduce path a multi-GPU cell takes."""
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    from bench.models import build_model

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(29500 + os.getpid() % 1000))
    backend = "nccl" if device == "cuda" else "gloo"
    dist.init_process_group(backend, rank=0, world_size=1)
    try:
        model = build_model("aspp_unet", width=8, num_classes=12).to(device)
        ddp = DDP(model, device_ids=[0] if device == "cuda" else None)
        opt = torch.optim.SGD(ddp.parameters(), lr=0.01, momentum=0.9)
        x = torch.randn(4, 3, 96, 128, device=device)
        y = torch.randint(0, 12, (4, 96, 128), device=device)
        losses = []
        t0 = time.perf_counter()
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(ddp(x), y)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        return {"status": "passed" if losses[-1] < losses[0] else "failed (loss did not fall)", "backend": backend,
                "steps": steps, "ms_per_step": 1e3 * seconds / steps, "first_loss": losses[0],
                "last_loss": losses[-1]}  # fmt: skip
    finally:
        dist.destroy_process_group()


def markdown(record: dict[str, Any]) -> str:
    lines = [f"GPU check on {record['device_name']} (torch {record['torch']}, CUDA {record['cuda']}), "
             f"{record['seconds']:.0f} s in all.", "", "| part | status | seconds |", "|---|---|---:|"]  # fmt: skip
    for name, part in record["parts"].items():
        lines.append(f"| {name} | {part['status']} | {part.get('seconds', '-')} |")
    for name, fp in record.get("fastpath", {}).items():
        lines += ["", f"Training images/s, {name} (scripts/bench_fastpath.py --device {record['device']}):", "",
                  "| variant | images/s median | ratio to fp32 | fraction of its dtype's compute limit |",
                  "|---|---:|---:|---:|"]  # fmt: skip
        for row in fp["rows"]:
            ips, ratio = statistics.median(row["images_per_s"]), statistics.median(row["ratio"])
            lines.append(f"| {row['variant']} | {ips:.1f} | {ratio:.2f} | {row['peak_fraction']:.2f} |")
    if record.get("profiles"):
        lines += ["", "Latency, batch 1 (aspp-bench profile, synchronised, warm-up, torch.utils.benchmark blocks):", "",
                  "| network | input | dtype | p50 ms | p90 ms | FPS |", "|---|---|---|---:|---:|---:|"]  # fmt: skip
        for p in record["profiles"]:
            lines.append(f"| {p['arch']} | {p['input']} | {p['dtype']} | {p['p50']:.2f} | {p['p90']:.2f} | "
                         f"{p['fps']:.1f} |")  # fmt: skip
    ddp = record.get("ddp")
    if ddp:
        lines += ["", f"1-GPU DDP cell over {ddp.get('backend')}: {ddp['status']}"
                  + (f", {ddp['ms_per_step']:.1f} ms per step, loss {ddp['first_loss']:.3f} -> {ddp['last_loss']:.3f}"
                     if "ms_per_step" in ddp else "")]  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="gpu_check")
    p.add_argument("--quick", action="store_true", help="token sizes: checks the script, not the GPU")
    a = p.parse_args()
    import torch

    out = Path(a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    t0 = time.perf_counter()
    record: dict[str, Any] = {
        "device": device,
        "device_name": torch.cuda.get_device_name() if cuda else "no CUDA device (CPU-side check only)",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "parts": {},
        "fastpath": {},
        "profiles": [],
    }
    py = sys.executable
    tests = [py, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", "tests"]
    record["parts"]["gpu-marked tests"] = _run(tests, 150 if not a.quick else 60, out / "tests.log")
    for arch, width, h, w, batch in NETS:
        name = f"{arch} {h}x{w} batch {batch}"
        if a.quick:
            h, w, batch = 64, 64, 2
        if not cuda and not a.quick:
            record["parts"][f"fast path, {name}"] = {"status": "skipped (no CUDA)"}
            continue
        js = out / f"fastpath_{arch}.json"
        cmd = [py, "scripts/bench_fastpath.py", "--device", device, "--arch", arch, "--model-width", str(width),
               "--height", str(h), "--width", str(w), "--batch", str(batch), "--iters", "5" if a.quick else "20",
               "--reps", "1" if a.quick else "2", "--variants", VARIANTS if cuda else "fp32,bf16+cl",
               "--json", str(js)]  # fmt: skip
        record["parts"][f"fast path, {name}"] = _run(cmd, 120, out / f"fastpath_{arch}.log")
        if js.is_file():
            record["fastpath"][name] = json.loads(js.read_text())
    for arch, width, h, w, _ in NETS:
        if a.quick:
            h, w = 64, 64
        for dtype in ("fp32", "fp16") if cuda else ("fp32",):
            js = out / f"profile_{arch}_{dtype}.json"
            cmd = [py, "-m", "bench.cli", "profile", arch, "--device", device, "--input", f"3x{h}x{w}",
                   "--dtype", dtype, "--json"] + (["--set", f"model.width={width}"] if width else [])  # fmt: skip
            part = _run(cmd, 60, out / f"profile_{arch}_{dtype}.log")
            record["parts"][f"profile {arch} {dtype}"] = part
            if part["status"] == "passed":
                text = (out / f"profile_{arch}_{dtype}.log").read_text().split("\n--- stderr ---\n")[0]
                js.write_text(text)
                r = json.loads(text)
                record["profiles"].append({"arch": arch, "input": f"{h}x{w}", "dtype": dtype,
                                           "p50": r["latency_ms_p50"], "p90": r["latency_ms_p90"],
                                           "fps": 1e3 / r["latency_ms_p50"]})  # fmt: skip
    t1 = time.perf_counter()
    try:
        record["ddp"] = ddp_cell(5 if a.quick else 30, device)
    except Exception as e:  # noqa: BLE001 - a check records what broke and goes on
        record["ddp"] = {"status": f"failed ({type(e).__name__}: {str(e)[:300]})"}
    ddp_s = round(time.perf_counter() - t1, 1)
    record["parts"]["1-GPU DDP cell"] = {"status": record["ddp"]["status"], "seconds": ddp_s}
    record["seconds"] = time.perf_counter() - t0
    (out / "gpu_check.json").write_text(json.dumps(record, indent=1, default=str))
    (out / "gpu_check.md").write_text(markdown(record))
    print(markdown(record))
    bad = [k for k, v in record["parts"].items() if not str(v["status"]).startswith(("passed", "skipped"))]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
