"""Launching cells: inline, local subprocesses or a Slurm job array, all through submitit.

Submission returns at once (the jobs write their own results; the launcher may die). Each
submitted cell gets `job.json` in its run folder (executor, job id, submitit folder), which
`status` reads to tell queued and running cells from failed ones, so that nothing is
submitted twice. The submitted callable is Checkpointable: on Slurm's preemption or
time-limit signal it saves a checkpoint through the engine and requeues itself; the requeued
job resumes from that checkpoint in the same run folder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import UserError
from bench.store import CHECKPOINT, RESULT, is_locked, write_json
from bench.sweep import Cell, LaunchConfig, Sweep

__all__ = ["CellState", "RunJob", "cell_problems", "cell_states", "check_cells", "data_problem_lines", "submit"]

JOB = "job.json"
ERROR = "error.txt"


# --------------------------------------------------------------------------- checks


def cell_problems(cells: Sequence[Cell], *, source: str) -> tuple[list[str], dict[str, list[Cell]]]:
    """(model problems, {data problem: the cells it stops}): each model is built on the meta
    device (no memory, no weights), each distinct data root is checked once."""
    import torch

    import bench.data  # noqa: F401  (registers the datasets)
    from bench.models import build_model
    from bench.models.backbones import weights_check_only
    from bench.registry import datasets

    model_errors: list[str] = []
    data_errors: dict[str, list[Cell]] = {}
    checked_roots: dict[tuple[str, str | None, str], str | None] = {}
    for c in cells:
        label = f"{source}: cell {c.index} ({c.run_id}: " + ", ".join(f"{k}={v}" for k, v in c.varying.items()) + ")"
        m = c.config.model
        try:
            with torch.device("meta"), weights_check_only():
                build_model(m.arch, **m.knobs())
        except UserError as e:
            model_errors.append(f"{label}: {e}")
        d = c.config.data
        key = (d.name, d.root, d.split)
        if key not in checked_roots:
            checked_roots[key] = _data_problem(d, datasets)
        problem = checked_roots[key]
        if problem:
            data_errors.setdefault(problem, []).append(c)
    return model_errors, data_errors


def data_problem_lines(data_errors: dict[str, list[Cell]]) -> list[str]:
    """'cells 0, 1, 2: <problem>', one line per distinct data problem."""
    return [f"cells {', '.join(str(c.index) for c in cs)}: {problem}" for problem, cs in data_errors.items()]


def check_cells(cells: Sequence[Cell], *, source: str) -> None:
    """Build every cell's model on the meta device and check data roots; report all at once."""
    model_errors, data_errors = cell_problems(cells, source=source)
    errors = model_errors + [f"{source}: {line}" for line in data_problem_lines(data_errors)]
    if errors:
        raise UserError(f"{len(errors)} cell(s) would fail; nothing was submitted:\n  " + "\n  ".join(errors))


def _data_problem(d: Any, datasets: Any) -> str | None:
    try:
        entry = datasets.get(d.name)
    except UserError as e:
        return str(e)
    if "root" not in entry.knobs:
        return None
    if d.name == "camvid" and d.root is not None:
        from bench.data.camvid import camvid_pairs

        try:
            camvid_pairs(Path(d.root), d.split)
        except UserError as e:
            return str(e)
        return None
    if d.root is None or not Path(d.root).is_dir():
        return f"data.root '{d.root}' does not exist (dataset '{d.name}'); see README 'Datasets'"
    return None


# --------------------------------------------------------------------------- the job


try:
    from submitit.helpers import Checkpointable as _Checkpointable
except ImportError:  # pragma: no cover - submitit is a dependency
    _Checkpointable = object  # type: ignore[misc,assignment]


