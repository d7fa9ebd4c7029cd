"""Model cost: parameters, FLOPs from three counters with honest units, latency/FPS, memory.

Units. Every counter is reported in multiply-accumulates (MACs). The headline `gmacs` is
torch.utils.flop_counter's count / 2 (it counts 2 FLOPs per MAC of convolutions and matrix
products only), which is how torchvision computes the GFLOPS in its weights metadata and
what most papers call "FLOPs"; `gflops` = 2 x `gmacs`. fvcore and ptflops also count some
elementwise, pooling and upsampling ops, so they read a few percent higher; each counter
lists the operators it ran but did not count, and counters that differ from the headline by
more than 5% are flagged.

Latency protocol: model in eval mode under torch.inference_mode, batch 1 (and batch N for
throughput), warm-up runs first (which also triggers torch.compile), then
torch.utils.benchmark's adaptive_autorange (it synchronises CUDA around each block) for at
least `min_run_time` seconds; median, p90 and IQR over its per-block times; FPS = 1000 /
median. Data loading is excluded.
"""

from __future__ import annotations

import contextlib
import io
import os
import platform
import time
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.errors import UserError

__all__ = [
    "ProfileSpec",
    "count_flops",
    "count_params",
    "environment",
    "measure_latency",
    "parse_input",
    "peak_gflops",
    "profile_model",
]

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
METRICS = ("params", "flops", "latency")
DISAGREE = 0.05


@dataclass(frozen=True)
class ProfileSpec:
    """How to profile: input (C, H, W), batch for throughput, device, threads, dtype, flags."""

    input: tuple[int, int, int] = (3, 512, 512)
    batch: int = 1
    device: str = "cpu"
    threads: int | None = None
    dtype: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    metrics: tuple[str, ...] = METRICS
    min_run_time: float = 1.0


def parse_input(text: str) -> tuple[int, int, int]:
    """'3x520x520' -> (3, 520, 520)."""
    parts = text.lower().split("x")
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if len(shape) != 3 or any(s < 1 for s in shape):
        raise UserError(f"--input {text!r}: expected CxHxW with positive integers, e.g. 3x520x520")
    return shape  # type: ignore[return-value]


def check_spec(spec: ProfileSpec) -> None:
    """Reject what the device cannot do before any model is built (exit 2)."""
    if spec.device not in ("cpu", "cuda"):
        raise UserError(f"--device {spec.device!r}: allowed are cpu and cuda")
    if spec.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: CUDA is not available on this machine (torch sees no GPU); use --device cpu")
    if spec.dtype not in DTYPES:
        raise UserError(f"--dtype {spec.dtype!r}: allowed are {', '.join(DTYPES)}")
    if spec.dtype == "fp16" and spec.device == "cpu":
        raise UserError("--dtype fp16 is not supported for CPU inference here; use bf16 or fp32 on cpu, fp16 on cuda")
    if spec.dtype == "bf16" and spec.device == "cuda" and not torch.cuda.is_bf16_supported():
        raise UserError(f"--dtype bf16: {torch.cuda.get_device_name()} has no bf16 support; use fp16 or fp32")
    bad = [m for m in spec.metrics if m not in METRICS]
    if bad or not spec.metrics:
        raise UserError(f"--metrics {','.join(spec.metrics)!r}: allowed are {', '.join(METRICS)} (comma-separated)")
    if spec.batch < 1:
        raise UserError(f"--batch {spec.batch}: must be a positive integer")
    if spec.threads is not None and spec.threads < 1:
        raise UserError(f"--threads {spec.threads}: must be a positive integer")


# --------------------------------------------------------------------------- environment


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


