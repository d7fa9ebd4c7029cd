"""Every number in a table belongs to exactly the run it names.

Each test here failed on the main before this change (the defect is named in its docstring).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
import torch

from bench.errors import UserError
from bench.launch import cell_states, submit
from bench.sweep import expand, load_sweep
from tests.fixtures import tiny_sets, train_tiny, write_spec

# ----------------------------------------------------------------------------- 1. identity


def _one_finished_cell(cli, tmp_path: Path) -> tuple:  # noqa: ANN001
    """A one-cell tiny sweep run inline to the end: (sweep file, results folder, cell)."""
    spec = write_spec(
        tmp_path,
        """
        name: one
        base:
          model: {arch: aspp_unet, width: 4}
          data: {count: 16, size: [32, 32], batch_size: 4}
          train: {epochs: 1}
          profile: {latency: false}
        launch: {executor: inline}
        """,
    )
    res = tmp_path / "res"
    assert cli("sweep", str(spec), "--results", str(res))[0] == 0
    (cell,) = expand(load_sweep(spec))
    return spec, res, cell


def test_a_legacy_folder_counts_for_its_cell(cli, tmp_path) -> None:
    """Old folders keep working: status finds them by their config, a resubmission trains nothing."""
    spec, res, cell = _one_finished_cell(cli, tmp_path)
    (res / cell.run_id).rename(res / "00000000aaaa")
    (state,) = cell_states([cell], res)
    assert state.state == "done" and state.folder == res / "00000000aaaa"
    code, out, _ = cli("sweep", str(spec), "--results", str(res))
    assert code == 0 and "submitted 0 of 1" in out and not (res / cell.run_id).exists()


# ----------------------------------------------------------------------------- 2. folder binding


def test_a_checkpoint_is_refused_by_another_run(tmp_path) -> None:
    from tests.fixtures import tiny_trainer

    a = tiny_trainer(tmp_path, epochs=1)
    a.identity = "aaaaaaaaaaaa"
    a.fit()
    b = tiny_trainer(tmp_path, epochs=2)
    b.identity = "bbbbbbbbbbbb"
    with pytest.raises(UserError, match="belongs to run aaaaaaaaaaaa, not to run bbbbbbbbbbbb"):
        b.fit()


# ----------------------------------------------------------------------------- 3. cluster state


def _fake_bin(tmp_path: Path, name: str, script: str) -> Path:
    d = tmp_path / "bin"
    d.mkdir(exist_ok=True)
    p = d / name
    p.write_text("#!/bin/sh\n" + script + "\n")
    p.chmod(p.stat().st_mode | stat.S_IXUSR)
    return d


def _slurm_cell(tmp_path: Path) -> tuple:
    spec = write_spec(
        tmp_path,
        """
        name: sq
        base: {model: {arch: aspp_unet, width: 4}, data: {count: 8, size: [32, 32]}}
        launch: {executor: slurm}
        """,
    )
    sweep = load_sweep(spec)
    (cell,) = expand(sweep)
    res = tmp_path / "res"
    (res / cell.run_id).mkdir(parents=True)
    job = {"executor": "slurm", "job_id": "4242_0", "folder": str(res / ".submitit"), "submitted": 0}
    (res / cell.run_id / "job.json").write_text(json.dumps(job))
    return spec, sweep, cell, res


def test_a_failing_squeue_makes_the_state_unknown_never_failed(tmp_path, monkeypatch) -> None:
    """Defect: a transient squeue failure read as 'failed' and --retry-failed submitted a second job."""
    spec, sweep, cell, res = _slurm_cell(tmp_path)
    bin_dir = _fake_bin(tmp_path, "squeue", "echo 'squeue: error: Unable to contact slurm controller' >&2; exit 1")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    (state,) = cell_states([cell], res)
    assert state.state == "unknown" and "Unable to contact slurm controller" in state.detail
    submitted, skipped = submit(sweep, [cell], res, executor="slurm", retry_failed=True)
    assert submitted == [] and skipped[0].state == "unknown"


def test_a_job_gone_from_a_working_squeue_is_failed(tmp_path, monkeypatch) -> None:
    spec, sweep, cell, res = _slurm_cell(tmp_path)
    bin_dir = _fake_bin(tmp_path, "squeue", "echo 'slurm_load_jobs error: Invalid job id specified' >&2; exit 1")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    assert cell_states([cell], res)[0].state == "failed"
    _fake_bin(tmp_path, "squeue", "echo '4242_0 PENDING'")
    assert cell_states([cell], res)[0].state == "queued"


def test_sbatch_rejection_is_shown_and_nothing_is_lost(cli, tmp_path, monkeypatch) -> None:
    """Defect: sbatch's refusal was a submitit traceback."""
    spec, sweep, cell, res = _slurm_cell(tmp_path)
    (res / cell.run_id / "job.json").unlink()
    bin_dir = _fake_bin(tmp_path, "sbatch", "echo 'sbatch: error: invalid partition specified: nope' >&2; exit 1")
    _fake_bin(tmp_path, "squeue", "exit 0")
    _fake_bin(tmp_path, "srun", "exit 0")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    code, out, err = cli("sweep", str(spec), "--results", str(res))
    assert code == 2 and "invalid partition specified: nope" in err and "nothing was submitted" in err
    assert "Traceback" not in err and not (res / cell.run_id / "job.json").exists()


