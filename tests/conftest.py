from __future__ import annotations

import pytest
import torch

import bench  # noqa: F401, I001  (before torch loads OpenMP: bench.run.threads sets how its threads wait)
import bench.models  # noqa: F401  (registers the zoo)


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Decoded datasets and class weights go to a cache of the test session's own (subprocesses
    inherit it), never to the user's ~/.cache."""
    import os

    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg_cache"))


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):
    """Run `aspp-bench ARGS` in-process: returns (exit code, stdout, stderr)."""
    from bench.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        try:
            code = main(list(args))
        except SystemExit as e:  # argparse usage errors
            code = int(e.code or 0)
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
