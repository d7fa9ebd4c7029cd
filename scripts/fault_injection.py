"""Fault injection against the local executor and a real Slurm cluster: does any fault lose,
duplicate or alter a result?

    python scripts/fault_injection.py                       # local executor, and Slurm if sbatch is here
    python scripts/fault_injection.py --executors local     # local only
    python scripts/fault_injection.py --json out.json       # also the rows as JSON

Every scenario runs the same one-cell sweep (aspp_unet, width 4, synthetic 32x32, one thread)
in its own results folder, injects one fault, recovers the way a user would (the CLI, in fresh
processes), and is compared with an uninterrupted reference run of the same config:

- lost: cells without a finished result at the end (target 0);
- duplicated: jobs submitted beyond those the scenario asked for (a retry is asked for; a
  resubmission while a job may still be queued or running is a duplicate), plus result rows
  beyond one per experiment in `aspp-bench collect` (target 0);
- bit-equal: the final weights equal the reference's tensor for tensor, and so does the mIoU
  (the claim holds on one machine, one thread, one torch build: see README 'Reproducibility');
- exercised: the fault landed and the recovery the scenario is about ran (a requeue and a
  resume, a hint, a refusal, a checkpoint kept aside). A scenario whose fault missed (a run
  that finished before the kill, a time limit never reached) proves nothing, and counts as a
  failure, not a pass.

Slurm scenarios need the cluster of scripts/slurm-up.sh; a requeued job waits 30-40 s there before
Slurm starts it again (AuthInfo=cred_expire=30 and a 10-s scheduling pass; Slurm's defaults make it
2-3 minutes), so they take a minute or more each.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.launch import cell_states  # noqa: E402
from bench.sweep import expand, load_sweep  # noqa: E402

CLI = [sys.executable, "-m", "bench.cli"]
# When the whole run must end (--deadline-s): every wait stops there, so a scenario that hangs is a
# row naming what it waited for and what Slurm said, not a suite killed from outside with nothing
DEADLINE = [float("inf")]


def _remaining(timeout: float) -> float:
    return max(0.0, min(timeout, DEADLINE[0] - time.time()))


def slurm_view() -> str:
    """What Slurm says of the node and the queue (for a wait that timed out), if it is there."""
    if not shutil.which("squeue"):
        return ""
    out = []
    for cmd in (["sinfo", "-N", "-h", "-o", "%N %t %E"], ["squeue", "-h", "-o", "%i %T %r %M"]):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=15)
            out.append(f"{cmd[0]}: " + " | ".join((r.stdout or r.stderr).strip().splitlines()[:5]))
        except (OSError, subprocess.TimeoutExpired) as e:
            out.append(f"{cmd[0]}: {type(e).__name__}")
    return "; ".join(out)


@dataclass
class Row:
    scenario: str
    executor: str
    outcome: str
    lost: int
    duplicated: int
    bit_equal: str
    exercised: bool
    seconds: float

    @property
    def ok(self) -> bool:
        return not self.lost and not self.duplicated and self.bit_equal == "yes" and self.exercised


def spec_text(
    name: str,
    executor: str,
    epochs: int,
    timeout_min: int = 30,
    signal_delay_s: int = 30,
    begin_s: int = 0,
    max_num_timeout: int = 3,
) -> str:
    launch = (
        f"{{executor: {executor}, cpus_per_task: 1, timeout_min: {timeout_min}, signal_delay_s: {signal_delay_s}, "
        f"max_num_timeout: {max_num_timeout}"
    )
    if executor == "slurm":
        launch += ", slurm_partition: debug" + (f", sbatch: {{begin: now+{begin_s}}}" if begin_s else "")
    launch += "}"
    return textwrap.dedent(f"""
    name: {name}
    base:
      model: {{arch: aspp_unet, width: 4}}
      data: {{size: [32, 32], count: 32, batch_size: 4}}
      train: {{epochs: {epochs}, eval_every: 100000, checkpoint_every: 5}}
      profile: {{latency: false}}
    launch: {launch}
    """)


class Scenario:
    """One results folder, one cell; helpers to drive and inspect it."""

    def __init__(self, work: Path, name: str, executor: str, epochs: int, **launch: int) -> None:
        self.dir = work / f"{name}-{executor}"
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        self.spec = self.dir / "sweep.yaml"
        # the sweep name is shared by every scenario: one experiment, so one run_id everywhere
        self.spec.write_text(spec_text("fault", executor, epochs, **launch))
        self.results = self.dir / "results"
        (self.cell,) = expand(load_sweep(self.spec))
        self.run = self.results / self.cell.run_id
        self.executor = executor

    def cli(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        # output to files, not pipes: the jobs a submission starts inherit its streams, and a pipe
        # would keep this call waiting until they end
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            r = subprocess.run([*CLI, *args], stdout=out, stderr=err, text=True, env=env, cwd=self.dir, timeout=900)
            out.seek(0)
            err.seek(0)
            return subprocess.CompletedProcess(r.args, r.returncode, out.read(), err.read())

    def sweep(self, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return self.cli("sweep", str(self.spec), "--results", str(self.results), *extra, env=env)

    def state(self) -> str:
        return cell_states([self.cell], self.results)[0].state

    def wait(self, states: tuple[str, ...] = ("done",), timeout: float = 900) -> str:
        t0, deadline = time.time(), time.time() + _remaining(timeout)
        while time.time() < deadline:
            s = self.state()
            if s in states:
                return s
            time.sleep(1)
        raise TimeoutError(f"{self.dir.name}: still {self.state()} after {time.time() - t0:.0f} s, waiting for "
                           f"{'/'.join(states)}; {slurm_view()}")  # fmt: skip

    def wait_for(self, pred: Callable[[], bool], what: str, timeout: float = 600) -> None:
        t0, deadline = time.time(), time.time() + _remaining(timeout)
        while time.time() < deadline:
            if pred():
                return
            time.sleep(0.3)
        raise TimeoutError(f"{self.dir.name}: no {what} after {time.time() - t0:.0f} s (cell {self.state()}); "
                           f"{slurm_view()}")  # fmt: skip

    def wait_for_checkpoint(self) -> None:
        self.wait_for(lambda: (self.run / "checkpoint.pt").is_file(), "periodic checkpoint")

    def job(self) -> dict:
        return json.loads((self.run / "job.json").read_text())

    def submissions(self) -> int:
        return len(list((self.results / ".submitit").glob("*_submitted.pkl")))


def weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoint.pt", weights_only=True)["model"]


def compare(sc: Scenario, reference: Path, expected_submissions: int, outcome: str, t0: float, exercised: bool) -> Row:
    from bench.results.table import collect

    lost = 0 if sc.state() == "done" else 1
    df, _ = collect(sc.results)
    duplicated = max(0, sc.submissions() - expected_submissions) + max(0, len(df) - 1)
    equal = "-"
    if not lost:
        a, b = weights(sc.run), weights(reference)
        same_w = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        ra = json.loads((sc.run / "result.json").read_text())["metrics"]["miou"]
        rb = json.loads((reference / "result.json").read_text())["metrics"]["miou"]
        equal = "yes" if same_w and ra == rb else f"NO (weights {'equal' if same_w else 'differ'}, mIoU {ra} vs {rb})"
    return Row(
        sc.dir.name.rsplit("-", 1)[0], sc.executor, outcome, lost, duplicated, equal, exercised, time.time() - t0
    )


def kill_local_chain(sc: Scenario) -> None:
    """SIGKILL submitit's controller and the process it runs, as a node failure would."""
    controller = int(sc.job()["job_id"])
    children = Path(f"/proc/{controller}/task/{controller}/children").read_text().split()
    for pid in [controller, *map(int, children)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# ----------------------------------------------------------------------------- scenarios


def sigkill(work: Path, ex: str, ref: Path, epochs: int) -> Row:
    if ex == "slurm":  # a cancelled step keeps running for Slurm's KillWait (30 s): train longer than that
        epochs *= 4
        ref = reference(work, epochs, name="reference-long")
    t0 = time.time()
    sc = Scenario(work, "sigkill", ex, epochs)
    sc.sweep()
    sc.wait_for_checkpoint()
    if ex == "local":
        kill_local_chain(sc)
        what = "SIGKILL of the job's processes"
    else:  # SIGKILL to every process of the job (batch script and step), as `scancel -s KILL` does
        subprocess.run(["scancel", "--signal=KILL", "--full", sc.job()["job_id"]], check=True)
        what = "scancel --signal=KILL --full"
    if sc.wait(("failed", "done"), timeout=300) == "done":  # the kill landed after the last step
        return compare(sc, ref, 1, f"{what}: the run had finished, nothing to recover", t0, exercised=False)
    plain = sc.sweep()
    sc.sweep("--retry-failed")
    sc.wait()
    resumed = "resumed from" in (sc.run / "train.log").read_text()
    hint = "--retry-failed" in plain.stdout
    outcome = f"{what}: failed -> {'hint' if hint else 'NO HINT'} -> retried, {'resumed' if resumed else 'NOT resumed'}"
    return compare(sc, ref, 2, outcome, t0, exercised=hint and resumed)


def truncated_result(work: Path, ex: str, ref: Path, epochs: int) -> Row:
    t0 = time.time()
    sc = Scenario(work, "truncated-result", ex, epochs)
    sc.sweep("--wait")
    res = sc.run / "result.json"
    res.write_text(res.read_text()[:100])
    corrupt = sc.state()
    plain = sc.sweep()
    sc.sweep("--retry-failed", "--wait")
    refused = "submitted 0" in plain.stdout
    outcome = f"{corrupt}; plain resubmit: {'0 submitted' if refused else 'SUBMITTED'}; retried"
    return compare(sc, ref, 2, outcome, t0, exercised=corrupt == "corrupt" and refused)


def corrupt_checkpoint(work: Path, ex: str, ref: Path, epochs: int) -> Row:
    t0 = time.time()
    sc = Scenario(work, "corrupt-checkpoint", ex, epochs)
    sc.sweep()
    sc.wait_for_checkpoint()
    kill_local_chain(sc) if ex == "local" else subprocess.run(["scancel", "--signal=KILL", sc.job()["job_id"]])
    sc.wait(("failed",), timeout=180)
    ck = sc.run / "checkpoint.pt"
    ck.write_bytes(ck.read_bytes()[:1000])
    sc.sweep("--retry-failed")
    sc.wait()
    aside = list(sc.run.glob("checkpoint.pt.*.old"))
    outcome = f"failed; unreadable checkpoint kept aside ({len(aside)}), fresh start"
    return compare(sc, ref, 2, outcome, t0, exercised=len(aside) == 1)


def two_launchers(work: Path, ex: str, ref: Path, epochs: int) -> Row:
    t0 = time.time()
    sc = Scenario(work, "two-launchers", ex, epochs)
    cmd = [*CLI, "sweep", str(sc.spec), "--results", str(sc.results)]
    files = [tempfile.TemporaryFile("w+") for _ in range(3)]
    procs = [subprocess.Popen(cmd, cwd=sc.dir, stdout=f, stderr=subprocess.DEVNULL, text=True) for f in files]
    for p in procs:
        p.wait(timeout=300)
    outs = []
    for f in files:
        f.seek(0)
        outs.append(f.read())
        f.close()
    sc.wait()
    n = sum("submitted 1 of 1" in o for o in outs)
    return compare(sc, ref, 1, f"3 launchers at once: {n} submitted", t0, exercised=n == 1)


def killed_launcher(work: Path, ex: str, ref: Path, epochs: int) -> Row:
    t0 = time.time()
    sc = Scenario(work, "killed-launcher", ex, epochs)
    p = subprocess.Popen([*CLI, "sweep", str(sc.spec), "--results", str(sc.results), "--wait"], cwd=sc.dir,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    sc.wait_for(lambda: (sc.run / "job.json").is_file(), "job.json")
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    sc.wait()
    return compare(sc, ref, 1, "launcher SIGKILLed after submission; the job finished", t0, exercised=p.returncode < 0)


def changed_config(work: Path, ex: str, ref: Path, epochs: int) -> Row:
    t0 = time.time()
    sc = Scenario(work, "changed-config", ex, epochs)
    sc.sweep("--wait")
    before = {p.name: p.read_bytes() for p in sc.run.iterdir() if p.is_file()}
    r = sc.cli("train", "--out", str(sc.run), "--set", "optim.lr=0.5", "--set", "model.width=4",
               "--set", "data.size=[32,32]", "--set", "data.count=32", "--set", "data.batch_size=4")  # fmt: skip
    after = {p.name: p.read_bytes() for p in sc.run.iterdir() if p.is_file()}
    ok = r.returncode == 2 and before == after and "optim.lr" in r.stderr
    return compare(
        sc, ref, 1, "train --out with another config: " + ("exit 2, folder unchanged" if ok else "NOT REFUSED"), t0, ok
    )


def preemption(work: Path, ex: str, ref: Path, epochs: int) -> Row:
    import submitit

    t0 = time.time()
    sc = Scenario(work, "preemption", ex, epochs)
    sc.sweep()
    sc.wait_for_checkpoint()
    job = sc.job()
    submitit.SlurmJob(folder=job["folder"], job_id=job["job_id"])._interrupt()  # USR2 + requeue, as on preemption
    sc.wait()
    log = (sc.run / "train.log").read_text()
    resumed = "requeued:" in log and "resumed from" in log
    return compare(sc, ref, 1, "USR2: " + ("requeued, resumed" if resumed else "NOT RESUMED"), t0, exercised=resumed)


def time_limit(work: Path, ex: str, ref: Path, epochs: int) -> Row:
    t0 = time.time()
    # a 1-minute limit, signalled 30 s before: each attempt trains ~25 s, then checkpoints and requeues;
    # the cell is made long enough to need several attempts, and has its own reference run. How many
    # depends on the machine's speed and load (3 here, more on a busy CI machine), so the requeue
    # allowance is well above it: the scenario tests resuming, not the allowance (the allowance
    # running out is `failed` with its own message: tests/test_launch_slurm.py)
    epochs *= 2  # ~60-100 s of training against ~25 s an attempt: 2-4 requeues (x4 took 21 min of CI)
    ref = reference(work, epochs, name="reference-2x")
    t0 = time.time()
    sc = Scenario(work, "time-limit", ex, epochs, timeout_min=1, signal_delay_s=30, max_num_timeout=15)
    sc.sweep()
    sc.wait(timeout=2400)  # a requeued job waits 30-40 s before Slurm starts it again: ~100 s an attempt
    log = (sc.run / "train.log").read_text()
    n, resumed = log.count("requeued:"), log.count("resumed from")
    return compare(sc, ref, 1, f"time limit: requeued {n}x, resumed {resumed}x", t0, exercised=n >= 1 and resumed >= 1)


def squeue_failing(work: Path, ex: str, ref: Path, epochs: int) -> Row:
    t0 = time.time()
    # the job is held pending for 60 s (sbatch --begin): only squeue can say it is queued
    sc = Scenario(work, "squeue-failing", ex, epochs, begin_s=60)
    sc.sweep()
    sc.wait(("queued",))
    fake = Path(tempfile.mkdtemp()) / "squeue"
    fake.write_text(
        "#!/bin/sh\necho 'squeue: error: Unable to contact slurm controller (connect failure)' >&2\nexit 1\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    env = {**os.environ, "PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}"}
    status = sc.cli("status", str(sc.spec), "--results", str(sc.results), env=env).stdout
    retry = sc.sweep("--retry-failed", env=env).stdout
    sc.wait()
    unknown = " unknown " in status
    refused = "submitted 0 of 1" in retry
    outcome = f"status: {'unknown' if unknown else 'NOT UNKNOWN'}; --retry-failed: " + (
        "0 submitted" if refused else "SUBMITTED AGAIN"
    )
    return compare(sc, ref, 1, outcome, t0, exercised=unknown and refused)


def disk_full(work: Path, ex: str, ref: Path, epochs: int) -> Row:
    """The results folder's disk fills while the cell trains: the checkpoint write fails with exit 2
    (path and free space named, no temporary left, the previous checkpoint whole); once space is
    freed, --retry-failed resumes from that checkpoint."""
    t0 = time.time()
    sc = Scenario(work, "disk-full", ex, epochs)
    sc.results.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(sc.results)], capture_output=True)
    if r.returncode:
        return Row("disk-full", ex, f"SKIPPED: cannot mount a tmpfs ({r.stderr.decode().strip()[:80]})", 1, 0, "-",
                   False, 0.0)  # fmt: skip
    filler = sc.results / "filler"
    try:
        sc.sweep()
        sc.wait_for_checkpoint()
        with open(filler, "wb") as f:  # the disk is full to the last block
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass
        state = sc.wait(("failed", "done"), timeout=600)
        log = (sc.run / "train.log").read_text(errors="replace") if (sc.run / "train.log").is_file() else ""
        errors = " ".join(p.read_text(errors="replace") for p in (sc.results / ".submitit").glob("*.err"))
        named = "MiB free" in log + errors + str(cell_states([sc.cell], sc.results)[0].detail)
        temps = list(sc.run.glob(".checkpoint.pt.*.tmp"))
        whole = bool(torch.load(sc.run / "checkpoint.pt", weights_only=True))
        filler.unlink()
        sc.sweep("--retry-failed")
        sc.wait()
        resumed = "resumed from" in (sc.run / "train.log").read_text()
        outcome = (f"disk full at a checkpoint: {state}, {'space named' if named else 'SPACE NOT NAMED'}, "
                   f"{len(temps)} temporaries, previous checkpoint {'whole' if whole else 'BROKEN'}; freed -> "
                   f"retried, {'resumed' if resumed else 'NOT resumed'}")  # fmt: skip
        row = compare(sc, ref, 2, outcome, t0, exercised=state == "failed" and named and not temps and resumed)
    finally:
        subprocess.run(["umount", "-l", str(sc.results)], check=False)
    return row


