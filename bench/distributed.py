"""One cell on several processes: the torch.distributed process group (its rendezvous comes from
the launcher, bench.launch.jobs), each rank's share of every
global batch, batch norm over the global batch, and the few collectives the trainer needs.

A cell of one task never touches any of it (`SINGLE`): its results stay bit-equal to what they
were before data parallelism existed.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Sampler

__all__ = [
    "SINGLE",
    "GlobalBatchNorm",
    "ShardedBatchSampler",
    "World",
    "all_sum",
    "current",
    "gather_objects",
    "join_process_group",
    "shard_indices",
    "shutdown",
    "sync_batchnorm",
]


@dataclass(frozen=True)
class World:
    """Where this process stands in its cell: rank `rank` of `size` processes on `nodes` nodes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    nodes: int = 1
    backend: str | None = None

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes the run's files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def describe(self) -> str:
        return f"rank {self.rank} of {self.size}"

    def record(self) -> dict[str, Any]:
        """What the result's environment records of the launch (not part of the run's identity)."""
        return {"world_size": self.size, "nodes": self.nodes, "dist_backend": self.backend}


SINGLE = World()


def current() -> World:
    """This process's place in the process group it has joined, or SINGLE."""
    if not (dist.is_available() and dist.is_initialized()):
        return SINGLE
    return _current(_nodes)


def join_process_group(
    *, rank: int, world_size: int, local_rank: int, nodes: int, device_type: str, timeout_s: float
) -> World:
    """Join the process group of a cell whose rendezvous is in the environment (MASTER_ADDR,
    MASTER_PORT: the launcher exports them): NCCL on CUDA, gloo on the CPU, every collective
    giving up after `timeout_s` instead of waiting for a dead peer until the job's time limit."""
    if dist.is_initialized():
        return _current(nodes)
    if nodes == 1:  # every task on this machine: meet on the loopback interface
        os.environ["MASTER_ADDR"] = "127.0.0.1"
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    backend = "nccl" if device_type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank)  # the local rank's device among those Slurm made visible
    dist.init_process_group(
        backend=backend,
        init_method="env://",
        rank=rank,
        world_size=world_size,
        timeout=datetime.timedelta(seconds=timeout_s),
    )
    return _current(nodes)


_nodes = 1  # the node count of the group this process joined (torch.distributed does not keep it)


def _current(nodes: int) -> World:
    global _nodes
    _nodes = nodes
    return World(
        rank=dist.get_rank(),
        size=dist.get_world_size(),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        nodes=nodes,
        backend=str(dist.get_backend()),
    )


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


# --------------------------------------------------------------------------- data


def shard_indices(n: int, world: World) -> list[int]:
    """Evaluation: rank r scores images r, r + size, ... (no padding, no image twice); the
    confusion matrices summed over the ranks then equal one process scoring every image."""
    return list(range(world.rank, n, world.size))


class ShardedBatchSampler(Sampler[int]):
    """Rank r's share of each global batch, from the same permutation a single process draws.

    The single process's sampler (`bench.data.ResumableSampler`) yields torch.randperm(n) from
    the loader's generator and the loader cuts it into batches of `global_batch`. Here every
    rank draws that same permutation and keeps, of global batch k, the slice
    [k*B + r*b, k*B + (r+1)*b) with b = B / size: the ranks together see exactly the single
    process's batches, in its order, whatever the world size. Incomplete last batches are
    dropped, as the single-process loader drops them."""

    def __init__(self, n: int, generator: torch.Generator, *, global_batch: int, world: World) -> None:
        if global_batch % world.size:
            raise ValueError(f"global batch {global_batch} does not split over {world.size} ranks")
        self.n = n
        self.generator = generator
        self.global_batch = global_batch
        self.local_batch = global_batch // world.size
        self.world = world
        self._skip = 0

    def skip_next(self, count: int) -> None:
        """Leave out this rank's first `count` samples of the next pass (a mid-epoch resume)."""
        self._skip = count

    def _batches(self) -> int:
        return self.n // self.global_batch

    def __iter__(self) -> Iterator[int]:
        skip, self._skip = self._skip, 0
        perm = torch.randperm(self.n, generator=self.generator).tolist()
        mine: list[int] = []
        lo = self.world.rank * self.local_batch
        for k in range(self._batches()):
            start = k * self.global_batch + lo
            mine.extend(perm[start : start + self.local_batch])
        yield from mine[skip:]

    def __len__(self) -> int:
        return self._batches() * self.local_batch - self._skip


# --------------------------------------------------------------------------- collectives


def all_sum(t: torch.Tensor, world: World) -> torch.Tensor:
    """`t` summed over the ranks (in place; a single process returns it unchanged)."""
    if world.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def gather_objects(obj: Any, world: World) -> list[Any]:
    """Every rank's `obj`, in rank order (a single process: [obj])."""
    if not world.distributed:
        return [obj]
    out: list[Any] = [None] * world.size
    dist.all_gather_object(out, obj)
    return out


# --------------------------------------------------------------------------- batch norm


class _SumOverRanks(torch.autograd.Function):
    """all_reduce(SUM) with its gradient: every rank's output is the sum of the inputs, so the
    gradient of an input is the sum of the output gradients over the ranks."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        out = x.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


class GlobalBatchNorm(nn.BatchNorm2d):
    """Batch norm whose training statistics are those of the global batch, on any device.

    torch's SyncBatchNorm runs on CUDA (and XPU) only; this is the same computation for the gloo
    path on CPU: each rank's per-channel count, sum and sum of squares (in float64) are summed
    by a differentiable all_reduce, so the gradient flows through the global statistics as it
    does in SyncBatchNorm. Its state dict is a BatchNorm2d's, so its
    checkpoints load into the plain model. In eval mode, or without a process group, it is
    BatchNorm2d."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(x)
        c = x.shape[1]
        xd = x.double()
        count = torch.full((1,), x.numel() // c, dtype=torch.float64, device=x.device)
        stats = _SumOverRanks.apply(torch.cat([xd.sum((0, 2, 3)), (xd * xd).sum((0, 2, 3)), count]))
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c : 2 * c] / n - mean * mean).clamp_min(0)
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(m * mean.to(self.running_mean.dtype))
                unbiased = var * n / (n - 1).clamp_min(1)
                self.running_var.mul_(1 - m).add_(m * unbiased.to(self.running_var.dtype))
        y = (xd - mean[None, :, None, None]) * torch.rsqrt(var + self.eps)[None, :, None, None]
        y = y.to(x.dtype)
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return y


def sync_batchnorm(model: nn.Module, device_type: str) -> nn.Module:
    """Every BatchNorm of `model` computing its statistics over the global batch: torch's
    SyncBatchNorm on CUDA, `GlobalBatchNorm` elsewhere (same parameters and buffers)."""
    if device_type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return _convert(model)


def _convert(module: nn.Module) -> nn.Module:
    out = module
    if isinstance(module, nn.BatchNorm2d) and not isinstance(module, GlobalBatchNorm):
        out = GlobalBatchNorm(
            module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
        )
        if module.affine:
            with torch.no_grad():
                out.weight = module.weight
                out.bias = module.bias
        out.running_mean = module.running_mean
        out.running_var = module.running_var
        out.num_batches_tracked = module.num_batches_tracked
        out.train(module.training)
    for name, child in module.named_children():
        out.add_module(name, _convert(child))
    return out
