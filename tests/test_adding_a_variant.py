"""docs/adding-a-variant.md followed as written: its variant file and sweep file, taken from the
page, registered through ASPP_BENCH_PLUGINS, crossed on the variant's own knob in a sweep, and
reported with that knob as a factor column. And what a broken plugin says."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[1] / "docs" / "adding-a-variant.md"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", PAGE.read_text(), re.S)


def _run(args: list[str], cwd: Path, plugins: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ASPP_BENCH_PLUGINS": plugins}
    return subprocess.run([sys.executable, "-m", "bench.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip


@pytest.mark.slow  # two trainings through the local executor and a report: about 40 s
def test_the_page_variant_is_swept_and_reported_as_its_own_factor(tmp_path: Path) -> None:
    (variant,) = _blocks("python")
    (sweep,) = _blocks("yaml")
    (tmp_path / "my_variants.py").write_text(variant)
    (tmp_path / "toy.yaml").write_text(sweep)
    plugin = str(tmp_path / "my_variants.py")

    r = _run(["models", "aspp_lite"], tmp_path, plugin)
    assert r.returncode == 0 and "model.context_options: branch_ch=32" in r.stdout, r.stderr
    r = _run(["config", "--fields"], tmp_path, plugin)
    assert "model.context_options.branch_ch  integer (context aspp_lite); default 32" in r.stdout, r.stdout[-2000:]

    r = _run(["sweep", "toy.yaml", "--dry-run"], tmp_path, plugin)
    assert r.returncode == 0 and "2 cells" in r.stdout and "model.context_options.branch_ch=16" in r.stdout, r
    r = _run(["sweep", "toy.yaml", "--wait"], tmp_path, plugin, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    runs = sorted((tmp_path / "results" / "toy_aspp_lite").glob("*/result.json"))
    assert len(runs) == 2, runs
    assert all(str(tmp_path / "my_variants.py") in p.read_text() for p in runs)  # env.plugins recorded

    r = _run(["report", "results/toy_aspp_lite", "--out", "reports/toy", "--format", "md"], tmp_path, plugin)
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader((tmp_path / "reports" / "toy" / "main_table.csv").open()))
    assert sorted(int(row["model.context_options.branch_ch"]) for row in rows) == [4, 16]  # its own factor column
    assert len({row["params_m"] for row in rows}) == 2  # the knob changed the network, and the table says so
    assert "| branch_ch" in (tmp_path / "reports" / "toy" / "README.md").read_text()

    r = _run(["collect", "results/toy_aspp_lite"], tmp_path, "")  # without the plugin: skipped, not guessed
    assert "no longer resolves" in r.stdout + r.stderr and "aspp_lite" in r.stdout + r.stderr, r


@pytest.mark.parametrize(
    ("plugin", "fragments"),
    [
        ("{T}/nope.py", ["ASPP_BENCH_PLUGINS", "no such file", "nope.py"]),
        ("{T}/broken.py", ["plugin", "broken.py", "failed to load", "ZeroDivisionError", "broken.py:3"]),
        ("{T}/twice.py", ["plugin", "context 'aspp' is already registered"]),
        ("no_such_module_xyz", ["plugin 'no_such_module_xyz' failed to load", "ModuleNotFoundError"]),
    ],
    ids=["missing-file", "raises", "duplicate-name", "missing-module"],
)
def test_a_broken_plugin_is_named_with_its_error(tmp_path: Path, plugin: str, fragments: list[str]) -> None:
    (tmp_path / "broken.py").write_text("import math\n\nx = 1 / 0\n")
    (tmp_path / "twice.py").write_text(
        "from bench.registry import contexts\n\n@contexts.register('aspp', paper='')\ndef aspp(in_ch, *, out_ch=1):\n"
        "    return None\n"
    )
    r = _run(["models", "aspp"], tmp_path, plugin.replace("{T}", str(tmp_path)))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    for f in fragments:
        assert f in r.stderr, (f, r.stderr)
