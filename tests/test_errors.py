"""User errors (bench/errors.py): unknown names with their closest matches, a builder's knob
under its config key, long input clipped."""

from __future__ import annotations

import pytest

from bench.errors import KnobError, UserError, clip, did_you_mean


@pytest.mark.parametrize(
    ("setting", "key", "plural"),
    [("model.arch=nope", "model.arch", "architectures"), ("loss.name=cee", "loss.name", "losses"),
     ("model.context=aspx", "model.context", "contexts"), ("data.name=camvidd", "data.name", "datasets")],
)  # fmt: skip
def test_an_unknown_name_names_its_key_and_where_the_names_are_listed(cli, tmp_path, setting, key, plural) -> None:
    code, _, err = cli("train", "--set", setting, "--out", str(tmp_path / "run"))
    assert code == 2 and "Traceback" not in err
    assert f"{key}: unknown" in err and f"registered {plural}:" in err and "'aspp-bench models'" in err
    assert not (tmp_path / "run").exists()


def test_a_knob_the_architecture_lacks_is_named_by_its_config_key(cli, tmp_path) -> None:
    code, _, err = cli(
        "train", "--set", "model.arch=deeplabv3", "--set", "model.skip=false", "--out", str(tmp_path / "r")
    )
    assert code == 2 and "model.skip: architecture 'deeplabv3' has no knob 'skip'" in err, err


def test_did_you_mean_offers_the_closest_names_or_nothing() -> None:
    assert did_you_mean("aspp_unte", ["unet", "aspp_unet", "icnet"]) == " (did you mean 'aspp_unet'?)"
    assert did_you_mean("zzz", ["unet", "aspp_unet"]) == ""


def test_clip_keeps_short_input_and_counts_what_it_cuts() -> None:
    assert clip("x" * 10, 10) == "x" * 10
    assert clip("x" * 25, 10) == "x" * 10 + "... (15 more characters)"


def test_a_knob_error_is_reraised_under_its_config_key() -> None:
    e = KnobError("rates", "[0]", "a rate must be at least 1")
    assert str(e) == "rates=[0]: a rate must be at least 1"
    keyed = e.keyed("model")
    assert isinstance(keyed, UserError) and keyed.exit_code == 2
    assert str(keyed) == "model.rates=[0]: a rate must be at least 1"
