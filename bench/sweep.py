"""Ablation sweeps: the YAML spec (with its launch settings, `LaunchConfig`) and its expansion
into cells, each named by the run identity of bench.configure.identity.

A sweep states only its difference from the RunConfig defaults (`base`), the axes to vary
(`grid`: cartesian; `zip`: keys that vary together), cells to drop (`exclude`) and `seeds`.
Every cell is a validated, resolved, frozen RunConfig with its run_id (launcher settings are
not part of it), so the same experiment always lands in the same folder, however the sweep
spells it; two cells that resolve alike are one (`Expansion.duplicates`).
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bench.configure.config import (
    MAX_SEED,
    RunConfig,
    apply_overrides,
    config_keys,
    flatten,
    is_config_key,
    parse_set,
    read_yaml_mapping,
    validate,
)
from bench.configure.identity import resolve, run_id
from bench.configure.naming import cell_label
from bench.errors import UserError, clip, did_you_mean
from bench.explain import explain
from bench.references import names as reference_names

__all__ = [
    "Cell",
    "DecideConfig",
    "Expansion",
    "LaunchConfig",
    "Sweep",
    "expand",
    "expand_sweep",
    "load_sweep",
    "matches",
    "run_id",
]


MAX_NAME = 100
MAX_CELLS = 100_000  # a grid past this is a typo or a hostile file: refused before any cell is resolved
PLAIN_NAME = re.compile(rf"[A-Za-z0-9_][A-Za-z0-9_.-]{{0,{MAX_NAME - 1}}}")


MAX_TIMEOUT_MIN = 365 * 24 * 60  # a year: Slurm's own limits are far below it
MAX_MEM_GB = 16384.0  # 16 TiB, above the largest nodes
SBATCH_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class LaunchConfig(BaseModel):
    """How cells are launched; not part of any run's identity."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    executor: Literal["inline", "local", "slurm"] = "local"
    slurm_partition: str | None = Field(None, pattern=r"^[A-Za-z0-9_.,-]{1,200}$")
    # one cell on several devices: nodes x tasks_per_node processes (one per device) train it as one
    # DistributedDataParallel job; tasks_per_node defaults to gpus_per_node, or 1 without GPUs
    nodes: int = Field(1, ge=1, le=10_000)
    tasks_per_node: int | None = Field(None, ge=1, le=1024)
    gpus_per_node: int = Field(0, ge=0, le=64)
    collective_timeout_s: int = Field(300, ge=10, le=86_400)  # a collective waiting longer fails the cell
    cpus_per_task: int = Field(1, ge=1, le=4096)
    mem_gb: float | None = Field(None, gt=0, le=MAX_MEM_GB)
    timeout_min: int = Field(60, ge=1, le=MAX_TIMEOUT_MIN)
    array_parallelism: int = Field(16, ge=1, le=100_000)
    signal_delay_s: int = Field(120, ge=0)
    max_num_timeout: int = Field(3, ge=0, le=1000)
    sbatch: dict[str, str | int] = {}  # extra sbatch options: `_sbatch_options`
    setup: list[str] = []  # shell lines run before each job: shell by design, shown by --dry-run

    @field_validator("sbatch")
    @classmethod
    def _sbatch_options(cls, v: dict[str, str | int]) -> dict[str, str | int]:
        """Options, not shell: a key is an sbatch option name, a value one line of printable text
        (a newline would end the #SBATCH line and run the rest as a command on the cluster)."""
        for key, value in v.items():
            if not SBATCH_KEY.fullmatch(key):
                raise ValueError(
                    f"key {clip(key, 60)!r} is not an sbatch option name (letters, digits, '-' and '_', starting "
                    "with a letter, as in 'sbatch --help': e.g. comment, qos, constraint, exclusive); "
                    "shell commands belong in launch.setup"
                )
            if isinstance(value, str) and (CONTROL.search(value) or not value.isprintable() or len(value) > 1000):
                raise ValueError(
                    f"{key}={clip(repr(value), 60)}: an sbatch value must be one line of printable text (no "
                    "newline, line or paragraph separator (U+0085, U+2028, U+2029) or other control character, at "
                    "most 1000 characters); shell commands belong in launch.setup"
                )
        return v

    @property
    def tasks(self) -> int:
        """Processes per node: one per device."""
        return self.tasks_per_node or self.gpus_per_node or 1

    @property
    def world_size(self) -> int:
        return self.nodes * self.tasks

    @model_validator(mode="after")
    def _one_task_per_device(self) -> LaunchConfig:
        if self.gpus_per_node and self.tasks_per_node and self.tasks_per_node != self.gpus_per_node:
            raise ValueError(
                f"launch.tasks_per_node={self.tasks_per_node} with launch.gpus_per_node={self.gpus_per_node}: a "
                "distributed cell runs one task per device; give tasks_per_node equal to gpus_per_node (or leave "
                "it out: it follows gpus_per_node)"
            )
        problem = self.executor_problem(self.executor, "launch.executor=")
        if problem:
            raise ValueError(problem)
        return self

    def executor_problem(self, executor: str, given_as: str) -> str | None:
        """Why `executor` cannot run this launch's cells (None if it can): the sweep file's own
        executor (`given_as` 'launch.executor=') or the command line's ('--executor ')."""
        if self.nodes > 1 and executor != "slurm":
            return (
                f"launch.nodes={self.nodes} with {given_as}{executor}: only Slurm runs a cell on several nodes; use "
                "executor slurm, or nodes: 1 with tasks_per_node for several processes on this machine"
            )
        if self.world_size > 1 and executor == "inline":
            return (
                f"{given_as}inline runs one process; a cell of {self.world_size} tasks (launch.nodes x "
                "launch.tasks_per_node) needs executor local or slurm"
            )
        return None

    @model_validator(mode="after")
    def _signal_before_time_limit(self) -> LaunchConfig:
        if self.signal_delay_s >= self.timeout_min * 60:
            raise ValueError(
                f"launch.signal_delay_s={self.signal_delay_s} is not shorter than launch.timeout_min="
                f"{self.timeout_min} ({self.timeout_min * 60} s): Slurm would signal the job as it starts and every "
                f"attempt would checkpoint with no progress; give signal_delay_s well under {self.timeout_min * 60} "
                "(e.g. 120 for a 60-minute limit) or raise timeout_min"
            )
        return self


