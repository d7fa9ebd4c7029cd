"""Bad input, table-driven: every case exits 2 with a message naming what was wrong, prints no
traceback, and writes nothing (the whole working tree is hashed before and after).

The cases share one prepared tree (a finished run, a results folder, tables good and broken,
damaged checkpoints) that no case may change; `{W}` in an argument stands for its path.
"""

from __future__ import annotations

import hashlib
import shutil
import textwrap
from pathlib import Path

import pytest
import torch

TINY = ["model.width=4", "data.count=16", "data.size=[32,32]", "data.batch_size=4", "profile.latency=false"]


def _sets(*items: str) -> list[str]:
    out: list[str] = []
    for s in items:
        out += ["--set", s]
    return out


def _train(*extra: str) -> list[str]:
    return ["train", "--out", "{W}/new_run", *_sets(*TINY, "train.epochs=1", *extra)]


def _spec(name: str) -> str:
    return f"{{W}}/specs/{name}.yaml"


SPECS = {
    "ok": "name: ok\nbase: {model: {width: 4}, data: {count: 8, size: [32, 32]}}\n",
    "invalid_yaml": "name: [unclosed\n",
    "list": "- name: x\n",
    "typo_section": "name: x\ngrdi: {model.rates: [[6]]}\n",
    "not_a_field": "name: x\ngrid: {model.rate: [[6]]}\n",
    "empty_axis": "name: x\ngrid: {model.rates: []}\n",
    "zip_lengths": "name: x\nzip: [{model.arch: [unet, aspp_unet], model.width: [8]}]\n",
    "seed_in_grid": "name: x\ngrid: {train.seed: [1, 2]}\n",
    "no_seeds": "name: x\nseeds: []\n",
    "executor": "name: x\nlaunch: {executor: kubernetes}\n",
    "signal": "name: x\nlaunch: {executor: slurm, timeout_min: 1, signal_delay_s: 120}\n",
    "reference": "name: x\nreference: asppunet_tabel3\n",
    "size_zero": "name: x\ngrid: {data.size: [[0, 32]]}\n",
    "loss_typo": "name: x\ngrid: {loss.name: [ce, cee]}\n",
    "bad_name": "name: my sweep\n",
    "bad_stride": "name: x\nbase: {model: {arch: deeplabv3, backbone: resnet18}}\ngrid: {model.output_stride: [7]}\n",
    "camvid_missing": "name: x\nbase: {data: {name: camvid, root: /no/such/camvid}}\n",
    "classes": "name: x\ngrid: {model.num_classes: [5]}\n",
    "arch_knob": "name: x\nbase: {model: {arch: unet, rates: [6, 12]}}\n",
    "unknown_arch": "name: x\ngrid: {model.arch: [aspp_unet, asppunet]}\n",
}

