"""The environment every speed figure carries (device, vector extensions, kernels, threads, dtype,
load) and its fingerprint."""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path
from typing import Any

import torch

from bench.models import plugins
from bench.profile.spec import ProfileSpec


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# the vector extensions that decide which CPU kernels oneDNN and ATen pick
_CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile", "asimd",
              "sve")  # fmt: skip


def device_features(device: str) -> str:
    """GPU compute capability, or the CPU's vector extensions that change kernels (and numbers)."""
    if device == "cuda":
        major, minor = torch.cuda.get_device_capability()
        return f"sm_{major}{minor}"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                have = set(line.split(":", 1)[1].split())
                return ",".join(f for f in _CPU_FLAGS if f in have) or "none"
    except OSError:
        pass
    return platform.machine()


def kernel_library(device: str) -> str:
    """oneDNN (CPU) or cuDNN (CUDA) version: another version may pick other kernels."""
    if device == "cuda":
        return f"cudnn {torch.backends.cudnn.version()}"
    cfg = torch.__config__.show()
    for line in cfg.splitlines():
        if "oneDNN" in line or "MKL-DNN" in line:
            return line.strip().lstrip("-").strip()
    return "unknown"


def environment(spec: ProfileSpec, *, train_threads: int | None = None, train_world_size: int = 1) -> dict[str, Any]:
    """The fingerprint every speed figure carries: speed is only compared like with like. It
    tells apart what changes the numbers (device and its vector extensions or compute capability,
    torch and its kernel library, profiling and training threads, dtype, memory format, the
    number of devices a run trained on) and
    records the load at measurement (1-minute load average against the cores)."""
    import torchvision

    return {
        "device": spec.device,
        "device_name": device_name(spec.device),
        "device_features": device_features(spec.device),
        "kernels": kernel_library(spec.device),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "threads": torch.get_num_threads() if spec.device == "cpu" else None,
        "train_threads": train_threads,
        "cpu_count": os.cpu_count(),
        "load_avg": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "dtype": spec.dtype,
        "channels_last": spec.channels_last,
        "compile": spec.compile,
        "train_world_size": train_world_size,
        "plugins": plugins(),  # ASPP_BENCH_PLUGINS modules whose variants this process could build
        "host": host_id(),
        "code": code_revision(),  # not part of the fingerprint: `regress` names it in the speed command
    }


@functools.lru_cache(maxsize=1)
def code_revision() -> str | None:
    """The git commit of the code this process runs ('<commit>-dirty' with uncommitted changes to
    bench/), or None outside a git checkout: what `aspp-bench speed --rev` needs to time a result's
    code version against another."""
    import subprocess

    top = Path(__file__).resolve().parents[2]
    if not (top / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=top, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "bench"], cwd=top, capture_output=True,
                               text=True, timeout=10)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def host_id() -> str:
    """Which machine, since which boot: a hash of the host name and the kernel's boot id. Two
    machines of one kind share a fingerprint yet do not repeat each other's results to the bit,
    so `regress` needs this to know that two results came from one environment (the raw names
    are not recorded)."""
    import hashlib
    import socket

    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = ""
    return hashlib.sha256(f"{socket.gethostname()}|{boot}".encode()).hexdigest()[:12]


FINGERPRINT_KEYS = ("device", "device_name", "device_features", "kernels", "torch", "threads", "train_threads",
                    "dtype", "channels_last", "compile")  # fmt: skip


def fingerprint(env: dict[str, Any]) -> str:
    """The environment's identity for speed comparisons. The training world size joins it only
    above 1, so every single-process fingerprint (the committed baselines') stays as it was."""
    key = "|".join(str(env.get(k)) for k in FINGERPRINT_KEYS)
    world = env.get("train_world_size") or 1
    return key if world == 1 else f"{key}|world={world}"