def damaged_job_record(work: Path, ex: str, ref: Path, epochs: int) -> Row:
    """job.json is overwritten with garbage while the cell runs: status reports it (unknown, not a
    crash), --retry-failed submits nothing, and the running job finishes its result."""
    t0 = time.time()
    sc = Scenario(work, "damaged-job-record", ex, epochs)
    sc.sweep()
    sc.wait_for_checkpoint()
    (sc.run / "job.json").write_text('["this is not", "a job record"]')
    status = sc.cli("status", str(sc.spec), "--results", str(sc.results))
    retry = sc.sweep("--retry-failed")
    sc.wait()
    reported = status.returncode == 0 and "state file unreadable" in status.stdout and "Traceback" not in status.stderr
    refused = "submitted 0 of 1" in retry.stdout
    outcome = (f"job.json damaged mid-run: status {'reported it' if reported else 'DID NOT REPORT IT'}; "
               f"--retry-failed: {'0 submitted' if refused else 'SUBMITTED AGAIN'}")  # fmt: skip
    return compare(sc, ref, 1, outcome, t0, exercised=reported and refused)


def _slurmctld_pid() -> int:
    return int(Path("/run/slurmctld.pid").read_text().strip())


def slurmctld_restarted(work: Path, ex: str, ref: Path, epochs: int) -> Row:
    """slurmctld is stopped while the cell trains and started again: meanwhile the cell is unknown
    (never resubmitted), afterwards the job it kept running finishes."""
    t0 = time.time()
    sc = Scenario(work, "slurmctld-restarted", ex, epochs * 2)
    ref = reference(work, epochs * 2, name="reference-2x")
    sc.sweep()
    sc.wait_for_checkpoint()
    os.kill(_slurmctld_pid(), signal.SIGTERM)
    deadline = time.time() + 60
    while time.time() < deadline and subprocess.run(["scontrol", "ping"], capture_output=True).returncode == 0:
        time.sleep(0.5)
    during = sc.state()
    retry = sc.sweep("--retry-failed")
    subprocess.run(["slurmctld"], check=True)
    sc.wait(timeout=900)
    refused = "submitted 0 of 1" in retry.stdout
    outcome = (f"slurmctld down mid-run: cell {during}, --retry-failed {'0 submitted' if refused else 'SUBMITTED'}; "
               "restarted")  # fmt: skip
    return compare(sc, ref, 1, outcome, t0, exercised=during in ("unknown", "running") and refused)


