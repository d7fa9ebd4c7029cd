"""Property-based fuzzing (hypothesis) of every reader of user-supplied or job-written input: sweep
files, config files, `--set` items, result.json / job.json / sweep.json, and the tables regress, plan
and report read. The property: each input is accepted or refused with a UserError (exit 2), never
another exception (a traceback). Fixed seed (derandomize); the default run tries 200 inputs per
entry point, the slow tier (CI) 2,000, and each test checks that many were really tried."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.configure.config import config_keys
from bench.errors import UserError

EXAMPLES = [pytest.param(200, id="200"), pytest.param(2000, id="2000", marks=pytest.mark.slow)]

VOCAB = sorted(
    set(config_keys())
    | {k.split(".")[0] for k in config_keys()}
    | {k.rsplit(".", 1)[-1] for k in config_keys()}
    | {"name", "base", "grid", "zip", "exclude", "seeds", "launch", "reference", "description"}
    | {"executor", "slurm_partition", "nodes", "tasks_per_node", "gpus_per_node", "cpus_per_task", "mem_gb"}
    | {"timeout_min", "array_parallelism", "signal_delay_s", "max_num_timeout", "sbatch", "setup", "augment"}
    | {"aspp_unet", "unet", "deeplabv3", "aspp", "ce", "dice", "synthetic", "camvid", "local", "slurm", "inline"}
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(VOCAB)
)
keys = st.sampled_from(VOCAB) | st.text(max_size=10)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=12,
)
documents = st.dictionaries(keys, values, max_size=5)


def _yaml_text(doc: Any) -> str:
    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)


# A file as it may arrive: a YAML document of plausible keys, arbitrary text, or arbitrary bytes.
file_bytes = (
    documents.map(lambda d: _yaml_text(d).encode())
    | st.builds(
        lambda n, d: _yaml_text({"name": n, **d}).encode(), st.sampled_from(["x", "..", ".", "ok_1"]), documents
    )
    | st.text(max_size=200).map(str.encode)
    | st.binary(max_size=200)
)


def _fuzz(strategy: Any, check: Any, examples: int) -> int:
    """Run `check` over `examples` generated inputs (fixed seed); returns how many it ran."""
    ran = 0

    @settings(
        max_examples=examples,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def inner(x: Any) -> None:
        nonlocal ran
        ran += 1
        try:
            check(x)
        except UserError:
            pass

    inner()
    assert ran >= examples, f"only {ran} of {examples} inputs were generated"
    return ran


@pytest.mark.parametrize("examples", EXAMPLES)
def test_sweep_files(tmp_path: Path, examples: int) -> None:
    from bench.sweep import expand_sweep, load_sweep

    path = tmp_path / "s.yaml"

    def check(data: bytes) -> None:
        path.write_bytes(data)
        expand_sweep(load_sweep(path), source=str(path))

    _fuzz(file_bytes, check, examples)


@pytest.mark.parametrize("examples", EXAMPLES)
def test_config_files_and_set_items(tmp_path: Path, examples: int) -> None:
    from bench.configure.config import load_run_config
    from bench.configure.identity import resolve

    path = tmp_path / "c.yaml"
    set_items = st.lists(
        st.builds(lambda k, v: f"{k}={v}", keys, st.text(max_size=20) | values.map(lambda v: json.dumps(v))),
        max_size=3,
    )

    def check(case: tuple[bytes, list[str]]) -> None:
        data, sets = case
        path.write_bytes(data)
        resolve(load_run_config(path, sets))
        resolve(load_run_config(None, sets))

    _fuzz(st.tuples(file_bytes, set_items), check, examples)


@pytest.mark.parametrize("examples", EXAMPLES)
def test_set_parsing(examples: int) -> None:
    from bench.configure.config import apply_overrides, parse_set, validate

    items = st.builds(lambda k, v: f"{k}={v}", st.sampled_from(config_keys()), st.text(max_size=40)) | st.text(
        max_size=40
    )

    def check(item: str) -> None:
        key, value = parse_set(item)
        validate(apply_overrides({}, {key: value}), source="--set")

    _fuzz(items, check, examples)


JSONABLE = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any, dict[str, Any]]:
    """A results folder with one finished run of a one-cell sweep, and that run's result."""
    from bench.cli import main
    from bench.sweep import expand, load_sweep

    w = tmp_path_factory.mktemp("fuzz_results")
    spec = w / "s.yaml"
    spec.write_text(
        "name: s\nbase: {model: {width: 4}, data: {count: 8, size: [32, 32]}, train: {epochs: 1}, "
        "profile: {latency: false}}\nlaunch: {executor: inline}\n"
    )
    assert main(["sweep", str(spec), "--results", str(w / "results")]) == 0
    cells = expand(load_sweep(spec))
    result = json.loads((w / "results" / cells[0].run_id / "result.json").read_text())
    return w / "results", cells, result