# ----------------------------------------------------------------------------- 4. whole-sweep validation


@pytest.mark.parametrize(
    "grid, fragment",
    [
        ("data.size: [[0, 32]]", "data.size.0=0"),
        ("data.size: [[-32, 32]]", "data.size.0=-32"),
        ("model.num_classes: [0]", "model.num_classes=0"),
        ("loss.name: [cee]", "unknown loss 'cee'"),
        ("model.num_classes: [5]", "dataset 'synthetic' has 6 classes"),
        ("loss.class_weights: [median_freq]\n  loss.name: [dice]", "loss 'dice' takes no class weights"),
    ],
)
def test_every_key_is_validated_before_anything_runs(cli, tmp_path, grid: str, fragment: str) -> None:
    """Defect: these were submitted (and passed --dry-run) and failed on the cluster."""
    spec = write_spec(tmp_path, f"name: bad\nbase: {{model: {{width: 4}}}}\ngrid:\n  {grid}\n")
    for extra in ([], ["--dry-run"]):
        code, _, err = cli("sweep", str(spec), "--results", str(tmp_path / "r"), *extra)
        assert code == 2 and fragment in err and "Traceback" not in err, err
    assert not (tmp_path / "r").exists()


def test_signal_delay_must_be_shorter_than_the_time_limit(cli, tmp_path) -> None:
    """Defect: --signal=USR2@120 with --time=1 signalled every attempt 18 s in."""
    spec = write_spec(tmp_path, "name: sig\nlaunch: {executor: slurm, timeout_min: 1, signal_delay_s: 120}\n")
    code, _, err = cli("sweep", str(spec), "--dry-run")
    assert code == 2 and "signal_delay_s=120" in err and "timeout_min=1" in err


def test_each_dataset_checks_its_own_root_and_both_splits(cli, tmp_path) -> None:
    """Defect: only CamVid's root was checked, and only the training split."""
    from tests.fixtures import make_camvid, make_cityscapes

    cam = make_camvid(tmp_path / "camvid", splits=("train",))  # no val split
    city = make_cityscapes(tmp_path / "city")  # train only
    for name, root, fragment in (("camvid", cam, "val"), ("cityscapes", city, "leftImg8bit/val")):
        spec = write_spec(tmp_path, f"name: d\nbase: {{data: {{name: {name}, root: {root}}}}}\n")
        code, _, err = cli("sweep", str(spec), "--results", str(tmp_path / "r"))
        assert code == 2 and fragment in err and "nothing was submitted" in err, err