def drained_node(work: Path, ex: str, ref: Path, epochs: int) -> Row:
    """The node is drained while the cell is queued: it stays queued (not failed, not resubmitted)
    and runs once the node is resumed."""
    t0 = time.time()
    host = subprocess.run(["sinfo", "-h", "-N", "-o", "%N"], capture_output=True, text=True).stdout.split()[0]
    sc = Scenario(work, "drained-node", ex, epochs, begin_s=30)
    subprocess.run(["scontrol", "update", f"nodename={host}", "state=drain", "reason=aspp-fault-injection"], check=True)
    try:
        sc.sweep()
        time.sleep(40)  # past --begin: only the drain holds it now
        during = sc.state()
        again = sc.sweep("--retry-failed")
    finally:
        subprocess.run(["scontrol", "update", f"nodename={host}", "state=resume"], check=True)
    sc.wait(timeout=900)
    refused = "submitted 0 of 1" in again.stdout
    outcome = f"node drained: cell {during}, resubmit {'0 submitted' if refused else 'SUBMITTED'}; resumed -> ran"
    return compare(sc, ref, 1, outcome, t0, exercised=during == "queued" and refused)


def retry_while_running(work: Path, ex: str, ref: Path, epochs: int) -> Row:
    """--retry-failed while the cell runs submits nothing (a running cell is not failed)."""
    t0 = time.time()
    sc = Scenario(work, "retry-while-running", ex, epochs)
    sc.sweep()
    sc.wait_for_checkpoint()
    during = sc.state()
    again = sc.sweep("--retry-failed")
    sc.wait()
    refused = "submitted 0 of 1" in again.stdout
    outcome = f"--retry-failed while {during}: {'0 submitted' if refused else 'SUBMITTED AGAIN'}"
    return compare(sc, ref, 1, outcome, t0, exercised=during == "running" and refused)


