"""Run identity (bench/configure/identity.py): two spellings of one network and protocol are one run,
across architecture names too; resolution is idempotent; how often a run is observed is not another
experiment."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.configure.config import RunConfig, validate
from bench.configure.identity import resolve, run_id
from bench.sweep import expand_sweep, load_sweep
from tests.fixtures import write_spec


def test_equivalent_spellings_are_one_run(tmp_path) -> None:
    """Defect: rates [null, default] x skip [null, true] gave four run_ids for one network."""
    spec = write_spec(
        tmp_path,
        """
        name: same
        base: {model: {arch: aspp_unet, width: 4}, data: {count: 8, size: [32, 32]}}
        grid:
          model.rates: [null, [3, 6, 9, 12]]
          model.skip: [null, true]
        """,
    )
    ex = expand_sweep(load_sweep(spec))
    assert len(ex.cells) == 1 and ex.duplicates == {1: 0, 2: 0, 3: 0}
    (note,) = ex.notes()
    assert "grid cells 1, 2, 3 are the same experiment as cell 0" in note and ex.cells[0].run_id in note


@pytest.mark.parametrize(
    "a, b",
    [
        ({}, {"model": {"num_classes": 6}}),  # data-derived class count
        ({}, {"loss": {"ignore_index": 255}}),  # data-derived ignore label
        ({}, {"optim": {"momentum": 0.5}}),  # Adam takes no momentum
        ({"optim": {"schedule": "cosine"}}, {"optim": {"schedule": "cosine", "power": 2.0}}),  # power is poly's
        ({"model": {"context": "none"}}, {"model": {"context": "none", "rates": [6, 12]}}),  # none ignores rates
        ({"model": {"arch": "icnet"}}, {"model": {"arch": "icnet", "rates": [1, 2]}}),  # ppm ignores rates
        ({"model": {"arch": "deeplabv3"}}, {"model": {"arch": "deeplabv3", "image_pool": True}}),  # aspp default
        ({"loss": {"name": "weighted_ce"}}, {"loss": {"name": "weighted_ce", "class_weights": "median_freq"}}),
        ({"train": {"iters": 10}}, {"train": {"iters": 10, "epochs": 3}}),  # epochs unused with iters
        ({}, {"train": {"device": "cpu"}}),  # where it runs is not what it is
        ({}, {"profile": {"input": [3, 64, 64]}}),  # the profile input defaults to 3 x data.size
        ({"data": {"name": "camvid", "root": "x"}}, {"data": {"name": "camvid", "root": "x", "void_as_class": False}}),
        ({"model": {"arch": "atrous_unet"}}, {"model": {"arch": "aspp_unet", "context": "none"}}),  # one network
        (
            {"model": {"arch": "atrous_unet", "width": 8, "skip": False, "down_dilation": 3}},
            {"model": {"arch": "aspp_unet", "context": "none", "width": 8, "skip": False, "down_dilation": 3}},
        ),
    ],
)
def test_two_spellings_hash_alike(a: dict, b: dict) -> None:
    assert run_id(validate(a, source="a")) == run_id(validate(b, source="b"))


def test_resolution_is_idempotent_and_different_experiments_differ() -> None:
    for arch in ("aspp_unet", "unet", "deeplabv3plus", "dual_aspp", "icnet", "aticnet", "resnet_aspp"):
        r = resolve(RunConfig.model_validate({"model": {"arch": arch}}))
        assert resolve(r) == r
        assert run_id(resolve(RunConfig.model_validate(json.loads(r.model_dump_json())))) == run_id(r)
    base = run_id(RunConfig())
    assert run_id(RunConfig.model_validate({"train": {"seed": 1}})) != base
    assert run_id(RunConfig.model_validate({"model": {"rates": [6, 12, 18, 24]}})) != base
    assert run_id(RunConfig.model_validate({"optim": {"name": "sgd"}})) != base


def test_one_network_under_two_architecture_names_is_one_run() -> None:
    """Defect: aspp_unet with context none builds atrous_unet, yet the two were two runs (two
    run_ids, the smoke grid's two cells with the same mIoU to the bit). The resolved config names
    the simpler architecture; a knob only one of them takes keeps them apart."""
    r = resolve(RunConfig.model_validate({"model": {"arch": "aspp_unet", "context": "none", "width": 8}}))
    assert r.model.arch == "atrous_unet" and r.model.context is None and r.model.width == 8
    assert resolve(r) == r
    other = RunConfig.model_validate({"model": {"arch": "aspp_unet", "context": "aspp"}})
    assert resolve(other).model.arch == "aspp_unet"
    smoke = expand_sweep(load_sweep(Path(__file__).resolve().parents[1] / "ablations" / "smoke.yaml"))
    ((dup, first),) = smoke.duplicates.items()
    cells = {c.index: c for c in smoke.cells}
    assert cells[first].varying["model.arch"] == "atrous_unet" and dup not in cells


def test_how_often_a_run_is_evaluated_or_checkpointed_is_not_another_experiment(tmp_path) -> None:
    """Evaluation and checkpoints do not touch the trained weights (checked: bit-equal weights and
    losses for eval_every 1 and 6), so they are not part of the identity, like train.device."""
    from bench.configure.config import load_run_config
    from bench.configure.identity import config_id

    base = load_run_config(None, ["model.arch=aspp_unet"])
    other = load_run_config(None, ["model.arch=aspp_unet", "train.eval_every=7", "train.checkpoint_every=3"])
    assert run_id(base) == run_id(other) and config_id(base) == config_id(other)
    assert run_id(base) != run_id(load_run_config(None, ["model.arch=aspp_unet", "train.epochs=3"]))


ROOT = Path(__file__).resolve().parents[1]


def test_committed_run_folders_are_named_by_their_configs_run_id() -> None:
    """Every run folder the repository ships is named by the run_id of its own config.yaml, so a
    change to identity that would rename runs already written fails here first."""
    import yaml

    folders = sorted(p.parent for p in (ROOT / "results").glob("*/*/config.yaml"))
    # the repository ships the finished runs of its long experiment (results/asppunet_claim: config.yaml
    # and result.json of each), so this holds on a fresh clone, not only where runs were left behind
    assert len(folders) >= 9, f"{len(folders)} run folders under {ROOT / 'results'}"
    for folder in folders:
        cfg = validate(yaml.safe_load((folder / "config.yaml").read_text()), source=str(folder))
        assert run_id(cfg) == folder.name, folder
