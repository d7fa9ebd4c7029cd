"""How long the receptive-field analysis takes (bench/profile/receptive.py), on this machine.

    python scripts/bench_receptive.py                # both figures, 3 repetitions each
    python scripts/bench_receptive.py --reps 5 --json out.json

1. The theoretical analysis of every configuration of ablations/dilation_grid.yaml at its profile
   size (3x96x96), as `aspp-bench receptive --sweep` runs it: one analysis per configuration
   (41 for the 82 cells: a seed does not change a theoretical field), model builds included.
2. The effective field of aspp_unet width 16 at 180x240 over 32 real CamVid validation images
   (data.root camvid below $ASPP_BENCH_DATA, resized to 180x240; random images where it is missing, said so): the
   time does not depend on the weights, so the network is taken at its initialisation.

Each figure: median, min and max over the repetitions (wall seconds), the threads used, the CPU
and the 1-minute load average at the start; the machine may be busy, so say so beside a figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import bench  # noqa: E402, F401  (before torch: it sets OpenMP's wait policy, see docs/training.md)

# isort: split
import torch  # noqa: E402

from bench.configure.config import load_run_config  # noqa: E402
from bench.configure.identity import config_id  # noqa: E402
from bench.data import build_dataset, load_split, locate_root  # noqa: E402
from bench.models import build_model  # noqa: E402
from bench.profile import device_name  # noqa: E402
from bench.profile.receptive import effective_field, receptive_field  # noqa: E402
from bench.run.threads import plan_threads  # noqa: E402
from bench.sweep import expand, load_sweep  # noqa: E402


def theoretical_grid() -> float:
    cells = expand(load_sweep(ROOT / "ablations" / "dilation_grid.yaml"))
    configs = {config_id(c.config, resolved=True): c for c in reversed(cells)}
    started = time.perf_counter()
    for cell in configs.values():
        cfg = cell.config
        model = build_model(cfg.model.arch, **cfg.model.knobs())
        receptive_field(model, tuple(cfg.profile.input) if cfg.profile.input else (3, *cfg.data.size))
    return time.perf_counter() - started


def camvid_images(n: int) -> tuple[torch.Tensor, str]:
    root = Path(locate_root("camvid"))
    if not root.is_dir():
        return torch.randn(n, 3, 180, 240), "random images (CamVid not found below $ASPP_BENCH_DATA)"
    cfg = load_run_config(None, ["data.name=camvid", f"data.root={root}", "data.size=[180,240]", "data.split=val"])
    data = build_dataset(load_split(cfg.data, "val"), train=False)
    return torch.stack([data[i][0] for i in range(n)]), f"{n} CamVid val images at 180x240"


def effective_at_180x240(images: torch.Tensor) -> float:
    model = build_model("aspp_unet", num_classes=12, width=16)
    started = time.perf_counter()
    effective_field(model, images)
    return time.perf_counter() - started


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--json", help="write the figures here as JSON")
    a = p.parse_args()
    threads = plan_threads(None).threads
    torch.set_num_threads(threads)
    load = os.getloadavg()[0]
    images, what = camvid_images(32)
    rows = {"theoretical, dilation_grid (41 configurations)": [], f"effective, aspp_unet w16, {what}": []}
    for _ in range(a.reps):  # interleaved, so a change of load touches both alike
        rows["theoretical, dilation_grid (41 configurations)"].append(theoretical_grid())
        rows[f"effective, aspp_unet w16, {what}"].append(effective_at_180x240(images))
    cpu = device_name("cpu") or platform.processor()
    print(f"{cpu}, {threads} thread(s), torch {torch.__version__}, load average {load:.2f} at the start")
    print("| what | median s | min | max |")
    print("|---|---:|---:|---:|")
    out = {"cpu": cpu, "threads": threads, "load_avg": load, "torch": torch.__version__, "figures": {}}
    for name, times in rows.items():
        print(f"| {name} | {statistics.median(times):.1f} | {min(times):.1f} | {max(times):.1f} |")
        out["figures"][name] = times
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