# (id, argv, fragments the message must hold)
CASES: list[tuple[str, list[str], list[str]]] = [
    # train
    ("train-unknown-arch", _train("model.arch=deeplab"), ["unknown architecture 'deeplab'", "deeplabv3"]),
    ("train-empty-rates", _train("model.rates=[]"), ["model.rates", "at least one"]),
    ("train-zero-rate", _train("model.rates=[0,6]"), ["rates"]),
    ("train-size-zero", _train("data.size=[0,32]"), ["data.size.0=0", "greater than or equal to 1"]),
    ("train-size-length", _train("data.size=[32]"), ["data.size"]),
    ("train-classes-zero", _train("model.num_classes=0"), ["model.num_classes=0"]),
    ("train-classes-data", _train("model.num_classes=5"), ["dataset 'synthetic' has 6 classes"]),
    ("train-loss-typo", _train("loss.name=cee"), ["unknown loss 'cee'", "did you mean 'ce'"]),
    ("train-optim-typo", _train("optim.name=adamm"), ["optim.name='adamm'", "adam"]),
    ("train-lr-negative", _train("optim.lr=-1"), ["optim.lr=-1", "greater than 0"]),
    ("train-epochs-zero", _train("train.epochs=0"), ["train.epochs=0"]),
    ("train-skip-not-a-knob", _train("model.arch=deeplabv3", "model.skip=true"), ["has no knob 'skip'"]),
    ("train-not-a-field", _train("nosuch.key=1"), ["'nosuch.key' is not a config field"]),
    ("train-bad-yaml-value", _train("model.rates=[3,6"), ["not valid YAML"]),
    ("train-set-no-equals", ["train", "--out", "{W}/new_run", "--set", "justakey"], ["expected key=value"]),
    ("train-root-for-synthetic", _train("data.root=/x"), ["dataset 'synthetic' has no 'root'"]),
    (
        "train-camvid-missing",
        ["train", "--out", "{W}/new_run", *_sets("data.name=camvid", "data.root={W}/no_camvid")],
        ["no_camvid", "SegNet"],
    ),  # fmt: skip
    ("train-config-missing", ["train", "{W}/nope.yaml", "--out", "{W}/new_run"], ["nope.yaml", "not found"]),
    ("train-config-list", ["train", _spec("list"), "--out", "{W}/new_run"], ["expected a mapping"]),
    ("train-config-yaml", ["train", _spec("invalid_yaml"), "--out", "{W}/new_run"], ["not valid YAML"]),
    ("train-out-under-file", ["train", "--out", "{W}/afile/run", *_sets(*TINY)], ["afile is a regular file"]),
    (
        "train-other-config",
        ["train", "--out", "{W}/run", *_sets(*TINY, "train.epochs=1", "optim.lr=0.5")],
        ["optim.lr: 0.001 -> 0.5", "Nothing was changed"],
    ),  # fmt: skip
    ("train-class-weights-count", _train("loss.class_weights=[1,2]"), ["2 weights given", "6 classes"]),
    ("train-weights-not-taken", _train("loss.name=dice", "loss.class_weights=median_freq"), ["takes no class"]),
    ("train-amp", _train("train.amp=fp8"), ["train.amp='fp8'"]),
    ("train-context-typo", _train("model.context=aspx"), ["unknown context 'aspx'"]),
    ("train-backbone-typo", _train("model.arch=deeplabv3", "model.backbone=resnet19"), ["unknown backbone"]),
    ("train-batch-zero", _train("data.batch_size=0"), ["data.batch_size=0"]),
    (
        "train-image-pool",
        _train("model.arch=deeplabv3", "model.context=ppm", "model.image_pool=true"),
        ["context 'ppm' has no image-pooling branch"],
    ),  # fmt: skip
    ("train-fp16-on-cpu", _train("train.amp=fp16", "train.device=cpu"), ["fp16 needs CUDA"]),
    ("train-grad-clip", _train("train.grad_clip=0"), ["train.grad_clip=0"]),
    # sweep
    ("sweep-missing", ["sweep", "{W}/nope.yaml"], ["nope.yaml", "not found"]),
    ("sweep-invalid-yaml", ["sweep", _spec("invalid_yaml")], ["not valid YAML"]),
    ("sweep-typo-section", ["sweep", _spec("typo_section")], ["'grdi' is not a sweep field", "grid"]),
    ("sweep-not-a-field", ["sweep", _spec("not_a_field")], ["'model.rate' is not a config field"]),
    ("sweep-empty-axis", ["sweep", _spec("empty_axis")], ["has no values"]),
    ("sweep-zip-lengths", ["sweep", _spec("zip_lengths")], ["different lengths"]),
    ("sweep-seed-in-grid", ["sweep", _spec("seed_in_grid")], ["vary train.seed with 'seeds'"]),
    ("sweep-no-seeds", ["sweep", _spec("no_seeds")], ["seeds is empty"]),
    ("sweep-executor", ["sweep", _spec("executor")], ["launch.executor='kubernetes'"]),
    ("sweep-signal-delay", ["sweep", _spec("signal"), "--dry-run"], ["signal_delay_s=120", "timeout_min=1"]),
    ("sweep-reference", ["sweep", _spec("reference")], ["asppunet_tabel3", "asppunet_table3"]),
    ("sweep-size-zero", ["sweep", _spec("size_zero"), "--dry-run"], ["data.size.0=0"]),
    ("sweep-loss-typo", ["sweep", _spec("loss_typo"), "--dry-run"], ["cell 1", "unknown loss 'cee'"]),
    ("sweep-bad-name", ["sweep", _spec("bad_name")], ["my sweep", "is not a plain folder name"]),
    ("sweep-bad-stride", ["sweep", _spec("bad_stride"), "--dry-run"], ["output_stride"]),
    ("sweep-camvid-missing", ["sweep", _spec("camvid_missing"), "--results", "{W}/r"], ["/no/such/camvid"]),
    ("sweep-classes", ["sweep", _spec("classes"), "--dry-run"], ["has 6 classes"]),
    ("sweep-arch-knob", ["sweep", _spec("arch_knob"), "--dry-run"], ["'unet' has no knob 'rates'"]),
    ("sweep-unknown-arch", ["sweep", _spec("unknown_arch"), "--dry-run"], ["cell 1", "asppunet"]),
    ("sweep-results-file", ["sweep", _spec("ok"), "--results", "{W}/afile"], ["afile", "not a folder"]),
    ("sweep-results-under-file", ["sweep", _spec("ok"), "--results", "{W}/afile/r"], ["afile", "regular file"]),
    # status
    ("status-no-results", ["status", _spec("ok"), "--results", "{W}/no_results"], ["no_results", "no such folder"]),
    ("status-missing-sweep", ["status", "{W}/nope.yaml"], ["nope.yaml", "not found"]),
    # profile
    ("profile-unknown-arch", ["profile", "deeplab", "--input", "3x64x64"], ["unknown architecture 'deeplab'"]),
    ("profile-input-zero", ["profile", "unet", "--input", "3x0x64"], ["--input"]),
    ("profile-input-text", ["profile", "unet", "--input", "abc"], ["--input"]),
    ("profile-dtype", ["profile", "unet", "--input", "3x64x64", "--dtype", "fp8"], ["fp8"]),
    ("profile-metrics", ["profile", "unet", "--input", "3x64x64", "--metrics", "params,speed"], ["speed"]),
    ("profile-skip", ["profile", "deeplabv3", "--input", "3x64x64", *_sets("model.skip=true")], ["no knob 'skip'"]),
    ("profile-device", ["profile", "unet", "--input", "3x64x64", "--device", "tpu"], ["tpu"]),
    # evaluate
    ("evaluate-missing", ["evaluate", "{W}/nope.pt"], ["nope.pt", "not found"]),
    ("evaluate-empty", ["evaluate", "{W}/run_empty/checkpoint.pt"], ["not a readable checkpoint", "empty"]),
    ("evaluate-truncated", ["evaluate", "{W}/run_trunc/checkpoint.pt"], ["not a readable checkpoint"]),
    ("evaluate-code", ["evaluate", "{W}/run_evil/checkpoint.pt"], ["refused", "weights_only"]),
    ("evaluate-model-override", ["evaluate", "{W}/run/checkpoint.pt", *_sets("model.width=8")], ["data.*"]),
    ("evaluate-no-config", ["evaluate", "{W}/run_nocfg/checkpoint.pt"], ["config.yaml", "missing"]),
    ("evaluate-bad-config", ["evaluate", "{W}/run_badcfg/checkpoint.pt"], ["config.yaml", "not valid YAML"]),
    ("evaluate-other-config", ["evaluate", "{W}/run_othercfg/checkpoint.pt"], ["belongs to run"]),
    # collect
    ("collect-missing", ["collect", "{W}/no_results"], ["no_results", "not found"]),
    ("collect-suffix", ["collect", "{W}/results", "--out", "{W}/t.txt"], [".parquet or .csv"]),
    ("collect-empty", ["collect", "{W}/empty"], ["no finished runs"]),
    ("collect-out-under-file", ["collect", "{W}/results", "--out", "{W}/afile/t.parquet"], ["afile"]),
    # report
    ("report-missing", ["report", "{W}/no_results", "--out", "{W}/rep"], ["no_results"]),
    ("report-format", ["report", "{W}/results", "--out", "{W}/rep", "--format", "html"], ["allowed are md, tex"]),
    ("report-notes", ["report", "{W}/results", "--out", "{W}/rep", "--notes", "{W}/nope.md"], ["nope.md"]),
    ("report-baseline", ["report", "{W}/results", "--out", "{W}/rep", "--baseline", "arch=nosuch"], ["matches no"]),
    ("report-empty", ["report", "{W}/empty", "--out", "{W}/rep"], ["no finished runs"]),
    # regress
    ("regress-missing", ["regress", "{W}/nope.parquet", "{W}/table.parquet"], ["nope.parquet", "no such file"]),
    ("regress-bad-csv", ["regress", "{W}/garbage.csv", "{W}/table.parquet"], ["garbage.csv", "cannot be read"]),
    ("regress-bad-parquet", ["regress", "{W}/garbage.parquet", "{W}/table.parquet"], ["garbage.parquet"]),
    ("regress-empty-csv", ["regress", "{W}/empty.csv", "{W}/table.parquet"], ["empty.csv"]),
    ("regress-no-config", ["regress", "{W}/bare.csv", "{W}/table.parquet"], ["no config columns"]),
    ("regress-tolerance", ["regress", "{W}/table.parquet", "{W}/table.parquet", "--miou-tol", "-1"], ["non-negative"]),
    (
        "regress-nothing-common",
        ["regress", "{W}/table.parquet", "{W}/other.parquet"],
        ["no configuration in common", "optim.lr"],
    ),
]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tree every case reads and none may change."""
    import pandas as pd

    from bench.cli import main

    w = tmp_path_factory.mktemp("world")
    assert main(["train", "--out", str(w / "results" / "run"), *_sets(*TINY, "train.epochs=1")]) == 0
    shutil.copytree(w / "results" / "run", w / "run")
    assert main(["collect", str(w / "results"), "--out", str(w / "table.parquet")]) == 0
    for name, content in (("run_empty", b""), ("run_trunc", (w / "run" / "checkpoint.pt").read_bytes()[:4000])):
        shutil.copytree(w / "run", w / name)
        (w / name / "checkpoint.pt").write_bytes(content)
    shutil.copytree(w / "run", w / "run_evil")
    state = torch.load(w / "run" / "checkpoint.pt", weights_only=True)
    state["evil"] = _Payload(w / "PWNED")
    torch.save(state, w / "run_evil" / "checkpoint.pt")
    (w / "run_nocfg").mkdir()
    shutil.copy(w / "run" / "checkpoint.pt", w / "run_nocfg" / "checkpoint.pt")
    shutil.copytree(w / "run", w / "run_badcfg")
    (w / "run_badcfg" / "config.yaml").write_text("model: [unclosed\n")
    shutil.copytree(w / "run", w / "run_othercfg")
    cfg = (w / "run" / "config.yaml").read_text().replace("lr: 0.001", "lr: 0.002")
    (w / "run_othercfg" / "config.yaml").write_text(cfg)
    (w / "afile").write_text("a regular file\n")
    (w / "empty").mkdir()
    (w / "garbage.csv").write_bytes(b'\x00\xff\xfe garbage \x00\n\x01,\x02\n"unclosed')
    (w / "garbage.parquet").write_bytes(b"PAR1 this is not parquet")
    (w / "empty.csv").write_text("")
    pd.DataFrame({"run_id": ["x"], "miou": [0.1], "status": ["done"]}).to_csv(w / "bare.csv", index=False)
    other = pd.read_parquet(w / "table.parquet")
    other["optim.lr"] = 0.5
    other.to_parquet(w / "other.parquet")
    (w / "specs").mkdir()
    for name, text in SPECS.items():
        (w / "specs" / f"{name}.yaml").write_text(textwrap.dedent(text))
    return w


class _Payload:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):  # noqa: ANN204
        return (Path.write_text, (self.target, "pwned"))


def _tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(root.rglob("*"))
    }


def test_there_are_at_least_sixty_distinct_cases() -> None:
    assert len({c[0] for c in CASES}) == len(CASES) >= 60
    assert len({tuple(c[1]) for c in CASES}) == len(CASES)
    assert {c[1][0] for c in CASES} >= {"train", "sweep", "profile", "evaluate", "collect", "report", "regress"}


@pytest.mark.parametrize(("argv", "fragments"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_exits_2_names_the_problem_and_writes_nothing(
    cli, world: Path, monkeypatch, argv: list[str], fragments: list[str]
) -> None:
    monkeypatch.chdir(world)  # a relative default (results/<name>) would land here
    before = _tree(world)
    code, out, err = cli(*[a.replace("{W}", str(world)) for a in argv])
    assert code == 2, (code, out, err)
    assert "Traceback" not in err + out
    assert err.startswith("aspp-bench: error:") or err.startswith("usage:"), err
    for f in fragments:
        assert f.replace("{W}", str(world)) in err, (f, err)
    assert _tree(world) == before, "a bad input changed the tree"
    assert not (world / "PWNED").exists()
