"""Hostile and careless input at the edges: a sweep file can neither delete a folder nor inject shell
lines nor exhaust memory; damaged state files are reported, never a crash or a resubmission; a
refusal leaves nothing behind. Each test here failed before the fix it stands for."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import os
import subprocess
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path

import pytest

from bench.errors import UserError
from tests.fixtures import tmpfs, tree_hashes

TINY_BASE = """
base:
  model: {arch: aspp_unet, width: 2}
  data: {size: [24, 24], count: 4, batch_size: 2}
  train: {epochs: 1}
  profile: {latency: false}
"""


def _local_sweep_with_a_run_folder(tmp_path: Path, name: str, grid: str = "") -> tuple:
    """A tiny local sweep NAME and the (empty) run folder of its first cell: (file, results, cells, folder)."""
    from bench.sweep import expand, load_sweep

    spec = tmp_path / f"{name}.yaml"
    spec.write_text(f"name: {name}\n" + TINY_BASE + grid + "launch: {executor: local}\n")
    results = tmp_path / "results"
    cells = expand(load_sweep(spec))
    run = results / cells[0].run_id
    run.mkdir(parents=True)
    return spec, results, cells, run


def _tiny_run(cli, out: Path, *extra: str) -> None:
    """One finished 1-epoch run (width 4, eight 32x32 scenes) in `out`."""
    sets = ["model.width=4", "data.count=8", "data.size=[32,32]", "train.epochs=1", "profile.latency=false"]
    code, _, err = cli("train", "--out", str(out), "--set", *sets, *extra)
    assert code == 0, err


def _plant(cwd: Path) -> dict[str, str]:
    """A working directory worth keeping: a thesis, data, a results folder of another sweep."""
    (cwd / "thesis.tex").write_text("\\documentclass{article}\n")
    (cwd / "data").mkdir()
    (cwd / "data" / "images.bin").write_bytes(os.urandom(256))
    (cwd / "notes").mkdir()
    (cwd / "notes" / "todo.md").write_text("- finish\n")
    return tree_hashes(cwd, dirs=True)


# -- 1. a sweep name is a plain folder name; a clean-up removes only what it created ---------------

BAD_NAMES = ["..", ".", "...", ".hidden", "../x", "a/b", "x" * 101, "", "a b", "-", "~", "$HOME", "x\ny"]


@pytest.mark.parametrize("name", BAD_NAMES, ids=[repr(n)[:20] for n in BAD_NAMES])
@pytest.mark.parametrize("how", [["--executor", "inline"], ["--dry-run"], []], ids=["inline", "dry-run", "local"])
def test_a_sweep_whose_name_is_not_a_plain_folder_name_is_refused_and_nothing_changes(
    cli, tmp_path, monkeypatch, name: str, how: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "evil.yaml"
    spec.write_text(f"name: {json.dumps(name)}\n" + TINY_BASE + "launch: {executor: local, tasks_per_node: 2}\n")
    before = _plant(tmp_path)
    code, out, err = cli("sweep", str(spec), *how)
    assert code == 2, (code, out, err)
    assert "is not a plain folder name" in err and "Traceback" not in err
    assert tree_hashes(tmp_path, dirs=True) == before  # nothing created, nothing removed


@pytest.mark.parametrize(
    "results",
    [None, ".", "..", "results/..", "fresh", "fresh/deeper"],
    ids=["default", "dot", "dotdot", "results-dotdot", "fresh", "fresh-deeper"],
)
def test_every_refused_first_submission_leaves_the_working_directory_as_it_was(
    cli, tmp_path, monkeypatch, results: str | None
) -> None:
    """The refusal paths after the results folder is made: a multi-task cell under the inline
    executor, and a launcher that refuses (as sbatch does for a bad partition)."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    spec = work / "two.yaml"
    spec.write_text("name: two\n" + TINY_BASE + "launch: {executor: local, tasks_per_node: 2}\n")
    before = _plant(work)
    parent_before = tree_hashes(tmp_path, dirs=True)
    extra = ["--results", results] if results else []
    code, out, err = cli("sweep", str(spec), "--executor", "inline", *extra)
    assert code == 2 and "inline runs one process" in err, err
    assert tree_hashes(work, dirs=True) == before
    assert tree_hashes(tmp_path, dirs=True) == parent_before

    submit_mod = importlib.import_module("bench.launch.submit")

    def refuse(*_a, **_k):
        raise UserError("sbatch refused the submission; nothing was submitted (test)")

    monkeypatch.setattr(submit_mod, "_launch", refuse)
    spec.write_text("name: two\n" + TINY_BASE + "launch: {executor: local}\n")
    code, out, err = cli("sweep", str(spec), *extra)
    assert code == 2 and "refused" in err
    assert tree_hashes(work, dirs=True) == {**before, "two.yaml": tree_hashes(work, dirs=True)["two.yaml"]}
    assert not (work / "results").exists() or results in (".", "..")


