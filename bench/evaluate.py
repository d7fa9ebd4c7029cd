"""Evaluate a run's checkpoint on any split of its dataset kind (`aspp-bench evaluate`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from bench.config import apply_overrides, parse_set, validate
from bench.errors import UserError
from bench.store import CONFIG

__all__ = ["evaluate_checkpoint"]


def evaluate_checkpoint(checkpoint: str | Path, sets: list[str] | None = None) -> dict[str, Any]:
    from bench.data import build_dataset, load_split, make_loader
    from bench.engine import evaluate, read_checkpoint, resolve_device
    from bench.identity import run_id
    from bench.models import build_model

    ckpt = Path(checkpoint)
    if not ckpt.is_file():
        raise UserError(f"{ckpt}: checkpoint not found (a run folder's checkpoint.pt)")
    cfg_path = ckpt.parent / CONFIG
    if not cfg_path.is_file():
        raise UserError(f"{cfg_path}: the run's resolved config is missing beside the checkpoint")
    try:
        data = yaml.safe_load(cfg_path.read_text())
    except yaml.YAMLError as e:
        raise UserError(
            f"{cfg_path}: not valid YAML ({e}); the run's config beside the checkpoint is damaged"
        ) from None
    if not isinstance(data, dict):
        raise UserError(f"{cfg_path}: expected the run's config mapping, got {type(data).__name__}")
    state = read_checkpoint(ckpt)  # weights_only: refused before anything else if it needs arbitrary unpickling
    bound = state.get("identity")
    if bound is not None and bound != run_id(validate(data, source=str(cfg_path))):
        raise UserError(
            f"{ckpt}: belongs to run {bound}, but {cfg_path} describes another run; the checkpoint and its "
            "config do not match (was one of them copied in from another folder?)"
        )
    overrides = dict(parse_set(s) for s in sets or [])
    bad = [k for k in overrides if not k.startswith("data.")]
    if bad:
        raise UserError(f"--set {bad[0]}: evaluate takes data.* overrides only (the model is the checkpoint's)")
    cfg = validate(apply_overrides(data, overrides), source=str(cfg_path))
    split = load_split(cfg.data, cfg.data.split)
    if split.num_classes != cfg.model.num_classes:
        raise UserError(
            f"{cfg.data.name} {cfg.data.split} has {split.num_classes} classes, the model "
            f"{cfg.model.num_classes}; evaluate on the dataset kind it was trained on"
        )
    device = resolve_device(cfg.train.device)
    model = build_model(cfg.model.arch, **cfg.model.knobs())
    try:
        model.load_state_dict(state["model"] if "model" in state else state)
    except (RuntimeError, KeyError, TypeError) as e:
        raise UserError(
            f"{ckpt}: its weights do not fit {cfg.model.arch} as {cfg_path} configures it ({str(e)[:300]})"
        ) from None
    loader = make_loader(build_dataset(split, train=False), batch_size=cfg.data.batch_size, shuffle=False)
    metrics = evaluate(
        model.to(device),
        loader,
        num_classes=split.num_classes,
        ignore_index=cfg.loss.ignore_index,
        class_names=split.class_names,
        device=device,
        amp=cfg.train.amp,
    )
    return {"arch": cfg.model.arch, "checkpoint": str(ckpt), "data": cfg.data.model_dump(), "metrics": metrics}
