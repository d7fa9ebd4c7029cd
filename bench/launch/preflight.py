"""Pre-flight checks of a sweep's cells before anything is submitted: every distinct model built
on the meta device (no memory, no weights), every distinct dataset checking its own root."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.configure.naming import cell_label
from bench.data import data_config_problem, data_problem, eval_split
from bench.errors import UserError
from bench.models import build_model
from bench.models.backbones import weights_check_only
from bench.run.resources import check_memory, device_problem
from bench.sweep import Cell

__all__ = ["cell_problems", "check_cells", "data_problem_lines"]


def cell_problems(
    cells: Sequence[Cell], *, source: str, here: bool = True, memory: int | None = None, where: str = "this machine"
) -> tuple[list[str], dict[str, list[Cell]]]:
    """(model problems, {data problem: the cells it stops}): each distinct model (architecture and
    knobs; seeds and training settings share it) is built once on the meta device (no memory, no
    weights), each distinct dataset checks its own root once (both the split it trains on and the
    split it is evaluated on). Cells that run `here` (inline or local executors) are checked against
    this machine's devices; every cell's memory estimate against `memory` bytes (None: not checked)."""
    import torch

    model_errors: list[str] = []
    data_errors: dict[str, list[Cell]] = {}
    checked: dict[tuple[str, str | None, str], str | None] = {}
    built: dict[str, str | None] = {}  # model config JSON -> its problem (None: it builds)
    needs: dict[tuple[str, str, str], str | None] = {}  # (model, data, optimiser) -> its memory problem
    meta: dict[str, Any] = {}  # model config JSON -> the model built on the meta device
    for c in cells:
        label = f"{source}: cell {c.index} ({c.run_id}: {cell_label(c.varying)})"
        m = c.config.model
        mkey = m.model_dump_json()
        if mkey not in built:
            built[mkey] = None
            try:
                with torch.device("meta"), weights_check_only():
                    meta[mkey] = build_model(m.arch, **m.knobs())
            except UserError as e:
                built[mkey] = str(e)
        if built[mkey] is not None:
            model_errors.append(f"{label}: {built[mkey]}")
            continue
        t = c.config.train
        problem = data_config_problem(c.config.data, (c.config.data.split, eval_split(c.config.data.split)))
        problem = problem or (device_problem(t.device, t.amp) if here else None)
        if problem is None and memory is not None:
            nkey = (mkey, c.config.data.model_dump_json(), c.config.optim.name)
            if nkey not in needs:
                needs[nkey] = None
                try:
                    check_memory(c.config, source="", available=memory, where=where, model=meta[mkey])
                except UserError as e:
                    needs[nkey] = str(e).removeprefix(": ")
            problem = needs[nkey]
        if problem:
            model_errors.append(f"{label}: {problem}")
        d = c.config.data
        key = (d.name, d.root, d.split)
        if key not in checked:
            checked[key] = data_problem(d, (d.split, eval_split(d.split)))
        problem = checked[key]
        if problem:
            data_errors.setdefault(problem, []).append(c)
    return model_errors, data_errors


def data_problem_lines(data_errors: dict[str, list[Cell]]) -> list[str]:
    """'cells 0, 1, 2: <problem>', one line per distinct data problem."""
    return [f"cells {', '.join(str(c.index) for c in cs)}: {problem}" for problem, cs in data_errors.items()]


def check_cells(cells: Sequence[Cell], *, source: str, **where: Any) -> None:
    """Build every cell's model on the meta device and check data roots, devices and memory
    (`cell_problems`); report all at once."""
    model_errors, data_errors = cell_problems(cells, source=source, **where)
    errors = model_errors + [f"{source}: {line}" for line in data_problem_lines(data_errors)]
    if errors:
        raise UserError(f"{len(errors)} cell(s) would fail; nothing was submitted:\n  " + "\n  ".join(errors))
