"""Run folders and atomic writes: a file is either complete or absent, never half-written.

A run folder holds config.yaml (the resolved config), checkpoint.pt, train.log and, only
once the run has finished, result.json.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "RunIndex",
    "atomic_path",
    "atomic_write_text",
    "mkdir",
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
JOB = "job.json"  # the job a launcher submitted for the run (executor, job id, submitit folder)
ERROR = "error.txt"  # why a local or inline run failed
RANK_INFO = "rank-{rank}.json"  # a distributed cell's ranks: who started where (host, pid)
RANK_ERROR = "rank-{rank}.error"  # ... and why one of them failed


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """The one atomic-write helper: yields a temporary path beside `path` for any writer
    (text, torch.save, to_parquet, savefig), then renames it over `path`. On any failure (a full
    disk, a signal, an exception in the writer) the temporary file is removed and `path` is left
    as it was: a file is whole or absent, never half-written."""
    path = Path(path)
    mkdir(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # as open() would create it (mkstemp makes 0600), readable by the group
    try:
        yield Path(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cache_dir(*parts: str) -> Path:
    """The suite's cache folder, $XDG_CACHE_HOME/aspp-bench/<parts> (~/.cache by default): derived
    data only (decoded datasets, class weights), safe to delete at any time."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base.joinpath("aspp-bench", *parts)


def mkdir(path: str | Path) -> Path:
    """mkdir -p with a UserError (not a traceback) when a parent is a regular file."""
    from bench.errors import UserError

    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((q for q in [p, *p.parents] if q.exists() and not q.is_dir()), p)
        raise UserError(f"{p}: cannot create this folder, {blocker} is a regular file; choose another path") from None
    return p


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, default=_jsonable, allow_nan=True) + "\n")


def write_yaml(path: Path, data: Any) -> None:
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))


LOCK = ".lock"
TENSORBOARD = "tensorboard"  # event files: <results>/tensorboard/<cell> or <run>/tensorboard


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
PROFILE_COLUMNS = (
    "params",
    "params_m",
    "gmacs",
    "gmacs_aux",
    "gflops",
    "latency_ms_p50",
    "latency_ms_p90",
    "latency_ms_iqr",
    "fps_bs1",
    "achieved_gflops_s",
    "peak_gflops_s",
    "efficiency",
    "busy",
)
ENV_COLUMNS = ("device_name", "device_features", "kernels", "torch", "threads", "train_threads", "cpu_count",
               "load_avg", "dtype", "train_amp", "train_channels_last", "train_compile")  # fmt: skip


def result_row(run_id: str, r: dict[str, Any]) -> dict[str, Any]:
    """One table row: flattened config, status, metrics (with per-class and per-size IoU),
    cost and speed with the environment fingerprint."""
    row: dict[str, Any] = {"run_id": run_id, "status": r.get("status")}
    from bench.config import flatten

    row.update(flatten(r.get("config", {}), join_lists=True))  # rates (3, 6, 9, 12) -> "3,6,9,12"
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
    for k in ENV_COLUMNS:
        row[f"env.{k}"] = env.get(k)
    t = r.get("train") or {}
    row["train_seconds"] = t.get("train_seconds")
    row["images_per_s"] = t.get("images_per_s")
    return row


def _folder_identity(run: Path) -> tuple[str, str, Any] | None:
    """(run_id, config_id, resolved config) of a run folder from its config.yaml (or its
    result's config); None when it has none that resolves."""
    from bench.errors import UserError
    from bench.identity import identity_of_dict

    data: Any = None
    cfg = run / CONFIG
    try:
        if cfg.is_file():
            data = yaml.safe_load(cfg.read_text())
        elif (run / RESULT).is_file():
            data = json.loads((run / RESULT).read_text()).get("config")
    except (OSError, yaml.YAMLError, json.JSONDecodeError, AttributeError):
        return None
    if not isinstance(data, dict):
        return None
    try:
        return identity_of_dict(data, source=str(cfg))
    except UserError:
        return None


def _run_folders(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(
        p
        for p in root.iterdir()
        if p.is_dir() and not p.name.startswith(".") and p.name not in ("baselines", TENSORBOARD)
    )


class RunIndex:
    """Where each run of a results folder lives. A run's folder is `<results>/<run_id>`; folders
    written under an earlier identity scheme (another name for the same resolved config) are found
    through their config.yaml, so old results keep counting and are never trained again."""

    def __init__(self, results: str | Path) -> None:
        self.root = Path(results)
        self._by_id: dict[str, list[Path]] = {}
        self._scanned = False

    def _scan(self) -> None:
        if self._scanned:
            return
        self._scanned = True
        for run in _run_folders(self.root):
            ident = _folder_identity(run)
            if ident is not None:
                self._by_id.setdefault(ident[0], []).append(run)

    def folder(self, run_id: str) -> Path:
        """The folder holding this run: its own name if that exists, else a legacy folder with the
        same resolved config (a finished one first), else its own name (not yet created)."""
        own = self.root / run_id
        if own.is_dir() and any((own / f).exists() for f in (RESULT, CONFIG, CHECKPOINT, "job.json")):
            return own
        self._scan()
        legacy = [p for p in self._by_id.get(run_id, []) if p != own]
        if legacy:
            return sorted(legacy, key=lambda p: (not (p / RESULT).is_file(), p.name))[0]
        return own


def collect(results: str | Path) -> tuple[Any, list[tuple[str, str]]]:
    """(DataFrame with one row per finished run, [(folder, why skipped)]). Unfinished, partial
    and corrupt run folders are listed, never fatal. A row's run_id is the identity of its
    resolved config, whatever the folder is called; two folders holding one experiment give one
    row (the folder named by the identity first), the other is listed as a duplicate, never
    counted as another seed."""
    import pandas as pd

    from bench.errors import UserError
    from bench.identity import identity_of_dict

    root = Path(results)
    rows: dict[str, dict[str, Any]] = {}
    skipped: list[tuple[str, str]] = []
    candidates = []
    for run in _run_folders(root):
        try:
            r = read_result(run)
        except ValueError as e:
            skipped.append((str(run), str(e)))
            continue
        if r is None:
            why = "no result.json (unfinished)" if (run / CONFIG).is_file() else "not a run folder"
            skipped.append((str(run), why))
            continue
        if not isinstance(r, dict) or not isinstance(r.get("config"), dict):
            skipped.append((str(run), "result.json without a config"))
            continue
        try:
            rid, cid, resolved = identity_of_dict(r["config"], source=f"{run / RESULT}: config")
        except UserError as e:
            skipped.append((str(run), f"its config no longer resolves ({e})"))
            continue
        candidates.append((run.name != rid, run.name, run, rid, cid, resolved, r))
    for _, _, run, rid, cid, resolved, r in sorted(candidates, key=lambda t: (t[0], t[1])):
        if rid in rows:
            skipped.append((str(run), f"duplicate of run {rid} (folder {rows[rid]['folder']}): same resolved config"))
            continue
        row = result_row(rid, {**r, "config": json.loads(resolved.model_dump_json())})
        row["config_id"] = cid
        row["folder"] = run.name
        rows[rid] = row
    return pd.DataFrame(list(rows.values())), skipped


def read_manifest(results: str | Path) -> dict[str, Any]:
    path = Path(results) / MANIFEST
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
