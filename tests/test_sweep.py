from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bench.errors import UserError
from bench.sweep import expand, load_sweep, run_id, varying_keys

SPEC = """
name: unit
base: {model: {arch: aspp_unet, width: 4}, data: {size: [32, 32], count: 8}}
grid:
  model.rates: [[3, 6, 9, 12], [6, 12, 18, 24]]
  loss.name: [ce, dice]
zip:
  - {model.context: [aspp_parallel, aspp], optim.lr: [0.001, 0.003]}
exclude:
  - {model.context: aspp, loss.name: dice}
seeds: [0, 1]
"""


def _write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def test_expansion_cartesian_zip_exclude_seeds(tmp_path) -> None:
    cells = expand(load_sweep(_write(tmp_path, SPEC)))
    # 2 rates x 2 losses x 2 zipped (context, lr) x 2 seeds = 16, minus aspp+dice (2 rates x 2 seeds) = 12
    assert len(cells) == 12
    assert all(not (c.config.model.context == "aspp" and c.config.loss.name == "dice") for c in cells)
    pairs = {(c.config.model.context, c.config.optim.lr) for c in cells}
    assert pairs == {("aspp_parallel", 0.001), ("aspp", 0.003)}  # zipped, never crossed
    assert {c.config.train.seed for c in cells} == {0, 1}
    assert len({c.run_id for c in cells}) == 12
    assert varying_keys(cells) == ["model.rates", "loss.name", "model.context", "optim.lr", "train.seed"]
    assert cells[0].config.model.width == 4 and cells[0].config.data.size == (32, 32)  # base applied


def test_run_id_is_stable_across_processes_and_key_order(tmp_path) -> None:
    a = expand(load_sweep(_write(tmp_path, SPEC)))
    reordered = """
    seeds: [0, 1]
    exclude:
      - {loss.name: dice, model.context: aspp}
    zip:
      - {optim.lr: [0.001, 0.003], model.context: [aspp_parallel, aspp]}
    grid:
      loss.name: [ce, dice]
      model.rates: [[3, 6, 9, 12], [6, 12, 18, 24]]
    base: {data: {count: 8, size: [32, 32]}, model: {width: 4, arch: aspp_unet}}
    name: unit
    """
    b = expand(load_sweep(_write(tmp_path, reordered, "r.yaml")))
    assert {c.run_id for c in a} == {c.run_id for c in b}
    code = (
        "import sys; from bench.sweep import expand, load_sweep; "
        f"print(' '.join(sorted(c.run_id for c in expand(load_sweep({str(tmp_path / 's.yaml')!r})))))"
    )
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert other == sorted(c.run_id for c in a)
    assert run_id(a[0].config) == a[0].run_id


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("name: x\ngrid: {model.rate: [[1]]}\n", ["grid key 'model.rate' is not a config field", "model.rates"]),
        ("name: x\ngrid: {model.rates: []}\n", ["grid key 'model.rates' has no values"]),
        ("name: x\nzip: [{model.arch: [unet, aspp_unet], model.width: [8]}]\n", ["zip group 0", "different lengths"]),
        ("name: x\ngrdi: {}\n", ["'grdi' is not a sweep field", "did you mean 'grid'"]),
        ("name: x\nlaunch: {executor: kubernetes}\n", ["launch.executor='kubernetes'"]),
        ("name: x\ngrid: {model.output_stride: [8, 'sixteen']}\n", ["cell 1", "model.output_stride='sixteen'"]),
        ("name: x\ngrid: {train.seed: [1, 2]}\n", ["vary train.seed with 'seeds'"]),
        ("name: x\ngrid: {loss.name: [ce, cee]}\n", ["cell 1", "unknown loss 'cee'", "did you mean 'ce'"]),
    ],
)
def test_validation_errors_name_file_key_and_cell(tmp_path, text: str, fragments: list[str]) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(UserError) as e:
        expand(load_sweep(path), source=str(path))
    msg = str(e.value)
    assert str(path) in msg or "is not a sweep field" in msg
    for f in fragments:
        assert f in msg, (f, msg)


def test_all_bad_cells_reported_at_once_and_nothing_written(cli, tmp_path) -> None:
    spec = _write(
        tmp_path,
        """
    name: bad
    base: {model: {arch: deeplabv3, backbone: resnet18, width: 8}}
    grid:
      model.output_stride: [8, 12, 20]
      model.rates: [[6, 12], [0]]
    """,
    )
    results = tmp_path / "results"
    code, out, err = cli("sweep", str(spec), "--results", str(results), "--executor", "local")
    assert code == 2 and "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("  ")]
    assert "5 cell(s) would fail; nothing was submitted" in err and len(lines) == 5
    assert sum("output_stride=12" in ln for ln in lines) == 2 and sum("output_stride=20" in ln for ln in lines) == 2
    assert sum("model.rates=[0]:" in ln for ln in lines) == 1  # the output_stride=8 cell with bad rates
    assert not results.exists()


def test_missing_data_root_fails_before_submission(cli, tmp_path) -> None:
    spec = _write(
        tmp_path,
        """
    name: nodata
    base: {model: {width: 4}, data: {name: camvid, root: /no/such/camvid}}
    """,
    )
    code, _, err = cli("sweep", str(spec), "--results", str(tmp_path / "r"))
    assert code == 2 and "/no/such/camvid" in err and "nothing was submitted" in err
    assert not (tmp_path / "r").exists()


