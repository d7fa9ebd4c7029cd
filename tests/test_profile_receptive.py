"""Receptive fields have known answers: single and stacked dilated convolutions, a strided stem,
torchvision's ResNet-50 by the closed-form recurrence, ASPP's image pooling as global; the
effective field moves with training."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from bench.models.context import ASPP
from bench.profile.receptive import effective_field, receptive_field
from tests.fixtures import train_tiny


def _stack(rates: tuple[int, ...]) -> nn.Sequential:
    return nn.Sequential(*[nn.Conv2d(2, 2, 3, padding=r, dilation=r) for r in rates])


@pytest.mark.parametrize("d", [1, 2, 3, 6, 12])
def test_one_3x3_conv_at_rate_d_sees_2d_plus_1_with_9_of_its_pixels(d: int) -> None:
    f = receptive_field(_stack((d,)), (2, 64, 64)).field
    assert (f.height, f.width) == (2 * d + 1, 2 * d + 1)
    assert f.coverage == pytest.approx(9 / (2 * d + 1) ** 2) and f.holes == (d > 1) and not f.clipped


def test_a_hybrid_stack_covers_its_field_and_a_common_factor_grids() -> None:
    """Wang et al. 2018: rates (1, 2, 4) fill a 15 px field; (2, 2, 2) reach 13 px with holes."""
    hdc = receptive_field(_stack((1, 2, 4)), (2, 48, 48)).field
    assert (hdc.height, hdc.coverage, hdc.holes) == (15, 1.0, False)
    grid = receptive_field(_stack((2, 2, 2)), (2, 48, 48)).field
    assert grid.height == 13 and grid.holes and grid.coverage == pytest.approx(49 / 169)  # the odd offsets


def test_a_strided_stem_with_max_pooling() -> None:
    """7x7 stride 2, then 3x3 max pooling stride 2: 7 + (3 - 1) * 2 = 11 (the max's window counts,
    not the one pixel its gradient reaches)."""
    stem = nn.Sequential(nn.Conv2d(3, 4, 7, 2, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
    f = receptive_field(stem, (3, 64, 64)).field
    assert (f.height, f.width, f.coverage) == (11, 11, 1.0)


def test_batch_norm_dropout_and_training_mode_do_not_move_it() -> None:
    base = receptive_field(_stack((1, 3)), (2, 40, 40)).field
    noisy = nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), nn.BatchNorm2d(2), nn.Dropout(0.9), nn.ReLU(),
                          nn.Conv2d(2, 2, 3, padding=3, dilation=3), nn.BatchNorm2d(2)).train()  # fmt: skip
    with torch.no_grad():
        noisy[1].running_mean.fill_(5.0)  # a ReLU after this shift would cut every path, were it used
        noisy[1].weight.fill_(-1.0)
    assert receptive_field(noisy, (2, 40, 40)).field == base
    assert noisy.training  # the analysis works on a copy


def test_asp_image_pooling_is_global_and_reported_beside_the_local_field() -> None:
    aspp = ASPP(4, 4, (2,), image_pool=True).eval()
    rf = receptive_field(aspp, (4, 33, 33))
    assert rf.global_pooling and (rf.field.height, rf.field.width) == (33, 33) and rf.field.clipped
    assert (rf.local.height, rf.local.coverage) == (5, pytest.approx(9 / 25))  # the 3x3 at rate 2
    kinds = {name.split(" ", 1)[1]: f for name, f in rf.branches.items()}
    assert kinds["(1x1)"].height == 1 and kinds["(3x3 rate 2)"].height == 5
    assert kinds["(image pooling)"].height == 33  # the image branch alone sees the whole image
    assert rf.record()["rf_global"] and rf.record()["rf_local_height"] == 5


def _recurrence(body: nn.Module) -> int:
    """Araujo et al. (Distill 2019): r += (k - 1) * dilation * jump, jump *= stride, along the main
    path of torchvision's ResNet (stem, then each Bottleneck's 3x3, which carries its stride)."""
    r, jump = 1, 1
    for m in [body.conv1, body.maxpool] + [b.conv2 for layer in (body.layer1, body.layer2, body.layer3,
                                                                 body.layer4) for b in layer]:  # fmt: skip
        k, s, d = (m.kernel_size, m.stride, m.dilation)
        k, s, d = (v if isinstance(v, int) else v[0] for v in (k, s, d))
        r += (k - 1) * d * jump
        jump *= s
    return r


@pytest.mark.slow
@pytest.mark.parametrize("dilate", [(False, False, False), (False, True, True)], ids=["os32", "os8"])
def test_resnet50_through_layer4_matches_the_recurrence(dilate: tuple[bool, bool, bool]) -> None:
    """427 px at output stride 32, and at output stride 8 (dilation 2 and 4 in layer3 and 4) the
    same 427: a dilated 3x3 at half the jump spans what the strided one did."""
    import torchvision

    net = torchvision.models.resnet50(weights=None, replace_stride_with_dilation=list(dilate))
    body = nn.Sequential(*list(net.children())[:-2])
    expected = _recurrence(net)
    assert expected == 427
    f = receptive_field(body, (3, 464, 464), branches=False).field
    assert (f.height, f.width, f.coverage, f.clipped) == (expected, expected, 1.0, False)


def test_the_effective_field_is_inside_the_theoretical_one_and_training_moves_it(cli, tmp_path) -> None:
    out = tmp_path / "run"
    code, _, err = train_tiny(cli, out, "model.arch=aspp_unet", "train.epochs=6", "optim.lr=0.01")
    assert code == 0, err
    ckpt, figure = str(out / "checkpoint.pt"), str(tmp_path / "erf.png")
    code, text, err = cli("receptive", "aspp_unet", "--input", "3x32x32", "--checkpoint", ckpt, "--images", "8",
                          "--json", "--figure", figure)  # fmt: skip
    assert code == 0, err
    r = json.loads(text)
    init, trained = r["effective"]["initialisation"], r["effective"]["trained"]
    assert init["erf_images"] == trained["erf_images"] == 8
    for e in (init, trained):
        assert 0 < e["erf_r50"] <= e["erf_r90"] <= e["erf_r99"] <= math.hypot(32, 32)
    assert (init["erf_r50"], init["erf_r90"]) != (trained["erf_r50"], trained["erf_r90"]), (init, trained)
    assert (tmp_path / "erf.png").stat().st_size > 1000 and (tmp_path / "erf.pdf").is_file()


def test_effective_field_of_a_single_conv_is_its_kernel() -> None:
    """A 3x3 conv at rate 2 with positive weights: every gradient lands on its 9 taps, the nearest
    at distance 0, the farthest at 2 * sqrt(2)."""
    conv = nn.Conv2d(1, 1, 3, padding=2, dilation=2)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    e = effective_field(conv, torch.ones(3, 1, 21, 21))
    assert e.images == 3 and e.centre == (10, 10) and int((e.heat > 0).sum()) == 9
    assert e.r99 == pytest.approx(2 * math.sqrt(2)) and e.r50 == pytest.approx(2.0)


def test_receptive_refuses_bad_input_with_exit_2(cli, tmp_path) -> None:
    code, _, err = cli("receptive", "aspp_unet", "--input", "3x32")
    assert code == 2 and "--input" in err and "Traceback" not in err
    code, _, err = cli("receptive", "aspp_unet", "--input", "3x32x32", "--checkpoint", str(tmp_path / "none.pt"))
    assert code == 2 and "checkpoint not found" in err
    code, _, err = cli("receptive", "aspp_unet", "--set", "model.width=4", "--input", "3x32x32", "--checkpoint",
                       str(tmp_path / "none.pt"))  # fmt: skip
    assert code == 2 and "Traceback" not in err


def test_a_context_modules_own_field_tells_rate_sets_apart() -> None:
    """Inside aspp_unet the network's field covers the whole 64 px input whatever the rates; the
    context module's own field, at the feature map it reads, is where rate sets differ: a
    parallel pyramid spans 2 * max(rate) + 1 with holes; a dense stack by the hybrid rule
    (1, 2, 5, 9) has none, one with a common factor (3, 6, 12, 18) has."""
    from bench.models import build_model

    par = receptive_field(build_model("aspp_unet", width=4, context="aspp_parallel", rates=(3, 6, 9, 12)), (3, 64, 64))
    assert par.local.clipped and par.context is not None and "ParallelASPP" in par.context_name
    assert (par.context.local.height, par.context.local.holes) == (25, True)
    assert [f.height for f in par.context.branches.values()] == [7, 13, 19, 25]
    assert par.record()["rf_context_height"] == 25 and par.record()["rf_context_holes"]
    hdc = receptive_field(build_model("aspp_unet", width=4, context="dense_aspp", rates=(1, 2, 5, 9)), (3, 64, 64))
    common = receptive_field(build_model("aspp_unet", width=4, context="dense_aspp", rates=(3, 6, 12, 18)), (3, 96, 96))
    assert hdc.context.local.height == 35 and not hdc.context.local.holes
    assert common.context.local.height == 79 and common.context.local.holes
    assert receptive_field(build_model("unet", width=4), (3, 32, 32)).context is None


def test_a_sweeps_fields_without_training(cli, tmp_path) -> None:
    """`receptive --sweep`: one theoretical field per configuration (not per seed), a table, a CSV
    and the context-field grid, with nothing trained."""
    import pandas as pd

    spec = tmp_path / "g.yaml"
    spec.write_text("name: g\nbase:\n  model: {arch: aspp_unet, width: 4}\n  data: {size: [40, 40]}\n"
                    "grid:\n  model.rates: [[1, 2, 5], [2, 4, 8]]\n  model.context: [aspp_parallel, dense_aspp]\n"
                    "seeds: [0, 1]\n")  # fmt: skip
    code, out, err = cli("receptive", "--sweep", str(spec), "--out", str(tmp_path / "rep"))
    assert code == 0, err
    assert "4 configurations of 8 cells" in out
    table = pd.read_csv(tmp_path / "rep" / "receptive_fields.csv")
    assert len(table) == 4 and not list(tmp_path.glob("**/result.json"))
    dense = table[table["model.context"] == "dense_aspp"].set_index("model.rates")["rf_context_coverage"]
    assert dense["[1, 2, 5]"] == 1.0 and dense["[2, 4, 8]"] < 1.0  # the hybrid rule fills the holes
    assert (tmp_path / "rep" / "context_fields.png").stat().st_size > 1000
    assert "![context_fields](context_fields.png)" in (tmp_path / "rep" / "README.md").read_text()
    code, _, err = cli("receptive", "aspp_unet", "--sweep", str(spec))
    assert code == 2 and "leave out ARCH" in err
    code, _, err = cli("receptive")
    assert code == 2 and "--sweep" in err
