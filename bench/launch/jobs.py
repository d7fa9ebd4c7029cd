"""What a submitted job runs: one cell (`RunJob`, a Slurm array task) or a local chain of cells
(`RunChain`), both Checkpointable for submitit's preemption and time-limit signal; in a cell of
several tasks, each rank joins the process group from submitit's environment and leaves a
`rank-R.json` (and, if it fails, `rank-R.error`) for `status`."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

from bench.configure.config import RunConfig
from bench.distributed import SINGLE, current, join_process_group
from bench.errors import UserError
from bench.files import mkdir, write_json
from bench.results.folders import ERROR, LOG, RANK_ERROR, RANK_INFO
from bench.run.runner import execute
from bench.run.stopping import StopForRequeue
from bench.run.threads import cpus_allowed

__all__ = ["RunChain", "RunJob", "init_from_job"]


def init_from_job(*, device_type: str, timeout_s: float) -> Any:
    """Join the cell's process group when this process is one of several tasks of a submitit job.

    The rendezvous comes from the job itself: submitit's `TorchDistributedEnvironment` exports
    MASTER_ADDR (the job's first node), MASTER_PORT (drawn from the job id, so a requeued job
    meets on the same port), RANK, WORLD_SIZE and LOCAL_RANK (bench.distributed.join_process_group then joins).
    A job of one task, or no submitit job, is `SINGLE`. The process group lives as long as the
    process (a local chain's cells share it)."""
    try:
        import submitit

        env = submitit.JobEnvironment()
        ntasks = env.num_tasks
    except (ImportError, RuntimeError, KeyError):
        return SINGLE
    if ntasks <= 1:
        return SINGLE
    from submitit.helpers import TorchDistributedEnvironment

    denv = TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
    return join_process_group(rank=denv.rank, world_size=denv.world_size, local_rank=denv.local_rank,
                              nodes=env.num_nodes, device_type=device_type, timeout_s=timeout_s)  # fmt: skip


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
        self._out = Path(".")

    def __call__(self, cfg_json: dict[str, Any], out_dir: str) -> dict[str, Any]:
        import torch

        restarts = os.environ.get("SLURM_RESTART_COUNT")
        if restarts:
            print(f"aspp-bench: SLURM_RESTART_COUNT={restarts}, resuming in {out_dir}", flush=True)
        cfg = RunConfig.model_validate(cfg_json)
        want = cfg.train.device
        device_type = "cuda" if want == "cuda" or (want == "auto" and torch.cuda.is_available()) else "cpu"
        world = init_from_job(device_type=device_type, timeout_s=self.collective_timeout_s)
        self._out = Path(out_dir)
        try:
            with cpus_allowed(self.threads):  # launch.cpus_per_task: bench.run.threads sizes from it
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
        if trainer.world.distributed:  # the folder is this run's and locked by rank 0: say who trains it
            _rank_started(self._out, trainer.world)
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

    mkdir(out)
    write_json(
        out / RANK_INFO.format(rank=world.rank),
        {
            "rank": world.rank,
            "world_size": world.size,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": time.time(),
        },  # fmt: skip
    )
    err = out / RANK_ERROR.format(rank=world.rank)
    if err.is_file():  # an earlier attempt's report (this rank starts again after a requeue)
        err.unlink()


def _rank_failed(out: Path, world: Any, e: BaseException) -> None:
    import traceback

    if not (out / RANK_INFO.format(rank=world.rank)).is_file():
        return  # it never reached training (a refused folder, say): the folder is not this rank's to change
    last = traceback.format_exception_only(type(e), e)[-1].strip()
    with contextlib.suppress(OSError, UserError):
        write_json(out / RANK_ERROR.format(rank=world.rank), {"rank": world.rank, "error": last[:1000],
                                                              "time": time.time()})  # fmt: skip


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
