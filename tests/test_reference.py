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
    [  # 002_1ba08fd2a5cb57da: MobileNetV2, 19 classes; DeepLabV3+ Table 1, Dual ASPP Table 3
        ("deeplabv3plus", 2.72),
        ("dual_aspp", 2.16),
    ],
)
def test_dual_aspp_paper_mobilenet_v2_params(arch: str, paper_m: float) -> None:
    m = build_model(arch, backbone="mobilenet_v2", num_classes=19)
    assert abs(n_params(m) / 1e6 - paper_m) < 0.01  # the paper rounds to 0.01 M
