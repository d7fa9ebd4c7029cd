"""Training images/s of thread settings side by side, on a quiet machine and beside CPU-bound work.

Each variant is one `aspp-bench train` process (a 1-epoch synthetic aspp_unet, width 8, 48x48,
the cell the thread collapse was first seen on; change it with --set) run with its own
environment; the variants alternate within every repetition, so a change in load hits them alike.
A phase `--burners N` starts N CPU-bound processes (busy Python loops) beside the runs and stops
them after. Prints, per phase, the median images/s of each variant with its range, and each
variant's ratio to the first (`--base`) within every repetition, median and range; the CPU, the
load average at start and end of each phase.

    python scripts/bench_threads.py [--reps 5] [--burners 0,2] [--variants policy,today,one]
                                    [--set KEY=VALUE ...]

Variants (each an environment for the child; anything else the user exports is passed through):
  policy   the suite's default thread policy (bench/run/threads.py): threads from the CPUs this
           process may use, OpenMP threads that sleep rather than spin while they wait
  today    the default before the policy: torch's own count (all CPUs) and libgomp's default spin
  spin     the thread count as policy, with GNU OpenMP's default spin-wait before sleeping
           (GOMP_SPINCOUNT=300000, the libgomp default when OMP_WAIT_POLICY is unset): the old default
  active   OMP_WAIT_POLICY=ACTIVE (spin without ever sleeping)
  passive  OMP_WAIT_POLICY=PASSIVE (sleep at once)
  one      OMP_NUM_THREADS=1: one thread
  spin:N   GOMP_SPINCOUNT=N (spin N rounds, then sleep)
  threads:N  OMP_NUM_THREADS=N
  A+B      both, e.g. threads:2+passive
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.profile.environment import device_name

VARIANTS: dict[str, dict[str, str]] = {
    "policy": {},
    "today": {"OMP_NUM_THREADS": str(os.cpu_count() or 1), "GOMP_SPINCOUNT": "300000"},
    "spin": {"GOMP_SPINCOUNT": "300000"},
    "active": {"OMP_WAIT_POLICY": "ACTIVE"},
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
    "one": {"OMP_NUM_THREADS": "1"},
}
# what a variant must not inherit from this process, so each is what its name says
_CLEARED = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
DEFAULT_SET = ["model.arch=aspp_unet", "model.width=8", "data.size=[48,48]", "train.epochs=1"]


def burn() -> None:  # pragma: no cover - runs in a child process
    while True:
        pass


def variant_env(variant: str) -> dict[str, str]:
    if "+" in variant:  # a combination, e.g. threads:2+passive
        env: dict[str, str] = {}
        for part in variant.split("+"):
            env.update(variant_env(part))
        return env
    name, _, n = variant.partition(":")
    if name == "spin" and n.isdigit():
        return {"GOMP_SPINCOUNT": n}
    if name == "threads" and n.isdigit():
        return {"OMP_NUM_THREADS": n}
    return VARIANTS[variant]


def train_once(variant: str, sets: list[str], root: Path, tag: str) -> tuple[float, int]:
    env = {k: v for k, v in os.environ.items() if k not in _CLEARED}
    env.update(variant_env(variant))
    out = root / f"{variant.replace(':', '').replace('+', '_')}-{tag}"
    cmd = [sys.executable, "-m", "bench.cli", "train", "--out", str(out), "--set", *sets]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"{variant}: {' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    result = json.loads((out / "result.json").read_text())
    return float(result["train"]["images_per_s"]), int(result["env"]["train_threads"] or 0)


def phase(burners: int, variants: list[str], reps: int, sets: list[str], root: Path) -> None:
    procs = [multiprocessing.Process(target=burn, daemon=True) for _ in range(burners)]
    for p in procs:
        p.start()
    try:
        time.sleep(2 if burners else 0)  # let the burners take their cores
        load0 = os.getloadavg()[0]
        ips: dict[str, list[float]] = {v: [] for v in variants}
        threads: dict[str, int] = {}
        for r in range(reps):
            for v in variants:
                x, threads[v] = train_once(v, sets, root, f"{burners}-{r}")
                ips[v].append(x)
            print(f"  rep {r + 1}: " + ", ".join(f"{v} {ips[v][-1]:.1f}" for v in variants) + " img/s", flush=True)
        load1 = os.getloadavg()[0]
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.join()
    base = ips[variants[0]]
    print(f"\n{burners} CPU-bound process(es) beside the runs; load average {load0:.2f} at start, "
          f"{load1:.2f} at end\n")  # fmt: skip
    print(
        f"| variant | threads | images/s median (min-max) | ratio to {variants[0]} per repetition, median (min-max) |"
    )
    print("|---|---:|---:|---:|")
    for v in variants:
        ratios = [x / b for x, b in zip(ips[v], base, strict=True)]
        print(f"| {v} | {threads[v]} | {statistics.median(ips[v]):.1f} ({min(ips[v]):.1f}-{max(ips[v]):.1f}) | "
              f"{statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f}) |")  # fmt: skip
    print(flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--burners", default="0,2", help="comma-separated: one phase per count of CPU-bound processes")
    p.add_argument("--variants", default="policy,today,one", help=f"first is the base: {', '.join(VARIANTS)}")
    p.add_argument("--set", nargs="+", default=[], help=f"config overrides added to {' '.join(DEFAULT_SET)}")
    a = p.parse_args()
    variants = [v.strip() for v in a.variants.split(",")]
    parts = [x for v in variants for x in v.split("+")]
    unknown = [x for x in parts if x not in VARIANTS and not x.partition(":")[2].isdigit()]
    if unknown:
        p.error(f"--variants: unknown {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    sets = DEFAULT_SET + a.set
    print(f"# {device_name('cpu')}, {os.cpu_count()} CPUs; aspp-bench train --set {' '.join(sets)}; "
          f"{a.reps} alternating repetitions per phase")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-threads-") as tmp:
        for n in [int(x) for x in a.burners.split(",")]:
            phase(n, variants, a.reps, sets, Path(tmp))


if __name__ == "__main__":
    main()