def _mutate(result: dict[str, Any]) -> Any:
    """A result.json as a killed job or a hand edit may leave it: a field replaced, removed or the
    whole document replaced, the metrics given odd values."""
    paths = [("status",), ("metrics",), ("metrics", "miou"), ("config",), ("config", "model"), ("train",)]

    def apply(choice: tuple[int, tuple[str, ...], Any, bool]) -> Any:
        kind, path, value, drop = choice
        if kind == 0:
            return value
        doc = json.loads(json.dumps(result))
        node = doc
        for p in path[:-1]:
            node = node.setdefault(p, {}) if isinstance(node, dict) else node
        if isinstance(node, dict):
            if drop:
                node.pop(path[-1], None)
            else:
                node[path[-1]] = value
        return doc

    return st.tuples(st.integers(0, 3), st.sampled_from(paths), JSONABLE, st.booleans()).map(apply)


def _dump(doc: Any, how: int) -> bytes:
    text = json.dumps(doc, allow_nan=True)
    return [text.encode(), text[: len(text) // 2].encode(), b"\xff\xfe" + text.encode("utf-16-le")][how]


@pytest.mark.parametrize("examples", EXAMPLES)
def test_result_job_and_manifest_files(finished, examples: int) -> None:
    from bench.launch import cell_states
    from bench.launch.states import read_job
    from bench.results.table import collect, read_manifest

    results, cells, result = finished
    run = results / cells[0].run_id
    good = (run / "result.json").read_bytes()
    job_docs = JSONABLE | st.fixed_dictionaries(
        {"executor": st.sampled_from(["local", "slurm", "inline", "x"]) | JSONABLE, "job_id": JSONABLE}
    )

    def check(case: tuple[Any, int, Any, int, Any]) -> None:
        res, how, job, how_job, manifest = case
        (run / "result.json").write_bytes(_dump(res, how))
        (run / "job.json").write_bytes(_dump(job, how_job))
        (results / "sweep.json").write_bytes(_dump(manifest, 0))
        states = cell_states(cells, results)
        assert len(states) == 1 and states[0].state in ("done", "diverged", "corrupt", "unknown", "failed", "missing")
        collect(results)
        read_job(run / "job.json")
        read_manifest(results)

    try:
        _fuzz(
            st.tuples(_mutate(result), st.integers(0, 2), job_docs, st.integers(0, 2), JSONABLE),
            check,
            examples,
        )
    finally:
        (run / "result.json").write_bytes(good)


@pytest.mark.parametrize("examples", EXAMPLES)
def test_tables_for_regress_plan_and_report(finished, tmp_path: Path, examples: int) -> None:
    import pandas as pd

    from bench.results.table import collect, load_table
    from bench.verdicts.gate import regress
    from bench.verdicts.plan import plan

    results, _, _ = finished
    (results / finished[1][0].run_id / "job.json").unlink(missing_ok=True)
    base, _ = collect(results)
    assert not base.empty
    miou = st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=6) | st.none() | st.integers(-5, 200)
    columns = st.sampled_from(list(base.columns))

    def check(case: tuple[list[Any], list[str], str, int]) -> None:
        mious, dropped, suffix, seeds = case
        rows = []
        for i, m in enumerate(mious):
            r = base.iloc[0].to_dict()
            r["miou"], r["train.seed"] = m, i % max(seeds, 1)
            rows.append(r)
        df = pd.DataFrame(rows).drop(columns=[c for c in dropped if c != "miou"], errors="ignore")
        path = tmp_path / f"t{suffix}"
        try:
            df.to_parquet(path) if suffix == ".parquet" else df.to_csv(path, index=False)
        except Exception:  # pyarrow refuses mixed-type columns: write that table as csv instead
            path = tmp_path / "t.csv"
            df.to_csv(path, index=False)
        a = load_table(path)
        regress(a, a)
        plan(a, difference=1.0)

    _fuzz(
        st.tuples(
            st.lists(miou, min_size=1, max_size=4),
            st.lists(columns, max_size=2),
            st.sampled_from([".parquet", ".csv"]),
            st.integers(1, 3),
        ),
        check,
        examples,
    )
