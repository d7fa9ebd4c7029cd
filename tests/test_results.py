"""The results room (bench/results/): rows parsed back into configurations, a saved table loaded under
today's identities, one experiment counted once, and a run folder bound to the one config it holds."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from bench.configure.config import RunConfig, validate
from bench.configure.identity import resolve
from bench.results.table import config_from_row, result_row
from bench.sweep import expand, load_sweep
from tests.fixtures import train_tiny, tree_hashes


def test_legacy_baseline_maps_onto_the_sweep_that_made_it() -> None:
    """The committed baseline was written under the old ids; its rows resolve to the new ones."""
    from bench.results.table import load_table

    root = Path(__file__).resolve().parents[1]
    df = load_table(root / "results" / "baselines" / "camvid_cpu.parquet")
    sweep = load_sweep(root / "ablations" / "camvid_cpu.yaml")
    # the rows name the data by content (data.fingerprint), not by where it lay; the sweep is
    # expanded for data with that content, wherever CamVid is (or is not) on this machine
    (fp,) = set(df["data.fingerprint"])
    base = {**sweep.base, "data": {**sweep.base["data"], "fingerprint": fp}}
    cells = expand(sweep.model_copy(update={"base": base}))
    assert set(df["_identity"]) == {c.run_id for c in cells} and len(df) == 12
    assert df["_config"].nunique() == 4  # 4 configurations x 3 seeds
    # written when fp32 was spelled `none`: read in today's one spelling, as a collected folder shows it
    assert set(df["train.amp"]) == {"fp32"}


def test_config_from_row_round_trips() -> None:
    cfg = resolve(RunConfig.model_validate({"model": {"arch": "dual_aspp"}, "loss": {"class_weights": [1.0] * 6}}))
    row = _row_of(cfg)
    assert resolve(validate(config_from_row(row), source="row")) == cfg


def test_a_missing_value_is_missing_however_pandas_spells_it() -> None:
    """A table read back with nullable dtypes holds pd.NA (shown `<NA>`) where a run had no value;
    reading rows back into configs and naming values agree that it is missing."""
    import pandas as pd

    from bench.configure.naming import is_missing

    cfg = resolve(RunConfig.model_validate({"model": {"arch": "unet"}}))
    row = pd.Series(_row_of(cfg)).astype(object)
    row["model.backbone"] = pd.NA
    assert is_missing(row["model.backbone"])
    assert resolve(validate(config_from_row(row), source="row")) == cfg


def _row_of(cfg: RunConfig) -> dict:
    """The table row `collect` makes of a result holding CFG."""
    return result_row("x", {"config": json.loads(cfg.model_dump_json())})


def test_collect_counts_one_experiment_once_whatever_its_folders(cli, tmp_path) -> None:
    """Defect: two folders of one network were two rows, shown as 'seeds 2' with sd 0."""
    from bench.report import main_table
    from bench.results.table import collect

    res = tmp_path / "res"
    assert train_tiny(cli, res / "0123456789ab")[0] == 0  # a folder named under another scheme
    shutil.copytree(res / "0123456789ab", res / "ba9876543210")
    df, skipped = collect(res)
    assert len(df) == 1 and any("duplicate of run" in why for _, why in skipped)
    assert main_table(df, [])["n"].tolist() == [1]


def test_another_config_into_a_finished_folder_is_refused(cli, tmp_path) -> None:
    """Defect: a finished folder with another --set returned the old result with exit 0."""
    out = tmp_path / "run"
    assert train_tiny(cli, out)[0] == 0
    before = tree_hashes(out)
    code, stdout, err = train_tiny(cli, out, "optim.lr=0.01")
    assert code == 2 and "optim.lr: 0.001 -> 0.01" in err and "Nothing was changed" in err
    assert "Traceback" not in err and tree_hashes(out) == before


def test_another_config_into_an_unfinished_folder_is_refused(cli, tmp_path) -> None:
    """Defect: an unfinished folder silently resumed the old checkpoint under the new label, and a
    shape change gave a traceback after config.yaml had been overwritten."""
    out = tmp_path / "run"
    assert train_tiny(cli, out)[0] == 0
    (out / "result.json").unlink()
    before = tree_hashes(out)
    for change in ("train.seed=3", "model.width=8", "train.epochs=4"):
        code, _, err = train_tiny(cli, out, change)
        assert code == 2 and change.split("=")[0] in err and "Traceback" not in err, err
        assert tree_hashes(out) == before
    code, _, err = train_tiny(cli, out)  # the same config resumes
    assert code == 0, err
    assert (out / "result.json").is_file()
