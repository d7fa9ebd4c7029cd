"""Forward-pass timings of every registered architecture (pytest-benchmark).

Opt in with `-m speed`; compare runs with pytest-benchmark's own flags:

    python3 -m pytest -m speed tests/speed --benchmark-autosave
    python3 -m pytest -m speed tests/speed --benchmark-compare --benchmark-compare-fail=median:10%

Each model is built at its CPU preset and timed at batch 1, 3x64x96, in eval mode under
inference_mode; the environment (torch, threads, CPU) is in pytest-benchmark's machine info.
"""

from __future__ import annotations

import pytest
import torch

from bench.models import build_model
from bench.registry import architectures

pytestmark = pytest.mark.speed


@pytest.mark.parametrize("arch", architectures.names())
def test_forward(benchmark, arch: str) -> None:
    torch.manual_seed(0)
    model = build_model(arch, **architectures.get(arch).meta["presets"]["cpu"]).eval()
    x = torch.randn(1, 3, 64, 96)
    benchmark.extra_info.update({"input": "1x3x64x96", "threads": torch.get_num_threads(), "torch": torch.__version__})

    def forward() -> torch.Tensor:
        with torch.inference_mode():
            return model(x)

    y = benchmark(forward)
    assert y.shape[-2:] == (64, 96)
