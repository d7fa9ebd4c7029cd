"""RunConfig: every knob of one experiment, validated and frozen; YAML and `--set` loading.

One defaults object holds every key (dinov2/LazyConfig style); a config file or a sweep
states only its difference. Field names equal builder keyword names, so the config is
consumed in one place (the builders) with no translation table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError

from bench.errors import UserError, did_you_mean

__all__ = [
    "DataConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "ProfileConfig",
    "RunConfig",
    "TrainConfig",
    "EXPERIMENT_SECTIONS",
    "apply_overrides",
    "config_keys",
    "flatten",
    "is_experiment_key",
    "load_run_config",
    "parse_set",
]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelConfig(_Frozen):
    """Model knobs; None means 'the architecture's own default' (and is the only value an
    architecture without that knob accepts)."""

    arch: str = "aspp_unet"
    backbone: str | None = None
    context: str | None = None
    rates: tuple[int, ...] | None = None
    rates2: tuple[int, ...] | None = None
    output_stride: int | None = None
    skip: bool | None = None
    width: int | None = None
    aux: bool | None = None
    weights: str | None = None
    image_pool: bool | None = None
    upsample: Literal["bilinear", "transpose"] | None = None
    down_dilation: int | None = None
    freeze_backbone: bool | None = None
    num_classes: int | None = Field(None, ge=1)

    def knobs(self) -> dict[str, Any]:
        """The builder keywords this config sets (None fields left to the architecture)."""
        return {k: v for k, v in self.model_dump().items() if k != "arch" and v is not None}


class AugmentConfig(_Frozen):
    flip: bool = True
    scale: tuple[float, float] | None = None
    rotate: float = 0.0


class DataConfig(_Frozen):
    name: str = "synthetic"
    root: str | None = None
    split: str = "train"
    size: tuple[PositiveInt, PositiveInt] = (64, 64)
    crop: tuple[PositiveInt, PositiveInt] | None = None
    augment: AugmentConfig = AugmentConfig()
    void_as_class: bool | None = None
    count: int | None = Field(None, ge=1)
    classes: int | None = Field(None, ge=2)
    batch_size: int = Field(8, ge=1)
    num_workers: int = Field(0, ge=0)


class LossConfig(_Frozen):
    name: str = "ce"
    class_weights: Literal["none", "median_freq", "inverse_freq"] | tuple[float, ...] = "none"
    ignore_index: int | None = None


class OptimConfig(_Frozen):
    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    momentum: float | None = Field(None, ge=0)  # None: 0.9 for sgd (resolved); adam/adamw take none
    schedule: Literal["poly", "cosine", "none"] = "poly"
    power: float | None = Field(None, gt=0)  # None: 0.9 for poly (resolved); other schedules take none


class TrainConfig(_Frozen):
    epochs: int | None = Field(5, ge=1)
    iters: int | None = Field(None, ge=1)
    amp: Literal["none", "bf16", "fp16"] = "none"
    channels_last: bool = False  # NHWC activations and weights (faster convolutions on CPU and GPU)
    compile: bool = False  # torch.compile the training forward
    seed: int = 0
    eval_every: int = Field(1, ge=1)
    checkpoint_every: int = Field(1, ge=1)
    grad_clip: float | None = Field(None, gt=0)
    device: Literal["cpu", "cuda", "auto"] = "auto"
    # batch norm over the global batch when a cell trains on several devices (launch.tasks_per_node,
    # launch.nodes); with one device it changes nothing. false: each device normalises its own share.
    sync_bn: bool = True


class ProfileConfig(_Frozen):
    input: tuple[PositiveInt, PositiveInt, PositiveInt] | None = None  # None: 3 x data.size
    batch: int = Field(1, ge=1)
    latency: bool = True
    threads: int | None = Field(None, ge=1)


class RunConfig(_Frozen):
    """One experiment. The canonical JSON of the resolved config identifies a run."""

    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    loss: LossConfig = LossConfig()
    optim: OptimConfig = OptimConfig()
    train: TrainConfig = TrainConfig()
    profile: ProfileConfig = ProfileConfig()


EXPERIMENT_SECTIONS = ("model", "data", "loss", "optim", "train")  # RunConfig minus how it is profiled


def is_experiment_key(column: str) -> bool:
    """A dotted config key (or collected column) of a section that changes the experiment itself."""
    return column.split(".", 1)[0] in EXPERIMENT_SECTIONS


def config_keys(model: type[BaseModel] | None = None, prefix: str = "") -> list[str]:
    """Every dotted key of a config model, e.g. 'model.rates', 'data.augment.flip'."""
    model = model or RunConfig
    out: list[str] = []
    for name, info in model.model_fields.items():
        ann = info.annotation
        key = f"{prefix}{name}"
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out += config_keys(ann, key + ".")
        else:
            out.append(key)
    return out


def parse_set(item: str) -> tuple[str, Any]:
    """'model.rates=[3,6,9]' -> ('model.rates', [3, 6, 9]); the value is parsed as YAML."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise UserError(f"--set {item!r}: expected key=value, e.g. --set model.rates=[6,12,18]")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        raise UserError(f"--set {item!r}: the value is not valid YAML ({e.problem})") from None
    return key.strip(), value


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any], *, source: str = "--set") -> dict[str, Any]:
    """Set dotted keys in a nested dict (a copy); a key that is no config field is an error."""
    keys = config_keys()
    out = _deep_copy(data)
    for key, value in overrides.items():
        if key not in keys:
            raise UserError(
                f"{source}: '{key}' is not a config field{did_you_mean(key, keys)}; "
                "'aspp-bench config --fields' lists every key with its type, default and allowed values"
            )
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise UserError(f"{source}: '{key}' goes through '{p}', which is not a section")
        node[parts[-1]] = value
    return out


def _deep_copy(d: dict[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in d.items()}


def validate(data: dict[str, Any], *, source: str) -> RunConfig:
    """RunConfig from a nested dict; pydantic's errors become one UserError naming every key."""
    try:
        return RunConfig.model_validate(data)
    except ValidationError as e:
        from bench.fields import explain

        raise UserError(explain(e, source=source, keys=config_keys())) from None


def read_yaml_mapping(path: str | Path, what: str) -> dict[str, Any]:
    """A YAML file that must hold a mapping; every problem is a UserError naming the file."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: {what} file not found")
    try:
        loaded = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise UserError(f"{p}: not valid YAML ({e})") from None
    if not isinstance(loaded, dict):
        raise UserError(f"{p}: expected a mapping at the top of the {what} file, got {type(loaded).__name__}")
    return loaded


def load_run_config(path: str | Path | None = None, sets: list[str] | None = None) -> RunConfig:
    """Defaults <- YAML file (if any) <- --set overrides, validated."""
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        data = apply_overrides({}, flatten(read_yaml_mapping(path, "config")), source=source)
    overrides = dict(parse_set(s) for s in sets or [])
    data = apply_overrides(data, overrides)
    return validate(data, source=source if not overrides else f"{source} + --set")


def flatten(d: dict[str, Any], prefix: str = "", *, join_lists: bool = False) -> dict[str, Any]:
    """{'model': {'rates': [..]}} -> {'model.rates': [..]}: the one flattener of nested configs
    (sections such as `data.augment` flatten too; an empty mapping stays a value). With
    `join_lists`, lists become text as result tables show them: (3, 6, 9, 12) -> '3,6,9,12'."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + ".", join_lists=join_lists))
        elif join_lists and isinstance(v, list | tuple):
            out[key] = ",".join(str(x) for x in v)
        else:
            out[key] = v
    return out
