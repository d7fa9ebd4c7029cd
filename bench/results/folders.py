"""Run folders: what a run folder holds and which experiment it belongs to.

A run folder holds config.yaml (the resolved config), checkpoint.pt, train.log and, only
once the run has finished, result.json. The folder belongs to the config it holds: a run of
another config is refused before anything in it changes (`check_folder`), and a lock keeps a
second process out while it trains. Writing a file whole is bench.files' job.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
from pathlib import Path
from typing import Any

import yaml

from bench.configure.identity import config_diff, identity_of_dict, run_id
from bench.errors import UserError, clip
from bench.files import read_json_file

__all__ = [
    "CHECKPOINT",
    "CONFIG",
    "ERROR",
    "JOB",
    "LOG",
    "MANIFEST",
    "RANK_ERROR",
    "RANK_INFO",
    "RESULT",
    "TENSORBOARD",
    "RunLock",
    "check_folder",
    "folder_identity",
    "is_locked",
    "known_identity",
    "read_result",
    "remove_stale_temps",
]


RESULT = "result.json"


CONFIG = "config.yaml"


CHECKPOINT = "checkpoint.pt"


LOG = "train.log"


JOB = "job.json"  # the job a launcher submitted for the run (executor, job id, submitit folder)


ERROR = "error.txt"  # why a local or inline run failed


RANK_INFO = "rank-{rank}.json"  # a distributed cell's ranks: who started where (host, pid)


RANK_ERROR = "rank-{rank}.error"  # ... and why one of them failed


LOCK = ".lock"


TENSORBOARD = "tensorboard"  # event files: <results>/tensorboard/<cell> or <run>/tensorboard


class RunLock:
    """An exclusive flock on <run>/.lock for as long as a process trains in the folder, so that
    no two processes ever write one run (a resubmitted or retried cell finds it held)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK
        self._fd: int | None = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def remove_stale_temps(run_dir: Path, names: tuple[str, ...]) -> list[Path]:
    """Remove the temporary files `atomic_path` left beside `names` when a writer was killed
    (SIGKILL, OOM, node failure: no handler runs). Call only while holding the folder's RunLock:
    no other process writes these files then, so every such temporary is an orphan."""
    stale = [p for n in names for p in Path(run_dir).glob(f".{n}.*.tmp") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def is_locked(run_dir: Path) -> bool:
    """True while some process trains in the folder (its flock is held)."""
    path = Path(run_dir) / LOCK
    if not path.is_file():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def read_result(run_dir: Path) -> dict[str, Any] | None:
    """The run's result, or None when it has not finished; raises ValueError if corrupt: not a
    JSON mapping, or a finished run whose mIoU is not a number in [0, 1]."""
    path = Path(run_dir) / RESULT
    if not path.is_file():
        return None
    r = read_json_file(path, "result file")
    if not isinstance(r, dict):
        raise ValueError(f"{path}: corrupt result file (a {type(r).__name__}, not a mapping)")
    if r.get("status", "done") == "done":
        miou = r.get("metrics", {}).get("miou") if isinstance(r.get("metrics"), dict) else None
        if isinstance(miou, bool) or not isinstance(miou, int | float) or not math.isfinite(miou) or not 0 <= miou <= 1:
            given = str(miou)[:40]
            raise ValueError(f"{path}: corrupt result file (metrics.miou is {given!r}, not a number in [0, 1])")
        for group in ("iou", "size_miou"):  # per-class and per-size IoU: numbers in [0, 1], or NaN / null (absent)
            values = r["metrics"].get(group)
            if values is None:
                continue
            if not isinstance(values, dict):
                raise ValueError(f"{path}: corrupt result file (metrics.{group} is a {type(values).__name__}, "
                                 "not a mapping)")  # fmt: skip
            for k, v in values.items():
                if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)
                                      or not (math.isnan(v) or 0 <= v <= 1)):  # fmt: skip
                    raise ValueError(f"{path}: corrupt result file (metrics.{group}.{clip(k, 40)} is "
                                     f"{str(v)[:40]!r}, not a number in [0, 1], NaN or null)")  # fmt: skip
    return r


MANIFEST = "sweep.json"


def _bound_config(run: Path) -> tuple[Path, Any]:
    """(the file, the config mapping or None) a run folder is bound to: its config.yaml, else the
    config its result.json records."""
    source = run / CONFIG
    try:
        if source.is_file():
            return source, yaml.safe_load(source.read_text())
        if (run / RESULT).is_file():
            source = run / RESULT
            return source, json.loads(source.read_text()).get("config")
    except (OSError, yaml.YAMLError, json.JSONDecodeError, AttributeError) as e:
        raise UserError(f"{source}: unreadable ({type(e).__name__}); this folder's run cannot be identified") from None
    return source, None


def folder_identity(run: Path) -> tuple[str, str, Any] | None:
    """(run_id, config_id, resolved config) the folder is bound to; None for a folder that holds
    no run. A folder with a checkpoint or result but no config it can resolve is a UserError."""
    source, data = _bound_config(run)
    if data is None:
        if (run / CHECKPOINT).is_file():
            raise UserError(
                f"{run}: holds a checkpoint but no {CONFIG}: it cannot be bound to a config; use another folder"
            )
        return None
    if not isinstance(data, dict):
        raise UserError(f"{source}: expected a config mapping, got {type(data).__name__}")
    try:
        return identity_of_dict(data, source=str(source))
    except UserError as e:
        raise UserError(f"{run} holds a run whose config no longer resolves ({e}); use another folder") from None


def known_identity(run: Path) -> tuple[str, str, Any] | None:
    """folder_identity, or None where it cannot be read (an index of a results folder skips it)."""
    try:
        return folder_identity(run)
    except UserError:
        return None


def check_folder(cfg: Any, out: Path) -> str:
    """The run_id of `cfg` (a RunConfig, resolved); UserError naming every differing key when the
    folder already holds another experiment. Reads only: nothing in the folder changes."""
    rid = run_id(cfg, resolved=True)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder; give --out a folder path")
    if not out.is_dir():
        return rid
    bound = folder_identity(out)
    if bound is not None and bound[0] != rid:
        diff = config_diff(bound[2], cfg)
        raise UserError(
            f"{out} holds run {bound[0]}, another experiment than this config (run {rid}); it differs in "
            + ("; ".join(diff) if diff else "its resolved identity")
            + f". Nothing was changed. Use another --out folder, or remove {out} to start over"
        )
    return rid
