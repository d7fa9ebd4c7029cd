"""docs/api.md: the public names import from `bench` (lazily: no torch for `import bench`), and
every example on the page runs as written. Defect: `from bench import build_model` failed and
nothing documented the API a script could use."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "api.md"


def test_import_bench_loads_no_torch_and_the_names_are_there() -> None:
    code = "import sys, bench; assert 'torch' not in sys.modules; from bench import build_model; print(build_model)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and "function build_model" in r.stdout, r.stderr
    import bench
    from bench import api

    assert set(bench._API) == set(api.__all__) and all(name in PAGE.read_text() for name in api.__all__)


def test_every_example_of_the_api_page_runs(tmp_path, monkeypatch, capsys) -> None:
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)
    assert len(blocks) == 4
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    for block in blocks:
        exec(compile(block, str(PAGE), "exec"), scope)  # noqa: S102  (the page's own examples)
    out = capsys.readouterr().out
    assert "(1, 11, 64, 64)" in out and "mIoU on the synthetic validation split" in out
    assert "True ok" in out and "GMACs" in out and "efficiency" in out
    assert len(list((tmp_path / "runs").glob("*/result.json"))) == 1


def test_tensorboard_gets_a_finished_runs_hyper_parameters(tmp_path) -> None:
    """Defect: TensorBoard received four scalars per run and no hyper-parameters. Read back with
    TensorBoard's own reader (its hparams plugin data)."""
    import pytest

    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    from bench import load_config, train

    cfg = load_config(sets=["model.arch=unet", "model.width=4", "data.size=[32, 32]", "data.count=8",
                            "data.batch_size=4", "train.epochs=1", "profile.latency=false"])  # fmt: skip
    result = train(cfg, tmp_path / "run")
    acc = EventAccumulator(str(tmp_path / "run" / "tensorboard" / "hparams")).Reload()
    content = acc.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["model.arch"].string_value == "unet" and start.hparams["model.width"].number_value == 4
    assert start.hparams["data.size"].string_value == "32,32"
    miou = acc.Scalars("hparam/miou")[0].value
    assert abs(miou - 100 * result["metrics"]["miou"]) < 1e-3