def environment(spec: ProfileSpec, *, train_threads: int | None = None) -> dict[str, Any]:
    """The fingerprint every speed figure carries: speed is only compared like with like. It
    tells apart what changes the numbers (device and its vector extensions or compute capability,
    torch and its kernel library, profiling and training threads, dtype, memory format) and
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
    }


FINGERPRINT_KEYS = ("device", "device_name", "device_features", "kernels", "torch", "threads", "train_threads",
                    "dtype", "channels_last", "compile")  # fmt: skip


def fingerprint(env: dict[str, Any]) -> str:
    return "|".join(str(env.get(k)) for k in FINGERPRINT_KEYS)


# --------------------------------------------------------------------------- params


def count_params(model: nn.Module) -> dict[str, Any]:
    """Total and trainable parameters, and the split by part (backbone, context, head, ...),
    so that a context module's own cost is visible next to the backbone's."""
    from bench.models import model_parts

    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    by_part = {name: sum(p.numel() for p in part.parameters()) for name, part in model_parts(model).items()}
    return {"params": total, "params_m": total / 1e6, "params_trainable": trainable, "params_by_part": by_part}


# --------------------------------------------------------------------------- FLOPs


class _OpRecorder(torch.utils._python_dispatch.TorchDispatchMode):
    """Records every aten op that runs, to list what a counter did not count."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        self.ops[str(func.overloadpacket).replace("aten.", "aten::")] += 1
        return func(*args, **(kwargs or {}))


_NOT_COMPUTE = {"aten::empty", "aten::view", "aten::detach", "aten::t", "aten::_unsafe_view", "aten::expand"}
# Composite ops that reach the counter through the op it decomposes to.
_ALIASES = {
    "aten::conv1d": "aten::convolution",
    "aten::conv2d": "aten::convolution",
    "aten::conv3d": "aten::convolution",
    "aten::conv_transpose2d": "aten::convolution",
    "aten::_convolution": "aten::convolution",
    "aten::linear": "aten::addmm",
    "aten::matmul": "aten::mm",
}


def _module_fqns(model: nn.Module) -> dict[int, str]:
    root = type(model).__name__
    return {id(m): (f"{root}.{n}" if n else root) for n, m in model.named_modules()}


