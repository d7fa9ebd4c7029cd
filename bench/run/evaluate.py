"""Evaluation: a model scored over a loader (every metric of bench.metrics, from one streaming
confusion matrix summed over the ranks), and a run's checkpoint scored on any split of its dataset
kind (`aspp-bench evaluate`), at the training size or at each annotation's own size."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from bench.configure.config import apply_overrides, parse_set, read_yaml_mapping, validate
from bench.configure.identity import earlier_run_ids, run_id
from bench.data import build_dataset, dataset_facts, eval_split, load_split, make_loader
from bench.distributed import SINGLE, World
from bench.errors import UserError
from bench.metrics import SegMetrics
from bench.models import build_model
from bench.results.folders import CONFIG, RESULT
from bench.run.checkpoint import read_checkpoint
from bench.run.device import autocast, resolve_device
from bench.run.threads import plan_threads

__all__ = ["checkpoint_config", "checkpoint_model", "evaluate_checkpoint", "evaluate_model", "main_logits"]


def main_logits(out: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
    return out["out"] if isinstance(out, dict) else out


@torch.no_grad()
def evaluate_model(
    model: nn.Module,
    loader: DataLoader,
    *,
    num_classes: int,
    ignore_index: int | None,
    class_names: list[str] | tuple[str, ...],
    device: torch.device,
    amp: str = "fp32",
    size_buckets: bool = True,
    channels_last: bool = False,
    world: World = SINGLE,
) -> dict[str, Any]:
    """Every metric of `bench.metrics` over the whole loader (streaming confusion matrix); logits
    are compared in fp32 whatever the autocast dtype. In a cell of several ranks each scores its
    share of the images and the confusion matrices are summed before any metric is computed."""
    model.eval()
    if channels_last:  # as the trainer holds it: a checkpoint evaluated alone takes the same kernels
        model = model.to(memory_format=torch.channels_last)
    metrics = SegMetrics(
        num_classes, ignore_index=ignore_index, class_names=class_names, device=device, size_buckets=size_buckets
    )
    with torch.inference_mode():
        for images, masks in loader:
            images = images.to(device, non_blocking=True)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with autocast(device, amp):
                logits = main_logits(model(images)).float()
            metrics.update(logits.argmax(1), masks)
    metrics.sum_over(world)
    return metrics.compute()


RESOLUTIONS = ("data", "label")


def checkpoint_config(checkpoint: str | Path, sets: list[str] | None = None) -> tuple[Any, dict[str, Any], str]:
    """(the run's config with `data.*` overrides, the checkpoint's state, what was given) of a run
    folder's checkpoint, checked: the config beside it must be the one it was trained with, and
    the dataset as configured must have the classes the model was trained for. Without
    `data.split` the split the run was validated on."""
    ckpt = Path(checkpoint)
    if not ckpt.is_file():
        raise UserError(f"{ckpt}: checkpoint not found (a run folder's checkpoint.pt)")
    cfg_path = ckpt.parent / CONFIG
    if not cfg_path.is_file():
        raise UserError(f"{cfg_path}: the run's resolved config is missing beside the checkpoint")
    data = read_yaml_mapping(cfg_path, "run config")
    state = read_checkpoint(ckpt)  # weights_only: refused before anything else if it needs arbitrary unpickling
    trained = validate(data, source=str(cfg_path))
    bound = state.get("identity")
    if bound is not None and bound != run_id(trained) and bound not in earlier_run_ids(trained):
        raise UserError(
            f"{ckpt}: belongs to run {bound}, but {cfg_path} describes another run; the checkpoint and its "
            "config do not match (was one of them copied in from another folder?)"
        )
    overrides = dict(parse_set(s) for s in sets or [])
    bad = [k for k in overrides if not k.startswith("data.")]
    if bad:
        raise UserError(f"--set {bad[0]}: a checkpoint takes data.* overrides only (the model is the checkpoint's)")
    given = ", ".join(f"{k}={v}" for k, v in overrides.items()) or "no --set"
    if "data.split" not in overrides:
        overrides["data.split"] = eval_split(trained.data.split)
    if "data.root" not in overrides and trained.data.root is not None:
        overrides["data.root"] = _data_root(trained.data.root, ckpt.parent)
    cfg = validate(apply_overrides(data, overrides), source=str(cfg_path))
    classes, _ = dataset_facts(cfg.data)  # the protocol is checked before anything is decoded
    if classes != cfg.model.num_classes:
        raise UserError(
            f"evaluate with {given}: dataset '{cfg.data.name}' as configured "
            f"has {classes} classes, the model was trained for {cfg.model.num_classes}; evaluate with the protocol "
            "it was trained on (e.g. the same data.void_as_class)"
        )
    return cfg, state, given


def checkpoint_model(cfg: Any, state: dict[str, Any], ckpt: str | Path) -> nn.Module:
    """The run's network with the checkpoint's weights (a clear error where they do not fit)."""
    model = build_model(cfg.model.arch, **cfg.model.knobs())
    try:
        model.load_state_dict(state["model"] if "model" in state else state)
    except (RuntimeError, KeyError, TypeError) as e:
        raise UserError(
            f"{ckpt}: its weights do not fit {cfg.model.arch} as its config.yaml configures it ({str(e)[:300]})"
        ) from None
    return model


def evaluate_checkpoint(
    checkpoint: str | Path, sets: list[str] | None = None, *, resolution: str = "data"
) -> dict[str, Any]:
    """Score a run's checkpoint. Without `data.split` in `sets`, on the split the run was
    validated on (val, or test for a run trained on val). `resolution`: `data` scores at
    `data.size` (as the run validated), `label` upsamples the logits to each annotation's own
    size and scores there (as the papers report)."""
    if resolution not in RESOLUTIONS:
        raise UserError(f"--resolution {resolution!r}: allowed are {', '.join(RESOLUTIONS)}")
    ckpt = Path(checkpoint)
    cfg, state, given = checkpoint_config(ckpt, sets)
    split = load_split(cfg.data, cfg.data.split, native_masks=resolution == "label")
    device = resolve_device(cfg.train.device)
    threads = plan_threads(None).threads if device.type == "cpu" else None  # every usable CPU (bench.run.threads)
    if threads:
        torch.set_num_threads(threads)
    model = checkpoint_model(cfg, state, ckpt).to(device)
    if resolution == "label" and split.native_masks is not None:
        metrics = _evaluate_at_label_size(model, split, cfg, device)
        scored_at = "each annotation's own size (logits upsampled bilinearly)"
    else:
        loader = make_loader(build_dataset(split, train=False), batch_size=cfg.data.batch_size, shuffle=False)
        metrics = evaluate_model(
            model,
            loader,
            num_classes=split.num_classes,
            ignore_index=cfg.loss.ignore_index,
            class_names=split.class_names,
            device=device,
            amp=cfg.train.amp,
            channels_last=cfg.train.channels_last,
        )
        scored_at = f"data.size {list(cfg.data.size)}" + (
            " (the dataset is generated at that size: it is the label size)" if resolution == "label" else ""
        )
    return {
        "arch": cfg.model.arch,
        "checkpoint": str(ckpt),
        "data": cfg.data.model_dump(),
        "split": cfg.data.split,
        "resolution": resolution,
        "scored_at": scored_at,
        "images": len(split.images),
        "metrics": metrics,
    }


def _data_root(root: str, run_dir: Path) -> str:
    """The run's data root as it was reached when it trained: a relative root is taken from the
    current folder if it exists there, else from the absolute path the run recorded."""
    import json

    if Path(root).is_absolute() or Path(root).exists():
        return root
    try:
        recorded = json.loads((run_dir / RESULT).read_text()).get("data_root")
    except (OSError, ValueError):
        recorded = None
    if recorded and Path(recorded).exists():
        return recorded
    raise UserError(
        f"data.root '{root}' (relative, as the run was configured) does not exist from {Path.cwd()}"
        + (f", nor does the path the run recorded ({recorded})" if recorded else "")
        + "; run evaluate from the folder the run was launched in, or give --set data.root=PATH"
    )


def _evaluate_at_label_size(model: Any, split: Any, cfg: Any, device: Any) -> dict[str, Any]:
    """Per image: logits at data.size, upsampled to the annotation's size, scored there."""
    import torch.nn.functional as F

    ds = build_dataset(split, train=False)
    metrics = SegMetrics(
        split.num_classes, ignore_index=cfg.loss.ignore_index, class_names=split.class_names, device=device
    )
    model.eval()
    amp, cl = cfg.train.amp, cfg.train.channels_last
    if cl:  # the memory format it trained and was scored in (see evaluate_model)
        model = model.to(memory_format=torch.channels_last)
    fmt = torch.channels_last if cl else torch.contiguous_format
    with torch.inference_mode():
        for i in range(len(ds)):
            image, _ = ds[i]
            native = split.native_masks[i]
            with autocast(device, amp):
                logits = main_logits(model(image.unsqueeze(0).to(device).contiguous(memory_format=fmt)))
            logits = F.interpolate(logits.float(), size=tuple(native.shape), mode="bilinear", align_corners=False)
            metrics.update(logits.argmax(1), native.unsqueeze(0).long())
    return metrics.compute()
