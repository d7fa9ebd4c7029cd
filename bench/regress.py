"""Accuracy and speed regression check of CURRENT against a committed BASELINE.

Cells are matched by their identity: the run_id of the resolved config each row records, computed
afresh from the row's config columns (so tables collected under an earlier identity scheme, the
committed baselines among them, match by what they ran, not by folder names); with
`pool_seeds`, by the configuration (identity without the seed). Accuracy is compared per cell
(a drop of more than `miou_tol` points fails); speed only where the environment fingerprints are
equal (a latency increase of more than `speed_tol` x fails) and otherwise reported as not compared, never silently.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bench.config import is_experiment_key
from bench.errors import UserError

__all__ = ["load_table", "regress"]


def load_table(path: str | Path) -> Any:
    """A results folder (collected on the fly) or a collected table (.parquet / .csv), with each
    row's identity (`_identity`, `_config`) computed from its config columns."""
    import pandas as pd

    from bench.store import collect

    p = Path(path)
    try:
        if p.is_dir():
            df, _ = collect(p)
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
    if "status" in df.columns:
        df = df[df["status"] == "done"]
    return _identify(df.reset_index(drop=True), p)


def _identify(df: Any, source: Path) -> Any:
    """Add `_identity` (run identity) and `_config` (the same without the seed) to every row."""
    from bench.identity import config_from_row, identity_of_dict

    if not any(is_experiment_key(c) for c in df.columns):
        raise UserError(
            f"{source}: no config columns (model.*, data.*, ...): rows are matched by the configuration they "
            "ran, not by position or folder name; give a table written by 'aspp-bench collect'"
        )
    ids, cfgs = [], []
    for i, row in df.iterrows():
        try:
            rid, cid, _ = identity_of_dict(config_from_row(row), source=f"{source}: row {i}")
        except UserError as e:
            raise UserError(f"{source}: row {i} does not describe a configuration that resolves ({e})") from None
        ids.append(rid)
        cfgs.append(cid)
    df = df.copy()
    df["_identity"], df["_config"] = ids, cfgs
    dup = df["_identity"].duplicated(keep="first")
    return df[~dup].reset_index(drop=True)  # one experiment counted once, never as two seeds


def _pool_seeds(df: Any, cfg_cols: list[str]) -> Any:
    """One row per configuration: mIoU and latency averaged over its seeds (n_seeds, miou_std);
    the row's run_id names the configuration by the keys that vary in the table."""
    import pandas as pd

    keys = [c for c in cfg_cols if c != "train.seed"]
    varying = [c for c in keys if df[c].astype(str).nunique() > 1]
    rows = []
    for _, g in df.groupby("_config", sort=False):
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
    for t in (baseline, current):
        if "_identity" not in t.columns:
            raise UserError("regress takes tables from load_table (rows with their identity)")
    key = "_config" if pool_seeds else "_identity"
    common = set(baseline[key]) & set(current[key])
    if not common:
        raise UserError(
            "baseline and current have no "
            + ("configuration" if pool_seeds else "run (configuration and seed)")
            + " in common, so nothing can be compared; "
            + _difference(baseline, current)
        )
    if pool_seeds:
        cfg_cols = [c for c in baseline.columns if is_experiment_key(c) and c in current.columns]
        baseline, current = _pool_seeds(baseline, cfg_cols), _pool_seeds(current, cfg_cols)
    cur_by_key = {r[key]: r for _, r in current.iterrows()}
    records = []
    for _, b in baseline.iterrows():
        c = cur_by_key.get(b[key])
        matched = "identity"
        if pool_seeds and c is not None:
            matched = f"config ({b['n_seeds']} vs {c['n_seeds']} seeds)"
        label = b["run_id"] if pool_seeds else b["_identity"]
        rec: dict[str, Any] = {"run_id": label, "matched": matched if c is not None else "missing"}
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
    first = "configuration" if pool_seeds else "run (identity)"
    lines = [f"| {first} | matched by | baseline mIoU | current mIoU | Δ points | speed | verdict |",
             "|---|---|---:|---:|---:|---|---|"]  # fmt: skip
    for r in records:
        lines.append(f"| {r['run_id']} | {r['matched']} | {r.get('miou_base', math.nan):.2f} | "
                     f"{r.get('miou_cur', math.nan):.2f} | {r.get('delta_points', math.nan):+.2f} | "
                     f"{r.get('speed', '-')} | {r['verdict']} |")  # fmt: skip
    passed = all(r["verdict"] == "ok" for r in records)
    return passed, "\n".join(lines), records


def _difference(baseline: Any, current: Any) -> str:
    """Which config keys take other values in one table than in the other."""
    keys = [c for c in baseline.columns if is_experiment_key(c) and c in current.columns]
    only_b = [c for c in baseline.columns if is_experiment_key(c) and c not in current.columns]
    diffs = []
    for c in keys:
        vb, vc = set(baseline[c].astype(str)), set(current[c].astype(str))
        if vb != vc:
            diffs.append(f"{c}: baseline {sorted(vb)[:4]} vs current {sorted(vc)[:4]}")
    parts = diffs[:8] + ([f"columns only in the baseline: {', '.join(only_b[:6])}"] if only_b else [])
    return "they differ in " + ("; ".join(parts) if parts else "keys not recorded in the tables") + \
        ". Compare results of the same sweep"  # fmt: skip
