"""How far a result moves between two environments next to how far it moves between seeds.

    python scripts/spread.py results/baselines/camvid_cpu.parquet results/camvid_cpu_2threads

Both arguments are results folders or collected tables of the same experiments (the same
run_ids: for example one sweep trained with 1 and with 2 threads, or on two machines). Per
configuration it prints the seed-to-seed sd in each, and the change of each seed's mIoU from
the first to the second: the same experiment, only the kernels differ.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.configure.config import is_experiment_key  # noqa: E402
from bench.configure.naming import row_label  # noqa: E402
from bench.results.table import load_table  # noqa: E402


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    a, b = load_table(sys.argv[1]), load_table(sys.argv[2])
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
        sd_a, sd_b = np.std(da, ddof=1), np.std(db, ddof=1)
        all_changes += list(change)
        all_sd += [sd_a, sd_b]
        lines.append(
            f"| {row_label(g.iloc[0], varying, empty='all')} | {len(m)} | {sd_a:.2f} | {sd_b:.2f} | "
            f"{', '.join(f'{x:+.2f}' for x in change)} | {np.mean(np.abs(change)):.2f} |"
        )
    print("\n".join(lines))
    if all_changes:
        print(
            f"\nsame experiment, two environments: mean |change| {np.mean(np.abs(all_changes)):.2f} points, "
            f"max {np.max(np.abs(all_changes)):.2f}, {sum(c == 0 for c in all_changes)} of {len(all_changes)} "
            f"bit-equal; seed-to-seed sd {min(all_sd):.2f}-{max(all_sd):.2f} points"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
