"""README.md and docs/: every command-line flag and config key they name exists."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from bench.cli import _parser
from bench.configure.config import config_keys
from bench.configure.listings import context_option_rows
from bench.sweep import LaunchConfig

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FILE_ENDINGS = (".py", ".log", ".txt", ".json", ".yaml", ".yml", ".md", ".csv", ".png", ".pdf", ".tex", ".pt", ".sh")
KEY = re.compile(
    r"(?<![\w./-])((?:model|data|loss|optim|train|profile|launch)\.[a-z_][a-z_0-9]*(?:\.[a-z_][a-z_0-9]*)?)"
    r"(?=[=`\s,;:)\]']|$)"
)


def _options() -> dict[str, set[str]]:
    subs = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {name: {o for act in sp._actions for o in act.option_strings} for name, sp in subs.choices.items()}


def _invocations(text: str) -> list[str]:
    """`aspp-bench ...` as written in code: inline spans and the lines of fenced blocks."""
    spans = re.findall(r"`(aspp-bench [^`\n]*)`", text)
    blocks = re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S)
    lines = [ln for b in blocks for ln in b.splitlines()
             if re.search(r"(?:^|\s)aspp-bench\s", ln) and not re.match(r"\s*aspp-bench:", ln)]  # fmt: skip
    # a line may chain several commands (&&, a pipe, ;)
    return [seg.strip() for x in spans + lines for seg in re.split(r"\s\|\s|&&|;", x) if "aspp-bench " in seg]


def _named_keys(text: str) -> set[str]:
    return {k for k in KEY.findall(text) if not k.endswith(FILE_ENDINGS)}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_flag_a_page_names_is_in_the_parser(page: Path) -> None:
    options = _options()
    wrong = []
    for call in _invocations(page.read_text()):
        m = re.match(r"(?:.*\s)?aspp-bench\s+([a-z][a-z-]*)(.*)", call)
        if m is None:
            continue
        command, rest = m.group(1), m.group(2)
        if command not in options:
            wrong.append(f"{call!r}: no command {command!r}")
            continue
        wrong += [f"{call!r}: {command} has no {flag}" for flag in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", rest)
                  if flag not in options[command]]  # fmt: skip
    assert not wrong, "\n".join(wrong)


# adding-a-variant.md names its own toy variant's knob (registered by the page's plugin file, run
# by tests/test_adding_a_variant.py) and an option it shows being refused
PAGE_OWN_KEYS = {"adding-a-variant.md": {"model.context_options.branch_ch", "model.context_options.gain"}}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_config_key_a_page_names_is_a_field(page: Path) -> None:
    known = set(config_keys()) | {f"launch.{k}" for k in LaunchConfig.model_fields}
    known |= {r["key"] for r in context_option_rows()} | PAGE_OWN_KEYS.get(page.name, set())
    unknown = sorted(_named_keys(page.read_text()) - known)
    assert not unknown, f"{page.name} names keys that are not in 'aspp-bench config --fields': {unknown}"


def test_the_check_finds_a_flag_and_a_key_that_do_not_exist() -> None:
    """The two checks above can fail: a page naming `plan --diference` and `model.growth`."""
    page = "Run `aspp-bench plan results/x --diference 1` with `--set model.growth=4`.\n"
    calls = _invocations(page)
    assert calls == ["aspp-bench plan results/x --diference 1"]
    assert "--diference" not in _options()["plan"]
    assert "model.growth" in _named_keys(page) and "model.growth" not in set(config_keys())


LAYOUT_PAGE = ROOT / "docs" / "development.md"
_PY = re.compile(r"(?<![\w/.])((?:bench/)?(?:[a-z_]+/)*[a-z_0-9]+\.py)\b")


def _layout_files(block: str) -> set[str]:
    """The modules the layout names. A line's first column is a path under the repository; a name
    with no folder belongs to the folder of its line's first path (or of the line above, for a
    wrapped description): `bench/models/  backbones.py, ...` names bench/models/backbones.py."""
    named: set[str] = set()
    here = "bench"
    for line in block.splitlines():
        if not line.startswith(" "):
            head = line.split()[0] if line.split() else ""
            here = head.rstrip("/") if head.endswith("/") else str(Path(head).parent)
        for name in _PY.findall(line):
            named.add(name if name.startswith(("bench/", "scripts/", "tests/")) else f"{here}/{name}")
    return {n for n in named if n.startswith("bench/")}


def _layout_block(text: str) -> str:
    section = text.split("## Layout", 1)[1]
    return re.search(r"```\n(.*?)```", section, flags=re.S).group(1)


def test_the_layout_names_every_module_of_bench_and_only_those() -> None:
    named = _layout_files(_layout_block(LAYOUT_PAGE.read_text()))
    tree = {p.relative_to(ROOT).as_posix() for p in (ROOT / "bench").rglob("*.py")}
    # a package's __init__.py need not be named (it is, where it holds code worth naming)
    tree -= {p for p in tree if p.endswith("/__init__.py")} - named
    assert not named - tree, f"docs/development.md's layout names modules that do not exist: {sorted(named - tree)}"
    assert not tree - named, f"modules missing from docs/development.md's layout: {sorted(tree - named)}"


def test_the_layout_reader_puts_each_name_in_its_lines_folder() -> None:
    block = "bench/models/           backbones.py, nothing.py\nbench/losses.py metrics.py   losses\n"
    expected = {"bench/models/backbones.py", "bench/models/nothing.py", "bench/losses.py", "bench/metrics.py"}
    assert _layout_files(block) == expected


def _prose(path: Path) -> str:
    """A test module's comments and docstrings: what it says to its reader."""
    import ast
    import io
    import tokenize

    text = path.read_text()
    comments = [t.string for t in tokenize.generate_tokens(io.StringIO(text).readline) if t.type == tokenize.COMMENT]
    nodes = [n for n in ast.walk(ast.parse(text)) if isinstance(n, ast.Module | ast.FunctionDef | ast.ClassDef)]
    docs = [ast.get_docstring(n) or "" for n in nodes]
    return "\n".join(comments + docs)


