from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fixtures import make_camvid, tiny_sets

TINY = tiny_sets()


def test_train_writes_run_folder_and_is_idempotent(cli, tmp_path) -> None:
    out = tmp_path / "run"
    code, stdout, err = cli("train", "--out", str(out), "--set", "train.epochs=1", *TINY)
    assert code == 0, err
    for f in ("config.yaml", "result.json", "checkpoint.pt", "train.log"):
        assert (out / f).is_file(), f
    r = json.loads((out / "result.json").read_text())
    assert r["status"] == "done" and r["config"]["model"]["num_classes"] == 6
    assert set(r["metrics"]["iou"]) == {"background", "disk", "square", "triangle", "ring", "cross"}
    assert r["profile"]["params"] > 0 and r["profile"]["gmacs"] > 0 and r["train"]["images_per_s"] > 0
    assert "size_iou" in r["metrics"] and r["env"]["torch"]
    prof = r["profile"]  # the receptive fields, with the profile: theoretical at 32x32, effective over val images
    assert prof["rf_local_height"] > 1 and 0 < prof["rf_coverage"] <= 1 and prof["erf_images"] == 16
    assert 0 < prof["erf_r50"] <= prof["erf_r90"] <= prof["erf_r99"] and "rf_error" not in prof
    mtime = (out / "result.json").stat().st_mtime_ns
    code, stdout, _ = cli("train", "--out", str(out), "--set", "train.epochs=1", *TINY)
    assert code == 0 and "finished" in stdout and (out / "result.json").stat().st_mtime_ns == mtime


def test_evaluate_a_checkpoint(cli, tmp_path) -> None:
    out = tmp_path / "run"
    assert cli("train", "--out", str(out), "--set", "train.epochs=1", *TINY)[0] == 0
    code, stdout, err = cli("evaluate", str(out / "checkpoint.pt"), "--set", "data.split=test", "--json")
    assert code == 0, err
    r = json.loads(stdout)
    assert r["data"]["split"] == "test" and 0 <= r["metrics"]["miou"] <= 1
    code, _, err = cli("evaluate", str(out / "checkpoint.pt"), "--set", "model.width=8")
    assert code == 2 and "data.* overrides only" in err


def test_missing_data_fails_before_training(cli, tmp_path) -> None:
    out = tmp_path / "run"
    code, _, err = cli("train", "--out", str(out), "--set", "data.name=camvid", "--set", "data.root=/no/such/camvid")
    assert code == 2 and "/no/such/camvid" in err and "SegNet" in err and "Traceback" not in err
    assert not (out / "result.json").exists() and not (out / "checkpoint.pt").exists()


def test_train_on_camvid_fixture(cli, tmp_path) -> None:
    root = make_camvid(tmp_path / "camvid")
    out = tmp_path / "run"
    code, _, err = cli(
        "train",
        "--out",
        str(out),
        "--set",
        "data.name=camvid",
        "--set",
        f"data.root={root}",
        "--set",
        "data.size=[24,32]",
        "--set",
        "data.batch_size=2",
        "--set",
        "model.width=4",
        "--set",
        "train.epochs=1",
        "--set",
        "profile.latency=false",
        "--set",
        "loss.name=weighted_ce",
    )
    assert code == 0, err
    r = json.loads((out / "result.json").read_text())
    assert r["config"]["loss"]["ignore_index"] == 11 and r["config"]["model"]["num_classes"] == 11
    assert "Void" not in r["metrics"]["iou"]


def test_sigkill_then_same_command_resumes_and_ends_with_one_result(tmp_path) -> None:
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "bench.cli",
        "train",
        "--out",
        str(out),
        "--set",
        "train.epochs=400",
        "--set",
        "train.eval_every=1000",
        "--set",
        "train.checkpoint_every=5",
        *TINY,
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    ckpt = out / "checkpoint.pt"
    deadline = time.time() + 120
    while time.time() < deadline and not ckpt.is_file():
        time.sleep(0.2)
    assert ckpt.is_file(), "no checkpoint within 120 s"
    time.sleep(0.3)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not (out / "result.json").exists()
    # SIGKILL inside torch.save leaves atomic_path's temporary behind (no handler runs; CI saw one):
    # plant one so the clean-up is checked on every run, not only when the kill lands mid-write.
    (out / ".checkpoint.pt.killed0.tmp").write_bytes(b"half a checkpoint")
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    log = (out / "train.log").read_text()
    assert "resumed from" in log
    r = json.loads((out / "result.json").read_text())
    assert r["status"] == "done" and r["train"]["epochs"] == 400 and r["train"]["iterations"] == 1600
    if importlib.util.find_spec("tensorboard"):  # the resumed writer purges the epochs it redoes: one point each
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        acc = EventAccumulator(str(out / "tensorboard"))
        acc.Reload()
        assert [e.step for e in acc.Scalars("train/loss")] == list(range(1, 401))
    assert sorted(p.name for p in out.iterdir()) == [
        ".lock",
        "checkpoint.pt",
        "config.yaml",
        "result.json",
        *(["tensorboard"] if importlib.util.find_spec("tensorboard") else []),
        "train.log",
    ]


