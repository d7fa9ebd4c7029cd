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

import os
from dataclasses import asdict
from typing import Any

import torch
from torch import nn

from bench.profile.environment import (
    FINGERPRINT_KEYS,
    device_features,
    device_name,
    environment,
    fingerprint,
    kernel_library,
)
from bench.profile.flops import COUNTERS, aux_gmacs, aux_head, count_flops, count_params
from bench.profile.limits import measure_efficiency
from bench.profile.spec import DISAGREE, DTYPES, METRICS, ProfileSpec, check_spec, parse_input
from bench.profile.timing import measure_latency, measure_memory

__all__ = [
    "COUNTERS",
    "DISAGREE",
    "DTYPES",
    "FINGERPRINT_KEYS",
    "METRICS",
    "ProfileSpec",
    "aux_gmacs",
    "aux_head",
    "check_spec",
    "count_flops",
    "count_params",
    "device_features",
    "device_name",
    "environment",
    "fingerprint",
    "kernel_library",
    "measure_latency",
    "measure_memory",
    "parse_input",
    "prepare",
    "profile_model",
]


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


def profile_model(
    model: nn.Module, spec: ProfileSpec, *, train_threads: int | None = None, train_world_size: int = 1
) -> dict[str, Any]:
    """One flat record: params, FLOPs (three counters), latency/FPS, memory, efficiency (a fraction
    of the best of measured kernels, bench.profile.limits), env."""
    check_spec(spec)
    record: dict[str, Any] = {"input": list(spec.input), "batch": spec.batch}
    if "params" in spec.metrics:
        record.update(count_params(model))
    model, x1 = prepare(model, spec)
    env = environment(spec, train_threads=train_threads, train_world_size=train_world_size)
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
            record["achieved_gflops_s"] = record["gflops"] / (lat["latency_ms_p50"] / 1e3)
            record.update(measure_efficiency(lambda: run(x1), record["gflops"], spec))
    record["spec"] = asdict(spec)
    return record
