"""Launching cells: inline, local subprocesses or a Slurm job array, all through submitit.

Submission returns at once (the jobs write their own results; the launcher may die). Each
submitted cell gets `job.json` in its run folder (executor, job id, submitit folder), which
`status` reads to tell queued and running cells from failed ones, so that nothing is
submitted twice. The submitted callable is Checkpointable: on Slurm's preemption or
time-limit signal it saves a checkpoint through the engine and requeues itself; the requeued
job resumes from that checkpoint in the same run folder.
"""

from __future__ import annotations

import contextlib
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
from bench.labels import cell_label
from bench.store import CHECKPOINT, LOG, RESULT, is_locked, write_json
from bench.sweep import Cell, LaunchConfig, Sweep

__all__ = [
    "FINISHED",
    "RETRYABLE",
    "STATES",
    "CellState",
    "RunJob",
    "cell_problems",
    "cell_states",
    "check_cells",
    "data_problem_lines",
    "sbatch_preview",
    "submit",
]

JOB = "job.json"
ERROR = "error.txt"
RANK_INFO = "rank-{rank}.json"  # a distributed cell's ranks: who started where (host, pid)
RANK_ERROR = "rank-{rank}.error"  # ... and why one of them failed


# --------------------------------------------------------------------------- checks


def cell_problems(cells: Sequence[Cell], *, source: str) -> tuple[list[str], dict[str, list[Cell]]]:
    """(model problems, {data problem: the cells it stops}): each distinct model (architecture and
    knobs; seeds and training settings share it) is built once on the meta device (no memory, no
    weights), each distinct dataset checks its own root once (both the split it trains on and the
    split it is evaluated on)."""
    import torch

    from bench.data import data_problem, eval_split
    from bench.models import build_model
    from bench.models.backbones import weights_check_only

    model_errors: list[str] = []
    data_errors: dict[str, list[Cell]] = {}
    checked: dict[tuple[str, str | None, str], str | None] = {}
    built: dict[str, str | None] = {}  # model config JSON -> its problem (None: it builds)
    for c in cells:
        label = f"{source}: cell {c.index} ({c.run_id}: {cell_label(c.varying)})"
        m = c.config.model
        mkey = m.model_dump_json()
        if mkey not in built:
            built[mkey] = None
            try:
                with torch.device("meta"), weights_check_only():
                    build_model(m.arch, **m.knobs())
            except UserError as e:
                built[mkey] = str(e)
        if built[mkey] is not None:
            model_errors.append(f"{label}: {built[mkey]}")
        d = c.config.data
        key = (d.name, d.root, d.split)
        if key not in checked:
            checked[key] = data_problem(d, (d.split, eval_split(d.split)))
        problem = checked[key]
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


# --------------------------------------------------------------------------- the job


try:
    from submitit.helpers import Checkpointable as _Checkpointable
except ImportError:  # pragma: no cover - submitit is a dependency
    _Checkpointable = object  # type: ignore[misc,assignment]


