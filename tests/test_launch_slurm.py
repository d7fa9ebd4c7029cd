"""Against a real single-node Slurm cluster (scripts/slurm-up.sh; .ci/run starts it).

A requeued job waits 30-40 s there before it runs again (slurm-up.sh shortens Slurm's 2-3 minutes),
so these take a minute or more each.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from bench.launch import cell_states
from bench.sweep import expand, load_sweep
from tests.fixtures import deciding_sweep, seeds_by_configuration, write_sweep

pytestmark = pytest.mark.slurm
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", autouse=True)
def cluster() -> None:
    r = subprocess.run(["bash", str(ROOT / "scripts" / "slurm-up.sh")], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert shutil.which("sbatch")


def _spec(tmp_path: Path, name: str, rates: str, epochs: int) -> Path:
    return write_sweep(
        tmp_path, name, model="arch: aspp_unet, width: 2", data="size: [24, 24], count: 4, batch_size: 2",
        train=f"epochs: {epochs}, eval_every: 100000, checkpoint_every: 50", grid=f"model.rates: {rates}",
        launch="executor: slurm, slurm_partition: debug, cpus_per_task: 1, timeout_min: 30, signal_delay_s: 30",
    )  # fmt: skip


def _wait(cells, results: Path, states=("done",), timeout: float = 600) -> list:
    deadline = time.time() + timeout
    while time.time() < deadline:
        st = cell_states(cells, results)
        if all(s.state in states for s in st):
            return st
        time.sleep(2)
    raise AssertionError(f"timed out: {[(s.cell.run_id, s.state, s.detail) for s in cell_states(cells, results)]}")


def _wait_for_checkpoint(run: Path, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and not (run / "checkpoint.pt").is_file():
        time.sleep(1)
    assert (run / "checkpoint.pt").is_file(), f"no periodic checkpoint in {run}"


def _long_cell_checkpointed(cli, tmp_path: Path, name: str, rates: str) -> tuple:  # noqa: ANN001
    """A one-cell sweep of 2000 epochs submitted to Slurm, once its first periodic checkpoint is
    written: (sweep file, results folder, cell, run folder)."""
    spec = _spec(tmp_path, name, rates, epochs=2000)
    results = tmp_path / "results"
    assert cli("sweep", str(spec), "--results", str(results))[0] == 0
    (cell,) = expand(load_sweep(spec))
    run = results / cell.run_id
    _wait_for_checkpoint(run)
    return spec, results, cell, run


def _job(results: Path, cell) -> dict:
    return json.loads((results / cell.run_id / "job.json").read_text())


def test_four_cells_one_job_array_and_no_resubmission(cli, tmp_path) -> None:
    spec = _spec(tmp_path, "array4", "[[1], [2], [3], [4]]", epochs=2)
    results = tmp_path / "results"
    code, out, err = cli("sweep", str(spec), "--results", str(results))
    assert code == 0, err
    assert "submitted 4 of 4" in out
    cells = expand(load_sweep(spec))
    ids = [_job(results, c)["job_id"] for c in cells]
    assert len({i.split("_")[0] for i in ids}) == 1 and sorted(i.split("_")[1] for i in ids) == ["0", "1", "2", "3"]
    _wait(cells, results)
    code, out, _ = cli("sweep", str(spec), "--results", str(results))
    assert code == 0 and "submitted 0 of 4" in out and "4 done" in out


def test_preemption_requeues_and_resumes_from_checkpoint(cli, tmp_path) -> None:
    import submitit

    spec, results, cell, run = _long_cell_checkpointed(cli, tmp_path, "preempt", "[[1]]")
    job = _job(results, cell)
    submitit.SlurmJob(folder=job["folder"], job_id=job["job_id"])._interrupt()  # SIGTERM + USR2, as on preemption
    _wait([cell], results, timeout=540)
    log = (run / "train.log").read_text()
    assert "signal: checkpoint saved" in log and "resumed from" in log
    assert "requeued: the job is back in the queue" in log  # said only once the requeue happened
    out = "".join(p.read_text() for p in Path(job["folder"]).glob(f"{job['job_id']}_*_log.out"))
    assert "SLURM_RESTART_COUNT=1" in out
    r = json.loads((run / "result.json").read_text())
    assert r["status"] == "done" and r["train"]["epochs"] == 2000


def test_cancelled_job_is_failed_and_retry_completes_it(cli, tmp_path) -> None:
    spec, results, cell, run = _long_cell_checkpointed(cli, tmp_path, "cancel", "[[2]]")
    subprocess.run(["scancel", _job(results, cell)["job_id"]], check=True)
    (state,) = _wait([cell], results, states=("failed",), timeout=120)
    code, out, _ = cli("status", str(spec), "--results", str(results))
    assert "failed" in out
    code, out, _ = cli("sweep", str(spec), "--results", str(results))
    assert "submitted 0 of 1" in out  # a failed cell waits for --retry-failed
    code, out, err = cli("sweep", str(spec), "--results", str(results), "--retry-failed")
    assert code == 0 and "submitted 1 of 1" in out, err
    _wait([cell], results, timeout=540)
    assert "resumed from" in (run / "train.log").read_text()  # from the last periodic checkpoint


def test_a_failing_squeue_is_unknown_and_retry_submits_nothing(cli, tmp_path, monkeypatch) -> None:
    """On the real cluster: a transient squeue failure must not read as 'failed'."""
    import os
    import stat

    spec = _spec(tmp_path, "squeue", "[[3]]", epochs=300)
    results = tmp_path / "results"
    assert cli("sweep", str(spec), "--results", str(results))[0] == 0
    (cell,) = expand(load_sweep(spec))
    fake = tmp_path / "bin" / "squeue"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'squeue: error: Unable to contact slurm controller' >&2\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    real_path = os.environ["PATH"]
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{real_path}")
    if not (results / cell.run_id / ".lock").is_file():  # still pending: only squeue could tell
        (state,) = cell_states([cell], results)
        assert state.state == "unknown" and "Unable to contact slurm controller" in state.detail
    code, out, _ = cli("sweep", str(spec), "--results", str(results), "--retry-failed")
    assert code == 0 and "submitted 0 of 1" in out
    monkeypatch.setenv("PATH", real_path)
    _wait([cell], results, timeout=540)
    assert len(list((results / ".submitit").glob("*_submitted.pkl"))) == 1  # one job, ever


def test_time_limit_with_no_requeue_left_says_so(cli, tmp_path) -> None:
    """An exhausted time limit is named, not shown as an srun line; the log says
    'not requeued' (never 'requeueing') and --retry-failed resumes from the checkpoint."""
    spec = _spec(tmp_path, "limit", "[[4]]", epochs=5000)
    text = spec.read_text().replace("timeout_min: 30, signal_delay_s: 30", "timeout_min: 1, signal_delay_s: 30")
    spec.write_text(text.replace("launch: {", "launch: {max_num_timeout: 0, "))
    results = tmp_path / "results"
    assert cli("sweep", str(spec), "--results", str(results))[0] == 0
    (cell,) = expand(load_sweep(spec))
    (state,) = _wait([cell], results, states=("failed",), timeout=300)
    assert state.detail.startswith("time limit reached and the requeues are used up"), state.detail
    log = (results / cell.run_id / "train.log").read_text()
    # Slurm delivers --signal up to 60 s early (its event resolution), so with a 1-minute limit the
    # signal can land while the job is still importing: then there is nothing to checkpoint yet,
    # and the run folder says exactly that (observed once in CI on a loaded machine)
    early = "before training started: nothing to checkpoint" in log
    if not early:
        assert "signal: checkpoint saved" in log and "not requeued" in log and "requeued: the job" not in log


def _ddp_spec(tmp_path: Path, name: str, epochs: int, executor: str = "slurm") -> Path:
    slurm = "slurm_partition: debug, signal_delay_s: 30, " if executor == "slurm" else ""
    return write_sweep(
        tmp_path, name, model="arch: aspp_unet, width: 4", data="size: [32, 32], count: 16, batch_size: 4",
        train=f"epochs: {epochs}, device: cpu, eval_every: 100000, checkpoint_every: 5",
        launch=f"executor: {executor}, {slurm}tasks_per_node: 2, cpus_per_task: 1, timeout_min: 30",
    )  # fmt: skip


def test_two_task_cell_on_slurm_gives_one_result_of_world_size_2(cli, tmp_path) -> None:
    """One cell as one Slurm job of 2 tasks (srun starts them, submitit's environment
    gives the rendezvous): one result, world size 2 recorded, each task's log in its own file."""
    spec = _ddp_spec(tmp_path, "ddp2", epochs=3)
    results = tmp_path / "results"
    code, out, err = cli("sweep", str(spec), "--results", str(results))
    assert code == 0, err
    (cell,) = expand(load_sweep(spec))
    _wait([cell], results, timeout=300)
    r = json.loads((results / cell.run_id / "result.json").read_text())
    assert r["env"]["train_world_size"] == 2 and r["env"]["train_dist_backend"] == "gloo"
    assert len([p for p in results.iterdir() if (p / "result.json").is_file()]) == 1
    job = _job(results, cell)
    logs = sorted(p.name for p in Path(job["folder"]).glob(f"{job['job_id']}_*_log.err"))
    assert logs == [f"{job['job_id']}_0_log.err", f"{job['job_id']}_1_log.err"]
    assert "[rank 1 of 2]" in (Path(job["folder"]) / logs[1]).read_text()


