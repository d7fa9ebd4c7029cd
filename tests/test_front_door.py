"""What a newcomer meets first: `aspp-bench config`, `--version`, type errors that show the
accepted form, a progress line in logs that are not a terminal, and links that resolve."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_version_exits_0(cli) -> None:
    code, out, _ = cli("--version")
    assert code == 0 and re.fullmatch(r"aspp-bench \d+\.\d+\.\d+\S*\n", out)


def test_config_prints_the_resolved_config_that_run_id_hashes(cli) -> None:
    from bench.configure.config import validate
    from bench.configure.identity import resolve, run_id

    code, out, err = cli("config", "--set", "model.arch=aspp_unet")
    assert code == 0, err
    first, _, body = out.partition("\n")
    data = yaml.safe_load(body)
    assert data["model"]["rates"] == [3, 6, 9, 12] and data["model"]["width"] == 16  # the architecture's defaults
    assert data["model"]["num_classes"] == 6 and data["loss"]["ignore_index"] == 255  # from the dataset
    printed = first.split()[2].rstrip(":")
    assert printed == run_id(resolve(validate(data, source="printed"))), "the YAML is the identity's input"


def test_config_fields_lists_every_key_with_type_default_and_allowed(cli) -> None:
    from bench.configure.config import RunConfig, config_keys

    code, out, _ = cli("config", "--fields")
    assert code == 0
    keys = [ln.split()[0] for ln in out.splitlines()]
    options = [k for k in keys if k.startswith("model.context_options.")]  # a row per variant's own knob
    assert [k for k in keys if k not in options] == config_keys(RunConfig)
    assert {"model.context_options.growth", "model.context_options.dropout", "model.context_options.bins"} <= set(
        options
    )
    growth = next(ln for ln in out.splitlines() if ln.startswith("model.context_options.growth "))
    assert "(context dense_aspp)" in growth and "model.context=dense_aspp" in growth
    rates = next(ln for ln in out.splitlines() if ln.startswith("model.rates "))
    assert "a list of integers" in rates and "'model.rates=[6, 12, 18]'" in rates
    arch = next(ln for ln in out.splitlines() if ln.startswith("model.arch "))
    assert "allowed: " in arch and "deeplabv3plus" in arch
    assert "one of adam, adamw, sgd" in next(ln for ln in out.splitlines() if ln.startswith("optim.name "))


def test_training_off_a_terminal_prints_progress_lines(tmp_path: Path) -> None:
    from tests.fixtures import tiny_trainer

    t = tiny_trainer(tmp_path, epochs=2)
    t.spec.progress_every_s = 0.0  # every step, for the test (30 s by default)
    lines: list[str] = []
    t.log = lines.append
    t.fit()
    ticks = [ln for ln in lines if ln.startswith("iteration ")]
    assert len(ticks) == 8, lines
    assert re.fullmatch(r"iteration 8/8 \(epoch 2/2\) loss \d+\.\d{4} \d+\.\d img/s, ETA 0 s", ticks[-1]), ticks[-1]
    quiet = tiny_trainer(tmp_path / "q", epochs=1)
    quiet.log = lines.append
    before = len(lines)
    quiet.fit()  # the default interval: nothing within a sub-second run
    assert not [ln for ln in lines[before:] if ln.startswith("iteration ")]


def _links(md: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", md.read_text(), flags=re.S)  # code blocks hold no links
    return re.findall(r"\]\(([^)\s]+)\)", text)


def _anchors(md: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    out = set()
    for line in md.read_text().splitlines():
        m = re.match(r"#{1,6}\s+(.*)", line)
        if m:
            slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            out.add(slug)
    return out


@pytest.mark.parametrize("md", [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))], ids=lambda p: p.name)
def test_every_link_resolves(md: Path) -> None:
    bad = []
    for link in _links(md):
        if re.match(r"[a-z]+://", link):
            continue  # no network here; the suite links nothing outside but papers' arXiv ids
        path, _, anchor = link.partition("#")
        target = (md.parent / path).resolve() if path else md
        if not target.exists():
            bad.append(f"{link}: no such file")
        elif anchor and target.suffix == ".md" and anchor not in _anchors(target):
            bad.append(f"{link}: no heading '#{anchor}' in {target.name}")
        elif ROOT not in target.parents and target != ROOT:
            bad.append(f"{link}: outside the repository")
    assert not bad, bad


def test_every_bench_import_in_scripts_and_tests_resolves() -> None:
    """A module split or a renamed helper must not leave a script importing a name that is gone
    (scripts are not imported by the default tier, so nothing else would notice): every
    `from bench... import a, b` in scripts/ and tests/ names a module and attributes that exist."""
    import ast
    import importlib

    missing = []
    for path in sorted([*ROOT.glob("scripts/*.py"), *ROOT.glob("tests/*.py")]):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "bench":
                mod = importlib.import_module(node.module)
                for alias in node.names:
                    if not hasattr(mod, alias.name):
                        try:
                            importlib.import_module(f"{node.module}.{alias.name}")
                        except ImportError:
                            missing.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.module}.{alias.name}")
    assert not missing, missing
