"""Where the data lies is not the experiment; what it holds is (bench.data.fingerprint, docs/datasets.md).

Defect: data.root was hashed into run_id, so byte-identical CamVid at two paths gave two run_ids and a
user's rerun never matched the committed baseline; the ablations pointed at a folder outside the
repository that a clone does not have."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from bench.configure.config import validate
from bench.configure.identity import resolve, run_id
from bench.data import DATA_ENV, fingerprint, locate_root
from tests.fixtures import make_camvid, set_args

ROOT = Path(__file__).resolve().parents[1]


def _camvid(root: str, *extra: str) -> dict:
    return validate({"data": {"name": "camvid", "root": root, "size": [18, 24]}, **dict(extra)}, source="t")


def test_the_same_files_at_another_path_are_one_run(tmp_path) -> None:
    a = make_camvid(tmp_path / "a" / "camvid")
    b = tmp_path / "elsewhere" / "copy"
    shutil.copytree(a, b)
    ra, rb = resolve(_camvid(str(a))), resolve(_camvid(str(b)))
    assert ra.data.fingerprint is not None and ra.data.fingerprint.startswith("sha256:")
    assert ra.data.fingerprint == rb.data.fingerprint
    assert run_id(ra, resolved=True) == run_id(rb, resolved=True)
    assert ra.data.root != rb.data.root  # the path is recorded, not hashed


def test_other_files_are_another_run(tmp_path) -> None:
    a = make_camvid(tmp_path / "a")
    b = tmp_path / "b"
    shutil.copytree(a, b)
    first = next((b / "val").glob("*.png"))
    first.write_bytes(first.read_bytes() + b"\0")  # one evaluation image one byte longer
    assert run_id(_camvid(str(a))) != run_id(_camvid(str(b)))
    c = tmp_path / "c"
    shutil.copytree(a, c)
    (c / "test").mkdir()  # a split the run never reads changes nothing
    (c / "test" / "x.png").write_bytes(b"x")
    assert run_id(_camvid(str(a))) == run_id(_camvid(str(c)))


def test_a_relative_root_is_found_below_the_data_folder(tmp_path, monkeypatch) -> None:
    make_camvid(tmp_path / "sets" / "camvid")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "sets"))
    assert locate_root("camvid") == str(tmp_path / "sets" / "camvid")
    assert locate_root("/abs/camvid") == "/abs/camvid"
    relative = resolve(_camvid("camvid"))
    absolute = resolve(_camvid(str(tmp_path / "sets" / "camvid")))
    assert relative.data.fingerprint is not None
    assert run_id(relative, resolved=True) == run_id(absolute, resolved=True)
    monkeypatch.delenv(DATA_ENV)  # unset: below the current folder, where it is not
    assert fingerprint(_camvid("camvid").data) is None


def test_a_missing_relative_root_says_where_it_was_looked_for(cli, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(DATA_ENV, raising=False)
    code, _, err = cli("train", "--out", str(tmp_path / "run"), *set_args("data.name=camvid", "data.root=camvid"))
    assert code == 2 and "Traceback" not in err
    assert f"${DATA_ENV}" in err and "docs/datasets.md" in err and "'camvid'" in err
    assert not (tmp_path / "run").exists()


def test_a_run_on_files_other_than_its_fingerprint_is_refused(cli, tmp_path) -> None:
    root = make_camvid(tmp_path / "camvid")
    right = fingerprint(_camvid(str(root)).data)
    wrong = "sha256:0123456789abcdef"
    assert right != wrong
    out = tmp_path / "run"
    code, _, err = cli(
        "train", "--out", str(out),
        *set_args("data.name=camvid", f"data.root={root}", "data.size=[18,24]", f"data.fingerprint={wrong}"),
    )  # fmt: skip
    assert code == 2 and "Traceback" not in err
    assert wrong in err and right in err and str(root) in err and "drop data.fingerprint" in err
    assert not out.exists()  # refused before the folder was made


def test_a_committed_run_is_found_again_with_its_data_elsewhere(cli, tmp_path) -> None:
    """A run made with the data at one path; its folder's name is the run_id that the same config
    gives with the data copied to another path (what a user's clone does)."""
    data = make_camvid(tmp_path / "one" / "camvid", n=2)
    out = tmp_path / "results" / "x"
    sets = ["data.name=camvid", "data.size=[18,24]", "model.width=4", "train.epochs=1", "data.batch_size=2",
            "profile.latency=false", "profile.receptive=false", "train.device=cpu"]  # fmt: skip
    code, _, err = cli("train", "--out", str(out), *set_args(*sets, f"data.root={data}"))
    assert code == 0, err
    written = yaml.safe_load((out / "config.yaml").read_text())
    moved = tmp_path / "two" / "somewhere"
    shutil.copytree(data, moved)
    shutil.rmtree(data)
    written["data"]["root"] = str(moved)
    again = run_id(validate({k: v for k, v in written.items()}, source="config.yaml"))
    fresh = run_id(validate({"data": {"name": "camvid", "root": str(moved), "size": [18, 24], "batch_size": 2},
                             "model": {"width": 4}, "train": {"epochs": 1},
                             "profile": {"latency": False, "receptive": False}}, source="t"))  # fmt: skip
    code, rid_out, _ = cli("config", *set_args(*sets, f"data.root={moved}"))
    assert again == fresh and f"# run_id {again}" in rid_out


def test_the_committed_claim_runs_match_a_rerun_on_real_camvid_wherever_it_lies(tmp_path, monkeypatch) -> None:
    """On real CamVid (found below $ASPP_BENCH_DATA; skipped where it is not): the committed run
    folders' run_ids are those of the sweep file, with the data reached through a link elsewhere."""
    base = os.environ.get(DATA_ENV)
    if not base or not (Path(base) / "camvid" / "train.txt").is_file():
        pytest.skip(f"real CamVid not found below ${DATA_ENV}")
    from bench.sweep import expand, load_sweep

    (tmp_path / "sets").mkdir()
    shutil.copytree(Path(base) / "camvid", tmp_path / "sets" / "camvid")
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "sets"))
    sweep = load_sweep(ROOT / "ablations" / "asppunet_claim.yaml")
    ids = {c.run_id for c in expand(sweep)}
    committed = {p.parent.name for p in (ROOT / "results" / "asppunet_claim").glob("*/config.yaml")}
    assert ids & committed, "no committed claim run is a cell of the sweep file"


