"""bench/configure/listings.py: what `aspp-bench config --fields` says of each key."""

from __future__ import annotations

import shlex

import pytest

from bench.configure.config import load_run_config
from bench.configure.identity import resolve
from bench.configure.listings import field_rows
from bench.errors import UserError


@pytest.mark.parametrize("row", field_rows(), ids=lambda r: r["key"])
def test_every_example_is_a_value_the_suite_accepts(row: dict) -> None:
    """The example a newcomer copies resolves as a run config, with the architecture or dataset
    it needs written into it (model.output_stride=4 on aspp_unet was refused)."""
    sets = shlex.split(row["example"].removeprefix("--set "))
    assert any(s.startswith(f"{row['key']}=") for s in sets), row["example"]
    try:
        resolve(load_run_config(None, sets))
    except UserError as e:  # pragma: no cover - the failure message is the point
        pytest.fail(f"{row['key']}: example {row['example']!r} is refused: {e}")


@pytest.mark.parametrize(
    ("key", "want"),
    [
        ("model.output_stride", "model.output_stride=8"),
        ("optim.momentum", "optim.momentum=0.9"),
        ("data.augment.scale", "'data.augment.scale=[0.5, 2.0]'"),
    ],  # fmt: skip
)
def test_examples_are_values_a_paper_uses(key: str, want: str) -> None:
    """Valid is not enough: output stride 4, momentum 0.01 and scales of 1% were the examples."""
    row = next(r for r in field_rows() if r["key"] == key)
    assert row["example"].endswith(want), row["example"]