def test_dry_run_prints_cells_and_writes_nothing(cli, tmp_path) -> None:
    results = tmp_path / "results"
    code, out, _ = cli("sweep", str(_write(tmp_path, SPEC)), "--dry-run", "--results", str(results))
    assert code == 0 and "12 cells" in out and "would submit 12 cell(s)" in out and "nothing was written" in out
    assert out.count("missing") == 12 and not results.exists()


def test_status_reads_files_and_writes_nothing(tmp_path) -> None:
    """status resolves every cell (that needs the registries, so torch is imported) and only reads."""
    spec = _write(tmp_path, SPEC)
    code = "import sys, bench.cli as c; c.main(['status', sys.argv[1], '--json'])"
    r = subprocess.run([sys.executable, "-c", code, str(spec)], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["counts"] == {"missing": 12}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.yaml"]


def test_dry_run_builds_every_model_and_names_the_bad_cells(cli, tmp_path) -> None:
    spec = _write(
        tmp_path,
        """
    name: badmodel
    base: {model: {backbone: mobilenet_v3_small, width: 8, skip: true}}
    grid:
      model.arch: [deeplabv3plus, deeplabv3, dual_aspp]
    """,
    )
    results = tmp_path / "results"
    code, out, err = cli("sweep", str(spec), "--dry-run", "--results", str(results))
    assert code == 2 and "Traceback" not in err and not results.exists()
    bad = [ln for ln in err.splitlines() if ln.startswith("  ")]
    assert len(bad) == 1 and "cell 1 " in bad[0] and "'deeplabv3' has no knob 'skip'" in bad[0], err


def test_dry_run_builds_each_distinct_model_once(cli, tmp_path, monkeypatch) -> None:
    """Defect: every cell built its model again, seeds included (1000 cells: 33 s of CPU)."""
    import bench.launch.preflight as preflight

    spec = _write(
        tmp_path,
        """
    name: manyseeds
    base: {model: {width: 4}}
    grid:
      model.arch: [unet, aspp_unet]
      optim.lr: [0.001, 0.01]
    seeds: [0, 1, 2, 3, 4]
    """,
    )
    calls = []
    real = preflight.build_model  # the dry run's preflight builds each network
    monkeypatch.setattr(preflight, "build_model", lambda *a, **k: calls.append(a) or real(*a, **k))
    code, out, err = cli("sweep", str(spec), "--dry-run", "--results", str(tmp_path / "r"))
    assert code == 0, err
    assert "20 cell" in out and len(calls) == 2  # 20 cells, 2 distinct networks


def test_dry_run_reports_missing_data_without_failing(cli, tmp_path) -> None:
    spec = _write(
        tmp_path,
        """
    name: nodata
    base: {model: {width: 4}, data: {name: camvid, root: /no/such/camvid}}
    grid:
      model.arch: [unet, aspp_unet]
    """,
    )
    code, out, err = cli("sweep", str(spec), "--dry-run", "--results", str(tmp_path / "r"))
    assert code == 0, err
    assert "models: all 2 built on the meta device" in out
    assert "data: 2 cell(s) lack their data" in out and "cells 0, 1: " in out and "/no/such/camvid" in out
    assert not (tmp_path / "r").exists()


def test_unknown_reference_table_is_named_with_the_allowed_ones(cli, tmp_path) -> None:
    spec = _write(tmp_path, "name: ref\nreference: [asppunet_table1, asppunet_tabel3]\n")
    code, _, err = cli("sweep", str(spec), "--dry-run")
    assert code == 2 and "Traceback" not in err
    assert "reference 'asppunet_tabel3' is not a published table (did you mean 'asppunet_table3'" in err, err
    assert "dualaspp_table1" in err


def test_dry_run_validates_weights_names_offline(cli, tmp_path) -> None:
    """Weights are checked by name (and against num_classes) without fetching any checkpoint."""
    spec = _write(
        tmp_path,
        """
    name: weights
    base:
      model: {arch: tv_deeplabv3_resnet50}
      data: {name: camvid, root: /no/camvid, void_as_class: true}
    grid:
      model.weights: [null, DeepLabV3_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1]
    """,
    )
    code, out, err = cli("sweep", str(spec), "--dry-run", "--results", str(tmp_path / "r"))
    assert code == 2 and "Traceback" not in err and "Downloading" not in err
    bad = [ln for ln in err.splitlines() if ln.startswith("  ")]
    assert len(bad) == 1 and "cell 1 " in bad[0] and "set num_classes=21" in bad[0], err
    spec.write_text(spec.read_text().replace("null, ", "").replace("COCO_WITH_VOC_LABELS_V1", "COCO_V2"))
    code, out, err = cli("sweep", str(spec), "--dry-run", "--results", str(tmp_path / "r"))
    assert code == 2 and "are not torchvision weights" in err and "COCO_WITH_VOC_LABELS_V1" in err


def test_a_signal_before_training_started_is_logged(tmp_path) -> None:
    """Slurm may signal up to 60 s early: the job can be hit while importing, before a trainer
    exists. Nothing is checkpointed, and the run's log says why."""
    import submitit

    from bench.launch import RunJob

    out = tmp_path / "run"
    out.mkdir()
    again = RunJob(1).checkpoint({"model": {}}, str(out))
    assert isinstance(again, submitit.helpers.DelayedSubmission)
    assert "before training started: nothing to checkpoint" in (out / "train.log").read_text()
    assert sorted(p.name for p in out.iterdir()) == ["train.log"]