# ----------------------------------------------------------------------------- 5. no tracebacks, atomic writes


# ----------------------------------------------------------------------------- 6. regress matching


def test_regress_matches_on_identity_and_refuses_tables_without_config(cli, tmp_path) -> None:
    """Defect: a table with only run_id and miou was matched to an arbitrary row and failed."""
    import pandas as pd

    root = Path(__file__).resolve().parents[1]
    base = root / "results" / "baselines" / "camvid_cpu.parquet"
    bare = tmp_path / "bare.csv"
    pd.DataFrame({"run_id": ["x"], "miou": [0.1], "status": ["done"]}).to_csv(bare, index=False)
    code, _, err = cli("regress", str(base), str(bare))
    assert code == 2 and "no config columns" in err
    other = pd.read_parquet(base)
    other["data.size"] = "45,60"
    other.to_parquet(tmp_path / "other.parquet")
    code, out, err = cli("regress", str(base), str(tmp_path / "other.parquet"))
    assert code == 2 and "no configuration in common" in err and "data.size" in err
    code, out, _ = cli("regress", str(base), str(base))
    assert code == 0 and out.count("| 3/3 | paired |") == 4


# ----------------------------------------------------------------------------- 7. divergence and history


def test_an_exploding_finite_loss_is_diverged_and_has_no_miou(cli, tmp_path) -> None:
    """Defect: Adam at lr 1e6 (loss 1e19, never NaN) was 'done'; a diverged run kept its
    pre-divergence mIoU in collect."""
    from bench.results.table import collect

    out = tmp_path / "res" / "run"
    code, _, err = cli("train", "--out", str(out), *tiny_sets("train.epochs=3", "optim.lr=1e6", "optim.schedule=none"))
    r = json.loads((out / "result.json").read_text())
    assert code == 1 and r["status"] == "diverged" and r["metrics"] is None and "first step" in r["diverged"]
    df, _ = collect(tmp_path / "res")
    assert df["status"][0] == "diverged" and pd_isna(df["miou"][0])


def pd_isna(v) -> bool:  # noqa: ANN001
    import pandas as pd

    return bool(pd.isna(v))


def test_a_preemption_after_an_epochs_last_step_keeps_its_evaluation(tmp_path) -> None:
    """Defect: a checkpoint taken after the last step of an epoch dropped that epoch's history
    entry (and its loss) on resume."""
    from tests.fixtures import tiny_trainer

    (tmp_path / "a").mkdir()
    straight = tiny_trainer(tmp_path / "a", epochs=2).fit()
    (tmp_path / "b").mkdir()
    first = tiny_trainer(tmp_path / "b", epochs=2)

    class Preempted(Exception):
        pass

    calls = {"n": 0}
    real_step = first._step

    def step(images, masks):  # noqa: ANN001
        loss = real_step(images, masks)
        calls["n"] += 1
        if calls["n"] == 4:  # the last step of epoch 1: the signal lands here

            def handler() -> None:
                first.save_checkpoint()
                raise Preempted

            first.at_step_boundary(handler)
        return loss

    first._step = step
    with pytest.raises(Preempted):
        first.fit()
    resumed = tiny_trainer(tmp_path / "b", epochs=2).fit()
    h0, h1 = straight["train"]["history"], resumed["train"]["history"]
    assert [e["epoch"] for e in h1] == [1, 2] and all("miou" in e for e in h1)
    assert [e["loss"] for e in h1] == [e["loss"] for e in h0] and h1[0]["miou"] == h0[0]["miou"]
    assert resumed["metrics"]["miou"] == straight["metrics"]["miou"]