class DecideConfig(BaseModel):
    """What a sweep exists to decide (`sweep --until-decided`, bench/verdicts/waves.py): each
    configuration against a base (`against`: key values naming one configuration of the grid), or
    every pair (`against: each-other`); seeds are added in waves of `wave` until each comparison is
    different, equivalent within +-delta, or undecided at `max_seeds` per configuration."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    against: dict[str, Any] | Literal["each-other"]
    delta: float = Field(2.0, gt=0, le=100)  # mIoU points: the smallest difference that matters
    max_seeds: int = Field(10, ge=2, le=1000)
    wave: int = Field(2, ge=1, le=1000)
    alpha: float = Field(0.05, gt=0, lt=1)  # false-decision rate, over all looks (and comparisons: correction)
    # Lan-DeMets spending: obrien-fleming, pocock or hsd:GAMMA (checked where the design is built:
    # bench.verdicts.waves.design_of, by every command that reads a decide section)
    spending: str = "hsd:-2"
    correction: Literal["bonferroni", "none"] = "bonferroni"  # alpha split over the comparisons
    # budgets at which every comparison is decided, smallest first: each a mapping of config keys
    # (train.epochs, data.size, model.width, ...) laid over the base; the grid runs once per budget,
    # and alpha is split over comparisons x budgets (docs/budgets.md)
    budgets: list[dict[str, Any]] = []
    # the sd of the per-seed differences (mIoU points) to expect before any run has finished: the
    # design's power and expected seeds are shown at it by `sweep --until-decided --dry-run`
    prior_sd: float | None = Field(None, gt=0, le=100)


class Sweep(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str  # a plain folder name (results/<name>): `_plain_name`
    base: dict[str, Any] = {}
    grid: dict[str, list[Any]] = {}
    zip: list[dict[str, list[Any]]] = []
    exclude: list[dict[str, Any]] = []
    seeds: list[Annotated[int, Field(ge=0, le=MAX_SEED)]] = [0]
    launch: LaunchConfig = LaunchConfig()
    reference: tuple[str, ...] = ()  # paper tables (bench/references); YAML may give one name or a list
    description: str | None = None
    decide: DecideConfig | None = None

    @field_validator("name")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        if not PLAIN_NAME.fullmatch(v):
            raise ValueError(
                f"{clip(v, 60)!r} is not a plain folder name (results go to results/<name>): use 1-{MAX_NAME} letters, "
                "digits, '_', '-' or '.', starting with a letter, digit or '_' (so never '.', '..' or a hidden "
                "folder), e.g. name: asppunet_rates"
            )
        return v

    @field_validator("reference", mode="before")
    @classmethod
    def _one_or_more(cls, v: Any) -> Any:
        return () if v is None else (v,) if isinstance(v, str) else v


@dataclass(frozen=True)
class Cell:
    """One experiment of a sweep: `index` is its position in the grid (0-based, in expansion
    order), `config` the resolved config, `run_id` its identity, `varying` the values the grid
    gave it (as written in the sweep file)."""

    index: int
    run_id: str
    varying: dict[str, Any]
    config: RunConfig
    budget: int | None = None  # which of decide.budgets it belongs to (None: the sweep has none)


def _get(cfg: RunConfig, key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        node = getattr(node, part)
    return node


def _norm(v: Any) -> Any:
    """Lists and tuples compare equal (YAML gives lists, configs hold tuples)."""
    if isinstance(v, list | tuple):
        return tuple(_norm(x) for x in v)
    if isinstance(v, BaseModel):
        return _norm(v.model_dump())
    if isinstance(v, dict):
        return {k: _norm(x) for k, x in v.items()}
    return v


def matches(rule: dict[str, Any], cfg: RunConfig) -> bool:
    """The config takes every value the rule names (an `exclude` rule, a `decide.against`)."""
    return all(_norm(_get(cfg, k)) == _norm(v) for k, v in rule.items())


def load_sweep(path: str | Path, sets: Sequence[str] = ()) -> Sweep:
    """A sweep file, validated; `sets` ('key=value', as `--set` spells them) override its base. A
    key the grid, a zip or an exclude rule varies is refused: the sweep would override it per cell."""
    p = Path(path)
    data = read_yaml_mapping(p, "sweep")
    if sets:
        data = dict(data, base=_with_sets(data, sets, p))
    try:
        sweep = Sweep.model_validate(data)
    except ValidationError as e:

        def allowed(key: str) -> list[str]:
            if "." not in key:
                return list(Sweep.model_fields)
            return list((DecideConfig if key.startswith("decide.") else LaunchConfig).model_fields)

        raise UserError(explain(e, model=Sweep, source=str(p), keys=[], allowed_at=allowed, noun="sweep")) from None

    known = reference_names()
    for ref in sweep.reference:
        if ref not in known:
            raise UserError(
                f"{p}: reference '{ref}' is not a published table{did_you_mean(ref, known)}; "
                f"allowed: {', '.join(known)} (bench/references/*.csv)"
            )
    return sweep


def _with_sets(data: dict[str, Any], sets: Sequence[str], source: Path) -> dict[str, Any]:
    """The sweep's base with the --set overrides applied (a key of the base's as a config spells it)."""
    overrides = dict(parse_set(s) for s in sets)
    varied = set(data.get("grid") or {}) if isinstance(data.get("grid"), dict) else set()
    for group in data.get("zip") or []:
        varied |= set(group) if isinstance(group, dict) else set()
    clash = sorted(k for k in overrides if k in varied)
    if clash:
        raise UserError(f"--set {clash[0]}: {source} varies it in its grid or zip, which sets it per cell; "
                        "change the grid in the file, or --set a key the sweep does not vary")  # fmt: skip
    base = data.get("base") or {}
    if not isinstance(base, dict):
        raise UserError(f"{source}: base is a {type(base).__name__}, not a mapping of config keys")
    return apply_overrides(apply_overrides({}, flatten(base), source=f"{source}: base"), overrides)


def _check_keys(sweep: Sweep, source: str) -> None:
    keys = config_keys()
    named = [(f"grid key '{k}'", k) for k in sweep.grid]
    named += [(f"zip key '{k}'", k) for group in sweep.zip for k in group]
    named += [(f"exclude key '{k}'", k) for rule in sweep.exclude for k in rule]
    if sweep.decide is not None and isinstance(sweep.decide.against, dict):
        named += [(f"decide.against key '{k}'", k) for k in sweep.decide.against]
    for what, k in named:
        if not is_config_key(k, keys):
            raise UserError(f"{source}: {what} is not a config field{did_you_mean(k, keys)}")
    for k, vals in sweep.grid.items():
        if not vals:
            raise UserError(f"{source}: grid key '{k}' has no values; give a non-empty list")
    for i, group in enumerate(sweep.zip):
        lengths = {k: len(v) for k, v in group.items()}
        if len(set(lengths.values())) > 1:
            raise UserError(
                f"{source}: zip group {i} lists of different lengths {lengths}; keys in a zip group "
                "vary together and need one value each per cell"
            )
    overlap = set(sweep.grid) & {k for g in sweep.zip for k in g}
    if overlap:
        raise UserError(f"{source}: {sorted(overlap)[0]!r} is in both grid and zip; put it in one of them")
    if "train.seed" in sweep.grid or any("train.seed" in g for g in sweep.zip):
        raise UserError(f"{source}: vary train.seed with 'seeds', not in grid/zip")
    for i, budget in enumerate(sweep.decide.budgets if sweep.decide is not None else []):
        for k in budget:
            if not is_config_key(k, keys):
                raise UserError(f"{source}: decide.budgets[{i}] key '{k}' is not a config field{did_you_mean(k, keys)}")
            if k in sweep.grid or any(k in g for g in sweep.zip) or k == "train.seed":
                raise UserError(
                    f"{source}: decide.budgets[{i}] key '{k}' is varied by the grid (or is the seed); a budget sets "
                    "what every configuration is trained with (train.epochs, data.size, model.width, ...), not a factor"
                )
    if not sweep.seeds:
        raise UserError(f"{source}: seeds is empty; give at least one seed, e.g. seeds: [0]")


@dataclass(frozen=True)
class Expansion:
    """The distinct cells of a sweep and the grid cells that name an experiment already listed
    ({duplicate grid index: index of the cell it repeats}): two spellings of one network are one run."""

    cells: list[Cell]
    duplicates: dict[int, int]

    def notes(self) -> list[str]:
        """'cells 2, 3, 4 are the same experiment as cell 1 (run abc): one run', one line per cell."""
        by_first: dict[int, list[int]] = {}
        for dup, first in self.duplicates.items():
            by_first.setdefault(first, []).append(dup)
        ids = {c.index: c.run_id for c in self.cells}
        out = []
        for first, dups in sorted(by_first.items()):
            many = len(dups) > 1
            out.append(
                f"grid cell{'s' if many else ''} {', '.join(map(str, sorted(dups)))} "
                f"{'are' if many else 'is'} the same experiment as cell {first} (run {ids[first]}) once "
                "resolved (defaults, data-derived and ignored knobs filled in): it runs once"
            )
        return out


def expand(sweep: Sweep, *, source: str = "sweep") -> list[Cell]:
    """Every distinct cell of the sweep, validated and resolved (see `expand_sweep`)."""
    return expand_sweep(sweep, source=source).cells


def expand_sweep(sweep: Sweep, *, source: str = "sweep") -> Expansion:
    """Every cell of the sweep, validated and resolved; all bad cells are reported at once
    (UserError). Grid cells that resolve to one experiment collapse into the first of them."""
    _check_keys(sweep, source)
    base_flat = flatten(sweep.base) if sweep.base else {}
    base = apply_overrides({}, base_flat, source=f"{source}: base")
    axes: list[list[dict[str, Any]]] = [[{k: v} for v in vals] for k, vals in sweep.grid.items()]
    axes += [[dict(zip(g, vals, strict=True)) for vals in zip(*g.values(), strict=True)] for g in sweep.zip]
    axes.append([{"train.seed": s} for s in sweep.seeds])
    budgets = _budget_axis(sweep, base_flat)
    if budgets:
        axes.insert(0, budgets)  # outermost: the grid once per budget
    total = math.prod(len(a) for a in axes)
    if total > MAX_CELLS:
        sizes = " x ".join(str(len(a)) for a in axes)
        raise UserError(
            f"{source}: the grid has {total} cells ({sizes}, seeds last), more than the {MAX_CELLS} one sweep may "
            "hold; split it into several sweeps or vary fewer keys together (zip)"
        )
    cells: list[Cell] = []
    errors: list[str] = []
    seen: dict[str, int] = {}
    cells_budget: dict[str, int | None] = {}
    duplicates: dict[int, int] = {}
    for idx, combo in enumerate(itertools.product(*axes)):
        varying: dict[str, Any] = {}
        for part in combo:
            varying.update(part)
        label = cell_label(varying)
        where = f"{source}: cell {idx} ({label})"
        try:
            raw = validate(apply_overrides(base, varying, source=source), source=where)
        except UserError as e:
            errors.append(str(e))
            continue
        try:
            cfg = resolve(raw)
        except UserError as e:
            errors.append(f"{where}: {e}")
            continue
        if any(matches(rule, raw) or matches(rule, cfg) for rule in sweep.exclude):
            continue
        ws = sweep.launch.world_size
        if cfg.data.batch_size % ws:
            errors.append(
                f"{where}: data.batch_size={cfg.data.batch_size} is the global batch and does not split over the "
                f"cell's {ws} tasks (launch.nodes={sweep.launch.nodes} x tasks per node {sweep.launch.tasks}); give "
                f"a multiple of {ws}, e.g. data.batch_size: {ws * max(1, round(cfg.data.batch_size / ws))}"
            )
            continue
        rid = run_id(cfg, resolved=True)
        budget = idx // (total // len(budgets)) if budgets else None  # the outermost axis: slowest to change
        if rid in seen:
            if budgets and cells_budget.get(rid) != budget:
                errors.append(
                    f"{where}: budget {budget} ({cell_label(budgets[budget])}) is the same experiment as budget "
                    f"{cells_budget[rid]} ({cell_label(budgets[cells_budget[rid]])}) once resolved; give budgets that "
                    "differ in what the runs do"
                )
                continue
            duplicates[idx] = seen[rid]
            continue
        seen[rid] = idx
        cells_budget[rid] = budget
        cells.append(Cell(idx, rid, varying, cfg, budget))
    if errors:
        raise UserError(f"{len(errors)} bad cell(s); nothing was submitted:\n  " + "\n  ".join(errors))
    if not cells:
        raise UserError(
            f"{source}: every one of the grid's {idx + 1} cell(s) is removed by 'exclude' ({len(sweep.exclude)} "
            "rule(s)); nothing would run. Loosen an exclude rule (a rule removes the cells matching all its keys)"
        )
    return Expansion(cells, duplicates)


def _budget_axis(sweep: Sweep, base_flat: dict[str, Any]) -> list[dict[str, Any]]:
    """decide.budgets as an axis: each budget with every key any budget names, a key it leaves out
    taking the base's value (or the config default), so that each cell's label says its budget."""
    budgets = sweep.decide.budgets if sweep.decide is not None else []
    if not budgets:
        return []
    keys = list(dict.fromkeys(k for b in budgets for k in b))
    default = RunConfig()
    out = []
    for b in budgets:
        full = {}
        for k in keys:
            if k in b:
                full[k] = b[k]
            elif k in base_flat:
                full[k] = base_flat[k]
            else:
                full[k] = _plain(_get(default, k))
        out.append(full)
    return out


def _plain(v: Any) -> Any:
    """A config value as YAML gives it (tuples as lists)."""
    return json.loads(json.dumps(v, default=str)) if isinstance(v, tuple | list | BaseModel) else v


def varying_keys(cells: list[Cell]) -> list[str]:
    """The keys whose value differs between cells (the table's row labels)."""
    keys: list[str] = []
    for c in cells:
        for k in c.varying:
            if k not in keys:
                keys.append(k)
    return [k for k in keys if len({json.dumps(c.varying.get(k)) for c in cells}) > 1]
