"""Submission: the submitit executor for the launch settings (local or Slurm), the cells that need
submitting (never one whose job may still be queued or running), one job array or local chains,
and the sbatch script a submission would run (`--dry-run`)."""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.errors import UserError
from bench.files import atomic_path, make_new_folder, mkdir, remove_new_paths, write_json
from bench.launch.jobs import RunChain, RunJob
from bench.launch.states import RETRYABLE, CellState, cell_states, process_start
from bench.results.folders import CHECKPOINT, ERROR, JOB, MANIFEST, RESULT
from bench.sweep import Cell, LaunchConfig, Sweep, varying_keys

__all__ = ["sbatch_preview", "submit", "time_limit_problem"]

LOCK = ".submit.lock"


def _slurm_parameters(launch: LaunchConfig, name: str) -> dict[str, Any]:
    """submitit.SlurmExecutor's own parameters for these launch settings."""
    params: dict[str, Any] = {
        "job_name": f"aspp-{name}",
        "time": launch.timeout_min,
        "cpus_per_task": launch.cpus_per_task,
        "array_parallelism": launch.array_parallelism,
        "signal_delay_s": launch.signal_delay_s,
    }
    if launch.gpus_per_node:
        params["gpus_per_node"] = launch.gpus_per_node
    if launch.world_size > 1:  # one cell = nodes x ntasks_per_node tasks, one per device (srun starts them)
        params["nodes"] = launch.nodes
        params["ntasks_per_node"] = launch.tasks
    if launch.slurm_partition:
        params["partition"] = launch.slurm_partition
    if launch.mem_gb:
        gb = launch.mem_gb
        params["mem"] = f"{int(gb)}GB" if gb == int(gb) else f"{int(gb * 1024)}MB"
    if launch.sbatch:
        params["additional_parameters"] = dict(launch.sbatch)
    if launch.setup:
        params["setup"] = list(launch.setup)
    return params


def _detached_local_executor() -> Any:
    """submitit's LocalExecutor, whose job controllers run detached from the launcher, as Slurm's
    jobs are: in a session of their own (Ctrl-C on `sweep --wait` stops the watching, not the cells)
    and with no hold on the launcher's stdin/stdout/stderr (a reader of the launcher's output
    through a pipe sees its end when the launcher ends, not when the last cell does)."""
    import subprocess
    import sys

    import submitit
    from submitit.local.local import LocalJob

    class Detached(submitit.LocalExecutor):
        def _submit_command(self, command: str) -> Any:
            # submitit.local.local.start_controller, started with start_new_session and its own log
            ntasks = self.parameters.get("tasks_per_node", 1)
            n_gpus = self.parameters.get("gpus_per_node", 0)
            visible = self.parameters.get("visible_gpus", ())
            gpus = range(n_gpus) if visible == () else visible[:n_gpus]
            env = {
                **os.environ,
                "SUBMITIT_LOCAL_NTASKS": str(ntasks),
                "SUBMITIT_LOCAL_COMMAND": command,
                "SUBMITIT_LOCAL_TIMEOUT_S": str(int(60 * self.parameters.get("timeout_min", 2.0))),
                "SUBMITIT_LOCAL_SIGNAL_DELAY_S": str(int(self.parameters.get("signal_delay_s", 30))),
                "SUBMITIT_LOCAL_NODEID": "0",
                "SUBMITIT_LOCAL_JOB_NUM_NODES": "1",
                "SUBMITIT_STDERR_TO_STDOUT": "1" if self.parameters.get("stderr_to_stdout", False) else "",
                "SUBMITIT_EXECUTOR": "local",
                "CUDA_VISIBLE_DEVICES": ",".join(str(k) for k in gpus),
                "SUBMITIT_LOCAL_WITH_SHELL": "",
            }
            self.folder.mkdir(parents=True, exist_ok=True)
            with open(self.folder / "local-controllers.log", "ab") as log:
                process = subprocess.Popen(
                    [sys.executable, "-m", "submitit.local._local", str(self.folder)],
                    env=env,
                    start_new_session=True,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                )
            return LocalJob(folder=self.folder, job_id=str(process.pid), process=process, tasks=list(range(ntasks)))

    return Detached


