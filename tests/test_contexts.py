from __future__ import annotations

import pytest
import torch

from bench.errors import UserError
from bench.registry import contexts


@pytest.mark.parametrize("rates", [(1,), (1, 2, 3), (2, 3, 5, 7, 11)])
@pytest.mark.parametrize("name", contexts.names())
def test_context_keeps_shape_and_passes_gradients(name: str, rates: tuple[int, ...]) -> None:
    m = contexts.build(name, in_ch=32, out_ch=16, rates=rates)
    x = torch.randn(2, 32, 17, 23, requires_grad=True)  # odd on purpose
    y = m(x)
    assert y.shape == (2, m.out_channels, 17, 23)
    assert m.out_channels == (32 if name == "none" else 16)
    y.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("name", contexts.names())
@pytest.mark.parametrize("bad", [(), (0, 6), (-1,), (1.5,), "6,12"])
def test_context_rejects_bad_rates(name: str, bad: object) -> None:
    with pytest.raises(UserError, match="rates"):
        contexts.build(name, in_ch=8, out_ch=8, rates=bad)


def test_rates_change_the_receptive_field_not_the_parameters() -> None:
    a = contexts.build("aspp", in_ch=8, out_ch=8, rates=(1, 2, 3))
    b = contexts.build("aspp", in_ch=8, out_ch=8, rates=(6, 12, 18))
    assert sum(p.numel() for p in a.parameters()) == sum(p.numel() for p in b.parameters())
    assert [c[0].dilation for c in b.convs[1:4]] == [(6, 6), (12, 12), (18, 18)]


def test_branch_count_follows_rates_and_image_pool() -> None:
    m = contexts.build("aspp", in_ch=8, out_ch=4, rates=(1, 2, 3, 4, 5), image_pool=False)
    assert len(m.convs) == 6 and m.project[0].in_channels == 6 * 4
    m = contexts.build("aspp_parallel", in_ch=8, out_ch=4, rates=(3, 6, 9, 12))
    assert len(m.branches) == 4 and m.project.in_channels == 16


def test_separable_branches_are_cheaper() -> None:
    def n(name: str) -> int:
        return sum(p.numel() for p in contexts.build(name, in_ch=256, out_ch=64, rates=(6, 12, 18)).parameters())

    assert n("aspp_separable") < n("aspp") / 3


def test_atrous_ppm_one_rate_per_level() -> None:
    m = contexts.build("atrous_ppm", in_ch=16, out_ch=8, rates=(2, 4, 8, 12))
    assert m.bins == (1, 2, 3, 6)
    assert [p[0].dilation for p in m.pre] == [(2, 2), (4, 4), (8, 8), (12, 12)]
    with pytest.raises(UserError, match="one rate per level"):
        contexts.build("atrous_ppm", in_ch=16, out_ch=8, rates=(2, 4), bins=(1, 2, 3))


def test_image_pool_is_rejected_where_there_is_none() -> None:
    with pytest.raises(UserError, match="image_pool"):
        contexts.build("aspp_parallel", in_ch=8, out_ch=4, image_pool=True)
    with pytest.raises(UserError, match="no knob 'image_pool'"):
        contexts.build("dense_aspp", in_ch=8, out_ch=4, image_pool=False)
