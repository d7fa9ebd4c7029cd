"""Every architecture, with each backbone and context it allows, from the registry alone:
a new entry is tested the moment it is registered."""

from __future__ import annotations

import itertools

import pytest
import torch

from bench.errors import UserError
from bench.models import build_model, model_parts
from bench.registry import architectures, backbones, contexts

NUM_CLASSES = 3


def _knobs(arch: str) -> dict:
    return architectures.get(arch).knobs


def _backbones(arch: str) -> list[str | None]:
    if "backbone" not in _knobs(arch):
        return [None]
    return list(architectures.get(arch).meta.get("backbones") or backbones.names())


def _contexts(arch: str) -> list[str | None]:
    return contexts.names() if "context" in _knobs(arch) else [None]


def _light(arch: str) -> str | None:
    allowed = _backbones(arch)
    return next((b for b in ("mobilenet_v3_small", "resnet18") if b in allowed), allowed[0])


def _cases(full: bool) -> list[tuple[str, str | None, str | None]]:
    out: list[tuple[str, str | None, str | None]] = []
    for arch in architectures.names():
        if full:
            out += [(arch, b, c) for b, c in itertools.product(_backbones(arch), _contexts(arch))]
        else:
            default_ctx = _knobs(arch).get("context")
            out += [(arch, b, default_ctx if _contexts(arch)[0] else None) for b in _backbones(arch)]
            out += [(arch, _light(arch), c) for c in _contexts(arch) if c is not None]
    return sorted(set(out), key=str)


def _build(arch: str, backbone: str | None, context: str | None, **extra) -> torch.nn.Module:
    knobs = {"num_classes": NUM_CLASSES, "backbone": backbone, "context": context, **extra}
    if "width" in _knobs(arch):
        knobs.setdefault("width", 16)
    return build_model(arch, **knobs)


def _check_forward_backward(model: torch.nn.Module) -> None:
    x = torch.randn(2, 3, 67, 99, requires_grad=True)  # odd on purpose
    model.train()
    y = model(x)
    outs = y.values() if isinstance(y, dict) else [y]
    for o in outs:
        assert o.shape == (2, NUM_CLASSES, 67, 99)
    sum(o.float().mean() for o in outs).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    assert all(torch.isfinite(g).all() for g in grads if g is not None)
    model.eval()
    with torch.inference_mode():
        y = model(torch.randn(1, 3, 45, 61))
    assert isinstance(y, torch.Tensor) and y.shape == (1, NUM_CLASSES, 45, 61)


@pytest.mark.parametrize(("arch", "backbone", "context"), _cases(full=False), ids=str)
def test_architecture_shapes_and_gradients(arch: str, backbone: str | None, context: str | None) -> None:
    _check_forward_backward(_build(arch, backbone, context))


@pytest.mark.slow
@pytest.mark.parametrize(("arch", "backbone", "context"), _cases(full=True), ids=str)
def test_architecture_full_product(arch: str, backbone: str | None, context: str | None) -> None:
    _check_forward_backward(_build(arch, backbone, context))


@pytest.mark.parametrize("arch", architectures.names())
def test_every_architecture_has_description_paper_and_parts(arch: str) -> None:
    e = architectures.get(arch)
    assert e.description and e.paper
    knobs = e.knobs
    assert "num_classes" in knobs
    parts = model_parts(_build(arch, _light(arch), None))
    assert "backbone" in parts and len(parts) >= 2


@pytest.mark.parametrize("arch", [a for a in architectures.names() if "aux" in _knobs(a)])
def test_aux_head_only_in_training(arch: str) -> None:
    m = _build(arch, _light(arch), None, aux=True)
    y = m.train()(torch.randn(2, 3, 65, 65))
    assert set(y) == {"out", "aux"} and y["aux"].shape == (2, NUM_CLASSES, 65, 65)
    with torch.inference_mode():
        assert isinstance(m.eval()(torch.randn(1, 3, 65, 65)), torch.Tensor)


@pytest.mark.parametrize("arch", [a for a in architectures.names() if "skip" in _knobs(a)])
def test_skip_off_removes_the_skip(arch: str) -> None:
    torch.manual_seed(0)
    on = _build(arch, _light(arch), None, skip=True)
    torch.manual_seed(0)
    off = _build(arch, _light(arch), None, skip=False)
    n_on, n_off = (sum(p.numel() for p in m.parameters()) for m in (on, off))
    assert n_on > n_off
    x = torch.randn(1, 3, 65, 65)
    with torch.inference_mode():
        assert not torch.allclose(on.eval()(x), off.eval()(x))