def _executor(launch: LaunchConfig, folder: Path, executor: str, name: str = "sweep", *, preview: bool = False) -> Any:
    import submitit

    if executor == "local":
        ex = _detached_local_executor()(folder=str(folder))
        ex.update_parameters(timeout_min=launch.timeout_min, name=f"aspp-{name}", tasks_per_node=launch.tasks)
        if launch.gpus_per_node:
            ex.update_parameters(gpus_per_node=launch.gpus_per_node)
        return ex
    cls = submitit.SlurmExecutor
    if preview:  # the sbatch script is made without a cluster at hand (a laptop checking a sweep)

        class _Preview(submitit.SlurmExecutor):
            @classmethod
            def affinity(cls) -> int:
                return 1

        cls = _Preview
    try:
        ex = cls(folder=str(folder), max_num_timeout=launch.max_num_timeout)
    except RuntimeError as e:  # no srun: this is not a Slurm machine
        raise UserError(
            f"executor slurm: {e} (srun is not on PATH); submit from a cluster's login node, or use --executor local"
        ) from None
    try:
        ex.update_parameters(**_slurm_parameters(launch, name))
    except Exception as e:  # submitit names the unknown parameter and lists the valid ones
        raise UserError(f"launch: {e}") from None
    return ex


def submit(
    sweep: Sweep, cells: Sequence[Cell], results: Path, *, executor: str, retry_failed: bool = False
) -> tuple[list[Cell], list[CellState]]:
    """Submit the cells that need it; returns (submitted, skipped with their states). A cell
    whose job may still be queued or running (queued, running, unknown) is never submitted.

    A refused first submission leaves no trace, and its clean-up removes only what this call
    created, while it still holds the sweep's lock: the paths it made are listed, and folders are
    removed only when empty (never a recursive delete)."""
    while True:
        top = make_new_folder(results)  # what this call created, and so may remove again
        lock_new = not (results / LOCK).exists()
        with _submission_lock(results) as lock:
            if lock is None:  # a refused launcher removed the folder while we waited: start again
                continue
            made = {results, *(q for q in results.parents if top in q.parents)} if top else set()
            before = set(top.rglob("*")) - made - {results / LOCK} if top else set()  # a concurrent launcher's
            manifest = results / MANIFEST
            old_manifest = manifest.read_bytes() if manifest.is_file() else None
            sub = results / ".submitit"  # submitit's files of a refused submission go too
            sub_before = set(sub.rglob("*")) if sub.is_dir() else None
            try:
                return _submit_locked(sweep, cells, results, executor=executor, retry_failed=retry_failed)
            except (UserError, OSError):  # refused, or the file system refused (a full disk): no trace
                if results.is_dir():  # a folder that was there before: put back its manifest, drop a new lock
                    if old_manifest is None:
                        manifest.unlink(missing_ok=True)
                    elif manifest.is_file() and manifest.read_bytes() != old_manifest:
                        with atomic_path(manifest) as tmp:
                            tmp.write_bytes(old_manifest)
                    if lock_new:
                        (results / LOCK).unlink(missing_ok=True)
                    _remove_refused_submission_files(sub, sub_before)
                remove_new_paths(top, before, last=(results / LOCK,))
                raise


# What submitit writes for a submission before sbatch answers: files named by a fresh uuid. A job's
# own files are named by its job id (`<id>_<task>_log.err`), so a running job's logs never match.
_SUBMISSION_FILES = re.compile(r"(\.submission_file_[0-9a-f]{32}\.sh|[0-9a-f]{32}\.pkl)")


def _remove_refused_submission_files(sub: Path, before: set[Path] | None) -> None:
    """Remove the files a refused submission left in the submitit folder, and the folder itself if
    this submission made it and it is empty; nothing a job wrote is touched."""
    if not sub.is_dir():
        return
    for p in set(sub.iterdir()) - (before or set()):
        if _SUBMISSION_FILES.fullmatch(p.name):
            p.unlink(missing_ok=True)
    if before is None:
        with contextlib.suppress(OSError):
            sub.rmdir()


