"""Reading a results folder: one table row per finished run (flattened config, metrics with
per-class and per-size IoU, cost, speed and the environment), the index of which folder holds
which run, and the sweep manifest (sweep.json) a launcher wrote beside the runs.
"""

from __future__ import annotations

__all__ = ["RunIndex", "collect", "read_manifest", "result_row", "run_folders"]
import json
from pathlib import Path
from typing import Any

from bench.config import flatten
from bench.errors import UserError
from bench.files import read_json_file
from bench.identity import identity_of_dict
from bench.models.context import context_option_defaults
from bench.registry import contexts
from bench.store import CHECKPOINT, CONFIG, MANIFEST, RESULT, TENSORBOARD, known_identity, read_result

METRIC_COLUMNS = ("miou", "pixel_acc", "mean_class_acc", "fw_iou", "macro_f1", "mean_dice")


PROFILE_COLUMNS = (
    "params",
    "params_m",
    "gmacs",
    "gmacs_aux",
    "gflops",
    "latency_ms_p50",
    "latency_ms_p90",
    "latency_ms_iqr",
    "fps_bs1",
    "achieved_gflops_s",
    "peak_gflops_s",
    "efficiency",
    "busy",
)


ENV_COLUMNS = ("device_name", "device_features", "kernels", "torch", "threads", "train_threads", "cpu_count",
               "load_avg", "dtype", "train_amp", "train_channels_last", "train_compile")  # fmt: skip


def result_row(run_id: str, r: dict[str, Any]) -> dict[str, Any]:
    """One table row: flattened config, status, metrics (with per-class and per-size IoU),
    cost and speed with the environment fingerprint."""
    row: dict[str, Any] = {"run_id": run_id, "status": r.get("status")}

    def part(d: Any, key: str) -> dict[str, Any]:  # a section a hand edit may have made a non-mapping
        v = d.get(key) if isinstance(d, dict) else None
        return v if isinstance(v, dict) else {}

    row.update(flatten(part(r, "config"), join_lists=True))  # rates (3, 6, 9, 12) -> "3,6,9,12"
    if row.get("model.context_options", "") is None:  # no option off its default: no column
        del row["model.context_options"]
    m = part(r, "metrics")
    for k in METRIC_COLUMNS:
        row[k] = m.get(k)
    for name, v in part(m, "iou").items():
        row[f"iou.{name}"] = v
    for bucket, v in part(m, "size_iou").items():
        row[f"size_miou.{bucket}"] = v.get("miou") if isinstance(v, dict) else None
    p = part(r, "profile")
    for k in PROFILE_COLUMNS:
        row[k] = p.get(k)
    row["env_fingerprint"] = p.get("env_fingerprint")
    env = part(r, "env")
    for k in ENV_COLUMNS:
        row[f"env.{k}"] = env.get(k)
    t = part(r, "train")
    row["train_seconds"] = t.get("train_seconds")
    row["images_per_s"] = t.get("images_per_s")
    return row