@pytest.mark.parametrize(
    ("sets", "fragment"),
    [
        (["train.amp=fp16"], "train.amp=fp16 needs CUDA"),
        (["loss.name=dicee"], "unknown loss 'dicee'"),
        (["optim.name=rmsprop"], "optim.name='rmsprop'"),
        (["model.num_classes=3"], "model.num_classes=3: dataset 'synthetic' has 6 classes"),
    ],
)
def test_train_bad_input(cli, tmp_path, sets: list[str], fragment: str) -> None:
    args = [a for s in sets for a in ("--set", s)]
    code, _, err = cli("train", "--out", str(tmp_path / "r"), *args, *TINY)
    assert code == 2 and fragment in err and "Traceback" not in err
    assert not (Path(tmp_path / "r") / "result.json").exists()


def test_same_seed_same_run_in_fresh_processes(tmp_path) -> None:
    """train.seed fixes the initial weights too: two processes (whose global RNG starts
    differently) train the same config to the same weights and metrics; another seed differs."""
    import torch

    def run(name: str, seed: int) -> tuple[dict, dict]:
        out = tmp_path / name
        cmd = [sys.executable, "-m", "bench.cli", "train", "--out", str(out), *TINY, "--set", "train.epochs=1"]
        r = subprocess.run([*cmd, "--set", f"train.seed={seed}"], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        result = json.loads((out / "result.json").read_text())
        return result["metrics"], torch.load(out / "checkpoint.pt", weights_only=False)["model"]

    (m1, w1), (m2, w2), (_, w3) = run("a", 0), run("b", 0), run("c", 1)
    assert m1["miou"] == m2["miou"] and m1["pixel_acc"] == m2["pixel_acc"]
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    assert not all(torch.equal(w1[k], w3[k]) for k in w1)


def test_evaluate_a_checkpoint_scores_in_the_memory_format_it_trained_in(cli, tmp_path, monkeypatch) -> None:
    """The trainer's evaluation runs channels_last where train.channels_last says so; `evaluate
    CHECKPOINT` did not pass it, so a run's own score and its re-evaluation took other kernels."""
    import bench.run.evaluate

    out = tmp_path / "run"
    assert cli("train", "--out", str(out), "--set", "train.epochs=1", "train.channels_last=true", *TINY)[0] == 0
    seen: dict = {}
    real = bench.run.evaluate.evaluate_model

    def spy(model, loader, **kw):  # type: ignore[no-untyped-def]
        seen.update(kw)
        return real(model, loader, **kw)

    monkeypatch.setattr(bench.run.evaluate, "evaluate_model", spy)
    r = bench.run.evaluate.evaluate_checkpoint(out / "checkpoint.pt")
    assert seen.get("channels_last") is True
    ran = json.loads((out / "result.json").read_text())
    assert r["metrics"]["miou"] == ran["metrics"]["miou"]  # the same split, weights and kernels: the same score


def test_train_resolves_its_config_once(cli, tmp_path, monkeypatch) -> None:
    """`train` resolves the config to check the folder, and the runner takes it as resolved."""
    import bench.commands.runs
    import bench.run.runner
    from bench.configure.identity import resolve
    from tests.fixtures import train_tiny

    calls: list[int] = []

    def counted(cfg):  # noqa: ANN001, ANN202
        calls.append(1)
        return resolve(cfg)

    monkeypatch.setattr(bench.commands.runs, "resolve", counted)
    monkeypatch.setattr(bench.run.runner, "resolve", counted)
    code, _, err = train_tiny(cli, tmp_path / "run")
    assert code == 0, err
    assert len(calls) == 1