class RunJob(_Checkpointable):  # type: ignore[misc,valid-type]
    """What each job runs: execute(cfg, out_dir). Checkpointable for submitit."""

    def __init__(self, threads: int | None = None, collective_timeout_s: int = 300) -> None:
        self.threads = threads
        self.collective_timeout_s = collective_timeout_s
        self._trainer: Any = None

    def __call__(self, cfg_json: dict[str, Any], out_dir: str) -> dict[str, Any]:
        import torch

        if self.threads:
            torch.set_num_threads(self.threads)
        from bench.config import RunConfig
        from bench.distributed import init_from_job
        from bench.engine import StopForRequeue
        from bench.runner import execute

        restarts = os.environ.get("SLURM_RESTART_COUNT")
        if restarts:
            print(f"aspp-bench: SLURM_RESTART_COUNT={restarts}, resuming in {out_dir}", flush=True)
        cfg = RunConfig.model_validate(cfg_json)
        want = cfg.train.device
        device_type = "cuda" if want == "cuda" or (want == "auto" and torch.cuda.is_available()) else "cpu"
        world = init_from_job(device_type=device_type, timeout_s=self.collective_timeout_s)
        if world.distributed:
            _rank_started(Path(out_dir), world)
        try:
            result = execute(cfg, out_dir, trainer_hook=self._hook, world=world)
        except StopForRequeue as e:  # rank > 0 of a stopped cell: rank 0 checkpointed and requeues
            print(f"aspp-bench: {e}", flush=True)
            _rank_failed(Path(out_dir), world, e)  # if the requeue fails, status shows this rank's part
            raise SystemExit(0) from None  # the job requeues; nothing after this cell runs in this attempt
        except BaseException as e:
            if world.distributed and not isinstance(e, SystemExit):  # status names the rank that failed and why
                _rank_failed(Path(out_dir), world, e)
            raise
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

        def checkpoint_and_requeue(signum: int, frame: Any) -> None:
            # submitit requeues (scontrol requeue, then exit) or, with the requeues used up or on a
            # time limit it cannot recover from, raises: the log says which really happened
            try:
                inner(signum, frame)
            except SystemExit:
                trainer.log("requeued: the job is back in the queue; it resumes from the checkpoint")
                raise
            except Exception as e:
                trainer.log(f"not requeued: {e}")
                raise

        def deferred(signum: int, frame: Any) -> None:
            trainer.at_step_boundary(lambda: checkpoint_and_requeue(signum, frame))

        # several ranks: the signal only raises a flag; once every rank has stopped after the same
        # step and the checkpoint is written, rank 0 calls submitit's handler (requeue, exit)
        trainer.on_stop = lambda: checkpoint_and_requeue(sig, None)
        signal.signal(sig, deferred)

    def checkpoint(self, cfg_json: dict[str, Any], out_dir: str) -> Any:
        """submitit calls this on preemption / timeout: save through the engine, then requeue."""
        import submitit

        t = self._trainer
        if t is not None and t.world.distributed and t.checkpoint_saved_at is not None:
            pass  # every rank stopped after the same step and the checkpoint is written (Trainer._stop_all_ranks)
        elif t is not None:
            path = t.save_checkpoint()
            t.log(f"preemption or time-limit signal: checkpoint saved to {path}")
        else:  # Slurm may signal up to a minute early: the job can be hit while it still starts up
            out = Path(out_dir)
            if out.is_dir():
                stamp = time.strftime("%Y-%m-%d %H:%M:%S")
                with open(out / LOG, "a") as f:
                    f.write(f"{stamp} preemption or time-limit signal before training started: nothing to checkpoint\n")
        return submitit.helpers.DelayedSubmission(RunJob(self.threads, self.collective_timeout_s), cfg_json, out_dir)


def _rank_started(out: Path, world: Any) -> None:
    import socket

    from bench.store import mkdir

    mkdir(out)
    write_json(
        out / RANK_INFO.format(rank=world.rank),
        {"rank": world.rank, "world_size": world.size, "host": socket.gethostname(), "pid": os.getpid(),
         "started": time.time()},  # fmt: skip
    )
    err = out / RANK_ERROR.format(rank=world.rank)
    if err.is_file():  # an earlier attempt's report (this rank starts again after a requeue)
        err.unlink()


def _rank_failed(out: Path, world: Any, e: BaseException) -> None:
    import traceback

    last = traceback.format_exception_only(type(e), e)[-1].strip()
    with contextlib.suppress(OSError, UserError):
        write_json(out / RANK_ERROR.format(rank=world.rank), {"rank": world.rank, "error": last[:1000],
                                                              "time": time.time()})  # fmt: skip


