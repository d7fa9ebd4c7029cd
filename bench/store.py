"""Run folders and atomic writes: a file is either complete or absent, never half-written.

A run folder holds config.yaml (the resolved config), checkpoint.pt, train.log and, only
once the run has finished, result.json.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "CHECKPOINT",
    "CONFIG",
    "LOG",
    "MANIFEST",
    "RESULT",
    "collect",
    "read_manifest",
    "read_result",
    "result_row",
    "write_json",
    "write_yaml",
]

RESULT = "result.json"
CONFIG = "config.yaml"
CHECKPOINT = "checkpoint.pt"
LOG = "train.log"


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    _atomic_write(path, json.dumps(data, indent=2, default=_jsonable, allow_nan=True) + "\n")


def write_yaml(path: Path, data: Any) -> None:
    _atomic_write(path, yaml.safe_dump(data, sort_keys=False))


LOCK = ".lock"


class RunLock:
    """An exclusive flock on <run>/.lock for as long as a process trains in the folder, so that
    no two processes ever write one run (a resubmitted or retried cell finds it held)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK
        self._fd: int | None = None

    def acquire(self) -> bool:
        import fcntl

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
        import fcntl

        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def is_locked(run_dir: Path) -> bool:
    """True while some process trains in the folder (its flock is held)."""
    import fcntl

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
    """The run's result, or None when it has not finished; raises ValueError if corrupt."""
    path = Path(run_dir) / RESULT
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: corrupt result file ({e})") from None


def _jsonable(o: Any) -> Any:
    if isinstance(o, tuple | set):
        return list(o)
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)


# --------------------------------------------------------------------------- collect

MANIFEST = "sweep.json"
METRIC_COLUMNS = ("miou", "pixel_acc", "mean_class_acc", "fw_iou", "macro_f1", "mean_dice")
PROFILE_COLUMNS = ("params", "params_m", "gmacs", "gflops", "latency_ms_p50", "latency_ms_p90", "fps_bs1")


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, key + "."))
        elif isinstance(v, list | tuple):
            out[key] = ",".join(str(x) for x in v)  # rates (3, 6, 9, 12) -> "3,6,9,12"
        else:
            out[key] = v
    return out


def result_row(run_id: str, r: dict[str, Any]) -> dict[str, Any]:
    """One table row: flattened config, status, metrics (with per-class and per-size IoU),
    cost and speed with the environment fingerprint."""
    row: dict[str, Any] = {"run_id": run_id, "status": r.get("status")}
    row.update(_flat(r.get("config", {})))
    m = r.get("metrics") or {}
    for k in METRIC_COLUMNS:
        row[k] = m.get(k)
    for name, v in (m.get("iou") or {}).items():
        row[f"iou.{name}"] = v
    for bucket, v in (m.get("size_iou") or {}).items():
        row[f"size_miou.{bucket}"] = v.get("miou")
    p = r.get("profile") or {}
    for k in PROFILE_COLUMNS:
        row[k] = p.get(k)
    row["env_fingerprint"] = p.get("env_fingerprint")
    env = r.get("env") or {}
    for k in ("device_name", "torch", "threads", "dtype"):
        row[f"env.{k}"] = env.get(k)
    t = r.get("train") or {}
    row["train_seconds"] = t.get("train_seconds")
    row["images_per_s"] = t.get("images_per_s")
    return row


def collect(results: str | Path) -> tuple[Any, list[tuple[str, str]]]:
    """(DataFrame with one row per finished run, [(folder, why skipped)]). Unfinished, partial
    and corrupt run folders are listed, never fatal."""
    import pandas as pd

    root = Path(results)
    rows, skipped = [], []
    for run in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if run.name == "baselines":
            continue
        try:
            r = read_result(run)
        except ValueError as e:
            skipped.append((str(run), str(e)))
            continue
        if r is None:
            why = "no result.json (unfinished)" if (run / CONFIG).is_file() else "not a run folder"
            skipped.append((str(run), why))
            continue
        if not isinstance(r, dict) or "config" not in r:
            skipped.append((str(run), "result.json without a config"))
            continue
        rows.append(result_row(run.name, r))
    return pd.DataFrame(rows), skipped


def read_manifest(results: str | Path) -> dict[str, Any]:
    path = Path(results) / MANIFEST
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