class RunJob(_Checkpointable):  # type: ignore[misc,valid-type]
    """What each job runs: execute(cfg, out_dir). Checkpointable for submitit."""

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads
        self._trainer: Any = None

    def __call__(self, cfg_json: dict[str, Any], out_dir: str) -> dict[str, Any]:
        if self.threads:
            import torch

            torch.set_num_threads(self.threads)
        from bench.config import RunConfig
        from bench.runner import execute

        restarts = os.environ.get("SLURM_RESTART_COUNT")
        if restarts:
            print(f"aspp-bench: SLURM_RESTART_COUNT={restarts}, resuming in {out_dir}", flush=True)
        result = execute(RunConfig.model_validate(cfg_json), out_dir, trainer_hook=self._hook)
        m = result.get("metrics") or {}
        return {"status": result["status"], "miou": m.get("miou"), "out": out_dir}

    def _hook(self, trainer: Any) -> None:
        self._trainer = trainer
        self._defer_preemption_to_step_boundary(trainer)

    @staticmethod
    def _defer_preemption_to_step_boundary(trainer: Any) -> None:
        """submitit handles SIGUSR2 (preemption, time limit) by calling checkpoint() and exiting.
        Wrap its handler so that it runs between two training steps, never inside one: the
        checkpoint then holds a whole number of optimiser steps and the resumed run repeats none."""
        import signal
        import threading

        if threading.current_thread() is not threading.main_thread():
            return
        try:  # USR2 unless the cluster's SUBMITIT_PREEMPT_SIGNAL names another
            from submitit.core.job_environment import JobEnvironment

            sig = JobEnvironment._usr_sig()
        except (ImportError, RuntimeError):
            sig = signal.SIGUSR2
        inner = signal.getsignal(sig)
        if not callable(inner):  # not under submitit (inline runs): nothing to wrap
            return

        def deferred(signum: int, frame: Any) -> None:
            trainer.at_step_boundary(lambda: inner(signum, frame))

        signal.signal(sig, deferred)

    def checkpoint(self, cfg_json: dict[str, Any], out_dir: str) -> Any:
        """submitit calls this on preemption / timeout: save through the engine, then requeue."""
        import submitit

        if self._trainer is not None:
            path = self._trainer.save_checkpoint()
            self._trainer.log(f"preemption signal: checkpoint saved to {path}, requeueing")
        return submitit.helpers.DelayedSubmission(RunJob(self.threads), cfg_json, out_dir)


class RunChain:
    """Local executor: runs its share of the cells one after the other, so that at most
    `array_parallelism` cells train at once on a workstation (and their latencies are not
    measured under a pile-up of every cell). A failing cell is recorded and the chain goes on."""

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads

    def __call__(self, items: list[tuple[dict[str, Any], str]]) -> list[dict[str, Any]]:
        import traceback

        out = []
        for cfg_json, out_dir in items:
            try:
                out.append(RunJob(self.threads)(cfg_json, out_dir))
            except Exception as e:
                last = traceback.format_exception_only(type(e), e)[-1].strip()
                (Path(out_dir) / ERROR).write_text(last[:1000] + "\n")
                out.append({"status": "failed", "error": last, "out": out_dir})
        return out


# --------------------------------------------------------------------------- states


@dataclass(frozen=True)
class CellState:
    cell: Cell
    state: str  # done, diverged, running, queued, failed, corrupt, missing
    detail: str = ""