def rank_report(run: Path) -> str | None:
    """Which ranks of a distributed cell failed and why (None for a single-process cell): ranks
    that left an error, and ranks that started but neither finished nor reported (killed, or
    a hard crash), the latter named first: they are usually what the others then failed on."""
    infos = {}
    for f in run.glob("rank-*.json"):
        with contextlib.suppress(OSError, json.JSONDecodeError, KeyError, TypeError):
            d = json.loads(f.read_text())
            infos[int(d["rank"])] = d
    if not infos:
        return None
    errors = {}
    for f in run.glob("rank-*.error"):
        with contextlib.suppress(OSError, json.JSONDecodeError, KeyError, TypeError):
            d = json.loads(f.read_text())
            errors[int(d["rank"])] = d
    size = max(int(d.get("world_size", 0)) for d in infos.values())
    silent = [r for r in sorted(infos) if r not in errors]
    parts = [f"rank {r} of {size} ({infos[r].get('host')} pid {infos[r].get('pid')}) stopped without an error "
             "report (killed, or out of memory)" for r in silent]  # fmt: skip
    errs = sorted(errors.values(), key=lambda d: d.get("time", 0))  # the first failure first
    errs = [d for d in errs if "StopForRequeue" not in d["error"]] + [d for d in errs if "StopForRequeue" in d["error"]]
    parts += [f"rank {d['rank']} of {size}: {d['error'][:300]}" for d in errs]
    return "; ".join(parts) if errors or silent else None


class RunChain(_Checkpointable):  # type: ignore[misc,valid-type]
    """Local executor: runs its share of the cells one after the other, so that at most
    `array_parallelism` cells train at once on a workstation (and their latencies are not
    measured under a pile-up of every cell). A failing cell is recorded and the chain goes on
    (in a cell of several ranks, a failure mid-run ends the chain: its process group is gone).
    Checkpointable like RunJob: on the local executor's time-limit signal the running cell
    checkpoints and the chain is started again (its finished cells return their results at once)."""

    def __init__(self, threads: int | None = None, collective_timeout_s: int = 300) -> None:
        self.threads = threads
        self.collective_timeout_s = collective_timeout_s
        self._running: tuple[RunJob, dict[str, Any], str] | None = None

    def checkpoint(self, items: list[tuple[dict[str, Any], str]]) -> Any:
        import submitit

        if self._running is not None:
            job, cfg_json, out_dir = self._running
            job.checkpoint(cfg_json, out_dir)  # saves the running cell (or finds it saved)
        return submitit.helpers.DelayedSubmission(RunChain(self.threads, self.collective_timeout_s), items)

    def __call__(self, items: list[tuple[dict[str, Any], str]]) -> list[dict[str, Any]]:
        import traceback

        from bench.distributed import current

        out = []
        for cfg_json, out_dir in items:
            try:
                job = RunJob(self.threads, self.collective_timeout_s)
                self._running = (job, cfg_json, out_dir)
                out.append(job(cfg_json, out_dir))
                self._running = None
            except Exception as e:
                last = traceback.format_exception_only(type(e), e)[-1].strip()
                world = current()
                if world.main:
                    (Path(out_dir) / ERROR).write_text(last[:1000] + "\n")
                out.append({"status": "failed", "error": last, "out": out_dir})
                if world.distributed and not isinstance(e, UserError):
                    raise  # a rank failed mid-run: the process group is gone; the chain's other cells wait for a retry
        return out


# --------------------------------------------------------------------------- states

# The one vocabulary of cell states. `unknown`: the scheduler could not be asked (squeue failed):
# the job may be queued or running, so it is never resubmitted, not even with --retry-failed.
STATES = ("done", "diverged", "running", "queued", "unknown", "failed", "corrupt", "missing")
FINISHED = ("done", "diverged", "failed", "corrupt")
RETRYABLE = ("failed", "diverged", "corrupt")


@dataclass(frozen=True)
class CellState:
    cell: Cell
    state: str  # one of STATES
    detail: str = ""
    folder: Path | None = None


class SchedulerUnavailable(Exception):
    """squeue could not be run or answered with an error: job states are unknown."""


def _squeue(job_ids: list[str]) -> dict[str, str]:
    """{job id: Slurm state} of the jobs squeue still lists (finished jobs are absent). Raises
    SchedulerUnavailable when squeue is missing, hangs or fails: absence from a failed query
    says nothing about a job, and must never read as 'finished'."""
    if not job_ids:
        return {}
    if shutil.which("squeue") is None:
        raise SchedulerUnavailable("squeue is not on PATH on this machine")
    try:
        r = subprocess.run(
            ["squeue", "-h", "-r", "-o", "%i %T", "-j", ",".join(sorted({j.split("_")[0] for j in job_ids}))],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError) as e:
        raise SchedulerUnavailable(f"squeue did not answer ({type(e).__name__})") from None
    if r.returncode != 0:
        msg = (r.stderr.strip().splitlines() or [f"exit code {r.returncode}"])[-1][:200]
        if "Invalid job id" not in msg:  # every job already purged from squeue's memory: all finished
            raise SchedulerUnavailable(f"squeue failed: {msg}")
    states = {}
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2:
            states[parts[0]] = parts[1]
    return states


