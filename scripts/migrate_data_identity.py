"""Migrate committed runs to the data identity of 2026-12-07: `data.root` left out of run_id,
`data.fingerprint` (the content of the files a run reads) in it.

    ASPP_BENCH_DATA=/path/to/datasets python3 scripts/migrate_data_identity.py \
        --root-as OLD/PATH/camvid=camvid results/asppunet_claim results/baselines/*.parquet

For every run folder below a results folder (config.yaml + result.json): data.root is rewritten by
--root-as (old=new; the new root is read through $ASPP_BENCH_DATA), the data's fingerprint is
computed from the files found there and written into config.yaml and result.json's config, the
result's run_id is recomputed, and the folder is renamed to it (git mv where the folder is tracked);
the folder's sweep.json keys follow. Only finished runs (with a result.json) are moved: a run still
training keeps its folder until it has finished and the script is run again.
A collected table (.parquet, with its .csv beside it) gets the
same rewrite of its data.root and data.fingerprint columns and its run_id/config_id recomputed.
Renamed, not aliased: a folder is named by its config's run_id, as every other run folder is.
A run whose data cannot be found is refused (exit 2) before anything is written.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import yaml

from bench.configure.config import validate
from bench.configure.identity import identity_of_dict
from bench.data import fingerprint
from bench.files import write_json, write_yaml


def _rewrite_data(data: dict, mapping: dict[str, str], source: str) -> dict:
    d = dict(data)
    d["root"] = mapping.get(d.get("root"), d.get("root"))
    d.pop("fingerprint", None)
    cfg = validate({"data": d}, source=source)
    fp = fingerprint(cfg.data)
    if fp is None and cfg.data.name != "synthetic":
        print(f"error: {source}: the {cfg.data.name} data at data.root={d['root']!r} cannot be read here "
              "(set ASPP_BENCH_DATA, or give --root-as OLD=NEW); nothing more was written", file=sys.stderr)
        sys.exit(2)
    if fp is not None:
        d["fingerprint"] = fp
    return d


def migrate_folder(results: Path, mapping: dict[str, str]) -> list[tuple[str, str]]:
    moves = []
    for cfg_path in sorted(results.glob("*/config.yaml")):
        if not (cfg_path.parent / "result.json").is_file():
            continue  # a run still training (or never finished): renamed once it has finished
        old = cfg_path.parent.name
        cfg = yaml.safe_load(cfg_path.read_text())
        cfg["data"] = _rewrite_data(cfg["data"], mapping, str(cfg_path))
        rid, _, resolved = identity_of_dict(cfg, source=str(cfg_path))
        result_path = cfg_path.parent / "result.json"
        result = json.loads(result_path.read_text()) if result_path.is_file() else None
        write_yaml(cfg_path, json.loads(resolved.model_dump_json()))
        if result is not None:
            result["config"]["data"] = _rewrite_data(result["config"]["data"], mapping, str(result_path))
            result["run_id"] = rid
            write_json(result_path, result)
        if rid != old:
            tracked = subprocess.run(["git", "ls-files", "--error-unmatch", str(cfg_path)], capture_output=True)
            if tracked.returncode == 0:
                subprocess.run(["git", "mv", str(cfg_path.parent), str(results / rid)], check=True)
            else:
                cfg_path.parent.rename(results / rid)
        moves.append((old, rid))
    manifest = results / "sweep.json"
    if manifest.is_file():
        m = json.loads(manifest.read_text())
        renamed = dict(moves)
        m["cells"] = {renamed.get(k, k): v for k, v in m["cells"].items()}
        write_json(manifest, m)
    return moves


def migrate_table(path: Path, mapping: dict[str, str]) -> int:
    import pandas as pd

    from bench.results.table import config_from_row

    df = pd.read_parquet(path)
    if "data.fingerprint" not in df.columns:
        df.insert(df.columns.get_loc("data.root") + 1, "data.fingerprint", None)
    for i, row in df.iterrows():
        cfg = config_from_row(row)
        cfg["data"] = _rewrite_data(cfg["data"], mapping, f"{path}: row {i}")
        df.at[i, "data.root"] = cfg["data"]["root"]
        df.at[i, "data.fingerprint"] = cfg["data"].get("fingerprint")
        rid, cid, _ = identity_of_dict(cfg, source=f"{path}: row {i}")
        df.at[i, "run_id"] = rid
        if "config_id" in df.columns:
            df.at[i, "config_id"] = cid
    df.to_parquet(path, index=False)
    csv = path.with_suffix(".csv")
    if csv.is_file():
        df.to_csv(csv, index=False)
    return len(df)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="+", type=Path, help="results folders (run folders below them) and .parquet tables")
    ap.add_argument("--root-as", action="append", default=[], metavar="OLD=NEW", help="rewrite data.root OLD to NEW")
    args = ap.parse_args()
    mapping = dict(s.split("=", 1) for s in args.root_as)
    for p in args.paths:
        if p.suffix == ".parquet":
            print(f"{p}: {migrate_table(p, mapping)} rows")
        else:
            moves = migrate_folder(p, mapping)
            changed = sum(a != b for a, b in moves)
            print(f"{p}: {len(moves)} run folders, {changed} renamed")


if __name__ == "__main__":
    main()