def _squeue(job_ids: list[str]) -> dict[str, str]:
    if not job_ids or shutil.which("squeue") is None:
        return {}
    try:
        out = subprocess.run(
            ["squeue", "-h", "-r", "-o", "%i %T", "-j", ",".join(sorted({j.split("_")[0] for j in job_ids}))],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    states = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2:
            states[parts[0]] = parts[1]
    return states


def _last_error(job: dict[str, Any]) -> str:
    folder = Path(job.get("folder", ""))
    for f in sorted(folder.glob(f"{job.get('job_id')}_*_log.err")) + sorted(folder.glob(f"{job.get('job_id')}*.err")):
        lines = [ln for ln in f.read_text(errors="replace").splitlines() if ln.strip()]
        for ln in reversed(lines):
            if "Error" in ln or "error" in ln or "CANCELLED" in ln or "Killed" in ln:
                return ln.strip()[:300]
        if lines:
            return lines[-1].strip()[:300]
    return "job ended without a result"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    try:  # a zombie has exited
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


def cell_states(cells: Sequence[Cell], results: Path) -> list[CellState]:
    """State of every cell from its run folder and recorded job (no torch import)."""
    jobs: dict[str, dict[str, Any]] = {}
    for c in cells:
        jf = results / c.run_id / JOB
        if jf.is_file():
            try:
                jobs[c.run_id] = json.loads(jf.read_text())
            except json.JSONDecodeError:
                pass
    slurm = _squeue([j["job_id"] for j in jobs.values() if j.get("executor") == "slurm"])
    out = []
    for c in cells:
        run = results / c.run_id
        res = run / RESULT
        if res.is_file():
            try:
                r = json.loads(res.read_text())
                status = r.get("status", "done")
                detail = f"mIoU {100 * r['metrics']['miou']:.2f}" if r.get("metrics") else ""
                out.append(CellState(c, "diverged" if status == "diverged" else "done", detail))
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                out.append(CellState(c, "corrupt", f"{res}: unreadable ({e.__class__.__name__})"))
            continue
        job = jobs.get(c.run_id)
        if is_locked(run):  # a process is training in the folder, whatever launched it
            out.append(CellState(c, "running", f"{job['executor']} job {job['job_id']}" if job else "locked"))
            continue
        if job is None:
            out.append(CellState(c, "missing"))
            continue
        if job["executor"] == "slurm":
            s = slurm.get(job["job_id"]) or slurm.get(job["job_id"].split("_")[0])
            if s in ("PENDING", "REQUEUED", "REQUEUE_HOLD", "SUSPENDED"):
                out.append(CellState(c, "queued", f"slurm job {job['job_id']} {s}"))
            elif s is not None:
                out.append(CellState(c, "running", f"slurm job {job['job_id']} {s}"))
            else:
                out.append(CellState(c, "failed", _last_error(job)))
        elif (run / ERROR).is_file():
            out.append(CellState(c, "failed", (run / ERROR).read_text().strip()[:300]))
        elif job["executor"] == "local":
            if _pid_alive(int(job["job_id"])):  # its chain is alive and has not reached it yet
                out.append(CellState(c, "queued", f"local chain pid {job['job_id']}"))
            else:
                out.append(CellState(c, "failed", _last_error(job)))
        else:  # inline runs finish (or fail) in the launching process
            out.append(CellState(c, "failed", job.get("error", "inline run ended without a result")))
    return out


# --------------------------------------------------------------------------- submission


def _executor(launch: LaunchConfig, folder: Path, executor: str) -> Any:
    import submitit

    if executor == "local":
        ex = submitit.LocalExecutor(folder=str(folder))
        ex.update_parameters(timeout_min=launch.timeout_min)
        return ex
    ex = submitit.AutoExecutor(folder=str(folder), cluster="slurm", slurm_max_num_timeout=launch.max_num_timeout)
    params: dict[str, Any] = {
        "timeout_min": launch.timeout_min,
        "cpus_per_task": launch.cpus_per_task,
        "slurm_array_parallelism": launch.array_parallelism,
        "slurm_signal_delay_s": launch.signal_delay_s,
    }
    if launch.gpus_per_node:
        params["gpus_per_node"] = launch.gpus_per_node
    if launch.slurm_partition:
        params["slurm_partition"] = launch.slurm_partition
    if launch.mem_gb:
        params["mem_gb"] = launch.mem_gb
    if launch.sbatch:
        params["slurm_additional_parameters"] = dict(launch.sbatch)
    if launch.setup:
        params["slurm_setup"] = list(launch.setup)
    try:
        ex.update_parameters(**params)
    except Exception as e:  # submitit names the unknown parameter and lists the valid ones
        raise UserError(f"launch: {e}") from None
    return ex


def submit(
    sweep: Sweep, cells: Sequence[Cell], results: Path, *, executor: str, retry_failed: bool = False
) -> tuple[list[Cell], list[CellState]]:
    """Submit the cells that need it; returns (submitted, skipped with their states)."""
    states = cell_states(cells, results)
    todo: list[Cell] = []
    skipped: list[CellState] = []
    for s in states:
        if s.state == "missing" or (retry_failed and s.state in ("failed", "diverged", "corrupt")):
            todo.append(s.cell)
        else:
            skipped.append(s)
    from bench.store import MANIFEST
    from bench.sweep import varying_keys

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
    for c in todo:  # a retried cell starts clean: its old result/checkpoint are kept aside
        run = results / c.run_id
        run.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for name in (RESULT, JOB, ERROR):
            if (run / name).is_file():
                (run / name).rename(run / f"{name}.{stamp}.old")
        if retry_failed and (run / CHECKPOINT).is_file() and _was_diverged(run, stamp):
            (run / CHECKPOINT).rename(run / f"{CHECKPOINT}.{stamp}.old")
    cfgs = [c.config.model_dump(mode="json") for c in todo]
    outs = [str(results / c.run_id) for c in todo]
    job_fn = RunJob(threads=sweep.launch.cpus_per_task)
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
        return list(todo), skipped
    folder = results / ".submitit"
    ex = _executor(sweep.launch, folder, executor)
    ex.update_parameters(name=f"aspp-{sweep.name}")
    if executor == "local":
        k = min(sweep.launch.array_parallelism, len(todo))
        chains = [list(zip(cfgs[i::k], outs[i::k], strict=True)) for i in range(k)]
        chain_jobs = ex.map_array(RunChain(threads=sweep.launch.cpus_per_task), chains)
        jobs = [None] * len(todo)
        for i, job in enumerate(chain_jobs):
            for j in range(i, len(todo), k):
                jobs[j] = job
    else:
        jobs = ex.map_array(job_fn, cfgs, outs)  # one job array on Slurm
    for c, job in zip(todo, jobs, strict=True):
        write_json(
            results / c.run_id / JOB,
            {"executor": executor, "job_id": str(job.job_id), "folder": str(folder), "submitted": time.time()},
        )
    return list(todo), skipped


def _was_diverged(run: Path, stamp: str) -> bool:
    old = run / f"{RESULT}.{stamp}.old"
    try:
        return json.loads(old.read_text()).get("status") == "diverged"
    except (OSError, json.JSONDecodeError):
        return False