_TIME_LIMIT = ("DUE TO TIME LIMIT", "timed-out too many times")


def _last_error(job: dict[str, Any]) -> str:
    folder = Path(job.get("folder", ""))
    jid = job.get("job_id")
    logs = sorted(folder.glob(f"{jid}_*_log.err")) + sorted(folder.glob(f"{jid}*.err")) if folder.is_dir() else []
    for f in logs:
        text = f.read_text(errors="replace")
        if any(t in text for t in _TIME_LIMIT):
            return (
                f"time limit reached and the requeues are used up (launch.timeout_min, launch.max_num_timeout); "
                f"raise them and use --retry-failed, it resumes from the last checkpoint [{f}]"
            )
        lines = [ln for ln in text.splitlines() if ln.strip()]
        for ln in reversed(lines):
            if "Error" in ln or "error" in ln or "CANCELLED" in ln or "Killed" in ln:
                return ln.strip()[:300]
        if lines:
            return lines[-1].strip()[:300]
    return f"job ended without a result (no log in {folder})" if not logs else "job ended without a result"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    try:  # a zombie has exited
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


def _result_state(c: Cell, res: Path) -> CellState | None:
    if not res.is_file():
        return None
    try:
        r = json.loads(res.read_text())
        status = r.get("status", "done")
        if status == "diverged":
            return CellState(c, "diverged", r.get("diverged") or "diverged", res.parent)
        return CellState(c, "done", f"mIoU {100 * r['metrics']['miou']:.2f}", res.parent)
    except (json.JSONDecodeError, KeyError, TypeError, OSError) as e:
        return CellState(
            c, "corrupt", f"{res}: unreadable ({e.__class__.__name__}); --retry-failed reruns it", res.parent
        )


def cell_states(cells: Sequence[Cell], results: Path) -> list[CellState]:
    """State of every cell from its run folder and recorded job. A folder written under an
    earlier identity scheme counts for the cell whose resolved config it holds."""
    from bench.store import RunIndex

    index = RunIndex(results)
    folders = {c.run_id: index.folder(c.run_id) for c in cells}
    jobs: dict[str, dict[str, Any]] = {}
    for c in cells:
        jf = folders[c.run_id] / JOB
        if jf.is_file():
            try:
                jobs[c.run_id] = json.loads(jf.read_text())
            except (json.JSONDecodeError, OSError):
                pass
    slurm_ids = [j["job_id"] for j in jobs.values() if j.get("executor") == "slurm"]
    slurm_error = ""
    try:
        slurm = _squeue(slurm_ids)
    except SchedulerUnavailable as e:
        slurm, slurm_error = {}, str(e)
    out = []
    for c in cells:
        run = folders[c.run_id]
        st = _result_state(c, run / RESULT)
        if st is None:
            st = _one_state(c, run, jobs.get(c.run_id), slurm, slurm_error)
        if st.state == "failed":  # a distributed cell: which rank failed, and why
            st = CellState(c, "failed", rank_report(run) or st.detail, run)
        out.append(st)
    return out


