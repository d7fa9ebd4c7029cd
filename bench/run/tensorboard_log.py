"""TensorBoard scalars of a run (train/loss, train/lr, val/mIoU, val/pixel_acc per epoch), named so
that `tensorboard --logdir <results>` shows a sweep one cell per run, by its factors, and a finished
run's hyper-parameters (its resolved config, flattened) with its final metrics, for the HPARAMS tab.
The `tensorboard` package is optional: without it nothing is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.configure.config import flatten
from bench.configure.naming import row_label
from bench.results.folders import TENSORBOARD
from bench.results.table import read_manifest

__all__ = ["tensorboard_hparams", "tensorboard_logger", "tensorboard_name"]

HPARAMS_RUN = "hparams"  # the sub-run TensorBoard's HPARAMS tab reads a run's hyper-parameters from


def tensorboard_name(out: Path, rid: str) -> Path:
    """Where a run's TensorBoard events go: inside a sweep's results folder, one run per cell named
    by its factors (`<results>/tensorboard/arch=unet, skip=no, seed=0`), so that
    `tensorboard --logdir <results>` shows the sweep; a lone run writes `<run>/tensorboard`."""
    cells = read_manifest(out.parent).get("cells", {})
    varying = cells.get(rid) if isinstance(cells, dict) else None
    if not varying:
        return out / TENSORBOARD

    label = row_label(varying, list(varying)).replace("/", "_")
    return out.parent / TENSORBOARD / label[:200]


def tensorboard_logger(out: Path, rid: str, log: Any) -> Any:
    """An on_epoch callback writing TensorBoard scalars (train/loss, train/lr, val/mIoU,
    val/pixel_acc), or None when the optional `tensorboard` package is not installed. The writer
    opens at the first epoch it sees with purge_step there, so a resumed run overwrites the steps
    it redoes instead of drawing them twice."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    state: dict[str, Any] = {}

    def write(entry: dict[str, Any]) -> None:
        if "writer" not in state:
            where = tensorboard_name(out, rid)
            state["writer"] = SummaryWriter(log_dir=str(where), purge_step=entry["epoch"])
            log(f"TensorBoard events in {where}")
        w, step = state["writer"], entry["epoch"]
        if entry.get("loss") is not None:
            w.add_scalar("train/loss", entry["loss"], step)
        w.add_scalar("train/lr", entry["lr"], step)
        if entry.get("miou") is not None:
            w.add_scalar("val/mIoU", 100 * entry["miou"], step)
            w.add_scalar("val/pixel_acc", 100 * entry["pixel_acc"], step)
        w.flush()  # live: tensorboard shows the epoch now, and a killed run loses nothing written

    return write


def tensorboard_hparams(out: Path, rid: str, config: dict[str, Any], result: dict[str, Any]) -> Path | None:
    """Write a finished run's hyper-parameters (every key of its resolved config: numbers, text and
    bools as they are, lists and nulls as text) and final metrics (val mIoU, pixel accuracy, mean
    class accuracy in %, params, GMACs) beside its scalars; returns where, or None without the
    optional `tensorboard` package."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    hparams = {k: v if isinstance(v, bool | int | float | str) else str(v)
               for k, v in flatten(config, join_lists=True).items()}  # fmt: skip
    m, prof = result.get("metrics") or {}, result.get("profile") or {}
    metrics = {f"hparam/{k}": 100 * float(m[k]) for k in ("miou", "pixel_acc", "mean_class_acc")
               if m.get(k) is not None}  # fmt: skip
    metrics.update({f"hparam/{k}": float(prof[k]) for k in ("params_m", "gmacs") if prof.get(k) is not None})
    where = tensorboard_name(out, rid)
    with SummaryWriter(log_dir=str(where)) as w:
        w.add_hparams(hparams, metrics, run_name=HPARAMS_RUN)
    return where / HPARAMS_RUN