def test_a_refused_launcher_keeps_what_a_concurrent_launcher_wrote(tmp_path, monkeypatch) -> None:
    """Launcher A makes the new folder; launcher B takes the lock first and records its jobs; A is
    then refused: B's files stay (before, A removed the folder it had 'created', B's jobs and all)."""
    import contextlib

    submit_mod = importlib.import_module("bench.launch.submit")
    from bench.sweep import expand, load_sweep

    spec = tmp_path / "s.yaml"
    spec.write_text("name: s\n" + TINY_BASE)
    sweep = load_sweep(spec)
    cells = expand(sweep)
    results = tmp_path / "results" / "s"
    real_lock = submit_mod._submission_lock

    @contextlib.contextmanager
    def lock_after_b(folder):
        (folder / "sweep.json").write_text("{}")  # B: its manifest and a cell's job record
        (folder / cells[0].run_id).mkdir()
        (folder / cells[0].run_id / "job.json").write_text('{"executor": "slurm", "job_id": "77"}')
        with real_lock(folder) as fd:
            yield fd

    def refuse(*_a, **_k):
        raise UserError("refused (test)")

    monkeypatch.setattr(submit_mod, "_submission_lock", lock_after_b)
    monkeypatch.setattr(submit_mod, "_launch", refuse)
    monkeypatch.setattr(submit_mod, "_submit_locked", refuse)
    with pytest.raises(UserError):
        submit_mod.submit(sweep, cells, results, executor="local")
    assert (results / cells[0].run_id / "job.json").is_file()
    assert (results / "sweep.json").is_file()


# -- 2. a YAML alias bomb -------------------------------------------------------------------------


