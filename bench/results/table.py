"""The results table: one row per finished run of a results folder (flattened config, metrics
with per-class and per-size IoU, cost, speed and the environment), the index of which folder
holds which run, the sweep manifest (sweep.json) a launcher wrote beside the runs; and the way
back, a saved table (or a folder) loaded with each row parsed into its configuration and
identity (`load_table`, `config_from_row`), for the report, the gate and the planner.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from bench.configure.config import OPEN_SECTIONS, RunConfig, config_keys, flatten, is_experiment_key, list_items
from bench.configure.identity import identity_of_dict
from bench.configure.naming import is_missing
from bench.errors import UserError
from bench.files import read_json_file
from bench.models.context import context_option_defaults, context_option_types
from bench.precision import canonical
from bench.registry import contexts
from bench.results.convergence import convergence, curve_of
from bench.results.folders import CHECKPOINT, CONFIG, MANIFEST, RESULT, TENSORBOARD, known_identity, read_result

__all__ = ["RunIndex", "collect", "config_from_row", "load_table", "read_manifest", "result_row", "run_folders"]

METRIC_COLUMNS = ("miou", "pixel_acc", "mean_class_acc", "fw_iou", "macro_f1", "mean_dice")


RECEPTIVE_COLUMNS = ("rf_height", "rf_width", "rf_global", "rf_local_height", "rf_local_width", "rf_coverage",
                     "rf_holes", "rf_clipped", "rf_context_height", "rf_context_width", "rf_context_coverage",
                     "rf_context_holes", "rf_context_input", "erf_images", "erf_r50", "erf_r90", "erf_r99",
                     "erf_ratio")  # fmt: skip
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
    "limit_gflops_s",
    "efficiency",
    "limit_anchor",
    "busy",
    *RECEPTIVE_COLUMNS,
)


CONVERGENCE_COLUMNS = ("conv_status", "conv_tail_gain", "conv_asymptote", "conv_asymptote_low", "conv_asymptote_high",
                       "conv_headroom", "conv_family", "conv_evals")  # fmt: skip


def run_convergence(r: dict[str, Any]) -> dict[str, Any]:
    """A result's plateau verdict (bench.results.convergence): as the run recorded it, else from its
    recorded curve (runs written before the rule existed, or by hand)."""
    conv = r.get("convergence")
    if isinstance(conv, dict) and "status" in conv:
        return conv
    t = r.get("train") if isinstance(r.get("train"), dict) else {}
    epochs, miou = curve_of(r)
    total = t.get("epochs") if isinstance(t.get("epochs"), int | float) else None
    return convergence(epochs, miou, total)


ENV_COLUMNS = ("device_name", "device_features", "kernels", "torch", "threads", "train_threads", "cpu_count",
               "load_avg", "dtype", "train_amp", "train_channels_last", "train_compile", "host", "code")  # fmt: skip


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
    if r.get("status") == "done":
        conv = run_convergence(r)
        for k in CONVERGENCE_COLUMNS:
            row[k] = conv.get(k.removeprefix("conv_"))
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


def load_table(path: str | Path, *, dropped: list[dict[str, Any]] | None = None) -> Any:
    """A results folder (collected on the fly) or a collected table (.parquet / .csv), with each
    row's identity (`_identity`, `_config`) computed from its config columns. `dropped`: where given,
    every run left out is appended to it ({where, why, config_id, seed}: a corrupt, unfinished or
    failed run, by its folder or row), so that a caller can name and count it."""
    import pandas as pd

    p = Path(path)
    skipped: list[tuple[str, str]] = []
    try:
        if p.is_dir():
            df, skipped = collect(p)
        elif p.suffix == ".parquet" and p.is_file():
            df = pd.read_parquet(p)
        elif p.suffix == ".csv" and p.is_file():
            df = pd.read_csv(p)
        else:
            raise UserError(
                f"{p}: not a results folder or a collected table (.parquet or .csv)"
                + ("" if p.exists() else "; no such file or folder")
            )
    except UserError:
        raise
    except (ValueError, OSError, ImportError) as e:  # pandas / pyarrow parse errors are ValueError subclasses
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise UserError(f"{p}: cannot be read as a {p.suffix.lstrip('.')} table ({first}); give a table written by "
                        "'aspp-bench collect'") from None  # fmt: skip
    if df.empty or "miou" not in df.columns:
        raise UserError(f"{p}: no finished runs with a miou column; give a table written by 'aspp-bench collect'")
    if dropped is not None:
        dropped += [_left_out(Path(where), why) for where, why in skipped if why != "not a run folder"]
    if "status" in df.columns:
        if dropped is not None:
            for i, r in df[df["status"] != "done"].iterrows():
                dropped.append({"where": f"{p}: {r.get('folder', f'row {i}')}", "why": f"status {r['status']}",
                                "config_id": r.get("config_id"), "seed": r.get("train.seed")})  # fmt: skip
        df = df[df["status"] == "done"]
    if "train.amp" in df.columns:  # a table written when fp32 was spelled `none`: today's one spelling
        df = df.assign(**{"train.amp": df["train.amp"].map(canonical)})
    return _identify(_checked_numbers(df.reset_index(drop=True), p), p)


def _left_out(folder: Path, why: str) -> dict[str, Any]:
    """A run folder collect left out, with the configuration and seed its config.yaml names (None
    where that cannot be read either)."""
    cid = seed = None
    try:
        import yaml

        data = yaml.safe_load((folder / CONFIG).read_text())
        _, cid, resolved = identity_of_dict(data, source=str(folder / CONFIG))
        seed = resolved.train.seed
    except Exception:  # noqa: BLE001 - a damaged folder is named as it is, whatever is wrong with it
        pass
    return {"where": str(folder), "why": why, "config_id": cid, "seed": seed}


# Measured columns a table is read for, and the range a real value lies in.
_RANGES = {"miou": (0.0, 1.0), "latency_ms_p50": (0.0, None), "latency_ms_p90": (0.0, None)}


def _checked_numbers(df: Any, source: Path) -> Any:
    """The table with its measured columns as numbers; a value that is text, NaN, infinite or out
    of range (an mIoU of -5, or in points where a fraction is kept) is a UserError naming the row."""
    import pandas as pd

    df = df.copy()
    for col, (lo, hi) in _RANGES.items():
        if col not in df.columns:
            continue
        values = pd.to_numeric(df[col], errors="coerce")
        for i, (v, raw) in enumerate(zip(values, df[col], strict=True)):
            if col != "miou" and pd.isna(raw):
                continue  # a run profiled without latency
            if not (math.isfinite(v) and v >= lo and (hi is None or v <= hi)):
                allowed = f"a number from {lo:g} to {hi:g}" if hi is not None else f"a number of at least {lo:g}"
                raise UserError(
                    f"{source}: row {i}: {col} is {str(raw)[:40]!r}, not {allowed}"
                    + (" (mIoU is kept as a fraction, as 'aspp-bench collect' writes it)" if col == "miou" else "")
                    + "; fix or drop that row"
                )
        df[col] = values
    return df


def _identify(df: Any, source: Path) -> Any:
    """Add `_identity` (run identity) and `_config` (the same without the seed) to every row."""
    if not any(is_experiment_key(c) for c in df.columns):
        raise UserError(
            f"{source}: no config columns (model.*, data.*, ...): rows are matched by the configuration they "
            "ran, not by position or folder name; give a table written by 'aspp-bench collect'"
        )
    ids, cfgs, resolved = [], [], []
    for i, row in df.iterrows():
        try:
            rid, cid, r = identity_of_dict(config_from_row(row), source=f"{source}: row {i}")
        except UserError as e:
            raise UserError(f"{source}: row {i} does not describe a configuration that resolves ({e})") from None
        ids.append(rid)
        cfgs.append(cid)
        resolved.append(r)
    df = df.copy()
    df["_identity"], df["_config"], df["_resolved"] = ids, cfgs, resolved
    dup = df["_identity"].duplicated(keep="first")
    return df[~dup].reset_index(drop=True)  # one experiment counted once, never as two seeds


def config_from_row(row: Any) -> dict[str, Any]:
    """A nested config mapping from a collected table row (dotted columns, lists as '3,6,9,12')."""
    out: dict[str, Any] = {}
    open_keys = [k for k in row.keys() if isinstance(k, str) and k.rpartition(".")[0] in OPEN_SECTIONS]  # noqa: SIM118
    for key in [*config_keys(), *open_keys]:
        if key not in row or is_missing(row[key]):
            continue
        v = row[key]
        if hasattr(v, "item"):  # numpy scalars from pandas
            v = v.item()
        context = row["model.context"] if "model.context" in row else None
        if isinstance(v, str) and _is_tuple_field(key, context):
            parts = list_items(v)
            v = parts
            if key != "loss.class_weights" or v[0] not in ("none", "median_freq", "inverse_freq"):
                v = [_number(p) for p in parts]
            else:
                v = v[0]
        elif isinstance(v, int | float) and _is_tuple_field(key, context):
            v = [v]
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = v
    return out


def _number(s: str) -> int | float:
    try:
        return int(s)
    except ValueError:
        return float(s)


def _is_tuple_field(key: str, context: Any = None) -> bool:
    """Whether the key holds a list (a table writes it as '3,6,9,12'): by the config's declared
    type, or for a context option by the type its variant declares."""
    section, _, knob = key.rpartition(".")
    if section in OPEN_SECTIONS:
        hint = context_option_types(context).get(knob) if isinstance(context, str) and context in contexts else None
        return any(t in str(hint) for t in ("Sequence", "tuple", "list"))
    node: Any = RunConfig
    for part in key.split("."):
        info = node.model_fields[part]
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            node = ann
            continue
        return "tuple" in str(ann)
    return False
