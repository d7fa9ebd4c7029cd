"""Accuracy and speed regression check of CURRENT against a committed BASELINE.

Cells are matched by run_id, or by their config keys when the ids differ (e.g. a renamed
default). Accuracy is compared per cell (a drop of more than `miou_tol` points fails); speed
only where the environment fingerprints are equal (a latency increase of more than
`speed_tol` x fails) and otherwise reported as not compared, never silently.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bench.config import is_experiment_key
from bench.errors import UserError

__all__ = ["load_table", "regress"]

NOT_IDENTITY = ("train.device",)  # experiment keys that do not change the result (the speed check covers them)


def load_table(path: str | Path) -> Any:
    """A results folder (collected on the fly) or a collected table (.parquet / .csv)."""
    import pandas as pd

    from bench.store import collect

    p = Path(path)
    if p.is_dir():
        df, _ = collect(p)
    elif p.suffix == ".parquet" and p.is_file():
        df = pd.read_parquet(p)
    elif p.suffix == ".csv" and p.is_file():
        df = pd.read_csv(p)
    else:
        raise UserError(f"{p}: not a results folder or a collected table (.parquet or .csv)")
    if df.empty or "run_id" not in df.columns or "miou" not in df.columns:
        raise UserError(f"{p}: no finished runs with run_id and miou columns")
    return df[df["status"] == "done"] if "status" in df.columns else df


def _config_key(row: Any, cols: list[str]) -> tuple:
    return tuple(str(row[c]) for c in cols)


def _pool_seeds(df: Any, cfg_cols: list[str]) -> Any:
    """One row per configuration: mIoU and latency averaged over its seeds (n_seeds, miou_std);
    the row's run_id names the configuration by the keys that vary in the table."""
    import pandas as pd

    keys = [c for c in cfg_cols if c != "train.seed"]
    varying = [c for c in keys if df[c].astype(str).nunique() > 1]
    rows = []
    for _, g in df.groupby(df[keys].astype(str).apply(tuple, axis=1), sort=False):
        row = g.iloc[0].copy()
        row["miou"] = g["miou"].mean()
        row["miou_std"] = g["miou"].std(ddof=1) if len(g) > 1 else float("nan")
        row["n_seeds"] = len(g)
        if "latency_ms_p50" in g:
            row["latency_ms_p50"] = g["latency_ms_p50"].median()
        fps = g["env_fingerprint"].unique() if "env_fingerprint" in g else []
        row["env_fingerprint"] = fps[0] if len(fps) == 1 else None
        row["run_id"] = (
            ", ".join(f"{c.split('.', 1)[-1]}={'-' if pd.isna(row[c]) else row[c]}" for c in varying) or "all"
        )
        rows.append(row)
    return pd.DataFrame(rows).reset_index(drop=True)


def regress(
    baseline: Any, current: Any, *, miou_tol: float = 1.0, speed_tol: float = 0.2, pool_seeds: bool = False
) -> tuple[bool, str, list]:
    """(passed, markdown table, per-cell records). With `pool_seeds`, cells that differ only in
    their seed are averaged first and the means are compared: per-seed mIoU of a short run moves
    by more than a point between machines, the mean over seeds much less."""
    if miou_tol < 0 or speed_tol < 0:
        raise UserError("--miou-tol and --speed-tol must be non-negative")
    cfg_cols = [c for c in baseline.columns if is_experiment_key(c) and c in current.columns and c not in NOT_IDENTITY]
    if pool_seeds:
        baseline, current = _pool_seeds(baseline, cfg_cols), _pool_seeds(current, cfg_cols)
        cfg_cols = [c for c in cfg_cols if c != "train.seed"]
    cur_by_id = {r["run_id"]: r for _, r in current.iterrows()}
    cur_by_cfg = {_config_key(r, cfg_cols): r for _, r in current.iterrows()}
    records = []
    for _, b in baseline.iterrows():
        c = cur_by_id.get(b["run_id"])
        matched = "run_id"
        if c is None:
            c = cur_by_cfg.get(_config_key(b, cfg_cols))
            matched = "config"
        if pool_seeds and c is not None:
            matched = f"config ({b['n_seeds']} vs {c['n_seeds']} seeds)"
        rec: dict[str, Any] = {"run_id": b["run_id"], "matched": matched if c is not None else "missing"}
        fails = []
        if c is None:
            fails.append("missing in current")
        else:
            d = 100 * (float(c["miou"]) - float(b["miou"]))
            rec["miou_base"], rec["miou_cur"], rec["delta_points"] = 100 * b["miou"], 100 * c["miou"], d
            if d < -miou_tol:
                fails.append(f"mIoU {d:+.2f} points (tolerance {miou_tol})")
            lb, lc = b.get("latency_ms_p50"), c.get("latency_ms_p50")
            same_env = b.get("env_fingerprint") == c.get("env_fingerprint") and b.get("env_fingerprint") is not None
            if lb is None or lc is None or (isinstance(lb, float) and math.isnan(lb)):
                rec["speed"] = "no latency recorded"
            elif not same_env:
                rec["speed"] = "not compared: environments differ"
            else:
                ratio = float(lc) / float(lb)
                rec["speed"] = f"latency x{ratio:.2f}"
                if ratio > 1 + speed_tol:
                    fails.append(f"latency x{ratio:.2f} (tolerance x{1 + speed_tol:.2f})")
        rec["verdict"] = "FAIL: " + "; ".join(fails) if fails else "ok"
        records.append(rec)
    first = "configuration" if pool_seeds else "run_id"
    lines = [f"| {first} | matched by | baseline mIoU | current mIoU | Δ points | speed | verdict |",
             "|---|---|---:|---:|---:|---|---|"]  # fmt: skip
    for r in records:
        lines.append(f"| {r['run_id']} | {r['matched']} | {r.get('miou_base', math.nan):.2f} | "
                     f"{r.get('miou_cur', math.nan):.2f} | {r.get('delta_points', math.nan):+.2f} | "
                     f"{r.get('speed', '-')} | {r['verdict']} |")  # fmt: skip
    passed = all(r["verdict"] == "ok" for r in records)
    return passed, "\n".join(lines), records