def test_no_test_cites_an_issue_number_or_a_document_the_repository_lacks() -> None:
    """A test says what it checks; an issue tracker's numbers and documents kept outside the
    repository mean nothing to the reader of a clone."""
    pages = {p.name for p in PAGES} | {p.relative_to(ROOT).as_posix() for p in PAGES}
    for path in sorted((ROOT / "tests").rglob("*.py")):
        prose = _prose(path)
        cited = re.findall(r"\bissues?\s*#?\d+", prose, flags=re.I)
        assert not cited, f"{path.name} cites {cited}: say what the test checks instead"
        documents = set(re.findall(r"[\w./-]+\.md\b", prose)) - pages
        assert not documents, f"{path.name} names {sorted(documents)}, which the repository does not hold"


def test_tests_mirror_bench() -> None:
    """Each part of bench/ (a top-level module or a package) has a test module named for it:
    tests/test_<part>.py or tests/test_<part>_<what>.py (cross-cutting suites come on top)."""
    bench = ROOT / "bench"
    parts = {p.stem for p in bench.glob("*.py") if p.stem != "__init__"}
    parts |= {p.name for p in bench.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    tests = {p.stem for p in (ROOT / "tests").glob("test_*.py")}
    missing = sorted(u for u in parts if not any(t == f"test_{u}" or t.startswith(f"test_{u}_") for t in tests))
    assert not missing, f"parts of bench/ without a test module named for them: {missing}"


def _bench_imports(path: Path, modules: set[str]) -> tuple[set[str], list[str]]:
    """(the bench modules PATH imports at module level, the bench imports it makes inside functions)."""
    import ast

    tree = ast.parse(path.read_text())
    local = {
        id(n) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef) for n in ast.walk(f)
    }
    top, inner = set(), []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "bench":
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                     for a in node.names]  # fmt: skip
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.split(".")[0] == "bench"]
        if names and id(node) in local:
            inner += [f"{path.relative_to(ROOT)}:{node.lineno} {n}" for n in names]
        elif names:
            top |= set(names)
    return top, inner


# Run as a script against another code version (`aspp-bench speed --rev`): its bench imports are
# the code under test, made inside the process that times it, never a dependency of this package.
STANDALONE = "bench.profile.speed_worker"


def test_every_bench_import_is_at_module_level_and_none_runs_in_a_circle() -> None:
    """A file's head states what it depends on: no bench import inside a function (the CLI's one
    deferral goes through importlib, documented in the layout page), and the module graph has no
    circle, so the layout reads as one direction of flow."""
    files = {
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
        for p in (ROOT / "bench").rglob("*.py")
    }
    graph, inner = {}, []
    for mod, path in files.items():
        if mod == STANDALONE:
            continue
        top, local = _bench_imports(path, set(files))
        graph[mod] = {t for t in top if t in files and t != mod}
        inner += local
    assert not inner, f"bench imports inside functions (move them to the file's head): {inner}"
    assert _circle(graph) is None, f"import circle: {' -> '.join(_circle(graph) or [])}"
    assert _circle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]  # the check can fail


def _circle(graph: dict[str, set[str]]) -> list[str] | None:
    """A circle of the import graph (module -> the modules it imports), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(mod: str, path: list[str]) -> list[str] | None:
        state[mod] = 1
        for dep in sorted(graph[mod]):
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            found = visit(dep, [*path, dep]) if dep not in state else None
            if found:
                return found
        state[mod] = 2
        return None

    for mod in sorted(graph):
        found = visit(mod, [mod]) if mod not in state else None
        if found:
            return found
    return None
