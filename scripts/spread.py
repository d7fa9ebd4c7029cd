"""How far a result moves between two environments next to how far it moves between seeds.

    python scripts/spread.py results/baselines/camvid_cpu.parquet results/camvid_cpu_2threads
    python scripts/spread.py FIRST SECOND --noise camvid-cpu --change threads --source "what ran where"

Both arguments are results folders or collected tables of the same experiments (the same
run_ids: for example one sweep trained with 1 and with 2 threads, or on two machines), or two
reports' main_table.csv of one-seed grids (matched by their `cell` label). Per configuration it
prints the seed-to-seed sd in each, and the change of each seed's mIoU from the first to the
second: the same experiment, only the kernels differ. With --noise, the pairs are appended to
the environment noise models (bench/verdicts/environment_noise.csv) under that model's name.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.configure.config import is_experiment_key  # noqa: E402
from bench.configure.naming import row_label  # noqa: E402
from bench.results.table import load_table  # noqa: E402
from bench.verdicts.noise import NOISE_FILE  # noqa: E402


def _is_report_table(path: str) -> bool:
    """A report's main_table.csv: one row per configuration, named by its `cell` label, no run_id."""
    if not path.endswith(".csv") or not Path(path).is_file():
        return False
    head = pd.read_csv(path, nrows=0).columns
    return "cell" in head and "run_id" not in head


def _report_pairs(first: str, second: str) -> list[tuple[str, int, float, float]]:
    """(label, seed, first, second) of two reports' main tables of one-seed grids, by cell label."""
    a, b = pd.read_csv(first), pd.read_csv(second)
    m = a.merge(b[["cell", "miou"]], on="cell", suffixes=("_a", "_b"))
    return [(r["cell"], 0, float(r["miou_a"]), float(r["miou_b"])) for _, r in m.iterrows()]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("first")
    p.add_argument("second")
    p.add_argument("--noise", metavar="MODEL", help="append the pairs to this environment noise model")
    p.add_argument("--change", default="machine", help="what differed: machine, threads, machine+threads, cpu ...")
    p.add_argument("--source", default="", help="what ran where and when, for the noise file")
    p.add_argument("--data", help="the dataset (data.name) of two reports' main tables, which do not record it")
    args = p.parse_args()
    reports = _is_report_table(args.first) and _is_report_table(args.second)
    if args.noise and reports and not args.data:
        p.error("--noise with two reports' main tables needs --data (their dataset, e.g. synthetic)")
    if reports:
        pairs = _report_pairs(args.first, args.second)
        changes = [s - f for _, _, f, s in pairs]
        for label, _, f, s in pairs:
            print(f"| {label} | {f:.2f} | {s:.2f} | {s - f:+.2f} |")
        print(f"\nsame experiment, two environments: mean |change| {np.mean(np.abs(changes)):.2f} points, max "
              f"{np.max(np.abs(changes)):.2f}, {sum(c == 0 for c in changes)} of {len(changes)} bit-equal")  # fmt: skip
        data = args.data
    else:
        pairs, data = _table_pairs(args.first, args.second)
    if args.noise:
        with NOISE_FILE.open("a", newline="") as f:
            w = csv.writer(f)
            for label, seed, first, second in pairs:
                w.writerow([args.noise, data, args.change, label, seed, f"{first:.4f}", f"{second:.4f}", args.source])
        print(f"{len(pairs)} pair(s) appended to {NOISE_FILE} as model {args.noise!r}")
    return 0


def _table_pairs(first: str, second: str) -> tuple[list[tuple[str, int, float, float]], str]:
    """Print the spread table of two results tables; return their pairs and their dataset."""
    a, b = load_table(first), load_table(second)
    pairs = []
    cfg_cols = [c for c in a.columns if is_experiment_key(c) and c != "train.seed"]
    varying = [c for c in cfg_cols if a[c].astype(str).nunique() > 1]
    lines = [
        "| configuration | seeds | seed sd, first (points) | seed sd, second | same seed, second - first (points) "
        "| mean abs change |",
        "|---|---:|---:|---:|---|---:|",
    ]
    all_changes, all_sd = [], []
    for _, g in a.groupby("_config", sort=False):
        h = b[b["_identity"].isin(g["_identity"])]
        if h.empty:
            continue
        m = g.merge(h[["_identity", "miou"]], on="_identity", suffixes=("_a", "_b")).sort_values("train.seed")
        da, db = 100 * m["miou_a"].to_numpy(), 100 * m["miou_b"].to_numpy()
        change = db - da
        sd_a, sd_b = (np.std(da, ddof=1), np.std(db, ddof=1)) if len(m) > 1 else (np.nan, np.nan)  # one seed: none
        all_changes += list(change)
        all_sd += [sd_a, sd_b]
        label = row_label(g.iloc[0], varying, empty="all")
        pairs += [(label, int(s), float(x), float(y)) for s, x, y in zip(m["train.seed"], da, db, strict=True)]
        lines.append(
            f"| {row_label(g.iloc[0], varying, empty='all')} | {len(m)} | {sd_a:.2f} | {sd_b:.2f} | "
            f"{', '.join(f'{x:+.2f}' for x in change)} | {np.mean(np.abs(change)):.2f} |"
        )
    print("\n".join(lines))
    if all_changes:
        print(
            f"\nsame experiment, two environments: mean |change| {np.mean(np.abs(all_changes)):.2f} points, "
            f"max {np.max(np.abs(all_changes)):.2f}, {sum(c == 0 for c in all_changes)} of {len(all_changes)} bit-equal"
            + (f"; seed-to-seed sd {np.nanmin(all_sd):.2f}-{np.nanmax(all_sd):.2f} points"
               if not np.isnan(all_sd).all() else "; one seed per configuration: no seed-to-seed sd")
        )
    return pairs, str(a["data.name"].iloc[0])


if __name__ == "__main__":
    sys.exit(main())