def test_a_preemption_while_a_batch_is_loading_resumes_bit_equal(tmp_path) -> None:
    """Defect (CI, the Slurm preemption scenario: weights differed): a signal that lands while the
    next batch is being loaded and augmented ran the handler at once. Its checkpoint held the
    augmentation RNG half-way through that batch, and the resumed run augmented the batch from
    there: other flips, other weights. Loading the batch is now part of the step, so the handler
    waits for the step's end."""
    from tests.fixtures import tiny_trainer

    (tmp_path / "a").mkdir()
    straight = tiny_trainer(tmp_path / "a", epochs=2)
    straight.fit()
    (tmp_path / "b").mkdir()
    first = tiny_trainer(tmp_path / "b", epochs=2)

    class Preempted(Exception):
        pass

    def handler() -> None:  # what submitit's handler does: checkpoint, then leave the process
        first.save_checkpoint()
        raise Preempted

    ds = first.train_loader.dataset
    augment, calls = ds.transform, {"n": 0}

    def transform(image, mask):  # noqa: ANN001
        out = augment(image, mask)
        calls["n"] += 1
        if calls["n"] == 10:  # the second sample of the third batch: the signal lands mid-load
            first.at_step_boundary(handler)
        return out

    ds.transform = transform
    with pytest.raises(Preempted):
        first.fit()
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["state"]["iteration"] == 3
    tiny_trainer(tmp_path / "b", epochs=2).fit()
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------- 8. failure details


def test_job_json_is_absolute_and_never_started_cells_say_so(cli, tmp_path, monkeypatch) -> None:
    """Defect: job.json stored a relative folder (status from elsewhere lost the reason), and a
    never-started cell of a killed chain showed another cell's progress line."""
    spec = write_spec(
        tmp_path,
        """
        name: chain
        base: {model: {arch: aspp_unet, width: 4}, data: {count: 8, size: [32, 32]}}
        """,
    )
    sweep = load_sweep(spec)
    (cell,) = expand(sweep)
    res = tmp_path / "res"
    (res / cell.run_id).mkdir(parents=True)
    gone = subprocess.Popen(["true"])
    gone.wait()  # a process id that was real and has ended (one beyond pid_max is a damaged record)
    job = {"executor": "local", "job_id": str(gone.pid), "folder": str((res / ".submitit").resolve()), "submitted": 0}
    (res / cell.run_id / "job.json").write_text(json.dumps(job))
    (state,) = cell_states([cell], res)
    assert state.state == "failed" and state.detail.startswith("never started")
    monkeypatch.chdir(tmp_path)
    from bench.launch.submit import _launch

    jobs, folder = _launch(sweep, [cell], [Path("res2") / cell.run_id], Path("res2"), "inline")
    assert folder.is_absolute()


def test_time_limit_with_requeues_used_up_is_named(tmp_path) -> None:
    from bench.launch.states import _last_error

    logs = tmp_path / "sub"
    logs.mkdir()
    (logs / "77_0_0_log.err").write_text(
        "srun: Job step aborted\nslurmstepd: error: *** JOB 77 ON n1 CANCELLED AT 2026 DUE TO TIME LIMIT ***\n"
        "srun: error: n1: task 0: Terminated\n"
    )
    msg = _last_error({"folder": str(logs), "job_id": "77_0"})
    assert msg.startswith("time limit reached and the requeues are used up") and "--retry-failed" in msg


def test_a_corrupt_cell_skipped_by_a_plain_resubmit_gets_a_hint(cli, tmp_path) -> None:
    spec, res, cell = _one_finished_cell(cli, tmp_path)
    result = res / cell.run_id / "result.json"
    result.write_text(result.read_text()[:50])
    code, out, _ = cli("sweep", str(spec), "--results", str(res))
    assert "1 corrupt" in out and "--retry-failed" in out
    code, out, err = cli("sweep", str(spec), "--results", str(res), "--retry-failed")
    assert code == 0, err
    assert json.loads(result.read_text())["status"] == "done"


# ----------------------------------------------------------------------------- 9. safe loading


class _Payload:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):  # noqa: ANN204
        return (Path.write_text, (self.target, "pwned"))