def run_folders(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(
        p
        for p in root.iterdir()
        if p.is_dir() and not p.name.startswith(".") and p.name not in ("baselines", TENSORBOARD)
    )


class RunIndex:
    """Where each run of a results folder lives. A run's folder is `<results>/<run_id>`; folders
    written under an earlier identity scheme (another name for the same resolved config) are found
    through their config.yaml, so old results keep counting and are never trained again."""

    def __init__(self, results: str | Path) -> None:
        self.root = Path(results)
        self._by_id: dict[str, list[Path]] = {}
        self._scanned = False

    def _scan(self) -> None:
        if self._scanned:
            return
        self._scanned = True
        for run in run_folders(self.root):
            ident = known_identity(run)
            if ident is not None:
                self._by_id.setdefault(ident[0], []).append(run)

    def folder(self, run_id: str) -> Path:
        """The folder holding this run: its own name if that exists, else a legacy folder with the
        same resolved config (a finished one first), else its own name (not yet created)."""
        own = self.root / run_id
        if own.is_dir() and any((own / f).exists() for f in (RESULT, CONFIG, CHECKPOINT, "job.json")):
            return own
        self._scan()
        legacy = [p for p in self._by_id.get(run_id, []) if p != own]
        if legacy:
            return sorted(legacy, key=lambda p: (not (p / RESULT).is_file(), p.name))[0]
        return own


def collect(results: str | Path) -> tuple[Any, list[tuple[str, str]]]:
    """(DataFrame with one row per finished run, [(folder, why skipped)]). Unfinished, partial
    and corrupt run folders are listed, never fatal. A row's run_id is the identity of its
    resolved config, whatever the folder is called; two folders holding one experiment give one
    row (the folder named by the identity first), the other is listed as a duplicate, never
    counted as another seed."""
    import pandas as pd

    root = Path(results)
    rows: dict[str, dict[str, Any]] = {}
    skipped: list[tuple[str, str]] = []
    candidates = []
    for run in run_folders(root):
        try:
            r = read_result(run)
        except ValueError as e:
            skipped.append((str(run), str(e)))
            continue
        if r is None:
            why = "no result.json (unfinished)" if (run / CONFIG).is_file() else "not a run folder"
            skipped.append((str(run), why))
            continue
        if not isinstance(r, dict) or not isinstance(r.get("config"), dict):
            skipped.append((str(run), "result.json without a config"))
            continue
        try:
            rid, cid, resolved = identity_of_dict(r["config"], source=f"{run / RESULT}: config")
        except UserError as e:
            skipped.append((str(run), f"its config no longer resolves ({e})"))
            continue
        candidates.append((run.name != rid, run.name, run, rid, cid, resolved, r))
    for _, _, run, rid, cid, resolved, r in sorted(candidates, key=lambda t: (t[0], t[1])):
        if rid in rows:
            skipped.append((str(run), f"duplicate of run {rid} (folder {rows[rid]['folder']}): same resolved config"))
            continue
        row = result_row(rid, {**r, "config": json.loads(resolved.model_dump_json())})
        row["config_id"] = cid
        row["folder"] = run.name
        rows[rid] = row
    return _one_type_per_column(_context_option_defaults(pd.DataFrame(list(rows.values())))), skipped


def _context_option_defaults(df: Any) -> Any:
    """A context option some run set (`model.context_options.growth`) is a column; the rows of
    that variant that left it at its default show the default there, not a blank (a resolved
    config keeps only the options that differ from the variant's own)."""
    prefix = "model.context_options."
    for col in [c for c in df.columns if c.startswith(prefix)]:
        knob = col.removeprefix(prefix)
        for i, ctx in df["model.context"].items() if "model.context" in df.columns else ():
            value = df.at[i, col]
            if isinstance(ctx, str) and ctx in contexts and (value is None or value != value):
                defaults = context_option_defaults(ctx)
                if knob in defaults:  # written as the table writes any value (lists '1,2,3,6')
                    df.at[i, col] = flatten({"v": defaults[knob]}, join_lists=True)["v"]
    return df


def _one_type_per_column(df: Any) -> Any:
    """A column whose values are of several kinds (a result.json edited by hand: a number in one
    run, text in another) is kept as text, so the table still writes to parquet."""
    for col in df.columns:
        if df[col].dtype != object:
            continue
        kinds = {type(v) for v in df[col] if v is not None and v == v}  # NaN != NaN
        if len(kinds) > 1 and not kinds <= {int, float}:
            df[col] = [None if v is None or v != v else v if isinstance(v, str) else json.dumps(v, default=str)
                       for v in df[col]]  # fmt: skip
    return df


def read_manifest(results: str | Path) -> dict[str, Any]:
    path = Path(results) / MANIFEST
    try:
        m = read_json_file(path, "sweep manifest")
    except ValueError:
        return {}
    if not isinstance(m, dict):
        return {}  # damaged: a report then labels rows from their configs alone
    kinds = {"name": str, "reference": list, "varying": list, "cells": dict}
    out = {k: v for k, v in m.items() if k in kinds and isinstance(v, kinds[k])}
    for k in ("reference", "varying"):
        if k in out and not all(isinstance(x, str) for x in out[k]):
            del out[k]
    if "cells" in out and not all(isinstance(v, dict) for v in out["cells"].values()):
        del out["cells"]
    return out
