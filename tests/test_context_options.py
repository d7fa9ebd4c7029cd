"""A context variant's own knobs as config keys (`model.context_options.<knob>`): listed, hashed,
refused where the variant does not take them, and at their defaults the run_ids of before."""

from __future__ import annotations

import shlex

import pandas as pd
import pytest
import torch

from bench.configure.config import load_run_config
from bench.configure.identity import resolve, run_id
from bench.configure.listings import context_option_rows
from bench.errors import UserError
from bench.models import build_model
from bench.models.context import context_option_defaults
from bench.registry import contexts
from bench.results.table import _context_option_defaults, config_from_row
from bench.sweep import expand, load_sweep

# run_ids computed at commit 014c9a0, before model.context_options existed: a variant's options at
# their defaults must leave every earlier run its id
BEFORE = [
    (["model.arch=deeplabv3", "model.backbone=resnet18"], "5f7a4c32f523"),
    (["model.context=dense_aspp"], "3065a25c7c7d"),
    (["model.context=ppm"], "1f5574ba3cbc"),
    (["model.arch=icnet"], "c101bfc1dc3b"),
    (["model.arch=dual_aspp"], "62a895b828cc"),
]


@pytest.mark.parametrize(("sets", "rid"), BEFORE, ids=[s[-1] for s, _ in BEFORE])
def test_defaults_keep_the_run_ids_of_before(sets: list[str], rid: str) -> None:
    assert run_id(load_run_config(None, sets)) == rid
    ctx = resolve(load_run_config(None, sets)).model.context
    written = [f"model.context_options.{k}={v if v is not None else 'null'}" for k, v in
               context_option_defaults(ctx).items() if not isinstance(v, tuple | str)]  # fmt: skip
    assert run_id(load_run_config(None, [*sets, *written])) == rid  # the defaults written out: one run


def test_an_option_off_its_default_is_kept_and_hashed() -> None:
    base = ["model.context=dense_aspp"]
    a = resolve(load_run_config(None, [*base, "model.context_options.growth=4"]))
    b = resolve(load_run_config(None, [*base, "model.context_options.growth=16"]))
    assert a.model.context_options == {"growth": 4} and b.model.context_options == {"growth": 16}
    assert len({run_id(a), run_id(b), run_id(load_run_config(None, base))}) == 3
    assert resolve(a) == a  # idempotent: the config.yaml a run writes hashes to its own folder


def test_an_option_changes_the_network() -> None:
    def params(growth: int) -> int:
        m = build_model("aspp_unet", width=4, num_classes=3, context="dense_aspp", context_options={"growth": growth})
        return sum(p.numel() for p in m.parameters())

    assert params(4) < params(16)
    m = build_model("deeplabv3", backbone="resnet18", num_classes=3, context="aspp", context_options={"dropout": 0.1})
    assert [x.p for x in m.context.modules() if isinstance(x, torch.nn.Dropout)] == [0.1]


@pytest.mark.parametrize(
    ("sets", "fragments"),
    [
        (
            ["model.context=aspp", "model.context_options.growth=4"],
            ["model.context_options.growth=4", "context 'aspp' has no option 'growth'", "its options: dropout"],
        ),
        (
            ["model.context=dense_aspp", "model.context_options.grow=4"],
            ["did you mean 'growth'", "its options: growth"],
        ),
        (["model.context_options.rates=[1]"], ["'rates' is every context's", "set model.rates"]),
        (["model.arch=unet", "model.context_options.growth=4"], ["architecture 'unet' has no knob 'context_options'"]),
    ],
    ids=["other-variant", "typo", "shared-knob", "no-context"],
)
def test_an_option_the_variant_does_not_take_is_refused_with_its_list(cli, sets, fragments) -> None:
    code, _, err = cli("config", *[a for s in sets for a in ("--set", s)])
    assert code == 2 and "Traceback" not in err, err
    for f in fragments:
        assert f in err, (f, err)


def test_a_bad_option_value_is_named_by_its_key() -> None:
    for options, fragment in (({"growth": 0}, "model.context_options.growth=0"),
                              ({"growth": "x"}, "model.context_options.growth='x'")):  # fmt: skip
        with pytest.raises(UserError, match=fragment):
            build_model("aspp_unet", width=4, num_classes=3, context="dense_aspp", context_options=options)


@pytest.mark.parametrize(
    "row", context_option_rows(), ids=lambda r: f"{r['type'].split('(context ')[-1][:-1]}.{r['key']}"
)
def test_every_listed_option_example_builds(row: dict) -> None:
    """config --fields lists each variant's option with an example that resolves and builds."""
    sets = shlex.split(row["example"].removeprefix("--set "))
    cfg = resolve(load_run_config(None, sets))
    knob = row["key"].rsplit(".", 1)[1]
    assert cfg.model.context_options and knob in cfg.model.context_options, row  # off its default
    with torch.device("meta"):
        build_model(cfg.model.arch, **cfg.model.knobs())


def test_every_context_option_is_listed() -> None:
    listed = {(r["type"].split("(context ")[-1][:-1], r["key"].rsplit(".", 1)[1]) for r in context_option_rows()}
    declared = {(name, k) for name in contexts.names() for k in context_option_defaults(name)}
    assert listed == declared and ("dense_aspp", "growth") in declared


def test_a_sweep_crosses_an_option(tmp_path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "name: opts\nbase: {model: {context: dense_aspp, width: 4}}\n"
        "grid: {model.context_options.growth: [4, 8]}\nseeds: [0]\n"
    )
    cells = expand(load_sweep(spec))
    assert [c.config.model.context_options for c in cells] == [{"growth": 4}, {"growth": 8}]
    assert len({c.run_id for c in cells}) == 2
    bad = tmp_path / "b.yaml"
    bad.write_text("name: opts\ngrid: {model.context_optons.growth: [4]}\n")
    with pytest.raises(UserError, match="is not a config field"):
        expand(load_sweep(bad))


def test_a_table_shows_the_default_where_a_row_left_an_option_unset() -> None:
    df = pd.DataFrame(
        {"model.context": ["aspp", "aspp", "aspp_parallel"], "model.context_options.dropout": [0.1, None, None]}
    )
    out = _context_option_defaults(df)
    assert out["model.context_options.dropout"].tolist()[:2] == [0.1, 0.5]
    assert pd.isna(out["model.context_options.dropout"].iloc[2])  # aspp_parallel takes no dropout


def test_a_table_row_gives_its_options_back() -> None:
    row = {"model.arch": "aspp_unet", "model.context": "ppm", "model.context_options.bins": "1,2,4,8",
           "model.context_options.fuse": "concat", "train.epochs": 1}  # fmt: skip
    cfg = config_from_row(pd.Series(row))
    assert cfg["model"]["context_options"] == {"bins": [1, 2, 4, 8], "fuse": "concat"}
