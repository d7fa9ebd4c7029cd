from __future__ import annotations

import torch
from torch import nn

from bench.run.engine import TrainSpec
from tests.fixtures import tiny_trainer


def test_fit_reports_metrics_and_history(tmp_path) -> None:
    r = tiny_trainer(tmp_path).fit()
    assert r["status"] == "done" and 0 <= r["metrics"]["miou"] <= 1
    assert r["train"]["iterations"] == 8 and r["train"]["epochs"] == 2 and len(r["train"]["history"]) == 2
    assert r["train"]["images_per_s"] > 0 and (tmp_path / "checkpoint.pt").is_file()


def test_resume_at_epoch_boundary_equals_uninterrupted(tmp_path) -> None:
    straight = tiny_trainer(tmp_path / "a", epochs=3, ckpt=False)
    (tmp_path / "a").mkdir()
    straight.fit()
    (tmp_path / "b").mkdir()
    first = tiny_trainer(tmp_path / "b", epochs=3)
    first.total_iters = 4  # stop after the first epoch, as if killed right after its checkpoint
    first.fit()
    resumed = tiny_trainer(
        tmp_path / "b", epochs=3, init_seed=123
    )  # another process state; RNG comes from the checkpoint
    logs: list[str] = []
    resumed.log = logs.append
    r = resumed.fit()
    assert any("resumed from" in m and "epoch 1" in m for m in logs)
    assert r["train"]["iterations"] == 12
    for (n, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), n


def test_checkpoint_on_request_mid_epoch_then_resume(tmp_path) -> None:
    t = tiny_trainer(tmp_path, epochs=1)
    t.request_checkpoint()
    t.total_iters = 2  # leave after two batches of the first epoch
    t.fit()
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert ckpt["state"]["iteration"] >= 1
    t2 = tiny_trainer(tmp_path, epochs=1)
    logs: list[str] = []
    t2.log = logs.append
    r = t2.fit()
    assert r["status"] == "done" and r["train"]["iterations"] == 4
    assert any("resumed" in m for m in logs)


def test_non_finite_loss_marks_the_run_diverged(tmp_path) -> None:
    class Exploding(nn.Module):
        def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            return logits.sum() * float("inf")

    r = tiny_trainer(tmp_path, loss=Exploding()).fit()
    assert r["status"] == "diverged" and r["train"]["iterations"] == 1


def test_signal_mid_step_is_handled_at_the_step_boundary(tmp_path) -> None:
    """A preemption handler that arrives inside a step runs after it, with the counters advanced:
    the checkpoint holds whole optimiser steps and a resumed run ends where an unbroken one does."""
    straight = tiny_trainer(tmp_path / "a", epochs=1, ckpt=False)
    (tmp_path / "a").mkdir()
    straight.fit()

    (tmp_path / "b").mkdir()
    t = tiny_trainer(tmp_path / "b", epochs=1)
    seen: list[tuple[bool, int]] = []

    class Preempted(Exception):
        pass

    def handler() -> None:  # what submitit's handler does: checkpoint, then leave the process
        seen.append((t.in_step, t.state.iteration))
        t.save_checkpoint()
        raise Preempted

    inner_step = t._step

    def step(images, masks):  # the signal lands between backward and the optimiser update of step 2
        if t.state.iteration == 1:
            t.at_step_boundary(handler)
            assert not seen  # deferred, not run inside the step
        return inner_step(images, masks)

    t._step = step
    try:
        t.fit()
    except Preempted:
        pass
    assert seen == [(False, 2)]
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)["state"]["iteration"] == 2
    resumed = tiny_trainer(tmp_path / "b", epochs=1, init_seed=7)
    assert resumed.fit()["train"]["iterations"] == 4
    for (n, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), n


def test_the_train_spec_takes_every_field_it_shares_with_the_train_section() -> None:
    """TrainSpec.from_config copies by field name, so a field added to both is carried, never dropped."""
    import dataclasses

    from bench.configure.config import TrainConfig

    shared = {f.name for f in dataclasses.fields(TrainSpec)} & set(TrainConfig.model_fields)
    assert {"amp", "channels_last", "compile", "epochs", "grad_clip", "iters", "seed"} <= shared
    given = TrainConfig(epochs=None, iters=7, amp="bf16", channels_last=True, compile=True, seed=3, eval_every=2,
                        checkpoint_every=4, grad_clip=0.5)  # fmt: skip
    spec = TrainSpec.from_config(given)
    assert {k: getattr(spec, k) for k in shared} == {k: getattr(given, k) for k in shared}
    assert all(getattr(spec, k) != getattr(TrainSpec(), k) for k in shared)  # each one really set