def test_a_checkpoint_that_runs_code_is_refused(cli, tmp_path) -> None:
    """Defect: torch.load(..., weights_only=False) ran whatever a shared checkpoint's pickle said."""
    out = tmp_path / "run"
    assert train_tiny(cli, out)[0] == 0
    marker = tmp_path / "PWNED"
    ckpt = out / "checkpoint.pt"
    state = torch.load(ckpt, weights_only=True)
    state["evil"] = _Payload(marker)
    torch.save(state, ckpt)
    code, _, err = cli("evaluate", str(ckpt))
    assert code == 2 and "refused" in err and "weights_only" in err and "Traceback" not in err
    assert not marker.exists()
    (out / "result.json").unlink()  # now a resume would load it
    code, _, err = train_tiny(cli, out)
    assert code == 2 and "refused" in err and not marker.exists()


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04truncated", b"not a checkpoint at all"])
def test_evaluate_a_truncated_or_empty_checkpoint(cli, tmp_path, content: bytes) -> None:
    out = tmp_path / "run"
    assert train_tiny(cli, out)[0] == 0
    (out / "checkpoint.pt").write_bytes(content)
    code, _, err = cli("evaluate", str(out / "checkpoint.pt"))
    assert code == 2 and "not a readable checkpoint" in err and "Traceback" not in err


def test_dry_run_prints_every_shell_line_and_sbatch_option(cli, tmp_path) -> None:
    spec = write_spec(
        tmp_path,
        """
        name: shown
        launch:
          executor: slurm
          slurm_partition: gpu
          sbatch: {qos: high, account: lab42}
          setup: ["module load cuda/12.4", "source ~/venvs/aspp/bin/activate"]
        """,
    )
    code, out, err = cli("sweep", str(spec), "--dry-run", "--results", str(tmp_path / "r"))
    assert code == 0, err
    for line in ("#SBATCH --partition=gpu", "#SBATCH --qos=high", "#SBATCH --account=lab42",
                 "module load cuda/12.4", "source ~/venvs/aspp/bin/activate", "#SBATCH --signal=USR2@120"):  # fmt: skip
        assert line in out, line
    assert not (tmp_path / "r").exists()


def test_checkpoints_hold_only_tensors_and_plain_types(cli, tmp_path) -> None:
    out = tmp_path / "run"
    assert train_tiny(cli, out)[0] == 0
    state = torch.load(out / "checkpoint.pt", weights_only=True)  # raises if anything else is inside
    assert state["identity"] == json.loads((out / "result.json").read_text())["run_id"]


def test_a_checkpoint_of_an_earlier_version_still_resumes(tmp_path) -> None:
    """Checkpoints written before this change hold numpy's RNG state as an array (and no
    identity): they load with weights_only thanks to an allow-list of numpy's array types only."""
    import random

    import numpy as np

    from bench.run.checkpoint import read_checkpoint, set_rng_state

    np.random.seed(3)
    legacy = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    torch.save({"model": {}, "rng": legacy}, tmp_path / "old.pt")
    expected = np.random.random()
    ckpt = read_checkpoint(tmp_path / "old.pt")
    set_rng_state(ckpt["rng"])
    assert np.random.random() == expected


# ----------------------------------------------------------------------------- the evaluation protocol


def _camvid_run(cli, tmp_path: Path) -> Path:
    from tests.fixtures import make_camvid

    root = make_camvid(tmp_path / "camvid", n=4, h=36, w=48)
    out = tmp_path / "run"
    code, _, err = cli("train", "--out", str(out), "--set", "data.name=camvid", "--set", f"data.root={root}",
                       "--set", "data.size=[18,24]", "--set", "model.width=4", "--set", "train.epochs=1",
                       "--set", "data.batch_size=2", "--set", "profile.latency=false")  # fmt: skip
    assert code == 0, err
    return out


