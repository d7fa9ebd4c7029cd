"""Every sweep in ablations/ expands, passes --dry-run, and has the cell count its comment states."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench.sweep import expand, load_sweep

ABLATIONS = sorted((Path(__file__).resolve().parents[1] / "ablations").glob("*.yaml"))


def test_the_folder_holds_every_experiment() -> None:
    names = {p.stem for p in ABLATIONS}
    assert {
        "asppunet_camvid",
        "deeplabv3_voc_rates",
        "dual_aspp_cityscapes",
        "aticnet_cityscapes",
        "multibackbone_cityscapes",
        "dilation_grid",
        "smoke",
        "camvid_cpu",
    } <= names


@pytest.mark.parametrize("path", ABLATIONS, ids=lambda p: p.stem)
def test_dry_run_and_stated_cell_count(cli, path: Path, tmp_path) -> None:
    text = path.read_text()
    stated = re.search(r"=\s*(\d+)\s+cells", text)
    assert stated, f"{path.name}: the header comment should state '... = N cells'"
    sweep = load_sweep(path)
    assert sweep.name == path.stem
    cells = expand(sweep, source=str(path))
    assert len(cells) == int(stated.group(1))
    code, out, err = cli("sweep", str(path), "--dry-run", "--results", str(tmp_path / "r"))
    assert code == 0, err
    assert f"{len(cells)} cells" in out and "nothing was written" in out and not (tmp_path / "r").exists()


def test_smoke_touches_every_axis() -> None:
    cells = expand(load_sweep(next(p for p in ABLATIONS if p.stem == "smoke")))
    assert len(cells) >= 12
    cfgs = [c.config for c in cells]
    assert len({c.model.arch for c in cfgs}) >= 3
    assert len({c.model.context for c in cfgs if c.model.context}) >= 4
    assert len({c.model.rates for c in cfgs if c.model.rates}) >= 2
    assert {c.model.skip for c in cfgs} >= {True, False}
    assert len({c.loss.name for c in cfgs}) >= 2
    assert all(c.data.name == "synthetic" and c.train.device == "cpu" for c in cfgs)