def _children(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """Named children, with ModuleList/ModuleDict containers opened (they are never called)."""
    out: list[tuple[str, nn.Module]] = []
    for name, child in module.named_children():
        if isinstance(child, (nn.ModuleList, nn.ModuleDict)):
            out += [(f"{name}.{n}", c) for n, c in child.named_children()]
        else:
            out.append((name, child))
    return out


def _inclusive(module: nn.Module, fqn: dict[int, str], per_module: dict[str, int]) -> int:
    """MACs of a module: its own (inclusive) count if it was called, else its children's."""
    key = fqn.get(id(module))
    if key is not None and key in per_module:
        return per_module[key]
    return sum(_inclusive(c, fqn, per_module) for c in module.children())


def _by_part(model: nn.Module, per_module: dict[str, int]) -> dict[str, float]:
    from bench.models import model_parts

    fqn = _module_fqns(model)
    return {name: _inclusive(part, fqn, per_module) / 1e9 for name, part in model_parts(model).items()}


def _context_modules(model: nn.Module, per_module: dict[str, int]) -> dict[str, float]:
    """MACs of each branch of the context module (which ASPP branch costs what)."""
    ctx = getattr(model, "context", None)
    if not isinstance(ctx, nn.Module):
        return {}
    fqn = _module_fqns(model)
    return {f"context.{n}": _inclusive(m, fqn, per_module) / 1e9 for n, m in _children(ctx)}


def _torch_counter(model: nn.Module, x: torch.Tensor) -> dict[str, Any]:
    from torch.utils.flop_counter import FlopCounterMode

    fc = FlopCounterMode(display=False)
    rec = _OpRecorder()
    with torch.inference_mode(), fc, rec:
        model(x)
    counted = {str(k).replace("aten.", "aten::") for k in fc.flop_registry}
    per_module = {k: sum(v.values()) // 2 for k, v in fc.get_flop_counts().items()}
    skipped = {
        op: n
        for op, n in sorted(rec.ops.items())
        if op not in counted and _ALIASES.get(op) not in counted and op not in _NOT_COMPUTE
    }
    return {
        "gmacs": fc.get_total_flops() / 2e9,
        "unit": "torch.utils.flop_counter FLOPs / 2 (conv, matmul; 2 FLOPs per MAC)",
        "skipped_ops": skipped,
        "by_part_gmacs": _by_part(model, per_module),
        "context_gmacs": _context_modules(model, per_module),
    }


def _fvcore_counter(model: nn.Module, x: torch.Tensor) -> dict[str, Any]:
    import logging

    with warnings.catch_warnings():  # fvcore's own imports call torch.jit.script: a FutureWarning users cannot act on
        warnings.simplefilter("ignore", FutureWarning)
        from fvcore.nn import FlopCountAnalysis

    logging.getLogger("fvcore").setLevel(logging.ERROR)
    fa = FlopCountAnalysis(model, (x,))
    fa.unsupported_ops_warnings(False)
    fa.uncalled_modules_warnings(False)
    with torch.inference_mode(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # torch.jit deprecation notices from fvcore's tracer
        total = fa.total()
        skipped = dict(sorted(fa.unsupported_ops().items()))
    ignored = sorted(getattr(fa, "_ignored_ops", set()))
    return {
        "gmacs": total / 1e9,
        "unit": "fvcore 'flops' (one per multiply-accumulate; also counts upsample, pooling, norm)",
        "skipped_ops": skipped,
        "zero_by_design_ops": ignored,
    }


def _ptflops_counter(model: nn.Module, x: torch.Tensor) -> dict[str, Any]:
    from ptflops import get_model_complexity_info
    from ptflops.pytorch_ops import MODULES_MAPPING

    with torch.inference_mode(), contextlib.redirect_stdout(io.StringIO()):
        macs, _ = get_model_complexity_info(
            model,
            tuple(x.shape[1:]),
            input_constructor=lambda _shape: x,
            as_strings=False,
            print_per_layer_stat=False,
            verbose=False,
            backend="pytorch",
        )
    leaf_types = Counter(
        type(m).__name__
        for m in model.modules()
        if not list(m.children()) and type(m) not in MODULES_MAPPING and not isinstance(m, nn.Identity)
    )
    return {
        "gmacs": (macs or 0) / 1e9,
        "unit": "ptflops MACs (module hooks + patched functionals; counts BN, activations, pooling)",
        "skipped_ops": {f"module {k}": v for k, v in sorted(leaf_types.items())},
    }


COUNTERS = {"torch": _torch_counter, "fvcore": _fvcore_counter, "ptflops": _ptflops_counter}


def aux_head(model: nn.Module) -> nn.Module | None:
    """The auxiliary (deep-supervision) head of a segmentation model, if it has one (`aux_head`:
    this suite's models and the torchvision wrappers run it only while training)."""
    head = getattr(model, "aux_head", None)
    return head if isinstance(head, nn.Module) else None


def _torch_total(model: nn.Module, x: torch.Tensor) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    fc = FlopCounterMode(display=False)
    with torch.no_grad(), fc:
        model(x)
    return fc.get_total_flops()


def aux_gmacs(model: nn.Module, x: torch.Tensor) -> float:
    """MACs of the aux head alone (training only): a training-mode forward of a copy of the model
    minus its inference forward, with torch's counter, at batch 2 (BatchNorm after a global pooling
    needs two samples in training mode) and halved. 0.0 for a model without one."""
    import copy

    if aux_head(model) is None:
        return 0.0
    x2 = torch.cat([x[:1], x[:1]])
    inference = _torch_total(model.eval(), x2)
    train_copy = copy.deepcopy(model).train()  # BatchNorm statistics of the real model untouched
    training = _torch_total(train_copy, x2)
    return (training - inference) / 4e9  # 2 FLOPs per MAC, 2 images


def count_flops(model: nn.Module, x: torch.Tensor, counters: Sequence[str] = tuple(COUNTERS)) -> dict[str, Any]:
    """MACs from each counter for inference; the headline is torch's. The aux head's MACs, which run
    only in training, are a column of their own (`gmacs_aux`; headline + aux is what torchvision
    publishes). Flags counters >5% from the headline."""
    model.eval()
    results = {name: COUNTERS[name](model, x) for name in counters}
    aux = aux_gmacs(model, x)
    head = results["torch"]["gmacs"] if "torch" in results else next(iter(results.values()))["gmacs"]
    disagree = [
        f"{n}: {r['gmacs']:.4g} GMACs is {100 * (r['gmacs'] / head - 1):+.1f}% from torch's {head:.4g}"
        for n, r in results.items()
        if head and abs(r["gmacs"] / head - 1) > DISAGREE
    ]
    torch_res = results.get("torch", {})
    return {
        "gmacs": head,
        "gflops": 2 * head,
        "gmacs_aux": aux,
        "gmacs_with_aux": head + aux,
        "gmacs_by_part": torch_res.get("by_part_gmacs", {}),
        "gmacs_context_modules": torch_res.get("context_gmacs", {}),
        "flop_counters": {
            n: {k: v for k, v in r.items() if k not in ("by_part_gmacs", "context_gmacs")} for n, r in results.items()
        },
        "counters_disagree": disagree,
    }


# --------------------------------------------------------------------------- latency, memory


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


MIN_TIMED_RUNS = 5  # a median of fewer is not a median


def measure_latency(
    model: nn.Module,
    x: torch.Tensor,
    *,
    device: str,
    threads: int | None = None,
    min_run_time: float = 1.0,
    max_run_time: float | None = None,
) -> dict[str, Any]:
    """Warm-up, then torch.utils.benchmark adaptive_autorange under inference_mode, topped up to
    at least MIN_TIMED_RUNS timed runs when its time cap stopped it earlier (a model whose forward
    takes seconds). Says whether the spread met the 5% IQR/median threshold and how many runs the
    cap left to the top-up."""
    from torch.utils import benchmark

    model.eval()
    cap = max_run_time if max_run_time is not None else max(10.0, min_run_time)
    with torch.inference_mode():
        start = time.perf_counter()
        for i in range(50):  # at least 3 runs and 0.2 s of warm-up (compilation happens here)
            model(x)
            if i >= 2 and time.perf_counter() - start > 0.2:
                break
        _sync(device)
        timer = benchmark.Timer(
            stmt="model(x)", globals={"model": model, "x": x}, num_threads=threads or torch.get_num_threads()
        )
        m = timer.adaptive_autorange(threshold=0.05, min_run_time=min(min_run_time, cap), max_run_time=cap)
        times = list(m.times)
        topped_up = 0
        while len(times) < MIN_TIMED_RUNS:
            times.append(timer.timeit(1).times[0])
            topped_up += 1
    times_ms = torch.tensor(times, dtype=torch.float64) * 1e3
    q = torch.quantile(times_ms, torch.tensor([0.25, 0.5, 0.75, 0.9], dtype=torch.float64)).tolist()
    return {
        "latency_ms_p50": q[1],
        "latency_ms_p90": q[3],
        "latency_ms_iqr": q[2] - q[0],
        "latency_blocks": len(times),
        "latency_runs_per_block": m.number_per_run,
        "latency_topped_up": topped_up,  # runs added because the time cap stopped autorange first
        "latency_converged": bool((q[2] - q[0]) / q[1] < 0.05) if q[1] > 0 else False,
    }


def _rss_peak_kb() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_rss_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux)
        return True
    except OSError:
        return False


def measure_memory(model: nn.Module, x: torch.Tensor, *, device: str) -> dict[str, Any]:
    """Peak memory of one forward: CUDA max allocated, or growth of the process's peak RSS."""
    with torch.inference_mode():
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            model(x)
            torch.cuda.synchronize()
            return {"peak_mem_mb": (torch.cuda.max_memory_allocated() - base) / 2**20, "mem_kind": "cuda_max_allocated"}
        if not _reset_rss_peak():
            return {"peak_mem_mb": None, "mem_kind": "unavailable"}
        before = _rss_peak_kb() or 0
        model(x)
        after = _rss_peak_kb() or 0
        return {"peak_mem_mb": (after - before) / 1024, "mem_kind": "cpu_rss_peak_growth"}


# --------------------------------------------------------------------------- peak compute


_PEAKS: dict[str, float] = {}


def peak_gflops(spec: ProfileSpec, env: dict[str, Any]) -> float:
    """The device's matmul peak in the profile's dtype, measured in this process (once per
    environment): a fraction of peak then compares a run with the machine it ran on, in the
    state it was in, whichever machine that was."""
    key = fingerprint(env)
    if key in _PEAKS:
        return _PEAKS[key]
    from torch.utils import benchmark

    n = 8192 if spec.device == "cuda" else 2048
    a = torch.randn(n, n, device=spec.device, dtype=DTYPES[spec.dtype])
    b = torch.randn(n, n, device=spec.device, dtype=DTYPES[spec.dtype])
    m = benchmark.Timer("a @ b", globals={"a": a, "b": b}, num_threads=torch.get_num_threads()).blocked_autorange(
        min_run_time=1.0
    )
    _PEAKS[key] = 2 * n**3 / min(m.times) / 1e9  # the best block: a peak, not a typical time
    return _PEAKS[key]


# --------------------------------------------------------------------------- all together


def prepare(model: nn.Module, spec: ProfileSpec, batch: int = 1) -> tuple[nn.Module, torch.Tensor]:
    """Model and a random input on the device, in the dtype and memory format asked for."""
    if spec.threads is not None and spec.device == "cpu":
        torch.set_num_threads(spec.threads)
    dtype = DTYPES[spec.dtype]
    model = model.eval().to(device=spec.device, dtype=dtype)
    x = torch.randn(batch, *spec.input, device=spec.device, dtype=dtype)
    if spec.channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    return model, x


def profile_model(model: nn.Module, spec: ProfileSpec, *, train_threads: int | None = None) -> dict[str, Any]:
    """One flat record: params, FLOPs (three counters), latency/FPS, memory, efficiency, env."""
    check_spec(spec)
    record: dict[str, Any] = {"input": list(spec.input), "batch": spec.batch}
    if "params" in spec.metrics:
        record.update(count_params(model))
    model, x1 = prepare(model, spec)
    env = environment(spec, train_threads=train_threads)
    record["env"] = env
    record["env_fingerprint"] = fingerprint(env)
    if "latency" in spec.metrics:  # first forward of the process: RSS growth is its own
        record.update(measure_memory(model, x1, device=spec.device))
    if "flops" in spec.metrics:
        # counted in fp32 on the CPU: counts do not depend on dtype or device
        cpu_model = model.float().cpu() if (spec.dtype != "fp32" or spec.device != "cpu") else model
        record.update(count_flops(cpu_model, torch.randn(1, *spec.input)))
        model, x1 = prepare(model, spec)
    if "latency" in spec.metrics:
        run = torch.compile(model) if spec.compile else model
        lat = measure_latency(run, x1, device=spec.device, threads=spec.threads, min_run_time=spec.min_run_time)
        record.update(lat)
        record["fps_bs1"] = 1000.0 / lat["latency_ms_p50"]
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        env["load_avg"] = load  # the load while the latency was measured
        record["busy"] = load is not None and load > (os.cpu_count() or 1)
        if spec.batch > 1:
            _, xb = prepare(model, spec, spec.batch)
            latb = measure_latency(run, xb, device=spec.device, threads=spec.threads, min_run_time=spec.min_run_time)
            record[f"latency_ms_p50_bs{spec.batch}"] = latb["latency_ms_p50"]
            record["throughput_ips"] = spec.batch * 1000.0 / latb["latency_ms_p50"]
        if "gflops" in record:
            peak = peak_gflops(spec, env)
            achieved = record["gflops"] / (lat["latency_ms_p50"] / 1e3)
            record["achieved_gflops_s"] = achieved
            record["peak_gflops_s"] = peak
            record["efficiency"] = achieved / peak
    record["spec"] = asdict(spec)
    return record
