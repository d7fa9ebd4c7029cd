"""Own code against published references: torchvision's models and the papers' counts."""

from __future__ import annotations

import pytest
import torch
import torchvision

from bench.models import build_model
from bench.models.deeplab import from_torchvision_deeplabv3


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_deeplabv3_reproduces_torchvision_deeplabv3_resnet50() -> None:
    ours = build_model("deeplabv3", backbone="resnet50", output_stride=8, rates=(12, 24, 36), aux=True, num_classes=21)
    ref = torchvision.models.segmentation.deeplabv3_resnet50(
        weights=None, weights_backbone=None, aux_loss=True, num_classes=21
    )
    assert n_params(ours) == n_params(ref) == 42_004_074
    ours.load_state_dict(from_torchvision_deeplabv3(ref.state_dict()), strict=True)
    ours.eval(), ref.eval()
    x = torch.randn(2, 3, 97, 129)
    with torch.inference_mode():
        assert torch.allclose(ours(x), ref(x)["out"], atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("arch", "expected"),
    [  # torchvision's published num_params (weights metadata), 21 classes, aux heads on
        ("tv_deeplabv3_resnet50", 42_004_074),
        ("tv_deeplabv3_mobilenet_v3_large", 11_029_328),
        ("tv_fcn_resnet50", 35_322_218),
        ("tv_lraspp_mobilenet_v3_large", 3_221_538),
    ],
)
def test_torchvision_references_match_published_params(arch: str, expected: int) -> None:
    assert n_params(build_model(arch, num_classes=21)) == expected


@pytest.mark.parametrize(
    ("arch", "paper_m"),
    [  # Xiao et al.: MobileNetV2, 19 classes; DeepLabV3+ Table 1, Dual ASPP Table 3
        ("deeplabv3plus", 2.72),
        ("dual_aspp", 2.16),
    ],
)
def test_dual_aspp_paper_mobilenet_v2_params(arch: str, paper_m: float) -> None:
    m = build_model(arch, backbone="mobilenet_v2", num_classes=19)
    assert abs(n_params(m) / 1e6 - paper_m) < 0.01  # the paper rounds to 0.01 M


def test_fcn_baseline_matches_table_1() -> None:
    """Xiang et al., Table 1, 34 classes (Cityscapes ids 0..33, the report's setting).
    conv k3 (w + bias) + BN (2c):
      3->32: 864+32+64 = 960          32->64: 18432+64+128 = 18624
      64->128: 73728+128+256 = 74112  128->256: 294912+256+512 = 295680
      256->512: 1179648+512+1024 = 1181184
    transposed k3 + BN:
      512->512: 2359296+512+1024 = 2360832   512->256: 1179648+256+512 = 1180416
      256->128: 294912+128+256 = 295296      128->64: 73728+64+128 = 73920
      64->32: 18432+32+64 = 18528
    1x1 classifier 32->34: 1088+34 = 1122
    total 5,500,674"""
    assert n_params(build_model("fcn_baseline", num_classes=34)) == 5_500_674


def test_unet_width_64_matches_table_2() -> None:
    """Xiang et al., Table 2 (the modified U-Net), width 64, 34 classes.
    conv(i,o) = 9*i*o + o (bias), bn(c) = 2c.
    block 1: conv(3,64) + conv(64,64) + bn(64) (no BN after the first conv)  = 38,848
    blocks 2-5: conv(i,o)+bn(o)+conv(o,o)+bn(o) for 64->128..512->1024      = 18,812,160
    decoder x4 (1024->512 .. 128->64): deconv conv(i,o)+bn(o), then
      conv(2o,o)+bn(o)+conv(o,o)+bn(o)                                       = 15,675,840
    classifier 1x1 64->34: 2176 + 34                                         = 2,210
    total 34,529,058"""
    assert n_params(build_model("unet", num_classes=34, width=64)) == 34_529_058


def test_aspp_unet_with_no_context_is_atrous_unet() -> None:
    torch.manual_seed(0)
    a = build_model("atrous_unet", num_classes=5, width=8)
    torch.manual_seed(0)
    b = build_model("aspp_unet", num_classes=5, width=8, context="none")
    assert n_params(a) == n_params(b)
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 3, 37, 53)
    with torch.inference_mode():
        assert torch.equal(a.eval()(x), b.eval()(x))


def test_aspp_unet_pyramid_goes_straight_to_the_classes() -> None:
    """AsppUNet Fig. 4: four atrous 3x3 convs (rates 3,6,9,12) from the 64-channel decoder
    output, each to num_classes, concatenated, then the output 1x1 (no extra classifier)."""
    m = build_model("aspp_unet", num_classes=12, width=64)
    assert [b.dilation[0] for b in m.context.branches] == [3, 6, 9, 12]
    assert all(b.in_channels == 64 and b.out_channels == 12 for b in m.context.branches)
    assert m.context.project.in_channels == 48 and isinstance(m.head, torch.nn.Identity)
    # the extra cost over atrous_unet is exactly the pyramid minus the replaced 1x1 classifier
    pyramid = 4 * (9 * 64 * 12 + 12) + (48 * 12 + 12)
    assert n_params(m) - n_params(build_model("atrous_unet", num_classes=12, width=64)) == pyramid - (64 * 12 + 12)


def test_atrous_unet_replaces_pools_by_stride_2_dilation_2_convs() -> None:
    m = build_model("atrous_unet", width=8)
    assert not any(isinstance(x, torch.nn.MaxPool2d) for x in m.modules())
    convs = [d[0] for d in m.downs]
    assert [(c.stride, c.dilation, c.in_channels) for c in convs] == [((2, 2), (2, 2), 8 * 2**i) for i in range(4)]


def test_aticnet_drops_one_stage5_block_and_adds_atrous_levels() -> None:
    ic = build_model("icnet", backbone="resnet18")
    at = build_model("aticnet", backbone="resnet18")
    assert len(at.deep[1]) == len(ic.deep[1]) - 1
    assert [p[0].dilation[0] for p in at.context.pre] == [2, 4, 8, 12]
    assert at.context.bins == ic.context.bins == (1, 2, 3, 6)
    calls = []
    at.shared.register_forward_hook(lambda mod, inp, out: calls.append(tuple(inp[0].shape[-2:])))
    with torch.inference_mode():
        at.eval()(torch.randn(1, 3, 96, 128))
    assert calls == [(48, 64), (24, 32)]  # one module, the 1/2 then the 1/4 resolution input


def test_every_shipped_published_table_reads_as_a_table() -> None:
    """bench/references: the papers' tables a sweep may cite (`reference:`), each readable with rows."""
    from bench.references import names
    from bench.report import reference_table

    shipped = names()
    assert {"asppunet_table1", "asppunet_table3", "deeplabv3_report_table1", "dualaspp_table1"} <= set(shipped)
    for name in shipped:
        table = reference_table(name)
        assert len(table) >= 1 and len(table.columns) >= 2, name
