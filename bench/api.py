"""The Python API: what a script needs, importable from `bench` (`from bench import build_model`).

Each name is a thin, documented door to the code the command line runs (docs/api.md; the tests
execute that page's examples), so a script and `aspp-bench` give the same numbers:

- `build_model(arch, **knobs)`: a registered architecture, knobs as `model.*` spells them;
- `load_config(path=None, sets=())`: a run config from a YAML file and `key=value` overrides,
  resolved (the form whose hash is the run's identity);
- `run_id(config)`: that identity;
- `train(config, out)`: train, evaluate and profile one configuration into a folder (resumes);
- `read_results(path)`: a results folder or collected table as a pandas DataFrame, a row per run;
- `compare(baseline, current, **options)`: `regress` between two results folders or tables;
- `profile_arch(arch, input, **options)`: params, FLOPs, latency and efficiency of an architecture.

`bench` imports these lazily: `import bench` stays cheap (no torch) until one is used.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.configure.config import RunConfig, load_run_config
from bench.configure.identity import resolve
from bench.configure.identity import run_id as _run_id
from bench.models import build_model
from bench.profile import ProfileSpec, profile_model
from bench.results.table import load_table
from bench.run.runner import execute
from bench.verdicts.gate import regress

__all__ = ["build_model", "compare", "load_config", "profile_arch", "read_results", "run_id", "train"]

_PRIVATE = ("_identity", "_config", "_resolved")  # load_table's working columns


def load_config(path: str | Path | None = None, sets: Sequence[str] = ()) -> RunConfig:
    """Defaults <- the YAML file <- `sets` ('key=value', values parsed as YAML), validated and
    resolved. Bad input raises bench.errors.UserError naming the key, as the CLI's exit 2 does."""
    return resolve(load_run_config(path, list(sets)))


def run_id(config: RunConfig) -> str:
    """The run's identity: the hash of its resolved config (what names its results folder)."""
    return _run_id(config, resolved=True)


def train(config: RunConfig, out: str | Path) -> dict[str, Any]:
    """Train, evaluate and profile `config` into the folder `out` (resumes; returns result.json's
    content)."""
    return execute(config, out, resolved=True)


def read_results(path: str | Path) -> Any:
    """A results folder (collected on the fly) or a collected .parquet/.csv table: one row per
    finished run, the flattened config, metrics, costs and environment."""
    df = load_table(path)
    return df.drop(columns=[c for c in _PRIVATE if c in df.columns])


def compare(baseline: str | Path, current: str | Path, **options: Any) -> tuple[bool, str, list[dict[str, Any]]]:
    """`aspp-bench regress`: (passed, Markdown table, a record per configuration). Options as
    bench.verdicts.gate.regress takes them (miou_tol, speed_tol, alpha, ...)."""
    return regress(load_table(baseline), load_table(current), **options)


def profile_arch(arch: str, input: tuple[int, int, int], *, sets: Sequence[str] = (), **options: Any) -> dict[str, Any]:
    """`aspp-bench profile`: one record (params, FLOPs from three counters, latency, efficiency,
    environment) of `arch` with `sets` at `input` (C, H, W); options as ProfileSpec's fields."""
    cfg = load_run_config(None, [f"model.arch={arch}", *sets])
    model = build_model(cfg.model.arch, **cfg.model.knobs())
    return profile_model(model, ProfileSpec(input=tuple(input), **options))