LOCAL = [sigkill, truncated_result, corrupt_checkpoint, two_launchers, killed_launcher, changed_config]
SLURM = [preemption, time_limit, sigkill, squeue_failing, two_launchers, truncated_result, disk_full,
         damaged_job_record, slurmctld_restarted, drained_node, retry_while_running]  # fmt: skip


def reference(work: Path, epochs: int, name: str = "reference") -> Path:
    sc = Scenario(work, name, "inline", epochs)
    sc.sweep()
    assert sc.state() == "done", sc.state()
    return sc.run


def markdown(rows: list[Row]) -> str:
    lines = ["| scenario | executor | outcome | fault exercised | lost | duplicated | resumed result bit-equal "
             "| time (s) |", "|---|---|---|---|---:|---:|---|---:|"]  # fmt: skip
    for r in rows:
        lines.append(f"| {r.scenario} | {r.executor} | {r.outcome} | {'yes' if r.exercised else 'NO'} | {r.lost} "
                     f"| {r.duplicated} | {r.bit_equal} | {r.seconds:.0f} |")  # fmt: skip
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--executors", default="local,slurm" if shutil.which("sbatch") else "local")
    p.add_argument("--epochs", type=int, default=120, help="training length of the cell (about 0.25 s/epoch here)")
    p.add_argument("--work", help="working folder (default: a new temporary one)")
    p.add_argument("--only", help="comma-separated scenario names")
    p.add_argument("--json", help="write the rows as JSON here (rewritten after every scenario)")
    p.add_argument("--deadline-s", type=float, help="end every wait this many seconds after the start")
    a = p.parse_args()
    if a.deadline_s:
        DEADLINE[0] = time.time() + a.deadline_s
    work = Path(a.work or tempfile.mkdtemp(prefix="aspp-faults-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    print(f"fault injection in {work}; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores", flush=True)
    ref = reference(work, a.epochs)
    rows: list[Row] = []
    for ex in a.executors.split(","):
        for fn in LOCAL if ex == "local" else SLURM:
            name = fn.__name__.replace("_", "-")
            if a.only and name not in a.only.split(","):
                continue
            started = time.time()
            try:
                row = fn(work, ex, ref, a.epochs)
            except Exception as e:  # a scenario that breaks is a row, not a crash of the suite
                row = Row(name, ex, f"ERROR: {type(e).__name__}: {str(e)[:600]}", 1, 0, "-", False,
                          time.time() - started)  # fmt: skip
            rows.append(row)
            print(f"{row.scenario:<20} {row.executor:<6} lost {row.lost} dup {row.duplicated} "
                  f"bit-equal {row.bit_equal} exercised {'yes' if row.exercised else 'NO'} {row.seconds:4.0f} s "
                  f"({row.outcome})", flush=True)  # fmt: skip
            if a.json:  # after every scenario: a run stopped from outside still leaves its rows
                Path(a.json).write_text(json.dumps([asdict(r) for r in rows], indent=2))
    print()
    print(markdown(rows))
    bad = [r for r in rows if not r.ok]
    print(f"\n{len(rows) - len(bad)} of {len(rows)} scenarios: fault exercised, 0 lost, 0 duplicated, bit-equal")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
