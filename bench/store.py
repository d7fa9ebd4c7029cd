"""Run folders and atomic writes: a file is either complete or absent, never half-written.

A run folder holds config.yaml (the resolved config), checkpoint.pt, train.log and, only
once the run has finished, result.json. The folder belongs to the config it holds: a run of
another config is refused before anything in it changes (`check_folder`), and a lock keeps a
second process out while it trains.
"""

from __future__ import annotations

__all__ = [
    "CHECKPOINT",
    "CONFIG",
    "LOG",
    "MANIFEST",
    "RESULT",
    "RunLock",
    "atomic_path",
    "atomic_write_text",
    "cache_dir",
    "check_folder",
    "folder_identity",
    "known_identity",
    "make_new_folder",
    "mkdir",
    "remove_new_paths",
    "read_json_file",
    "space_report",
    "read_result",
    "write_json",
    "write_yaml",
]
import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from bench.errors import UserError

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


def space_report(folder: str | Path) -> str:
    """'12.3 MiB free of 600.0 MiB' for the file system holding `folder` (or its nearest parent)."""
    import shutil

    p = Path(folder)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        u = shutil.disk_usage(p)
    except OSError:
        return "free space unknown"
    return f"{u.free / 2**20:.1f} MiB free of {u.total / 2**20:.1f} MiB on its file system"


def make_new_folder(path: Path) -> Path | None:
    """Create `path` and any missing parents; returns the topmost folder this call created (`path`
    or one of its parents, each made by an atomic mkdir, not guessed from exists()), or None when
    `path` already existed. Only what it returns may a clean-up remove again."""
    path = Path(path)
    missing = [q for q in [path, *path.parents] if not q.exists()]
    top = None
    for q in reversed(missing):
        try:
            os.mkdir(q)
        except FileExistsError:
            continue  # made by another process meanwhile: not ours
        except NotADirectoryError:
            mkdir(q)  # raises the UserError naming the regular file in the way
        if top is None:
            top = q
    if not path.is_dir():
        raise UserError(f"{path}: exists and is not a folder; give a folder path")
    return top


def remove_new_paths(
    top: Path | None,
    before: set[Path] = frozenset(),
    *,
    last: tuple[Path, ...] = (),
    keep_top: bool = False,  # type: ignore[assignment]
) -> None:
    """Undo what appeared under `top`, a folder this process created (None: nothing to undo), since
    `before` (its paths then): files unlinked, folders removed only when empty (never a recursive
    delete), deepest first; the paths in `last` (a lock held until now) go at the end, and `top`
    itself when that empties it."""
    if top is None or not top.is_dir():
        return
    tail = set(last)
    for p in sorted(set(top.rglob("*")) - set(before) - tail, key=lambda q: len(q.parts), reverse=True):
        with contextlib.suppress(OSError):
            if p.is_dir() and not p.is_symlink():
                p.rmdir()
            else:
                p.unlink()
    if not before and set(top.rglob("*")) - tail <= {q for t in tail for q in t.parents}:
        with contextlib.suppress(OSError):
            for p in tail:
                p.unlink(missing_ok=True)
        for p in sorted({q for t in tail for q in t.parents if top in q.parents}, key=lambda q: -len(q.parts)):
            with contextlib.suppress(OSError):
                p.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


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


MAX_STATE_BYTES = 64 << 20  # a result.json is a few hundred kB; a larger one is not the suite's own


def read_json_file(path: Path, what: str, *, limit: int = MAX_STATE_BYTES) -> Any:
    """A JSON state file's content; ValueError (naming the file and what is wrong) when it is too
    large, not UTF-8 or not JSON. Non-finite numbers (NaN, Infinity) are read as Python floats."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as e:
        raise ValueError(f"{path}: unreadable {what} ({e.strerror or e})") from None
    if size > limit:
        raise ValueError(f"{path}: {size / 2**20:.0f} MiB, larger than any {what} (at most {limit >> 20} MiB)")
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, OSError) as e:
        raise ValueError(f"{path}: corrupt {what} ({type(e).__name__})") from None


def read_result(run_dir: Path) -> dict[str, Any] | None:
    """The run's result, or None when it has not finished; raises ValueError if corrupt: not a
    JSON mapping, or a finished run whose mIoU is not a number in [0, 1]."""
    import math

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
    return r


def _jsonable(o: Any) -> Any:
    if isinstance(o, tuple | set):
        return list(o)
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)


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
    from bench.identity import identity_of_dict

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
    from bench.identity import config_diff, run_id

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
