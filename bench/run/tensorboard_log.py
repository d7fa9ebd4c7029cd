"""TensorBoard scalars of a run (train/loss, train/lr, val/mIoU, val/pixel_acc per epoch), named so
that `tensorboard --logdir <results>` shows a sweep one cell per run, by its factors. The
`tensorboard` package is optional: without it nothing is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.configure.naming import row_label
from bench.results.folders import TENSORBOARD
from bench.results.table import read_manifest

__all__ = ["tensorboard_logger", "tensorboard_name"]


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
