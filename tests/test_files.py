"""Atomic writes (bench/files.py): a full disk leaves the old file whole and no temp file behind, the
error is a message, and a written file has the usual mode."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import torch

from tests.fixtures import train_tiny


def test_atomic_writes_leave_nothing_on_a_full_disk(tmp_path, monkeypatch) -> None:
    """Defect: engine.save_checkpoint left its temp file behind when the write failed."""
    from bench.files import write_json
    from tests.fixtures import tiny_trainer

    target = tmp_path / "x.json"
    write_json(target, {"a": 1})

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(OSError):
        write_json(target, {"a": 2})
    monkeypatch.undo()
    assert json.loads(target.read_text()) == {"a": 1} and sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]
    t = tiny_trainer(tmp_path / "ck", epochs=1)
    (tmp_path / "ck").mkdir()
    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(OSError):
        t.save_checkpoint()
    assert list((tmp_path / "ck").iterdir()) == []


def test_a_full_disk_is_an_error_message_not_a_traceback(cli, tmp_path, monkeypatch) -> None:
    import bench.files

    def full(path):  # noqa: ANN001
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(bench.files, "atomic_write_text", lambda path, text: full(path))
    code, _, err = train_tiny(cli, tmp_path / "run")
    assert code == 2 and "No space left on device" in err and "Traceback" not in err
    assert not list((tmp_path / "run").glob(".*.tmp"))


def test_atomic_writes_keep_the_usual_file_mode(tmp_path) -> None:
    """mkstemp creates 0600 files: results on a shared cluster must stay readable as open() makes them."""
    from bench.files import write_json

    write_json(tmp_path / "a.json", {})
    (tmp_path / "b.json").write_text("{}")
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == stat.S_IMODE((tmp_path / "b.json").stat().st_mode)
