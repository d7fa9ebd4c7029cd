"""The training fast path (bf16 autocast, channels_last, compile) as config keys a sweep
can cross, with fp32 where it must stay fp32, recorded in every result."""

from __future__ import annotations

import json

import pytest
import torch

from bench.configure.config import load_run_config
from bench.configure.identity import run_id
from tests.fixtures import tiny_sets


def test_new_keys_at_their_defaults_keep_every_earlier_run_id() -> None:
    # ids computed before train.channels_last / train.compile existed (commit 7dfe128)
    assert run_id(load_run_config(None, [])) == "e5173e43e1f7"
    assert run_id(load_run_config(None, ["model.arch=aspp_unet", "train.amp=bf16"])) == "e2e9f65e61a1"
    base = load_run_config(None, ["model.arch=aspp_unet", "train.amp=bf16"])
    fast = load_run_config(None, ["model.arch=aspp_unet", "train.amp=bf16", "train.channels_last=true"])
    compiled = load_run_config(None, ["model.arch=aspp_unet", "train.amp=bf16", "train.compile=true"])
    assert len({run_id(base), run_id(fast), run_id(compiled)}) == 3  # other values: other experiments


def test_a_sweep_crosses_the_fast_path_keys(tmp_path) -> None:
    from bench.sweep import expand, load_sweep

    spec = tmp_path / "s.yaml"
    spec.write_text(
        "name: fast\nbase: {model: {arch: aspp_unet, width: 4}}\n"
        "grid:\n  train.amp: [none, bf16]\n  train.channels_last: [false, true]\nseeds: [0]\n"
    )
    cells = expand(load_sweep(spec), source=str(spec))
    assert len({c.run_id for c in cells}) == 4


def test_bf16_channels_last_training_keeps_fp32_where_it_must(cli, tmp_path) -> None:
    from bench.run.engine import Trainer

    seen: dict[str, torch.dtype] = {}
    orig = Trainer._step

    def spy(self: Trainer, images: torch.Tensor, masks: torch.Tensor) -> float:
        real = self.loss_fn.forward

        def loss_forward(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            seen["logits"] = logits.dtype
            return real(logits, target)

        self.loss_fn.forward = loss_forward
        seen["memory_format_ok"] = images.dim() == 4  # the step converts to channels_last itself
        return orig(self, images, masks)

    Trainer._step = spy
    try:
        out = tmp_path / "run"
        code, _, err = cli(
            "train", "--out", str(out), *tiny_sets("train.epochs=1", "train.amp=bf16", "train.channels_last=true")
        )
    finally:
        Trainer._step = orig
    assert code == 0, err
    assert seen["logits"] == torch.float32  # the loss sees fp32 logits under bf16 autocast
    ck = torch.load(out / "checkpoint.pt", weights_only=False)
    floats = {k: v.dtype for k, v in ck["model"].items() if v.is_floating_point()}
    assert floats and set(floats.values()) == {torch.float32}  # weights and BatchNorm statistics
    assert any(k.endswith("running_mean") for k in floats)
    r = json.loads((out / "result.json").read_text())
    assert r["env"]["train_amp"] == "bf16" and r["env"]["train_channels_last"] is True
    assert r["env"]["train_compile"] is False and 0 <= r["metrics"]["miou"] <= 1


def test_channels_last_model_and_inputs() -> None:
    from torch.utils.data import DataLoader, TensorDataset

    from bench.models import build_model
    from bench.optim import make_optimizer, make_scheduler
    from bench.run.engine import Trainer, TrainSpec

    torch.manual_seed(0)
    model = build_model("aspp_unet", width=4, num_classes=3)
    ds = TensorDataset(torch.randn(4, 3, 32, 32), torch.randint(0, 3, (4, 32, 32)))
    loader = DataLoader(ds, batch_size=2)
    opt = make_optimizer("adam", model.parameters(), lr=1e-3, weight_decay=0.0, momentum=None)
    t = Trainer(model, opt, make_scheduler("none", opt, total_iters=2, power=None), torch.nn.CrossEntropyLoss(),
                loader, loader, spec=TrainSpec(epochs=1, channels_last=True), device=torch.device("cpu"),
                num_classes=3, ignore_index=None, class_names=["a", "b", "c"])  # fmt: skip
    conv = next(m for m in t.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert t.fit()["status"] == "done"


@pytest.mark.slow
def test_compiled_training_runs_and_matches_eager_closely(cli, tmp_path) -> None:
    """torch.compile on the CPU (inductor, needs a C compiler): same run, losses within float noise."""
    hist = {}
    for flag in ("false", "true"):
        out = tmp_path / flag
        code, _, err = cli("train", "--out", str(out), *tiny_sets("train.epochs=2", f"train.compile={flag}"))
        assert code == 0, err
        r = json.loads((out / "result.json").read_text())
        hist[flag] = [h["loss"] for h in r["train"]["history"]]
        assert r["env"]["train_compile"] is (flag == "true")
    assert hist["true"] == pytest.approx(hist["false"], rel=1e-3)


@pytest.mark.gpu
@pytest.mark.parametrize("amp", ["fp16", "bf16"])
def test_fast_path_on_cuda(cli, tmp_path, amp: str) -> None:
    """fp16 with its grad scaler (or bf16), channels_last and compile on CUDA: trains, fp32 checkpoint."""
    out = tmp_path / amp
    sets = ("train.device=cuda", "train.epochs=2", f"train.amp={amp}", "train.channels_last=true", "train.compile=true")
    code, _, err = cli("train", "--out", str(out), *tiny_sets(*sets))
    assert code == 0, err
    r = json.loads((out / "result.json").read_text())
    assert r["env"]["train_amp"] == amp and r["env"]["device"] == "cuda"
    ck = torch.load(out / "checkpoint.pt", weights_only=False, map_location="cpu")
    assert {v.dtype for v in ck["model"].values() if v.is_floating_point()} == {torch.float32}
