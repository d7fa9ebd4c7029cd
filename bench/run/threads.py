"""How many CPU threads a run computes with, and how its OpenMP threads wait.

The thread count comes from the CPUs this process may use, never from the load average: the count
changes the numbers (reductions split differently), and a run's numbers must not depend on what
else the machine was doing. The CPUs a process may use are the fewest of: the physical cores in
its affinity mask (`taskset`, Slurm's cgroup binding), the cgroup's CPU quota (a container's
`--cpus`), Slurm's `SLURM_CPUS_PER_TASK`, and `ASPP_BENCH_CPUS` (what the local executor gives a
cell: `launch.cpus_per_task`).

A training step splits its work across threads only where there is enough of it: below
`MIN_STEP_GFLOP_PER_THREAD` forward GFLOPs per step for each thread, a second thread costs more in
synchronisation than it computes (measured in docs/measurement.md#threads), so small cells train
on fewer threads. The rule reads the config and the machine, nothing else.

How threads wait matters on a busy machine. GNU OpenMP (torch's Linux wheels) lets a thread that
waits at the end of a parallel region spin for 300,000 rounds before it sleeps; on a machine whose
cores are taken by other work, the spinning thread burns the time slice its partner needs, and two
threads trained 22x slower than one. `apply_wait_policy` (run by `import bench`, before torch
loads) shortens the spin to `SPIN_ROUNDS` and Intel OpenMP's block time to `BLOCKTIME_MS`, unless
the user set `OMP_WAIT_POLICY`, `GOMP_SPINCOUNT` or `KMP_BLOCKTIME`. OpenMP reads these once, when
torch loads it: in a process that imported torch before bench they do not apply, and the run
records that (`env.omp_wait`).

`OMP_NUM_THREADS` set by the user is the user's choice: the count is then left to torch.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "MIN_STEP_GFLOP_PER_THREAD",
    "SPIN_ROUNDS",
    "ThreadPlan",
    "apply_wait_policy",
    "cpus_allowed",
    "torch_threads_kept",
    "plan_threads",
    "usable_cpus",
    "wait_policy",
]

SPIN_ROUNDS = 3000  # GOMP_SPINCOUNT: about 0.1 ms of spinning, then sleep
BLOCKTIME_MS = 1  # KMP_BLOCKTIME, Intel OpenMP's equivalent (its default is 200 ms)
MIN_STEP_GFLOP_PER_THREAD = 5.0  # forward GFLOPs of one training step that pay for one more thread
_WAIT_KEYS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")

_applied: dict[str, str] = {}  # what apply_wait_policy set
_torch_was_loaded = False  # torch had loaded OpenMP before apply_wait_policy ran


def apply_wait_policy() -> None:
    """Short spin, then sleep, for OpenMP's waiting threads; a no-op where the user chose."""
    global _torch_was_loaded
    if _applied or _torch_was_loaded:
        return
    _torch_was_loaded = "torch" in sys.modules
    if any(k in os.environ for k in _WAIT_KEYS):
        return
    _applied.update(GOMP_SPINCOUNT=str(SPIN_ROUNDS), KMP_BLOCKTIME=str(BLOCKTIME_MS))
    os.environ.update(_applied)  # children (submitit jobs, subprocesses) inherit it before their torch loads


def wait_policy() -> str:
    """How this process's OpenMP threads wait, as recorded in a result's environment."""
    given = {k: os.environ[k] for k in _WAIT_KEYS if k in os.environ}
    text = " ".join(f"{k}={v}" for k, v in given.items()) or "OpenMP default"
    who = "aspp-bench" if _applied and all(given.get(k) == v for k, v in _applied.items()) else "user"
    if not given:
        return text
    if _torch_was_loaded:
        return f"{text} (set after torch loaded OpenMP: not in effect in this process)"
    return f"{text} (set by {who})"


def _physical_cores(cpus: set[int]) -> int:
    """Physical cores among these logical CPUs (SMT siblings share one core's arithmetic units)."""
    cores = set()
    for c in cpus:
        topo = Path(f"/sys/devices/system/cpu/cpu{c}/topology")
        try:
            package = topo.joinpath("physical_package_id").read_text().strip()
            cores.add((package, topo.joinpath("core_id").read_text().strip()))
        except OSError:
            return len(cpus)  # no topology to read: count logical CPUs
    return len(cores) or len(cpus)


def _cgroup_quota() -> int | None:
    """The cgroup's CPU quota rounded up to whole CPUs (cgroup v2 cpu.max, v1 cfs quota), or None."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            return max(1, math.ceil(int(quota) / int(period)))
        return None
    except (OSError, ValueError):
        pass
    try:
        quota = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return max(1, math.ceil(quota / period)) if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def _positive_env(name: str) -> int | None:
    text = os.environ.get(name, "").strip()
    return int(text) if text.isdigit() and int(text) > 0 else None


def usable_cpus() -> tuple[int, str]:
    """The CPUs this process may compute on, and where that number came from."""
    try:
        mask = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        mask = set(range(os.cpu_count() or 1))
    limits = [(_physical_cores(mask), f"{len(mask)} CPUs in the affinity mask")]
    if limits[0][0] < len(mask):
        limits[0] = (limits[0][0], f"{limits[0][0]} physical cores of the {len(mask)} CPUs in the affinity mask")
    quota = _cgroup_quota()
    if quota:
        limits.append((quota, f"the cgroup's CPU quota ({quota})"))
    for name in ("SLURM_CPUS_PER_TASK", "ASPP_BENCH_CPUS"):
        n = _positive_env(name)
        if n:
            limits.append((n, f"{name}={n}"))
    return min(limits)


@contextmanager
def cpus_allowed(n: int | None) -> Iterator[None]:
    """`ASPP_BENCH_CPUS=n` while the block runs (a cell's launch.cpus_per_task), as it was after:
    a cell run inside this process (`--executor inline`, a local chain) leaves no limit behind."""
    if not n:
        yield
        return
    before = os.environ.get("ASPP_BENCH_CPUS")
    os.environ["ASPP_BENCH_CPUS"] = str(n)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("ASPP_BENCH_CPUS", None)
        else:
            os.environ["ASPP_BENCH_CPUS"] = before


@contextmanager
def torch_threads_kept() -> Iterator[None]:
    """torch's thread count as it was before the block: a run that sets its own (plan_threads)
    leaves a process that called it in-process (the Python API, an inline sweep) as it found it."""
    import torch  # not at the top: `import bench` runs this module before torch may load

    before = torch.get_num_threads()
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


@dataclass(frozen=True)
class ThreadPlan:
    threads: int | None  # None: left to torch (the user set OMP_NUM_THREADS)
    reason: str


def plan_threads(step_gflop: float | None) -> ThreadPlan:
    """Threads for a training step of `step_gflop` forward GFLOPs (None: not known; all usable CPUs)."""
    if _positive_env("OMP_NUM_THREADS"):
        return ThreadPlan(None, f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} (the user's)")
    cpus, why = usable_cpus()
    if step_gflop is None or cpus == 1:
        return ThreadPlan(cpus, why)
    pays = max(1, int(step_gflop // MIN_STEP_GFLOP_PER_THREAD))
    if pays >= cpus:
        return ThreadPlan(cpus, why)
    return ThreadPlan(pays, f"{why}; a step of {step_gflop:.2g} forward GFLOPs pays for {pays} "
                            f"(one thread per {MIN_STEP_GFLOP_PER_THREAD:g})")  # fmt: skip
