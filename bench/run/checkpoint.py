"""Checkpoint files: reading one safely (weights_only, a clear error for a truncated, foreign or
code-carrying file), writing one atomically, and the RNG states (torch, numpy, Python, CUDA) a
checkpoint holds so that a resumed run draws what an uninterrupted one would.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.distributed import World
from bench.errors import UserError
from bench.files import atomic_path, space_report
from bench.run.training import TrainState

__all__ = [
    "pack",
    "unpack",
    "rank_seed",
    "read_checkpoint",
    "restore_rng",
    "rng_state",
    "seed_everything",
    "set_rng_state",
    "write_checkpoint",
]


def _legacy_safe_globals() -> list[Any]:
    """The numpy types an older aspp-bench checkpoint holds (its numpy RNG state as an array):
    array reconstruction only, nothing that runs code."""
    out: list[Any] = [np.ndarray, np.dtype]
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
    out.append(_reconstruct)
    out += [type(np.dtype(t)) for t in ("uint32", "int64", "float64")]
    return out


def read_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint with `weights_only=True`: tensors and plain types only, so a shared file
    cannot run code when it is opened. A file that needs arbitrary unpickling, or that is
    truncated or not a checkpoint, is a UserError naming the file (exit 2), never a traceback."""
    import pickle
    import zipfile

    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: checkpoint not found")
    if not zipfile.is_zipfile(p):
        size = p.stat().st_size
        raise UserError(
            f"{p}: not a readable checkpoint ({'empty file' if size == 0 else f'{size} bytes, not a torch zip archive'}"
            "; truncated or overwritten); delete it (a run then starts afresh) or give the checkpoint.pt of a "
            "finished run"
        )
    try:
        with torch.serialization.safe_globals(_legacy_safe_globals()):
            ckpt = torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        import re

        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        first = f"it asks for {found.group(1)}" if found else type(e).__name__
        raise UserError(
            f"{p}: refused: it holds objects that only arbitrary unpickling can load, which can run code "
            f"({first}). aspp-bench loads checkpoints with weights_only=True; only checkpoints of tensors and "
            "plain types (as aspp-bench writes them) are accepted"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as e:
        raise UserError(f"{p}: not a readable checkpoint ({type(e).__name__}: {str(e)[:200]}); delete it") from None
    if not isinstance(ckpt, dict):
        raise UserError(f"{p}: not an aspp-bench checkpoint (a {type(ckpt).__name__}, expected a mapping)")
    return ckpt


def rng_state() -> dict[str, Any]:
    """Every RNG's state as tensors and plain types, so the checkpoint loads with weights_only."""
    name, key, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state = {
        "torch": torch.get_rng_state(),
        "numpy": (str(name), torch.from_numpy(key.astype(np.int64)), int(pos), int(has_gauss), float(cached)),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, key, pos, has_gauss, cached = state["numpy"]
    key = key.numpy() if isinstance(key, torch.Tensor) else np.asarray(key)
    np.random.set_state((name, key.astype(np.uint32), pos, has_gauss, cached))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def write_checkpoint(path: Path, payload: dict[str, Any]) -> Path:
    """torch.save through a temporary file and a rename: a checkpoint is whole or absent. A write
    that fails (torch reports a full disk as RuntimeError, not OSError) is an OSError naming the
    path and the free space; the previous checkpoint is left whole."""
    try:
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)
    except RuntimeError as e:
        import errno

        text = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        code = errno.ENOSPC if "space" in text.lower() or "write" in text.lower() else errno.EIO
        why = f"writing the checkpoint failed ({text}); {space_report(path.parent)}; the previous checkpoint is intact"
        raise OSError(code, why + " and the run resumes from it once there is room", str(path)) from None
    return path


def rank_seed(seed: int, rank: int, offset: int = 0) -> int:
    """The augmentation seed of a rank other than 0 (rank 0 draws what the single process draws)."""
    return seed * 1_000_003 + 7919 * rank + offset


def restore_rng(ckpt: dict[str, Any], world: World, *, seed: int, iteration: int) -> str | None:
    """Set this rank's RNG states from a checkpoint. Written by as many ranks as this cell has:
    each rank gets its own back. By another number of ranks: rank 0 gets the saved main state, the
    others a fresh seed from (seed, rank, iteration); the message that says so is returned."""
    ranks = ckpt.get("rng_ranks")
    if world.distributed and ranks is not None and len(ranks) == world.size:
        set_rng_state(ranks[world.rank])
        return None
    set_rng_state(ckpt["rng"])
    if not (world.distributed or ranks is not None):
        return None
    if not world.main:
        torch.manual_seed(rank_seed(seed, world.rank, iteration))
    return (
        f"written by {len(ranks) if ranks else 1} rank(s), this cell has {world.size}: the weights, optimiser "
        "and position resume exactly, the augmentation random streams do not"
    )


def pack(
    identity: str | None, parts: dict[str, Any], state: TrainState, rng: dict[str, Any], rng_ranks: Any = None
) -> dict[str, Any]:
    """A checkpoint's contents: the run it is bound to, every part's state_dict (model, optimiser,
    scheduler, AMP scaler), the loop's state, the RNG states (every rank's, in a cell of several:
    the weights are the same on every rank, the augmentation RNGs are not)."""
    payload = {"identity": identity, **{k: v.state_dict() for k, v in parts.items()}, "state": state.__dict__}
    payload["rng"] = rng
    if rng_ranks is not None:
        payload["rng_ranks"] = rng_ranks
    return payload


def unpack(ckpt: dict[str, Any], parts: dict[str, Any], *, identity: str | None, path: Path,
           earlier: tuple[str, ...] = ()) -> TrainState:  # fmt: skip
    """Load every part's state from a checkpoint bound to this run (a UserError for another run's);
    `earlier`: this run's ids under earlier identity rules, which its older checkpoints carry."""
    theirs = ckpt.get("identity")
    if identity is not None and theirs is not None and theirs != identity and theirs not in earlier:
        raise UserError(
            f"{path}: this checkpoint belongs to run {theirs}, not to run {identity} (another resolved "
            "config); refusing to resume from it. Train into the folder of that run, or into a new folder"
        )
    for name, part in parts.items():
        part.load_state_dict(ckpt[name])
    return TrainState(**ckpt["state"])
