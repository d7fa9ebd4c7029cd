"""Environment noise models: how far one experiment (same resolved config, same seed) moves when
only the environment changes (another machine of the same kind, another CPU, another thread
count), measured by this project and kept as data (environment_noise.csv beside this file).

A one-seed comparison between two environments cannot use a test over seeds; `regress` then
tests the drop against the model of the baseline's dataset: p = P(a change of environment alone
drops the result this far), one-sided normal with the model's spread, Holm-corrected with the
other configurations; a drop it does not make significant is INCONCLUSIVE, not a FAIL. Where
both sides provably ran in one environment (the same host and the same fingerprint), results
repeat to the bit and the plain threshold decides. A dataset with several models (one per kind
of change) is judged by the widest.

The spread of a model is the root mean square of its measured changes (an environment change
has no direction: the mean change is taken as 0), so a model of n pairs states sd, n and the
largest change seen, and the verdict names which model it used.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import UserError

__all__ = ["NOISE_FILE", "NoiseModel", "change_between", "choose", "models", "same_environment"]

NOISE_FILE = Path(__file__).with_name("environment_noise.csv")
COLUMNS = ("model", "data.name", "change", "experiment", "seed", "first", "second", "source")


@dataclass(frozen=True)
class NoiseModel:
    """One named environment noise model: the spread of an experiment's mIoU between environments."""

    name: str
    data: str  # the dataset its experiments ran on (data.name): a model serves that dataset's results
    changes: tuple[str, ...]  # what differed between the environments (machine, threads, ...)
    n: int  # measured pairs (same experiment, two environments)
    sd: float  # root mean square of the changes, in mIoU points
    max_abs: float  # the largest change seen, in points
    source: str  # where the pairs were measured

    def describe(self) -> str:
        return (f"environment noise model '{self.name}' (sd {self.sd:.2f} points over {self.n} pairs of the same "
                f"experiment: {', '.join(self.changes)} changed; largest change {self.max_abs:.2f})")  # fmt: skip


def models(path: Path = NOISE_FILE) -> dict[str, NoiseModel]:
    """Every noise model the file holds, by name."""
    rows: dict[str, list[dict[str, str]]] = {}
    fix = "fix that row or restore the file (git checkout bench/verdicts/environment_noise.csv)"
    try:
        with path.open(newline="", encoding="utf-8") as f:
            lines = [(n, line) for n, line in enumerate(f, 1) if not line.startswith("#")]
            reader = csv.DictReader((line for _, line in lines), strict=True)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise UserError(f"{path}: columns {missing} are missing; the file needs {', '.join(COLUMNS)}")
            for r in reader:
                n = lines[min(reader.line_num, len(lines)) - 1][0]  # the file's own line number
                if None in r or any(r.get(c) is None for c in COLUMNS):
                    raise UserError(f"{path}: line {n}: {len([v for v in r.values() if v is not None])} fields, the "
                                    f"header names {len(COLUMNS)} ({', '.join(COLUMNS)}); {fix}")  # fmt: skip
                for col in ("first", "second"):
                    try:
                        v = float(r[col])
                    except ValueError:
                        v = math.nan
                    if not math.isfinite(v) or not 0 <= v <= 100:
                        raise UserError(f"{path}: line {n}: column {col} is {r[col][:40]!r}, not an mIoU in points "
                                        f"(a number from 0 to 100); {fix}")  # fmt: skip
                if not r["model"].strip() or not r["data.name"].strip():
                    raise UserError(f"{path}: line {n}: an empty model or data.name; {fix}")
                rows.setdefault(r["model"], []).append(r)
    except (csv.Error, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not a readable CSV ({type(e).__name__}: {str(e)[:100]}); {fix}") from None
    except OSError as e:
        why = e.strerror or e
        raise UserError(f"{path}: cannot be read ({why}); reinstall aspp-bench or restore the file") from None
    out = {}
    for name, rs in rows.items():
        diffs = [float(r["second"]) - float(r["first"]) for r in rs]
        out[name] = NoiseModel(
            name=name,
            data=rs[0]["data.name"],
            changes=tuple(dict.fromkeys(r["change"] for r in rs)),
            n=len(diffs),
            sd=math.sqrt(sum(d * d for d in diffs) / len(diffs)),
            max_abs=max(abs(d) for d in diffs),
            source="; ".join(dict.fromkeys(r["source"] for r in rs)),
        )
    return out


def change_between(b: Any, c: Any) -> str:
    """What differs between the environments of two sets of rows, as the noise file names changes:
    'cpu-kind' where the recorded CPUs differ (env.device_name: another vendor or model), else
    'threads' where the thread counts differ, else 'machine'."""

    def values(col: str) -> set[str]:
        return {str(v) for t in (b, c) if col in t.columns for v in t[col] if str(v) not in ("None", "nan", "")}

    def differs(col: str) -> bool:
        vb = {str(v) for v in b[col]} if col in b.columns else set()
        vc = {str(v) for v in c[col]} if col in c.columns else set()
        return bool(vb and vc and vb != vc) and len(values(col)) > 1

    if differs("env.device_name"):
        return "cpu-kind"
    if differs("env.threads") or differs("env.train_threads"):
        return "threads"
    return "machine"


def choose(spec: str, data_names: set[str], change: str | None = None) -> NoiseModel | None:
    """The model a comparison uses: `spec` is 'auto', 'none', or a model's name. 'auto': among the
    models of the results' dataset, the widest of those measured for the `change` between the two
    environments (change_between: a CPU of another kind is judged by a cpu-kind model), else the
    widest of the dataset's models; none where the dataset has no model."""
    if spec == "none":
        return None
    known = models()
    if spec == "auto":
        fits = [m for m in known.values() if m.data in data_names]
        if len(data_names) != 1 or not fits:
            return None
        kind = [m for m in fits if change in m.changes]
        return max(kind or fits, key=lambda m: m.sd)
    if spec not in known:
        raise UserError(
            f"--noise-model {spec!r}: no such model in {NOISE_FILE.name}; known are "
            f"{', '.join(sorted(known))}, or 'auto' (the model of the results' dataset) and 'none'"
        )
    return known[spec]


def same_environment(b: Any, c: Any) -> bool:
    """Both sides provably ran in one environment: every row records the same host and the same
    environment fingerprint (results then repeat to the bit). Rows without a host say nothing."""
    cols = ("env.host", "env_fingerprint")
    if any(col not in t.columns for t in (b, c) for col in cols):
        return False
    values = {tuple(str(v) for v in row) for t in (b, c) for row in t[list(cols)].itertuples(index=False)}
    return len(values) == 1 and not any(v in ("None", "nan", "") for v in next(iter(values)))
