"""`aspp-bench speed`: two sides timed in their own processes, round after round, each round a
fresh pair of processes timed in ABBA order, decided sequentially (bench.verdicts.speed).

A side is a configuration (an architecture name with --set overrides, a config YAML, or a run
folder's config.yaml) run by a code version: the code this command runs, a git revision (checked
out with `git archive` into a folder this command makes and removes), or another Python
environment (its interpreter). Each round starts a fresh process per side, which builds its model
with its side's code and warms up (while the round before measures), then asks the two in the
order A,B,B,A (B,A,A,B in even rounds) to time forwards for `slice_s` seconds each
(bench.profile.speed_worker); while one side runs the other waits on a pipe, using no CPU.

Why a fresh pair per round: a process carries a speed of its own (where its memory landed, which
pages are huge), measured here as a spread of about 2% between processes of one configuration
(docs/measurement.md#speed); rounds that shared processes would share it, and the test that
treats rounds as independent would call two identical sides different far more often than alpha.
With a pair per round the process's share is part of each round's noise, which the test measures.

Every round records the load before and after, each side's median by both clocks, its block count,
process ids and fingerprints; the record names both sides' environments.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import bench.models  # noqa: F401  (registers the architectures a side may name)
from bench.configure.config import load_run_config
from bench.errors import UserError, clip, did_you_mean
from bench.profile.environment import device_features, device_name, fingerprint, host_id
from bench.registry import architectures
from bench.verdicts.speed import SpeedDesign, SpeedVerdict, decide_rounds

__all__ = ["WORKTREE", "Side", "checkout", "run_speed", "side_from_argument"]

WORKTREE = "worktree"  # --rev's name for the code this command runs (uncommitted changes included)
_WORKER = Path(__file__).with_name("speed_worker.py")
_PREFIX = "@@speed "


@dataclass
class Side:
    """One side: what it builds (arch or config file, with overrides) and which code runs it."""

    label: str  # A or B
    arch: str | None
    config: str | None
    sets: list[str] = field(default_factory=list)
    python: str = sys.executable
    code: str | None = None  # a checkout folder put first on the path; None: the installed code
    rev: str | None = None  # the git revision `code` holds

    def describe(self) -> str:
        what = self.arch or self.config
        sets = f" ({' '.join(self.sets)})" if self.sets else ""
        code = f", revision {self.rev[:12]}" if self.rev else ""
        py = f", {self.python}" if self.python != sys.executable else ""
        return f"{what}{sets}{code}{py}"


def side_from_argument(label: str, text: str, sets: list[str]) -> Side:
    """An architecture name, a config YAML, or a run folder (its config.yaml)."""
    p = Path(text)
    if p.is_dir():
        if not (p / "config.yaml").is_file():
            raise UserError(f"side {label}: {text}: a folder without a config.yaml; give a run folder, a config YAML "
                            "or an architecture name (aspp-bench models)")  # fmt: skip
        return Side(label, None, str(p / "config.yaml"), sets)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise UserError(f"side {label}: {text}: config file not found")
        return Side(label, None, str(p), sets)

    names = architectures.names()
    if text not in names:
        raise UserError(f"side {label}: {text!r} is neither an architecture nor a config file or run folder; "
                        f"architectures: {', '.join(names)}{did_you_mean(text, names)}")  # fmt: skip
    return Side(label, text, None, sets)


def check_side(side: Side) -> None:
    """Resolve and build the side's config with this code, before any process starts (exit 2 on a
    bad key or value). Sides run by another code version are checked by that code, in its process."""
    if side.code is not None or side.python != sys.executable:
        return
    sets = ([f"model.arch={side.arch}"] if side.arch else []) + side.sets
    try:
        load_run_config(side.config, sets)
    except UserError as e:
        raise UserError(f"side {side.label}: {e}") from None


def checkout(rev: str, into: Path) -> tuple[str, Path]:
    """(full commit, folder) of `rev` of the git repository around the working directory, written
    with `git archive` into a new folder under `into`."""
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=True)
        sha = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], capture_output=True,
                             text=True, check=True, cwd=top.stdout.strip())  # fmt: skip
    except FileNotFoundError:
        raise UserError("--rev: git is not installed; install it or compare environments with --python") from None
    except subprocess.CalledProcessError:
        raise UserError(
            f"--rev {rev!r}: not a commit of the git repository here ({os.getcwd()}); give a commit, branch or tag "
            f"(git log --oneline), or {WORKTREE!r} for the code this command runs"
        ) from None
    commit = sha.stdout.strip()
    folder = into / commit[:12]
    if folder.exists():
        return commit, folder
    folder.mkdir()
    archive = subprocess.run(["git", "archive", "--format=tar", commit], capture_output=True, check=True,
                             cwd=top.stdout.strip())  # fmt: skip
    import io

    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(folder, filter="data")
    if not (folder / "bench" / "__init__.py").is_file():
        raise UserError(f"--rev {rev}: commit {commit[:12]} has no bench/ package at the top of the repository")
    return commit, folder


class _Worker:
    """One side's timing process."""

    def __init__(self, side: Side, spec: dict[str, Any], scratch: Path, tag: str) -> None:
        """Start the process (it builds and warms up on its own); `ready` waits for it."""
        self.side = side
        self._ready: dict[str, Any] | None = None
        env = dict(os.environ)
        if side.code is not None:
            env["PYTHONPATH"] = os.pathsep.join([side.code, *filter(None, [env.get("PYTHONPATH")])])
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        self.log = scratch / f"side_{side.label}_{tag}.stderr"
        payload = dict(spec, arch=side.arch, config=side.config and str(Path(side.config).resolve()), sets=side.sets)
        with open(self.log, "w") as err:
            try:
                self.proc = subprocess.Popen(
                    [side.python, "-c", _WORKER.read_text(), json.dumps(payload)], stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE, stderr=err, text=True, env=env, cwd=side.code or scratch,
                )  # fmt: skip
            except OSError as e:
                raise UserError(f"side {side.label}: cannot start {side.python}: {e.strerror}; give an interpreter "
                                "path to --python") from None  # fmt: skip

    @property
    def ready(self) -> dict[str, Any]:
        """What the process runs, once it has built and warmed up its model."""
        if self._ready is None:
            self._ready = self._answer()["ready"]
        return self._ready

    def _answer(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if not line.startswith(_PREFIX):
                continue
            msg = json.loads(line[len(_PREFIX):])
            if "error" in msg:
                self.close()
                raise UserError(f"side {self.side.label} ({self.side.describe()}): its code refused the configuration: "
                                f"{clip(msg['error'], 600)}")  # fmt: skip
            return msg
        self.proc.wait()
        tail = self.log.read_text(errors="replace").strip().splitlines()[-8:]
        raise RuntimeError(f"side {self.side.label}'s process ended (exit {self.proc.returncode}) before answering:\n"
                           + "\n".join(tail))  # fmt: skip

    def measure(self, slice_s: float) -> dict[str, list[float]]:
        """{"wall_ms": [...], "cpu_ms": [...]}: per block, one forward's (or step's) mean times."""
        self.ready  # noqa: B018  (waits for the process to have built and warmed up)
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"slice": slice_s}) + "\n")
        self.proc.stdin.flush()
        return self._answer()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(json.dumps({"quit": True}) + "\n")
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired, ValueError):
                self.proc.kill()
                self.proc.wait()


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def _load() -> float | None:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def run_speed(
    sides: tuple[Side, Side],
    design: SpeedDesign,
    spec: dict[str, Any],
    *,
    slice_s: float = 1.0,
    clock: str = "cpu",
    max_time_s: float = 600.0,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Start both sides' processes, run rounds until the design decides, `max_rounds` or
    `max_time_s`; the whole record (JSON-ready). `clock` decides: "cpu", the process's CPU time
    per forward (what the code costs, which other processes do not move), or "wall", the latency
    (which they do); both are recorded in every round."""
    design.design().levels(paired=True)  # calibrate the looks before the clock starts
    scratch = Path(tempfile.mkdtemp(prefix="aspp-bench-speed-"))
    live: list[_Worker] = []

    def pair(i: int) -> list[_Worker]:  # round i's processes, started in alternating order
        labels = (0, 1) if i % 2 == 0 else (1, 0)
        made = {k: _Worker(sides[k], spec, scratch, str(i)) for k in labels}
        live.extend(made.values())
        return [made[0], made[1]]

    try:
        current = pair(0)
        ready = [w.ready for w in current]  # the first pair: what both sides run, for the record
        base = {"device": "cpu", "device_name": device_name("cpu"), "device_features": device_features("cpu"),
                "dtype": spec["dtype"], "channels_last": spec["channels_last"], "compile": False,
                "train_threads": None}  # fmt: skip
        envs = [dict(base, torch=r["torch"], kernels=r["kernels"], threads=r["threads"]) for r in ready]
        prints = [fingerprint(e) for e in envs]
        rounds: list[dict[str, Any]] = []
        looks = set(design.design().looks())
        verdict: SpeedVerdict | None = None
        stopped, start = "max rounds", time.monotonic()
        for i in range(design.max_rounds):
            if time.monotonic() - start > max_time_s:
                stopped = "time limit"
                break
            following = pair(i + 1) if i + 1 < design.max_rounds else None  # starts while this round measures
            order = (0, 1, 1, 0) if i % 2 == 0 else (1, 0, 0, 1)
            load_before, got = _load(), [{"cpu_ms": [], "wall_ms": []}, {"cpu_ms": [], "wall_ms": []}]
            for k in order:
                for c, times in current[k].measure(slice_s).items():
                    got[k][c] += times
            for w in current:
                w.close()
            med = {c: [_median(got[k][f"{c}_ms"]) for k in (0, 1)] for c in ("cpu", "wall")}
            a, b = med[clock]
            rounds.append({"round": i + 1, "order": "ABBA" if order[0] == 0 else "BAAB", "a_ms": a, "b_ms": b,
                           "ratio": b / a, "a_cpu_ms": med["cpu"][0], "b_cpu_ms": med["cpu"][1],
                           "a_wall_ms": med["wall"][0], "b_wall_ms": med["wall"][1],
                           "a_blocks": len(got[0]["cpu_ms"]), "b_blocks": len(got[1]["cpu_ms"]),
                           "load_before": load_before, "load_after": _load(),
                           "fingerprints": [fingerprint(dict(e, torch=w.ready["torch"], kernels=w.ready["kernels"],
                                                             threads=w.ready["threads"]))
                                            for e, w in zip(envs, current, strict=True)],
                           "pids": [w.ready["pid"] for w in current],
                           "t_s": round(time.monotonic() - start, 3)})  # fmt: skip
            if i + 1 in looks:
                verdict = decide_rounds(design, [r["ratio"] for r in rounds])
                if progress:
                    progress(_look_line(verdict, len(rounds)))
                if verdict.decided:
                    stopped = "decided"
                    break
            if following is None:
                break
            current = following
        verdict = decide_rounds(design, [r["ratio"] for r in rounds])
        if not verdict.decided:
            verdict.state = "undecided"
        elapsed = time.monotonic() - start
    finally:
        for w in live:
            w.close()
        shutil.rmtree(scratch, ignore_errors=True)  # the folder this call made, nothing else
    loads = [r[k] for r in rounds for k in ("load_before", "load_after") if r[k] is not None]
    return {
        "command": "aspp-bench speed " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if len(sys.argv) > 2 else None,
        "measure": spec["measure"],
        "clock": clock,
        "wall_ratio": _gmean_ratio(rounds, "wall"),
        "cpu_ratio": _gmean_ratio(rounds, "cpu"),
        "protocol": dict(spec, slice_s=slice_s, clock=clock,
                         order="a fresh pair of processes per round (started while the round before measures), "
                               "timed A,B,B,A in odd rounds and B,A,A,B in even ones"),
        "design": asdict(design),
        "sides": {s.label: {"describe": s.describe(), "rev": s.rev, "python": s.python, **r, "env": e,
                            "env_fingerprint": fp}
                  for s, r, e, fp in zip(sides, ready, envs, prints, strict=True)},  # fmt: skip
        "same_fingerprint": prints[0] == prints[1],
        "host": host_id(),
        "cpu_count": os.cpu_count(),
        "rounds": rounds,
        "verdict": {"state": verdict.state, "ratio": verdict.ratio, "low": verdict.low, "high": verdict.high,
                    "rounds": verdict.rounds, "p": verdict.p, "p_equivalence": verdict.p_equivalence,
                    "level": verdict.level, "fails": verdict.fails(design.tolerance)},  # fmt: skip
        "looks": verdict.looks,
        "stopped": stopped,
        "elapsed_s": elapsed,
        "load": {"min": min(loads), "median": _median(loads), "max": max(loads)} if loads else None,
    }


def _gmean_ratio(rounds: list[dict[str, Any]], clock: str) -> float | None:
    """B / A by one clock over all rounds (the geometric mean of the rounds' ratios)."""
    logs = [math.log(r[f"b_{clock}_ms"] / r[f"a_{clock}_ms"]) for r in rounds
            if r[f"a_{clock}_ms"] > 0 and r[f"b_{clock}_ms"] > 0]  # fmt: skip
    return math.exp(sum(logs) / len(logs)) if logs else None


def _look_line(v: SpeedVerdict, n: int) -> str:
    if math.isnan(v.low):
        return f"  round {n}: B/A x{v.ratio:.3f}, no look yet"
    return f"  look at {n} rounds: B/A x{v.ratio:.3f} [{v.low:.3f}, {v.high:.3f}] {v.state}"
