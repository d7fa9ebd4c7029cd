"""One optimisation step.

The step: the batch onto the device (channels_last where asked), the forward under autocast at
`train.amp`, the loss in fp32 whatever the autocast dtype (bf16 logits would round the
log-softmax) with the auxiliary head's loss weighted in, in a cell of several ranks the global
batch's loss agreed with the ranks' stop and checkpoint requests (bench.run.stopping), then backward
through the AMP scaler, gradient clipping, the optimiser and scheduler steps. A non-finite loss
takes no step at all.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from bench.run.device import autocast
from bench.run.stopping import StepRequests

__all__ = ["OptimStep"]


class OptimStep:
    """`step(images, masks) -> loss` (the global batch's mean over ranks; NaN when not finite).
    `model` is the network itself (checkpoints and evaluation use it); the step runs it through
    DistributedDataParallel on several ranks and torch.compile where asked, which share its
    parameters."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        loss_fn: nn.Module,
        *,
        spec: Any,
        device: torch.device,
        requests: StepRequests,
    ) -> None:
        self.model = model.to(device)
        if spec.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.world = requests.world
        forward: nn.Module = self.model
        if self.world.distributed:  # gradients averaged over the ranks; rank 0's weights broadcast at the start
            from torch.nn.parallel import DistributedDataParallel

            forward = DistributedDataParallel(self.model, device_ids=[device.index] if device.type == "cuda" else None)
        self.forward = torch.compile(forward) if spec.compile else forward
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.loss_fn = loss_fn.to(device)
        self.spec = spec
        self.device = device
        self.requests = requests
        self.scaler = torch.amp.GradScaler(device.type, enabled=spec.amp == "fp16")

    def loss(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        with autocast(self.device, self.spec.amp):
            out = self.forward(images)
        if isinstance(out, dict):
            loss = self.loss_fn(out["out"].float(), masks)
            if "aux" in out:
                loss = loss + self.spec.aux_weight * self.loss_fn(out["aux"].float(), masks)
            return loss
        return self.loss_fn(out.float(), masks)

    def __call__(self, images: torch.Tensor, masks: torch.Tensor) -> float:
        images = images.to(self.device, non_blocking=True)
        masks = masks.to(self.device, non_blocking=True)
        if self.spec.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        loss = self.loss(images, masks)
        if self.world.distributed:  # the global batch's loss, with any rank's stop or checkpoint request
            reported = self.requests.agree(loss, self.device)
            if not math.isfinite(reported):  # every rank sees it: none of them steps
                return reported
        elif not torch.isfinite(loss):
            return float("nan")
        else:
            reported = None
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.spec.grad_clip:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.spec.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return reported if reported is not None else float(loss.detach())
