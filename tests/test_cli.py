from __future__ import annotations

import json
import shutil
import subprocess

import pytest

import bench.data  # noqa: F401  (registers the datasets)
import bench.losses  # noqa: F401  (registers the losses)
import bench.optim  # noqa: F401  (registers the optimisers and schedules)
from bench.registry import architectures, backbones, contexts, datasets, losses, optimizers, schedulers


def test_models_lists_every_registered_name(cli) -> None:
    code, out, _ = cli("models")
    assert code == 0
    for name in backbones.names() + contexts.names() + architectures.names() + datasets.names() + losses.names():
        assert f"  {name} " in out or f"  {name}\n" in out, name
    assert "datasets (" in out and "losses (" in out


def test_models_takes_a_name_pattern(cli) -> None:
    code, out, _ = cli("models", "deeplab*", "--json")
    assert code == 0
    names = {r["name"] for r in json.loads(out)}
    assert names == {"deeplabv3", "deeplabv3plus"}
    code, _, err = cli("models", "nothing-like-this*")
    assert code == 2 and "no registered name matches 'nothing-like-this*'" in err


def test_models_json_has_descriptions_papers_and_knobs(cli) -> None:
    code, out, _ = cli("models", "--json")
    assert code == 0
    rows = json.loads(out)
    by = {(r["kind"], r["name"]): r for r in rows}
    assert len(rows) == sum(map(len, (backbones, contexts, architectures, datasets, losses, optimizers, schedulers)))
    r = by[("architecture", "dual_aspp")]
    assert r["knobs"]["rates"] == [6, 12, 18] and r["knobs"]["rates2"] == [12, 24, 36]
    assert "Xiao, Wang, Zhao and Chen" in r["paper"]
    assert all(r["description"] for r in rows)


def test_profile_params_by_part(cli) -> None:
    code, out, _ = cli(
        "profile",
        "deeplabv3",
        "--input",
        "3x65x97",
        "--set",
        "model.backbone=resnet18",
        "--set",
        "model.num_classes=5",
        "--json",
    )
    assert code == 0
    rec = json.loads(out)
    assert rec["params"] == sum(rec["params_by_part"].values())
    assert set(rec["params_by_part"]) == {"backbone", "context", "head"}
    assert rec["params_by_part"]["backbone"] == 11_176_512  # torchvision resnet18 without fc


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["profile", "deeplabv4", "--input", "3x64x64"],
            ["unknown architecture 'deeplabv4'", "did you mean 'deeplabv3'"],
        ),
        (
            ["profile", "deeplabv3", "--input", "3x64x64", "--set", "model.rates=[]"],
            ["model.rates=[]", "at least one dilation rate"],
        ),
        (
            ["profile", "deeplabv3", "--input", "3x64x64", "--set", "model.rates=[0,6]"],
            ["model.rates=[0, 6]", "positive integer"],
        ),
        (["profile", "dual_aspp", "--input", "3x64x64", "--set", "model.rates2=[-3]"], ["model.rates2=[-3]"]),
        (
            ["profile", "deeplabv3", "--input", "3x64x64", "--set", "model.output_stride=12"],
            ["model.output_stride=12", "8, 16, 32"],
        ),
        (
            ["profile", "deeplabv3", "--input", "3x64x64", "--set", "model.skip=true"],
            ["'deeplabv3' has no knob 'skip'", "deeplabv3plus", "drop 'skip'"],
        ),
        (
            ["profile", "deeplabv3", "--input", "3x64x64", "--set", "model.backbone=resnet51"],
            ["unknown backbone 'resnet51'", "did you mean 'resnet50'", "resnet101"],
        ),
        (
            ["profile", "deeplabv3", "--input", "3x64x64", "--set", "model.context=asp"],
            ["unknown context 'asp'", "did you mean 'aspp'"],
        ),
        (
            ["profile", "deeplabv3", "--input", "3x64x64", "--set", "model.rate=[3]"],
            ["'model.rate' is not a config field", "did you mean 'model.rates'"],
        ),
        (
            ["profile", "deeplabv3", "--input", "3x64x64", "--set", "model.weights=ResNet50_Weights.V7"],
            ["weights 'ResNet50_Weights.V7'", "ResNet50_Weights.IMAGENET1K_V2"],
        ),
        (
            ["profile", "tv_deeplabv3_resnet50", "--input", "3x64x64", "--set", "model.backbone=resnet18"],
            ["has no knob 'backbone'"],
        ),
        (["profile", "deeplabv3", "--input", "3x64"], ["--input '3x64'", "CxHxW"]),
        (
            ["profile", "icnet", "--input", "3x64x64", "--set", "model.backbone=mobilenet_v2"],
            ["model.backbone='mobilenet_v2'", "supports the backbones resnet18, resnet34, resnet50, resnet101"],
        ),
        (["profile", "icnet", "--input", "3x64x64", "--set", "model.skip=true"], ["'icnet' has no knob 'skip'"]),
        (["profile", "deeplabv3", "--input", "3x64x64", "--set", "model.rates"], ["expected key=value"]),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_bad_input_exits_2_with_a_clear_message(cli, args: list[str], expected: list[str]) -> None:
    code, out, err = cli(*args)
    assert code == 2
    assert "Traceback" not in err and out == ""
    for fragment in expected:
        assert fragment in err, (fragment, err)


@pytest.mark.skipif(shutil.which("aspp-bench") is None, reason="package not installed")
def test_console_script() -> None:
    ok = subprocess.run(["aspp-bench", "models"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and "dual_aspp" in ok.stdout
    bad = subprocess.run(
        ["aspp-bench", "profile", "nope", "--input", "3x8x8"], capture_output=True, text=True, timeout=120
    )
    assert bad.returncode == 2 and "unknown architecture 'nope'" in bad.stderr and "Traceback" not in bad.stderr