def test_preempted_two_task_slurm_job_resumes_to_the_weights_of_an_uninterrupted_run(cli, tmp_path) -> None:
    """Submitit's preemption (SIGTERM + USR2 to the job) of a 2-task job: every rank stops
    after the same step, rank 0 checkpoints and requeues, both ranks resume, and the weights equal
    those of the same 2-task cell run without interruption (local executor, same threads)."""
    import submitit
    import torch

    spec = _ddp_spec(tmp_path, "ddppre", epochs=300)
    results = tmp_path / "results"
    assert cli("sweep", str(spec), "--results", str(results))[0] == 0
    (cell,) = expand(load_sweep(spec))
    run = results / cell.run_id
    _wait_for_checkpoint(run)
    job = _job(results, cell)
    submitit.SlurmJob(folder=job["folder"], job_id=job["job_id"])._interrupt()
    ref_spec = _ddp_spec(tmp_path, "ddpref", epochs=300, executor="local")
    code, _, err = cli("sweep", str(ref_spec), "--results", str(tmp_path / "ref"), "--wait")  # meanwhile
    assert code == 0, err
    _wait([cell], results, timeout=540)
    log = (run / "train.log").read_text()
    assert "stop signal: all 2 ranks stopped after iteration" in log and "resumed from" in log
    assert "requeued: the job is back in the queue" in log
    out = "".join(p.read_text() for p in Path(job["folder"]).glob(f"{job['job_id']}_*_log.out"))
    assert "SLURM_RESTART_COUNT=1" in out
    a = torch.load(run / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "ref" / cell.run_id / "checkpoint.pt", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_until_decided_submits_the_second_wave_only_for_the_open_comparison(cli, tmp_path) -> None:
    """Two waves on Slurm: the first (seeds 0, 1 of three configurations) as one job array; at the
    first look the batch-2 configuration is equivalent to the base (bit-equal runs) and the lr one
    is open (alpha 0.001 leaves a 2-seed look no room to call it different), so the second wave
    is seed 2 of the lr configuration and of the base, and nothing for the decided one."""
    spec = deciding_sweep(
        tmp_path, launch="executor: slurm, slurm_partition: debug, cpus_per_task: 1, timeout_min: 30", alpha=0.001
    )
    results = tmp_path / "results"
    code, out, err = cli("sweep", str(spec), "--results", str(results), "--until-decided")
    assert code == 0, out + err
    before, after_first = out.split("look 2:", 1)  # look 1 is taken before any run: it submits the first wave
    first_look = after_first.split("look 3:")[0]  # the first look at finished runs, and the wave it submits
    assert "wave 1: submitted 6 cell(s) (slurm)" in before, out
    assert "open:" in next(ln for ln in first_look.splitlines() if "optim.lr=0.011" in ln), out
    assert "equivalent" in next(ln for ln in first_look.splitlines() if "profile.batch=2" in ln), out
    assert "wave 2: submitted 2 cell(s) (slurm)" in first_look, out
    assert seeds_by_configuration(results) == {"base": [0, 1, 2], "batch2": [0, 1], "lr": [0, 1, 2]}
    jobs = {json.loads(p.read_text())["job_id"].split("_")[0] for p in results.glob("*/job.json")}
    assert len(jobs) == 2, jobs  # one Slurm job array per wave
    code, again, _ = cli("sweep", str(spec), "--results", str(results), "--until-decided")
    assert code == 0 and "submitted" not in again.split("look 1")[1].split("every comparison")[0], again
