"""Validation messages (bench/explain.py): a type error names the key and shows the accepted
form; an unknown key points to `config --fields`."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.mark.parametrize(
    "setting, shows",
    [
        ("model.rates=6,12", ["model.rates='6,12'", "a list of integers", "'model.rates=[6, 12]'"]),
        ("data.size=64", ["data.size=64", "a list of 2 positive integers", "'data.size=[64, 64]'"]),
        ("optim.name=sgdd", ["optim.name='sgdd'", "one of adam, adamw, sgd", "optim.name=sgd"]),
        ("model.skip=maybe", ["model.skip='maybe'", "true or false", "model.skip=true"]),
    ],
)
def test_type_errors_name_the_key_and_show_the_accepted_form(cli, tmp_path: Path, setting: str, shows) -> None:
    code, _, err = cli("train", "--set", setting, "--out", str(tmp_path / "x"))
    assert code == 2 and "Traceback" not in err
    assert all(s in err for s in shows), err
    assert "aspp-bench config --fields" in err
    assert not (tmp_path / "x").exists()


def test_unknown_key_points_to_config_fields(cli, tmp_path: Path) -> None:
    code, _, err = cli("train", "--set", "model.rate=[6]", "--out", str(tmp_path / "x"))
    assert code == 2 and "did you mean 'model.rates'" in err and "aspp-bench config --fields" in err