@pytest.mark.parametrize("arch", [a for a in architectures.names() if "skip" not in _knobs(a)])
def test_skip_on_an_architecture_without_one(arch: str) -> None:
    with pytest.raises(UserError, match=f"'{arch}' has no knob 'skip'"):
        build_model(arch, skip=True)


_EQUALS = [(a.name, target, when) for a in architectures for target, when in a.meta.get("equals", {}).items()]


def test_the_zoo_declares_its_one_known_equivalence() -> None:
    assert ("aspp_unet", "atrous_unet", {"context": "none"}) in _EQUALS


@pytest.mark.parametrize(("arch", "target", "when"), _EQUALS, ids=lambda v: str(v))
def test_a_declared_equivalence_builds_the_same_network(arch: str, target: str, when: dict) -> None:
    """identity collapses the two into one run: same parameters, same outputs, for the same seed."""
    for extra in ({}, {"width": 8, "skip": False}):
        torch.manual_seed(0)
        a = build_model(arch, num_classes=NUM_CLASSES, **when, **extra)
        torch.manual_seed(0)
        b = build_model(target, num_classes=NUM_CLASSES, **extra)
        sa, sb = a.state_dict(), b.state_dict()
        assert list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)
        x = torch.randn(2, 3, 37, 45)
        a.train()(x).sum().backward()
        b.train()(x).sum().backward()
        with torch.inference_mode():
            assert torch.equal(a.eval()(x), b.eval()(x))
        assert all(torch.equal(pa.grad, pb.grad) for pa, pb in zip(a.parameters(), b.parameters(), strict=True))


def test_rates_knob_reaches_the_context() -> None:
    m = build_model("deeplabv3", backbone="resnet18", rates=(3, 6, 9, 12), width=16)
    assert [c[0].dilation[0] for c in m.context.convs[1:-1]] == [3, 6, 9, 12]
    m = build_model("dual_aspp", backbone="mobilenet_v3_small", rates=(2, 4), rates2=(5, 7, 9, 11))
    assert len(m.aspp1.convs) == 1 + 2 + 1 and len(m.aspp2.convs) == 1 + 4 + 1


def test_unsupported_backbone_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.registry import Entry

    base = architectures.get("deeplabv3")
    only_resnets = Entry("resnet_only", base.builder, "test double", "", {"backbones": ("resnet18", "resnet34")})
    monkeypatch.setitem(architectures._entries, "resnet_only", only_resnets)
    with pytest.raises(UserError) as e:
        build_model("resnet_only", backbone="mobilenet_v2")
    assert "model.backbone='mobilenet_v2'" in str(e.value) and "resnet18, resnet34" in str(e.value)


@pytest.mark.parametrize("arch", architectures.names())
def test_every_architecture_declares_paper_and_cpu_presets(arch: str) -> None:
    presets = architectures.get(arch).meta["presets"]
    assert set(presets) == {"paper", "cpu"}
    for knobs in presets.values():
        architectures.check_kwargs(arch, knobs)  # only knobs the builder takes
        assert "num_classes" in knobs


def test_frozen_backbone_keeps_its_statistics_while_the_head_trains() -> None:
    """deeplabv3(freeze_backbone=True), the multi-backbone report's transfer setting: the backbone
    has no gradients and its batch norm stays in eval mode through model.train(); the head trains."""
    import torch

    from bench.models import build_model

    m = build_model("deeplabv3", num_classes=3, backbone="resnet18", width=16, freeze_backbone=True)
    m.train()
    enc = m.backbone
    assert not any(p.requires_grad for p in enc.parameters())
    assert all(not mod.training for mod in enc.modules())
    assert any(p.requires_grad for p in m.head.parameters()) and m.head.training
    bn = next(mod for mod in enc.modules() if isinstance(mod, torch.nn.BatchNorm2d))
    before = bn.running_mean.clone()
    m(torch.randn(2, 3, 64, 64))
    assert torch.equal(bn.running_mean, before)  # the statistics did not move
    m.eval()
    m.train()
    assert not enc.training and m.head.training