def test_evaluate_scores_the_validation_split_by_default_and_says_so(cli, tmp_path) -> None:
    """Defect: evaluate with no --set scored the training split (config.yaml keeps data.split: train)."""
    out = _camvid_run(cli, tmp_path)
    code, stdout, err = cli("evaluate", str(out / "checkpoint.pt"), "--json")
    r = json.loads(stdout)
    assert code == 0 and r["split"] == "val" and r["images"] == 4
    trained = json.loads((out / "result.json").read_text())["metrics"]["miou"]
    assert r["metrics"]["miou"] == trained  # the run's own validation number, reproduced
    code, stdout, _ = cli("evaluate", str(out / "checkpoint.pt"))
    assert "split 'val'" in stdout and "scored at data.size [18, 24]" in stdout


def test_evaluate_at_the_labels_own_resolution(cli, tmp_path) -> None:
    out = _camvid_run(cli, tmp_path)
    code, stdout, err = cli("evaluate", str(out / "checkpoint.pt"), "--resolution", "label", "--json")
    r = json.loads(stdout)
    assert code == 0, err
    assert r["resolution"] == "label" and "own size" in r["scored_at"]
    import numpy as np
    from PIL import Image

    labels = [np.array(Image.open(p)) for p in sorted((tmp_path / "camvid" / "valannot").glob("*.png"))]
    assert r["metrics"]["pixels"] == sum(int((lbl != 11).sum()) for lbl in labels)  # every 36x48 non-void pixel
    _, data_size, _ = cli("evaluate", str(out / "checkpoint.pt"), "--json")
    assert json.loads(data_size)["metrics"]["pixels"] < r["metrics"]["pixels"]  # 18x24 scores fewer


def test_a_protocol_mismatch_is_refused_before_decoding(cli, tmp_path, monkeypatch) -> None:
    import bench.run.evaluate

    out = _camvid_run(cli, tmp_path)

    def no_decoding(*a, **k):  # noqa: ANN002, ANN003
        raise AssertionError("the split was decoded before the protocol was checked")

    monkeypatch.setattr(bench.run.evaluate, "load_split", no_decoding)  # the name evaluate calls
    code, _, err = cli("evaluate", str(out / "checkpoint.pt"), "--set", "data.void_as_class=true")
    assert code == 2 and "has 12 classes, the model was trained for 11" in err


def test_evaluate_from_another_folder_finds_a_relative_data_root(cli, tmp_path, monkeypatch) -> None:
    from tests.fixtures import make_camvid

    make_camvid(tmp_path / "data" / "camvid", n=4, h=36, w=48)
    monkeypatch.chdir(tmp_path)
    code, _, err = cli("train", "--out", "run", "--set", "data.name=camvid", "--set", "data.root=data/camvid",
                       "--set", "data.size=[18,24]", "--set", "model.width=4", "--set", "train.epochs=1",
                       "--set", "data.batch_size=2", "--set", "profile.latency=false")  # fmt: skip
    assert code == 0, err
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    code, stdout, err = cli("evaluate", str(tmp_path / "run" / "checkpoint.pt"))
    assert code == 0, err
    assert "split 'val'" in stdout


def test_evaluating_every_epoch_leaves_training_bit_equal(cli, tmp_path) -> None:
    import torch

    runs = {}
    for every in (1, 4):
        out = tmp_path / f"e{every}"
        code, _, err = cli("train", "--out", str(out), *tiny_sets("train.epochs=4", f"train.eval_every={every}"))
        assert code == 0, err
        r = json.loads((out / "result.json").read_text())
        runs[every] = (r, torch.load(out / "checkpoint.pt", weights_only=False))
    (r1, c1), (r4, c4) = runs[1], runs[4]
    assert [h["loss"] for h in r1["train"]["history"]] == [h["loss"] for h in r4["train"]["history"]]
    assert (
        sum("miou" in h for h in r1["train"]["history"]) == 4 and sum("miou" in h for h in r4["train"]["history"]) == 1
    )
    assert r1["metrics"]["miou"] == r4["metrics"]["miou"]
    assert all(torch.equal(c1["model"][k], c4["model"][k]) for k in c1["model"])
