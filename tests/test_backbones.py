from __future__ import annotations

import math

import pytest
import torch

from bench.errors import UserError
from bench.models.backbones import FEATURES
from bench.registry import backbones


@pytest.mark.parametrize("output_stride", [8, 16, 32])
@pytest.mark.parametrize("name", backbones.names())
def test_features_have_declared_channels_and_strides(name: str, output_stride: int) -> None:
    b = backbones.build(name, output_stride=output_stride)
    assert list(b.channels) == list(FEATURES)
    assert [b.strides[f] for f in FEATURES] == [min(s, output_stride) for s in (4, 8, 16, 32)]
    h, w = 67, 99  # odd on purpose
    feats = b(torch.randn(1, 3, h, w))
    assert list(feats) == list(FEATURES)
    for f, y in feats.items():
        assert y.shape[1] == b.channels[f], f
        s = b.strides[f]
        # stride-2 layers round up (padding 1) or down (2x2 pools); never more than one off
        assert abs(y.shape[2] - math.ceil(h / s)) <= 1 and abs(y.shape[3] - math.ceil(w / s)) <= 1, (f, y.shape)


def test_dilation_keeps_parameter_count() -> None:
    n = [sum(p.numel() for p in backbones.build("resnet18", output_stride=s).parameters()) for s in (8, 16, 32)]
    assert n[0] == n[1] == n[2]


def test_resnet50_dilation_matches_torchvision() -> None:
    """Our generic stride->dilation rewrite equals torchvision's replace_stride_with_dilation."""
    import torchvision

    ours = backbones.build("resnet50", output_stride=8)
    ref = torchvision.models.resnet50(replace_stride_with_dilation=[False, True, True])
    for (n1, m1), (n2, m2) in zip(
        ((n, m) for n, m in ours.body.named_modules() if isinstance(m, torch.nn.Conv2d)),
        ((n, m) for n, m in ref.named_modules() if isinstance(m, torch.nn.Conv2d)),
        strict=True,
    ):
        assert n1 == n2
        assert (m1.stride, m1.dilation, m1.padding) == (m2.stride, m2.dilation, m2.padding), n1


@pytest.mark.parametrize("bad", [4, 0, 64, True])
def test_bad_output_stride(bad: int) -> None:
    with pytest.raises(UserError, match="must be one of 8, 16, 32"):
        backbones.build("resnet18", output_stride=bad)


def test_weights_names_are_validated_without_download() -> None:
    with pytest.raises(UserError) as e:
        backbones.build("resnet18", weights="ResNet18_Weights.IMAGENET1K_V9")
    assert "ResNet18_Weights.IMAGENET1K_V1" in str(e.value)


def test_weights_load_through_torchvision_from_its_cache(tmp_path, monkeypatch) -> None:
    """The `weights` knob goes through torchvision's own loader; a checkpoint placed in the
    torch hub cache (what a prior download leaves) is what gets loaded, offline."""
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    w = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    ref = torchvision.models.resnet18()
    with torch.no_grad():
        ref.conv1.weight.fill_(0.25)
    ckpt = tmp_path / "hub" / "checkpoints" / w.url.rsplit("/", 1)[1]
    ckpt.parent.mkdir(parents=True)
    torch.save(ref.state_dict(), ckpt)
    b = backbones.build("resnet18", weights="ResNet18_Weights.IMAGENET1K_V1")
    assert torch.all(b.body.conv1.weight == 0.25)
    b = backbones.build("resnet18", weights="DEFAULT")
    assert torch.all(b.body.conv1.weight == 0.25)
