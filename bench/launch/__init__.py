"""Launching cells: inline, local subprocesses or a Slurm job array, all through submitit.

Submission returns at once (the jobs write their own results; the launcher may die). Each
submitted cell gets `job.json` in its run folder (executor, job id, submitit folder), which
`status` reads to tell queued and running cells from failed ones, so that nothing is
submitted twice. The submitted callable is Checkpointable: on Slurm's preemption or
time-limit signal it saves a checkpoint through the engine and requeues itself; the requeued
job resumes from that checkpoint in the same run folder.

The launcher is the one place that knows submitit: `preflight` (checks before submitting),
`jobs` (what a job runs), `states` (what a cell's files and job say), `submit` (executors and
submission).
"""

from __future__ import annotations

from bench.launch.jobs import RunChain, RunJob, init_from_job
from bench.launch.preflight import cell_problems, check_cells, data_problem_lines
from bench.launch.states import FINISHED, RETRYABLE, STATES, CellState, cell_states, rank_report
from bench.launch.submit import sbatch_preview, submit

__all__ = [
    "FINISHED",
    "RETRYABLE",
    "STATES",
    "CellState",
    "RunChain",
    "RunJob",
    "cell_problems",
    "cell_states",
    "check_cells",
    "data_problem_lines",
    "init_from_job",
    "rank_report",
    "sbatch_preview",
    "submit",
]
