"""Files written whole: a file is either complete or absent, never half-written (`atomic_path`,
the one atomic-write helper, and the JSON/YAML/text writers on it); folders made so that a
clean-up removes only what this process made (`make_new_folder`, `remove_new_paths`); bounded
reads of JSON state files; the suite's cache folder. Knows nothing of runs (bench.results.folders does)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from bench.errors import UserError

__all__ = [
    "atomic_path",
    "atomic_write_text",
    "cache_dir",
    "make_new_folder",
    "mkdir",
    "read_json_file",
    "remove_new_paths",
    "space_report",
    "write_json",
    "write_yaml",
]


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
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        if e.filename is None:  # a write() that failed names no file (nor does pyarrow's): name the target
            raise OSError(e.errno or _errno_in(str(e)), e.strerror or str(e), str(path)) from e
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _errno_in(text: str) -> int | None:
    """The errno a library's message quotes ('[errno 28] No space left on device'), or None."""
    m = re.search(r"errno (\d+)", text, flags=re.I)
    return int(m.group(1)) if m else None


def space_report(folder: str | Path) -> str:
    """'12.3 MiB free of 600.0 MiB' for the file system holding `folder` (or its nearest parent)."""
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


def _jsonable(o: Any) -> Any:
    if isinstance(o, tuple | set):
        return list(o)
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)


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