@contextlib.contextmanager
def _submission_lock(results: Path) -> Any:
    """Hold the sweep's lock file; yields None when the file was removed while we waited for it
    (a refused first launcher cleaning up), so the caller starts again."""
    import fcntl

    fd = os.open(results / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # held only while states are read and jobs recorded
        yield None if os.fstat(fd).st_nlink == 0 else fd
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _submit_locked(
    sweep: Sweep, cells: Sequence[Cell], results: Path, *, executor: str, retry_failed: bool
) -> tuple[list[Cell], list[CellState]]:
    states = cell_states(cells, results)
    todo: list[CellState] = []
    skipped: list[CellState] = []
    for s in states:
        if s.state == "missing" or (retry_failed and s.state in RETRYABLE):
            todo.append(s)
        else:
            skipped.append(s)
    write_json(
        results / MANIFEST,
        {
            "name": sweep.name,
            "reference": list(sweep.reference),
            "varying": [k for k in varying_keys(list(cells)) if k != "train.seed"],
            "cells": {c.run_id: c.varying for c in cells},
        },
    )
    if not todo:
        return [], skipped
    stamp = time.strftime("%Y%m%d-%H%M%S")
    moved: list[tuple[Path, Path]] = []  # (aside, original): put back if the submission fails
    for s in todo:  # a retried cell starts clean: its old result/job/error are kept aside
        run = s.folder or results / s.cell.run_id
        mkdir(run)
        ranks = [f.name for f in sorted(run.glob("rank-*.json")) + sorted(run.glob("rank-*.error"))]
        for name in (RESULT, JOB, ERROR, *ranks):
            if (run / name).is_file():
                moved.append((run / f"{name}.{stamp}.old", run / name))
        ckpt = run / CHECKPOINT
        if retry_failed and ckpt.is_file() and (s.state == "diverged" or not _readable_checkpoint(ckpt)):
            moved.append((run / f"{CHECKPOINT}.{stamp}.old", ckpt))  # resume only from a sound checkpoint
    for aside, orig in moved:
        orig.rename(aside)
    try:
        jobs, folder = _launch(sweep, [s.cell for s in todo], [s.folder or results / s.cell.run_id for s in todo],
                               results, executor)  # fmt: skip
    except BaseException:
        for aside, orig in moved:  # a refused submission changes nothing: old files go back
            if aside.is_file() and not orig.exists():
                aside.rename(orig)
        for s in todo:
            run = s.folder or results / s.cell.run_id
            if run.is_dir() and not any(run.iterdir()):
                run.rmdir()
        raise
    for s, job in zip(todo, jobs, strict=True):
        if job is not None:
            record = {"executor": executor, "job_id": str(job.job_id), "folder": str(folder), "submitted": time.time()}
            if executor == "local":  # the pid names this process only with its start time (pids are reused)
                record["pid_start"] = process_start(int(job.job_id))
            write_json((s.folder or results / s.cell.run_id) / JOB, record)
    return [s.cell for s in todo], skipped


def _readable_checkpoint(path: Path) -> bool:
    import zipfile

    return zipfile.is_zipfile(path)


def _launch(sweep: Sweep, cells: list[Cell], runs: list[Path], results: Path, executor: str) -> tuple[list, Path]:
    """Hand the cells to the executor: (one job per cell, or None for inline runs; submitit folder)."""
    cfgs = [c.config.model_dump(mode="json") for c in cells]
    outs = [str(r.resolve()) for r in runs]
    problem = sweep.launch.executor_problem(executor, "--executor ")
    if problem:
        raise UserError(problem)
    job_fn = RunJob(threads=sweep.launch.cpus_per_task, collective_timeout_s=sweep.launch.collective_timeout_s)
    folder = (results / ".submitit").resolve()
    if executor == "inline":
        for cfg, out in zip(cfgs, outs, strict=True):
            write_json(Path(out) / JOB, {"executor": "inline", "job_id": str(os.getpid()), "submitted": time.time()})
            try:
                job_fn(cfg, out)
            except UserError:
                raise
            except Exception as e:  # one failing cell does not stop the others; status shows it
                write_json(
                    Path(out) / JOB,
                    {"executor": "inline", "job_id": str(os.getpid()), "error": f"{type(e).__name__}: {e}"[:300]},
                )
        return [None] * len(cells), folder
    ex = _executor(sweep.launch, folder, executor, sweep.name)
    import io

    captured = io.StringIO()  # submitit echoes sbatch's stderr; it is shown once, in the error below
    try:
        with contextlib.redirect_stderr(captured):
            jobs = _map(ex, sweep, job_fn, cfgs, outs, executor)
    except Exception as e:
        from submitit.core.utils import FailedJobError

        if isinstance(e, FailedJobError | OSError):
            what = "sbatch" if executor == "slurm" else f"the {executor} executor"
            msg = (str(e).strip() or captured.getvalue().strip() or type(e).__name__).replace("\n", "\n  ")
            raise UserError(
                f"{what} refused the submission; nothing was submitted. Its message:\n  {msg}\n"
                "Check launch.slurm_partition, launch.sbatch and the other launch keys of the sweep file "
                "('aspp-bench sweep X.yaml --dry-run' prints the sbatch script)"
            ) from None
        raise
    return jobs, folder


def _map(ex: Any, sweep: Sweep, job_fn: RunJob, cfgs: list, outs: list[str], executor: str) -> list[Any]:
    """One job per cell: a Slurm job array, or `array_parallelism` local chains (a cell's job is its chain's)."""
    if executor != "local":
        return list(ex.map_array(job_fn, cfgs, outs))  # one job array on Slurm
    k = min(sweep.launch.array_parallelism, len(cfgs))
    chains = [list(zip(cfgs[i::k], outs[i::k], strict=True)) for i in range(k)]
    chain_jobs = ex.map_array(RunChain(sweep.launch.cpus_per_task, sweep.launch.collective_timeout_s), chains)
    return [chain_jobs[j % k] for j in range(len(cfgs))]


def _minutes(limit: str) -> float | None:
    """Slurm's time format ('infinite', 'MM', 'MM:SS', 'HH:MM:SS', 'D-HH[:MM[:SS]]') in minutes."""
    if limit in ("infinite", "UNLIMITED", "n/a", ""):
        return None
    days, _, rest = limit.rpartition("-")
    parts = [int(x) for x in rest.split(":")] if rest else [0]
    if days:  # D-HH, D-HH:MM, D-HH:MM:SS
        h, m, sec = (parts + [0, 0, 0])[:3]
    elif len(parts) == 1:  # MM
        h, m, sec = 0, parts[0], 0
    elif len(parts) == 2:  # MM:SS
        h, m, sec = 0, parts[0], parts[1]
    else:  # HH:MM:SS
        h, m, sec = parts[:3]
    return int(days or 0) * 1440 + h * 60 + m + sec / 60


def time_limit_problem(launch: LaunchConfig) -> str | None:
    """Why Slurm would refuse the cells' time limit (launch.timeout_min above the partition's
    MaxTime), asked of sinfo; None where it fits or no cluster can be asked (a laptop's dry-run)."""
    import shutil
    import subprocess

    if shutil.which("sinfo") is None:
        return None
    try:
        r = subprocess.run(["sinfo", "-h", "-o", "%P %l"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    limits = {}
    for line in r.stdout.splitlines() if r.returncode == 0 else []:
        name, _, limit = line.partition(" ")
        default = name.endswith("*")
        limits[name.rstrip("*")] = limit.strip()
        if default:
            limits[None] = limit.strip()
    part = launch.slurm_partition
    if part not in limits:
        return None  # an unknown partition: sbatch names it at submission
    try:
        most = _minutes(limits[part])
    except ValueError:
        return None
    if most is not None and launch.timeout_min > most:
        return (
            f"launch.timeout_min={launch.timeout_min} is above the MaxTime of partition "
            f"{part or 'default'} ({limits[part]} = {most:g} min); Slurm would refuse the jobs. Give at most "
            f"{int(most)}, or another launch.slurm_partition"
        )
    return None


def sbatch_preview(launch: LaunchConfig, results: Path, name: str) -> str:
    """The sbatch script a Slurm submission of this sweep runs (its #SBATCH options and every
    setup line), made by submitit itself without submitting anything."""
    ex = _executor(launch, (results / ".submitit").resolve(), "slurm", name, preview=True)
    return ex._make_submission_file_text(ex._submitit_command_str, "dry-run")
