"""Precision spelled one way (bench/precision.py): train.amp and profile --dtype take the same
names, the first spelling `none` is read as fp32 and keeps its run_id, and autocast follows."""

from __future__ import annotations

import torch

from bench.configure.config import validate
from bench.configure.identity import run_id
from bench.precision import ALIASES, PRECISIONS, canonical
from bench.profile.spec import DTYPES
from bench.run.device import autocast


def test_precision_is_spelled_one_way_for_training_and_profiling() -> None:
    """Defect: `profile --dtype` took fp32/bf16/fp16 while `train.amp` took none/bf16/fp16, so
    `--set train.amp=fp32` was refused. Both now take the one vocabulary of bench.precision; the
    first spelling `none` is still read (configs written before) as fp32, and a run's id is the
    same under either spelling and the one written before the rename."""
    assert tuple(PRECISIONS) == ("fp32", "bf16", "fp16")
    default = validate({}, source="test")
    assert default.train.amp == "fp32"
    spelled = validate({"train": {"amp": "fp32"}}, source="test")
    old = validate({"train": {"amp": "none"}}, source="test")
    assert old.train.amp == "fp32"
    assert run_id(default) == run_id(spelled) == run_id(old)
    assert run_id(validate({"train": {"amp": "bf16"}}, source="test")) != run_id(default)


def test_profile_and_autocast_read_the_same_names() -> None:
    assert list(DTYPES) == list(PRECISIONS)
    assert DTYPES["bf16"] is torch.bfloat16 and DTYPES["fp32"] is torch.float32
    cpu = torch.device("cpu")
    for name in ("fp32", *ALIASES):
        with autocast(cpu, name):
            assert not torch.is_autocast_enabled("cpu")
    with autocast(cpu, "bf16"):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") is torch.bfloat16
    assert canonical("none") == "fp32" and canonical("bf16") == "bf16" and canonical(3) == 3