def _bomb(levels: int = 9) -> str:
    lines = ["name: bomb", "base:", '  a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels + 1):
        lines.append(f"  a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_within_a_second_and_under_200_mb(tmp_path) -> None:
    spec = tmp_path / "bomb.yaml"
    spec.write_text(_bomb())
    assert spec.stat().st_size < 1024
    from bench.sweep import load_sweep

    tracemalloc.start()
    t0 = time.perf_counter()
    with pytest.raises(UserError, match="expands to more than"):
        load_sweep(spec)
    elapsed = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert elapsed < 1.0 and peak < 200 * 2**20, (elapsed, peak)
    # the command as a user runs it: exit 2, a short message, a small process
    probe = (  # the peak memory of that one process, as its parent sees it
        "import resource, subprocess, sys; r = subprocess.run([sys.executable, *sys.argv[1:]], "
        "capture_output=True, text=True); print(r.returncode, "
        "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.stderr.write(r.stderr)"
    )
    r = subprocess.run([sys.executable, "-c", probe, "-m", "bench.cli", "sweep", str(spec), "--dry-run"],
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    code, rss_kb = map(int, r.stdout.split())
    assert code == 2 and "expands to more than" in r.stderr and len(r.stderr) < 1000, r.stderr[:500]
    # against the same command's code loaded and nothing read (torch alone is ~500 MB): the bomb
    # itself may cost under 200 MB
    base = subprocess.run([sys.executable, "-c", probe, "-c", "import bench.commands.sweeps"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    base_code, base_kb = map(int, base.stdout.split())
    assert base_code == 0, base.stderr[-500:]
    assert rss_kb - base_kb < 200 * 1024, (rss_kb, base_kb)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("name: x\nbase: &b {model: *b}\n", "refers to itself"),
        ("name: x\nbase: " + "[" * 3000 + "]" * 3000 + "\n", "nests deeper"),
        ("name: x\nbase: {model: {width: " + "[" * 70 + "1" + "]" * 70 + "}}\n", "nests deeper"),
        ("name: x\nseeds: [" + "9" * 5000 + "]\n", "cannot be read"),
        ("name: x\n" + "# pad\n" * 200_000, "larger than"),
        ("name: x\n1: 2\n", "is not text"),
    ],
    ids=["self-reference", "deep-list", "deep-value", "huge-int", "huge-file", "int-key"],
)
def test_yaml_that_is_not_a_sane_document_is_refused_naming_the_file(cli, tmp_path, text: str, fragment: str) -> None:
    spec = tmp_path / "odd.yaml"
    spec.write_text(text)
    code, out, err = cli("sweep", str(spec), "--dry-run")
    assert code == 2 and fragment in err and str(spec) in err and "Traceback" not in err, err[:500]
    assert len(err) < 2000


def test_a_set_value_is_bounded_like_a_file(cli, tmp_path) -> None:
    bomb = (
        '[&a ["x","x","x","x","x","x","x","x","x","x"], '
        + ", ".join(f"&b{i} [" + ",".join([f"*{'a' if i == 0 else f'b{i - 1}'}"] * 10) + "]" for i in range(7))
        + "]"
    )
    code, _, err = cli("train", "--out", str(tmp_path / "r"), "--set", f"model.rates={bomb}")
    assert code == 2 and "expands to more than" in err and len(err) < 2000
    assert not (tmp_path / "r").exists()


# -- 3. sbatch options are options, not shell -----------------------------------------------------

INJECTIONS = {
    "key": 'sbatch: {"comment=x\\ntouch PWNED\\n#x": 1}',
    "value": 'sbatch: {comment: "x\\ntouch PWNED"}',
    "value-cr": 'sbatch: {comment: "x\\rtouch PWNED"}',
    "value-u2028": 'sbatch: {comment: "x\\u2028touch PWNED"}',  # --dry-run showed it as two lines
    "value-u0085": 'sbatch: {comment: "x\\x85touch PWNED"}',
    "key-space": 'sbatch: {"comment x": 1}',
    "key-dashes": 'sbatch: {"--comment": 1}',
    "partition": 'slurm_partition: "debug\\ntouch PWNED"',
}


@pytest.mark.parametrize("where", list(INJECTIONS))
def test_an_sbatch_injection_is_refused_at_dry_run(cli, tmp_path, monkeypatch, where: str) -> None:
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "inj.yaml"
    spec.write_text(f"name: inj\n{TINY_BASE}launch: {{executor: slurm, {INJECTIONS[where]}}}\n")
    for how in (["--dry-run"], []):
        code, out, err = cli("sweep", str(spec), *how)
        assert code == 2 and "launch." in err and "Traceback" not in err, err
        assert "PWNED" not in out
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "results").exists()


@pytest.mark.slurm
@pytest.mark.parametrize("where", ["key", "value"])
def test_an_sbatch_injection_is_refused_at_submission_and_nothing_runs(tmp_path, where: str) -> None:
    r = subprocess.run(["bash", str(Path(__file__).resolve().parents[1] / "scripts" / "slurm-up.sh")],
                       capture_output=True, text=True, timeout=600)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    spec = tmp_path / "inj.yaml"
    spec.write_text(f"name: inj\n{TINY_BASE}launch: {{executor: slurm, slurm_partition: debug, {INJECTIONS[where]}}}\n")
    r = subprocess.run([sys.executable, "-m", "bench.cli", "sweep", str(spec)], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120)  # fmt: skip
    assert r.returncode == 2 and "launch.sbatch" in r.stderr, r.stderr
    time.sleep(5)  # a job that had been submitted would have started by now on the idle node
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "results").exists()
    q = subprocess.run(["squeue", "-h", "-n", "aspp-inj"], capture_output=True, text=True, timeout=30)
    assert q.stdout.strip() == ""


@pytest.mark.slurm
def test_a_partition_sbatch_refuses_leaves_the_working_directory_as_it_was(tmp_path) -> None:
    r = subprocess.run(["bash", str(Path(__file__).resolve().parents[1] / "scripts" / "slurm-up.sh")],
                       capture_output=True, text=True, timeout=600)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    before = _plant(tmp_path)
    spec = tmp_path / "nope.yaml"
    spec.write_text("name: nope\n" + TINY_BASE + "launch: {executor: slurm, slurm_partition: nope}\n")
    before["nope.yaml"] = hashlib.sha256(spec.read_bytes()).hexdigest()
    for extra in ([], ["--results", "."], ["--results", "fresh/deeper"]):
        r = subprocess.run([sys.executable, "-m", "bench.cli", "sweep", str(spec), *extra], cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)  # fmt: skip
        assert r.returncode == 2 and "sbatch refused" in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert tree_hashes(tmp_path, dirs=True) == before, extra


# -- 4. a full disk at checkpoint time ------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 12 MiB tmpfs (root only: CI runs as root)."""
    with tmpfs(tmp_path / "disk", "12m") as mnt:
        yield mnt


@pytest.mark.slow
def test_a_full_disk_at_checkpoint_time_is_exit_2_and_the_run_resumes_once_there_is_room(small_disk) -> None:
    out = small_disk / "run"
    sets = ["model.width=4", "data.count=64", "data.size=[32,32]", "data.batch_size=4", "train.epochs=60",
            "train.eval_every=1000", "profile.latency=false"]  # fmt: skip
    cmd = [sys.executable, "-m", "bench.cli", "train", "--out", str(out), "--set", *sets]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ckpt = out / "checkpoint.pt"
    deadline = time.time() + 300
    while time.time() < deadline and not ckpt.is_file() and proc.poll() is None:
        time.sleep(0.1)
    assert ckpt.is_file(), proc.communicate()[1][-2000:]
    first = ckpt.read_bytes()
    filler = small_disk / "filler"
    with open(filler, "wb") as f:  # fill the disk to the last few kB
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 2, err[-2000:]
    assert "Traceback" not in err and str(ckpt) in err and "MiB free" in err, err[-2000:]
    assert not list(out.glob(".checkpoint.pt.*.tmp")), "a temporary was left behind"
    kept = ckpt.read_bytes()
    import torch

    state = torch.load(ckpt, weights_only=True)  # whole and loadable
    assert state and (kept == first or len(kept) == len(first))
    filler.unlink()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resumed from" in (out / "train.log").read_text()
    assert json.loads((out / "result.json").read_text())["train"]["epochs"] == 60


def test_a_disk_too_small_for_two_checkpoints_is_refused_before_training(cli, tmp_path, monkeypatch) -> None:
    import shutil

    import bench.run.resources as res

    real = shutil.disk_usage
    monkeypatch.setattr(res.shutil, "disk_usage", lambda p: real(p)._replace(free=100_000))
    out = tmp_path / "run"
    code, _, err = cli("train", "--out", str(out), "--set", "model.width=4", "data.count=8", "data.size=[32,32]")
    assert code == 2 and "MiB free" in err and "checkpoint" in err, err
    assert not out.exists()


def test_torch_save_failing_is_an_os_error_naming_the_path_and_the_old_checkpoint_stays(tmp_path, monkeypatch) -> None:
    import torch

    from bench.run.checkpoint import write_checkpoint

    path = tmp_path / "checkpoint.pt"
    write_checkpoint(path, {"a": torch.ones(3)})

    def full(*_a, **_k):
        raise RuntimeError("[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing file")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(OSError) as e:
        write_checkpoint(path, {"a": torch.zeros(3)})
    assert e.value.filename == str(path) and "free of" in e.value.strerror
    assert torch.load(path, weights_only=True)["a"].sum() == 3
    assert not list(tmp_path.glob(".checkpoint.pt.*.tmp"))


# -- 5. damaged state files -----------------------------------------------------------------------

DAMAGED_JOBS = {
    "list": "[1, 2]",
    "string": '"slurm 12"',
    "no-job-id": '{"executor": "local"}',
    "no-executor": '{"job_id": "123"}',
    "pid-text": '{"executor": "local", "job_id": "12ab"}',
    "pid-zero": '{"executor": "local", "job_id": 0}',  # os.kill(0, 0) signals the group: was `failed`
    "pid-out-of-range": '{"executor": "local", "job_id": "99999999999999999999999"}',
    "bad-executor": '{"executor": "kube", "job_id": "1"}',
    "not-json": '{"executor": "slurm", "job_',
    "binary": "\x00\x01\x02",
    "null-id": '{"executor": "slurm", "job_id": null}',
}


@pytest.mark.parametrize("damage", list(DAMAGED_JOBS))
def test_a_damaged_job_record_is_reported_for_its_cell_and_never_resubmitted(cli, tmp_path, damage: str) -> None:

    spec, results, cells, run = _local_sweep_with_a_run_folder(tmp_path, "d", "grid: {model.rates: [[1], [2]]}\n")
    (run / "job.json").write_text(DAMAGED_JOBS[damage])
    code, out, err = cli("status", str(spec), "--results", str(results))
    assert code == 0 and "Traceback" not in err, err
    assert "state file unreadable" in out and "treated as unknown" in out and "1 unknown" in out, out
    code, out, err = cli("status", str(spec), "--results", str(results), "--json")
    assert code == 0 and json.loads(out)["counts"]["unknown"] == 1
    code, out, err = cli("sweep", str(spec), "--results", str(results), "--dry-run", "--retry-failed")
    assert code == 0 and "would submit 1 cell(s)" in out, out + err
    before = (run / "job.json").read_bytes()
    submit_mod = importlib.import_module("bench.launch.submit")

    submitted: list = []
    orig = submit_mod._launch

    def record(sweep, cells_, runs, results_, executor):
        submitted.extend(c.run_id for c in cells_)
        return [None] * len(cells_), results_ / ".submitit"

    submit_mod._launch = record
    try:
        code, out, err = cli("sweep", str(spec), "--results", str(results), "--retry-failed")
    finally:
        submit_mod._launch = orig
    assert code == 0, err
    assert submitted == [cells[1].run_id]  # the damaged cell's job may still run: not resubmitted
    assert (run / "job.json").read_bytes() == before


def test_a_pid_beyond_any_process_is_a_damaged_record_not_a_crash(tmp_path) -> None:
    from bench.launch import cell_states
    from bench.sweep import expand, load_sweep

    spec = tmp_path / "p.yaml"
    spec.write_text("name: p\n" + TINY_BASE + "launch: {executor: local}\n")
    cells = expand(load_sweep(spec))
    run = tmp_path / "results" / cells[0].run_id
    run.mkdir(parents=True)
    (run / "job.json").write_text('{"executor": "local", "job_id": "99999999999999999999999"}')
    (state,) = cell_states(cells, tmp_path / "results")  # os.kill raised OverflowError here once
    # no process ever had this id: the record is damaged, its job unknown (docs/sweeps.md), not failed
    assert state.state == "unknown" and "is not a process id" in state.detail


def test_a_damaged_manifest_does_not_stop_a_report(cli, tmp_path) -> None:
    results = tmp_path / "results"
    out = results / "run"
    _tiny_run(cli, out)
    for manifest in ("[1, 2]", '{"name": 5, "cells": [1], "varying": "x"}', '"text"', "{not json"):
        (results / "sweep.json").write_text(manifest)
        code, _, err = cli("report", str(results), "--out", str(tmp_path / "rep"), "--format", "md")
        assert code == 0 and "Traceback" not in err, (manifest, err)


def test_a_local_pid_that_now_names_another_process_is_not_queued_forever(cli, tmp_path) -> None:
    """After a reboot or pid reuse the recorded pid is alive but not the cell's chain."""
    from bench.launch import cell_states
    from bench.launch.states import process_start

    spec, results, cells, run = _local_sweep_with_a_run_folder(tmp_path, "p")
    other = subprocess.Popen(["sleep", "60"])  # alive, and not a submitit chain
    try:
        for record in (
            {"executor": "local", "job_id": str(other.pid)},  # written before start times were recorded
            {"executor": "local", "job_id": str(other.pid), "pid_start": (process_start(other.pid) or 0) + 1},
        ):
            (run / "job.json").write_text(json.dumps(record))
            (state,) = cell_states(cells, results)
            assert state.state == "failed" and "never started" in state.detail, state
        (run / "job.json").write_text(
            json.dumps({"executor": "local", "job_id": str(other.pid), "pid_start": process_start(other.pid)})
        )
        (state,) = cell_states(cells, results)
        assert state.state == "queued"  # the same process, as recorded: its chain may still reach the cell
    finally:
        other.kill()
        other.wait()


def test_a_result_with_a_non_finite_or_text_miou_is_corrupt_not_a_finished_row(cli, tmp_path) -> None:
    from bench.results.table import collect

    results = tmp_path / "results"
    _tiny_run(cli, results / "run")
    path = results / "run" / "result.json"
    good = path.read_text()
    for miou in ("NaN", "Infinity", '"high"', "-0.5", "57.3", "null", "true"):
        r = json.loads(good)
        path.write_text(json.dumps(r).replace(f'"miou": {json.dumps(r["metrics"]["miou"])}', f'"miou": {miou}', 1))
        df, skipped = collect(results)
        assert df.empty and "metrics.miou" in skipped[0][1], (miou, skipped)
    r = json.loads(good)
    r["notes"] = "x" * (70 << 20)  # a result.json of 70 MB
    path.write_text(json.dumps(r))
    df, skipped = collect(results)
    assert df.empty and "larger than" in skipped[0][1]
    code, _, err = cli("collect", str(results))
    assert code == 2 and "no finished runs" in err


def test_a_column_of_mixed_types_still_collects_to_parquet(cli, tmp_path) -> None:
    results = tmp_path / "results"
    for i, note in enumerate(("text", 5)):
        _tiny_run(cli, results / f"run{i}", f"train.seed={i}")
        p = results / f"run{i}" / "result.json"
        r = json.loads(p.read_text())
        r["note"] = note
        p.write_text(json.dumps(r))
    code, out, err = cli("collect", str(results))
    assert code == 0 and "2 runs" in out, err


# -- 7/8. values that cannot work are refused before they cost anything ----------------------------


@pytest.mark.parametrize(
    ("sets", "fragment"),
    [
        (["model.width=100000"], "model.width"),
        (["model.width=3000"], "more than this machine's"),
        (["data.count=1000000000"], "data.count"),
        (["data.count=5000000"], "more than this machine's"),
        (["data.size=[100000,100000]"], "data.size"),
        (["data.size=[8000,8000]", "data.batch_size=64"], "more than this machine's"),
        (["train.seed=18446744073709551616"], "train.seed"),
        (["train.seed=-1"], "train.seed"),
        (["optim.lr=.inf"], "optim.lr=inf"),
        (["optim.lr=.nan"], "optim.lr=nan"),
        (["train.grad_clip=.inf"], "train.grad_clip"),
        (["data.size=[1,1]"], "at least 16x16"),
        (["model.arch=icnet", "data.size=[16,16]", "data.crop=[2,2]"], "cannot run on a 2x2 input"),
        (["train.device=cuda"], "no CUDA device"),
    ],
)
def test_values_that_cannot_work_are_refused_before_training(cli, tmp_path, sets: list[str], fragment: str) -> None:
    import torch

    if "train.device=cuda" in sets and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    out = tmp_path / "run"
    t0 = time.perf_counter()
    code, _, err = cli("train", "--out", str(out), "--set", *sets)
    assert code == 2 and fragment in err and "Traceback" not in err, err
    assert time.perf_counter() - t0 < 60  # refused from the estimate, not after allocating
    assert not out.exists()  # data and resources are checked before the folder is touched


@pytest.mark.parametrize(
    ("base", "launch", "fragment"),
    [
        ("{train: {device: cuda}}", "{executor: local}", "no CUDA device"),
        ("{train: {amp: fp16, device: cpu}}", "{executor: local}", "fp16 needs CUDA"),
        ("{data: {size: [1, 1]}}", "{executor: local}", "at least 16x16"),
        ("{model: {width: 3000}}", "{executor: local}", "more than this machine's"),
        ("{model: {width: 3000}}", "{executor: slurm, mem_gb: 4}", "launch.mem_gb=4"),
        ("{}", "{executor: slurm, mem_gb: .inf}", "launch.mem_gb=inf"),
        ("{}", "{executor: slurm, mem_gb: 1e300}", "launch.mem_gb"),
        ("{}", "{executor: slurm, timeout_min: 100000000}", "launch.timeout_min"),
        ("{}", "{executor: slurm, cpus_per_task: 0}", "launch.cpus_per_task"),
    ],
)
def test_dry_run_refuses_what_the_real_run_refuses(cli, tmp_path, base: str, launch: str, fragment: str) -> None:
    import torch

    if "cuda" in base and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    spec = tmp_path / "s.yaml"
    spec.write_text(f"name: s\nbase: {base}\nlaunch: {launch}\n")
    for how in (["--dry-run"], []):
        code, out, err = cli("sweep", str(spec), "--results", str(tmp_path / "r"), *how)
        assert code == 2 and fragment in err and "Traceback" not in err, (how, err)
    assert not (tmp_path / "r").exists()


def test_a_cuda_cell_for_slurm_is_not_judged_by_the_login_node(cli, tmp_path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text("name: s\nbase: {train: {device: cuda}}\nlaunch: {executor: slurm, gpus_per_node: 1}\n")
    code, out, err = cli("sweep", str(spec), "--dry-run")
    assert code == 0, err


def test_an_exclude_that_removes_every_cell_is_refused(cli, tmp_path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text("name: s\ngrid: {model.skip: [true, false]}\nexclude: [{model.arch: aspp_unet}]\n")
    code, _, err = cli("sweep", str(spec), "--dry-run")
    assert code == 2 and "every one of the grid's 2 cell(s) is removed by 'exclude'" in err


# -- 9. Ctrl-C on `sweep --wait` stops the watching, not the cells ---------------------------------


@pytest.mark.slow
def test_ctrl_c_on_the_watcher_leaves_local_cells_running_and_a_pipe_reader_is_not_held(tmp_path) -> None:
    import signal

    spec = tmp_path / "w.yaml"
    spec.write_text(
        textwrap.dedent("""
        name: w
        base:
          model: {arch: aspp_unet, width: 2}
          data: {size: [24, 24], count: 8, batch_size: 2}
          train: {epochs: 5000, eval_every: 10000}
          profile: {latency: false}
        launch: {executor: local, cpus_per_task: 1}
        """)
    )
    results = tmp_path / "results"
    proc = subprocess.Popen([sys.executable, "-m", "bench.cli", "sweep", str(spec), "--results", str(results),
                             "--wait"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    from bench.launch import cell_states
    from bench.sweep import expand, load_sweep

    cells = expand(load_sweep(spec))
    # 5000 epochs: the cell must outlive the watcher by far (200 once ended before the Ctrl-C came
    # on a busy machine); it is killed at the end whatever the assertions say
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (results / cells[0].run_id / "checkpoint.pt").is_file():
            time.sleep(0.5)
        assert (results / cells[0].run_id / "checkpoint.pt").is_file()
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground group
        t0 = time.time()
        out, err = proc.communicate(timeout=60)  # the pipe closes when the watcher ends, not the cell
        assert time.time() - t0 < 30
        assert proc.returncode == 130 and "stopped watching" in err, (out + err)[-1000:]
        time.sleep(3)
        (state,) = cell_states(cells, results)
        assert state.state == "running", state
    finally:
        job_file = results / cells[0].run_id / "job.json"
        if job_file.is_file():
            with contextlib.suppress(ProcessLookupError, ValueError, KeyError, OSError):
                os.killpg(os.getpgid(int(json.loads(job_file.read_text())["job_id"])), signal.SIGKILL)


def test_slurm_up_sets_a_default_memory_per_cpu() -> None:
    text = (Path(__file__).resolve().parents[1] / "scripts" / "slurm-up.sh").read_text()
    assert "DefMemPerCPU=" in text


# -- 10. paths: read-only, symlinked, spaces and non-ASCII ----------------------------------------


def test_a_results_folder_that_is_a_symlink_and_paths_with_spaces_and_non_ascii_work(cli, tmp_path) -> None:
    real = tmp_path / "real results ü"
    real.mkdir()
    link = tmp_path / "linked"
    link.symlink_to(real)
    spec = tmp_path / "a sweep é.yaml"
    spec.write_text("name: s\n" + TINY_BASE)
    code, out, err = cli("sweep", str(spec), "--executor", "inline", "--results", str(link / "s"))
    assert code == 0, err
    assert len(list((real / "s").glob("*/result.json"))) == 1
    code, out, err = cli("status", str(spec), "--results", str(link / "s"))
    assert code == 0 and "1 done" in out
    code, out, err = cli("report", str(link / "s"), "--out", str(tmp_path / "rapport ü"), "--format", "md")
    assert code == 0, err


def test_train_into_a_read_only_folder_is_exit_2_naming_it(cli, tmp_path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() == 0:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64m", "tmpfs", str(ro)], capture_output=True)
        if r.returncode:
            pytest.skip("cannot mount a read-only tmpfs")
    else:
        ro.chmod(0o555)
    try:
        code, _, err = cli("train", "--out", str(ro / "run"), "--set", "model.width=4", "data.count=8")
        assert code == 2 and str(ro / "run") in err and "Traceback" not in err, err
        assert "read-only" in err.lower() or "not writable" in err.lower()
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", "-l", str(ro)], check=False)


def test_a_time_limit_above_the_partition_maxtime_is_refused_before_submission(cli, tmp_path, monkeypatch) -> None:
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "sinfo").write_text("#!/bin/sh\necho 'debug* 30:00'\necho 'long 2-00:00:00'\n")
    (fake / "sinfo").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    spec = tmp_path / "s.yaml"
    for launch, refused in (
        ("{executor: slurm, timeout_min: 60}", True),
        ("{executor: slurm, timeout_min: 30}", False),
        ("{executor: slurm, timeout_min: 600, slurm_partition: long}", False),
        ("{executor: slurm, timeout_min: 3000, slurm_partition: long}", True),
    ):
        spec.write_text(f"name: s\nlaunch: {launch}\n")
        code, out, err = cli("sweep", str(spec), "--dry-run")
        assert (code == 2) == refused, (launch, err)
        if refused:
            assert "MaxTime" in err and "launch.timeout_min" in err