def _one_state(
    c: Cell, run: Path, job: dict[str, Any] | None, slurm: dict[str, str], slurm_error: str
) -> CellState:
    """The state of a cell that has no readable result (yet)."""
    if is_locked(run):  # a process is training in the folder, whatever launched it
        return CellState(c, "running", f"{job['executor']} job {job['job_id']}" if job else "locked", run)
    if job is None:
        return CellState(c, "missing", "", run)
    if job["executor"] == "slurm":
        s = slurm.get(job["job_id"]) or slurm.get(job["job_id"].split("_")[0])
        if slurm_error:
            return CellState(c, "unknown", f"slurm job {job['job_id']}: {slurm_error}; not resubmitted", run)
        if s in ("PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "SUSPENDED", "CONFIGURING"):
            return CellState(c, "queued", f"slurm job {job['job_id']} {s}", run)
        if s is not None:
            return CellState(c, "running", f"slurm job {job['job_id']} {s}", run)
        # gone from the queue: finished; it may have written its result since we looked
        return _result_state(c, run / RESULT) or CellState(c, "failed", _last_error(job), run)
    if (run / ERROR).is_file():
        return CellState(c, "failed", (run / ERROR).read_text().strip()[:300], run)
    if job["executor"] == "local":
        if _pid_alive(int(job["job_id"])):  # its chain is alive and has not reached it yet
            return CellState(c, "queued", f"local chain pid {job['job_id']}", run)
        return _result_state(c, run / RESULT) or CellState(c, "failed", _local_failure(job, run), run)
    # inline runs finish (or fail) in the launching process
    return CellState(c, "failed", job.get("error", "inline run ended without a result"), run)


def _local_failure(job: dict[str, Any], run: Path) -> str:
    """Why a local cell has no result once its chain process is gone, from the cell's own files."""
    pid = job["job_id"]
    log = run / LOG
    if not log.is_file():
        return f"never started: its local chain (pid {pid}) ended before reaching it; --retry-failed submits it"
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    last = lines[-1].strip()[:200] if lines else "(empty log)"
    return f"stopped: its local chain (pid {pid}) ended during this run (killed?); last log line: {last}"


# --------------------------------------------------------------------------- submission


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


def _executor(launch: LaunchConfig, folder: Path, executor: str, name: str = "sweep", *, preview: bool = False) -> Any:
    import submitit

    if executor == "local":
        ex = submitit.LocalExecutor(folder=str(folder))
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
    whose job may still be queued or running (queued, running, unknown) is never submitted."""
    from bench.store import mkdir

    created = not results.exists()
    mkdir(results)
    try:
        with _submission_lock(results):  # two launchers on one sweep: the second sees the first's jobs
            return _submit_locked(sweep, cells, results, executor=executor, retry_failed=retry_failed)
    except UserError:
        if created:  # a refused first submission leaves no trace (nothing of the sweep was here)
            shutil.rmtree(results, ignore_errors=True)
        raise


@contextlib.contextmanager
def _submission_lock(results: Path) -> Any:
    import fcntl

    fd = os.open(results / ".submit.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # held only while states are read and jobs recorded
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _submit_locked(
    sweep: Sweep, cells: Sequence[Cell], results: Path, *, executor: str, retry_failed: bool
) -> tuple[list[Cell], list[CellState]]:
    from bench.store import MANIFEST, mkdir
    from bench.sweep import varying_keys

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
            write_json(
                (s.folder or results / s.cell.run_id) / JOB,
                {"executor": executor, "job_id": str(job.job_id), "folder": str(folder), "submitted": time.time()},
            )
    return [s.cell for s in todo], skipped


def _readable_checkpoint(path: Path) -> bool:
    import zipfile

    return zipfile.is_zipfile(path)


def _launch(sweep: Sweep, cells: list[Cell], runs: list[Path], results: Path, executor: str) -> tuple[list, Path]:
    """Hand the cells to the executor: (one job per cell, or None for inline runs; submitit folder)."""
    cfgs = [c.config.model_dump(mode="json") for c in cells]
    outs = [str(r.resolve()) for r in runs]
    if sweep.launch.world_size > 1 and executor == "inline":
        raise UserError(
            f"--executor inline runs one process; this sweep's cells have {sweep.launch.world_size} tasks each "
            "(launch.nodes x launch.tasks_per_node): use --executor local or slurm"
        )
    if sweep.launch.nodes > 1 and executor == "local":
        raise UserError(
            f"--executor local runs on this machine alone; launch.nodes={sweep.launch.nodes} needs --executor slurm"
        )
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


def sbatch_preview(launch: LaunchConfig, results: Path, name: str) -> str:
    """The sbatch script a Slurm submission of this sweep runs (its #SBATCH options and every
    setup line), made by submitit itself without submitting anything."""
    ex = _executor(launch, (results / ".submitit").resolve(), "slurm", name, preview=True)
    return ex._make_submission_file_text(ex._submitit_command_str, "dry-run")
