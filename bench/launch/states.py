"""The state of every cell of a sweep, from its run folder and its recorded job: the one
vocabulary of states, squeue asked once per call (a failure to ask is `unknown`, never
`failed`), and why a cell failed: the job's log, the local chain, or the ranks of a
distributed cell."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import clip
from bench.files import read_json_file
from bench.results.folders import ERROR, JOB, LOG, RESULT, is_locked, read_result
from bench.results.table import RunIndex
from bench.sweep import Cell

__all__ = ["FINISHED", "RETRYABLE", "STATES", "CellState", "SchedulerUnavailable", "cell_states", "rank_report"]

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
    miou: float | None = None  # a done cell's val mIoU (0-1), read with its result

    def __post_init__(self) -> None:
        """A detail is one line of at most DETAIL_CHARS (a job's error can be 100,000 characters;
        the whole of it stays in the run's files)."""
        one = " ".join(str(self.detail).split())
        if len(one) > DETAIL_CHARS:
            one = clip(one, DETAIL_CHARS) + (f" (the whole message: {self.folder})" if self.folder else "")
        object.__setattr__(self, "detail", one)


DETAIL_CHARS = 300  # a status line's detail: enough for a path and a reason


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


def process_start(pid: int) -> int | None:
    """The start time of process `pid` (clock ticks since boot, /proc/<pid>/stat field 22), or None
    when there is no such process: with the pid it names one process, even after pid reuse."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    fields = stat.rsplit(")", 1)[-1].split()  # after the command name, which may hold spaces
    return int(fields[19]) if len(fields) > 19 and fields[0] != "Z" else None


def _chain_alive(job: dict[str, Any]) -> bool:
    """Whether the local chain that job.json names still runs: its pid is alive and is the same
    process (the start time recorded at submission), or, for a record without one, a submitit job."""
    try:
        pid = int(job["job_id"])
        os.kill(pid, 0)
    except (OSError, ValueError, OverflowError):
        return False
    start = process_start(pid)
    if start is None:  # gone, or a zombie: it has exited
        return False
    if "pid_start" in job:
        return job["pid_start"] == start
    try:  # recorded before start times were: a reused pid runs something else
        return b"submitit" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True


def _result_state(c: Cell, res: Path) -> CellState | None:
    if not res.is_file():
        return None
    try:
        r = read_result(res.parent) or {}
    except ValueError as e:
        return CellState(c, "corrupt", f"{e}; --retry-failed reruns it", res.parent)
    if r.get("status", "done") == "diverged":
        return CellState(c, "diverged", str(r.get("diverged") or "diverged")[:300], res.parent)
    miou = float(r["metrics"]["miou"])
    return CellState(c, "done", f"mIoU {100 * miou:.2f}", res.parent, miou)


EXECUTORS = ("inline", "local", "slurm")


def _pid_max() -> int:
    """The largest process id this kernel hands out (/proc/sys/kernel/pid_max; Linux's ceiling
    without it)."""
    try:
        return int(Path("/proc/sys/kernel/pid_max").read_text())
    except (OSError, ValueError):
        return 4_194_304


def read_job(path: Path) -> tuple[dict[str, Any] | None, str]:
    """(the job a launcher recorded, '') or (None, why it cannot be read): a job.json is written by
    jobs that get killed and edited by people, so any damage is reported, never a crash."""
    try:
        job = read_json_file(path, "job record", limit=1 << 20)
    except ValueError as e:
        return None, str(e)
    if not isinstance(job, dict):
        return None, f"{path}: a {type(job).__name__}, not a job record"
    if job.get("executor") not in EXECUTORS:
        return None, f"{path}: executor {str(job.get('executor'))[:40]!r} is not one of {', '.join(EXECUTORS)}"
    jid = job.get("job_id")
    if isinstance(jid, bool) or not isinstance(jid, str | int) or not str(jid).strip() or len(str(jid)) > 64:
        return None, f"{path}: job_id {str(jid)[:40]!r} is not a job id"
    if job["executor"] == "local" and not (str(jid).isdigit() and 1 <= int(jid) <= _pid_max()):
        return None, f"{path}: job_id {str(jid)[:40]!r} is not a process id (1 to {_pid_max()} here)"
    return {**job, "job_id": str(jid)}, ""


def cell_states(cells: Sequence[Cell], results: Path) -> list[CellState]:
    """State of every cell from its run folder and recorded job. A folder written under an
    earlier identity scheme counts for the cell whose resolved config it holds."""
    index = RunIndex(results)
    folders = {c.run_id: index.folder(c.run_id) for c in cells}
    jobs: dict[str, dict[str, Any]] = {}
    damaged: dict[str, str] = {}
    for c in cells:
        jf = folders[c.run_id] / JOB
        if jf.is_file():
            job, why = read_job(jf)
            if job is None:
                damaged[c.run_id] = why
            else:
                jobs[c.run_id] = job
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
        if st is None and c.run_id in damaged and not is_locked(run):
            st = CellState(
                c,
                "unknown",
                f"state file unreadable: {damaged[c.run_id]}; the cell is treated as unknown (its job may still run), "
                f"so it is not resubmitted: once no job of it runs, remove {run / JOB} and submit again",
                run,
            )
        if st is None:
            st = _one_state(c, run, jobs.get(c.run_id), slurm, slurm_error)
            if c.run_id in damaged:  # running (its folder is locked): the damage is still said
                st = CellState(c, st.state, f"{st.detail}; state file unreadable: {damaged[c.run_id]}", run)
        if st.state == "failed":  # a distributed cell: which rank failed, and why
            st = CellState(c, "failed", rank_report(run) or st.detail, run)
        out.append(st)
    return out


def _one_state(c: Cell, run: Path, job: dict[str, Any] | None, slurm: dict[str, str], slurm_error: str) -> CellState:
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
        if _chain_alive(job):  # its chain is alive and has not reached it yet
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


def rank_report(run: Path) -> str | None:
    """Which ranks of a distributed cell failed and why (None for a single-process cell): ranks
    that left an error, and ranks that started but neither finished nor reported (killed, or
    a hard crash), the latter named first: they are usually what the others then failed on."""
    infos = {}
    damage = (OSError, ValueError, KeyError, TypeError, AttributeError)  # a killed or edited file: skipped
    for f in run.glob("rank-*.json"):
        with contextlib.suppress(*damage):
            d = json.loads(f.read_text())
            d["world_size"] = int(d.get("world_size", 0))
            infos[int(d["rank"])] = d
    if not infos:
        return None
    errors = {}
    for f in run.glob("rank-*.error"):
        with contextlib.suppress(*damage):
            d = json.loads(f.read_text())
            d["error"] = str(d["error"])
            errors[int(d["rank"])] = d
    size = max(int(d.get("world_size", 0)) for d in infos.values())
    silent = [r for r in sorted(infos) if r not in errors]
    parts = [f"rank {r} of {size} ({infos[r].get('host')} pid {infos[r].get('pid')}) stopped without an error "
             "report (killed, or out of memory)" for r in silent]  # fmt: skip
    errs = sorted(errors.values(), key=lambda d: d.get("time", 0))  # the first failure first
    errs = [d for d in errs if "StopForRequeue" not in d["error"]] + [d for d in errs if "StopForRequeue" in d["error"]]
    parts += [f"rank {d['rank']} of {size}: {d['error'][:300]}" for d in errs]
    return "; ".join(parts) if errors or silent else None