def test_the_repository_names_no_path_outside_itself() -> None:
    """A user's clone has only the repository: no file in it may point at the folder beside it."""
    try:
        files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    needle = "../" + "shared"  # spelled in two parts so that this file does not find itself
    found = []
    for name in files.splitlines():
        p = ROOT / name
        if p.is_file() and p.stat().st_size < 5_000_000:
            try:
                text = p.read_text()
            except UnicodeDecodeError:
                continue
            if needle in text:
                found.append(name)
    assert not found, f"{needle} named in {found}"


def test_committed_configs_carry_the_data_fingerprint_and_a_relative_root() -> None:
    folders = sorted((ROOT / "results").glob("*/*/config.yaml"))
    camvid = [yaml.safe_load(p.read_text())["data"] for p in folders]
    camvid = [d for d in camvid if d["name"] == "camvid"]
    assert camvid and all(d["fingerprint"] == "sha256:673aa04a2d764914" and d["root"] == "camvid" for d in camvid)


def test_a_dataset_of_symbolic_links_has_the_fingerprint_of_its_files(tmp_path) -> None:
    real = make_camvid(tmp_path / "real")
    links = tmp_path / "links"
    for p in real.rglob("*"):
        q = links / p.relative_to(real)
        if p.is_dir():
            q.mkdir(parents=True, exist_ok=True)
        else:
            q.parent.mkdir(parents=True, exist_ok=True)
            q.symlink_to(p)
    a, b = fingerprint(_camvid(str(real)).data), fingerprint(_camvid(str(links)).data)
    assert a is not None and a == b


def test_a_checkpoint_bound_to_the_run_id_of_before_still_resumes_and_evaluates(cli, tmp_path) -> None:
    """A run trained before data.root left the identity carries its old run_id in its checkpoint:
    resuming it and evaluating it still work; a checkpoint of another run is still refused."""
    import torch

    from bench.configure.identity import earlier_run_ids

    data = make_camvid(tmp_path / "camvid", n=2)
    out = tmp_path / "run"
    sets = ["data.name=camvid", f"data.root={data}", "data.size=[18,24]", "model.width=4", "data.batch_size=2",
            "profile.latency=false", "profile.receptive=false", "train.device=cpu"]  # fmt: skip
    code, _, err = cli("train", "--out", str(out), *set_args(*sets, "train.epochs=2"))
    assert code == 0, err
    cfg = resolve(validate(yaml.safe_load((out / "config.yaml").read_text()), source="c"))
    (old,) = earlier_run_ids(cfg, resolved=True)
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    ckpt["identity"] = old
    torch.save(ckpt, out / "checkpoint.pt")
    code, _, err = cli("evaluate", str(out / "checkpoint.pt"))
    assert code == 0, err
    (out / "result.json").unlink()
    ckpt["state"]["epoch"] = 1  # as if it stopped after its first epoch
    torch.save(ckpt, out / "checkpoint.pt")
    code, _, err = cli("train", "--out", str(out), *set_args(*sets, "train.epochs=2"))
    assert code == 0 and "not to run" not in err, err
    ckpt["identity"] = "0123456789ab"
    torch.save(ckpt, out / "checkpoint.pt")
    code, _, err = cli("evaluate", str(out / "checkpoint.pt"))
    assert code == 2 and "belongs to run 0123456789ab" in err
