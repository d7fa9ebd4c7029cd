"""RunConfig: every knob of one experiment, validated and frozen; YAML and `--set` loading.

One defaults object holds every key (dinov2/LazyConfig style); a config file or a sweep
states only its difference. Field names equal builder keyword names (model knobs, losses,
optimisers) and the trainer's spec takes the train section by field name, so no table
translates one into another.
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from bench.errors import UserError, clip, did_you_mean
from bench.explain import explain
from bench.precision import PRECISIONS, canonical

__all__ = [
    "LIST_SEP",
    "DataConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "ProfileConfig",
    "RunConfig",
    "TrainConfig",
    "EXPERIMENT_SECTIONS",
    "OPEN_SECTIONS",
    "apply_overrides",
    "config_keys",
    "is_config_key",
    "flatten",
    "list_items",
    "is_experiment_key",
    "load_run_config",
    "load_yaml_text",
    "parse_set",
    "read_text_file",
    "read_yaml_mapping",
]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_a_number(cls, v: Any, info: ValidationInfo) -> Any:
        """true/false where a number is meant is refused (pydantic would read `train.seed: true`
        as seed 1); fields that take a bool keep it."""
        if isinstance(v, bool) and info.field_name is not None:
            ann = cls.model_fields[info.field_name].annotation
            if ann is not bool and bool not in typing.get_args(ann) and _takes_number(ann):
                raise ValueError(f"a number, not {str(v).lower()}")
        return v


def _takes_number(ann: Any) -> bool:
    args = typing.get_args(ann) or (ann,)
    return any(a in (int, float) for a in args)


# Bounds that no real experiment reaches: a value past them is a typo or a hostile file, refused
# before it costs memory or time (the memory a cell needs is estimated separately, from its model).
MAX_SIDE = 16384  # pixels of an image side
MAX_SEED = 2**32 - 1  # numpy's and most papers' seed range; torch's generators are seeded from it
Side = Annotated[int, Field(ge=1, le=MAX_SIDE)]


class ModelConfig(_Frozen):
    """Model knobs; None means 'the architecture's own default' (and is the only value an
    architecture without that knob accepts)."""

    arch: str = "aspp_unet"
    backbone: str | None = None
    context: str | None = None
    rates: tuple[int, ...] | None = None
    rates2: tuple[int, ...] | None = None
    output_stride: int | None = Field(None, ge=1, le=1024, examples=[8])
    skip: bool | None = None
    width: int | None = Field(None, ge=1, le=4096)
    aux: bool | None = None
    weights: str | None = Field(None, examples=["DEFAULT"])
    image_pool: bool | None = None
    upsample: Literal["bilinear", "transpose"] | None = None
    down_dilation: int | None = Field(None, ge=1, le=1024)
    freeze_backbone: bool | None = None
    num_classes: int | None = Field(None, ge=1, le=100_000, examples=[6])
    # the context variant's own knobs (DenseASPP's growth, ASPP's dropout, pyramid pooling's bins
    # and fusion): set one as model.context_options.<knob>; the variant lists what it takes
    context_options: dict[str, Any] | None = Field(
        None, examples=[{"growth": 8}], json_schema_extra={"example_with": ["model.context=dense_aspp"]}
    )

    def knobs(self) -> dict[str, Any]:
        """The builder keywords this config sets (None fields left to the architecture)."""
        return {k: v for k, v in self.model_dump().items() if k != "arch" and v is not None}


class AugmentConfig(_Frozen):
    flip: bool = True
    scale: tuple[float, float] | None = Field(None, examples=[(0.5, 2.0)])
    rotate: float = Field(0.0, ge=0, le=180, examples=[10.0])


class DataConfig(_Frozen):
    name: str = "synthetic"
    root: str | None = Field(None, examples=["camvid"])  # below $ASPP_BENCH_DATA when relative and set
    # the content of what a run reads (bench.data.fingerprint), filled by resolve where the data is
    # readable; where it lies (root) is not part of the experiment, this is
    fingerprint: str | None = Field(None, pattern=r"^sha256:[0-9a-f]{16}$", examples=["sha256:0123456789abcdef"])
    split: str = Field("train", examples=["val"])
    size: tuple[Side, Side] = (64, 64)
    crop: tuple[Side, Side] | None = None
    augment: AugmentConfig = AugmentConfig()
    void_as_class: bool | None = None
    count: int | None = Field(None, ge=1, le=10_000_000)
    classes: int | None = Field(None, ge=2, le=100_000)
    batch_size: int = Field(8, ge=1, le=100_000)
    num_workers: int = Field(0, ge=0, le=256)


class LossConfig(_Frozen):
    name: str = "ce"
    class_weights: Literal["none", "median_freq", "inverse_freq"] | tuple[float, ...] = "none"
    ignore_index: int | None = Field(None, examples=[255])


class OptimConfig(_Frozen):
    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    # None: 0.9 for sgd (resolved); adam/adamw take none (its example is shown with optim.name=sgd)
    momentum: float | None = Field(None, ge=0, examples=[0.9], json_schema_extra={"example_with": ["optim.name=sgd"]})
    schedule: Literal["poly", "cosine", "none"] = "poly"
    power: float | None = Field(None, gt=0, examples=[0.9])  # None: 0.9 for poly (resolved); other schedules take none


class TrainConfig(_Frozen):
    epochs: int | None = Field(5, ge=1, le=100_000)
    iters: int | None = Field(None, ge=1, le=100_000_000)
    amp: Literal[tuple(PRECISIONS)] = "fp32"  # bench.precision's names; fp32: no autocast
    channels_last: bool = False  # NHWC activations and weights (faster convolutions on CPU and GPU)
    compile: bool = False  # torch.compile the training forward
    seed: int = Field(0, ge=0, le=MAX_SEED)
    eval_every: int = Field(1, ge=1, le=100_000)
    checkpoint_every: int = Field(1, ge=1, le=100_000)
    grad_clip: float | None = Field(None, gt=0, examples=[1.0])
    device: Literal["cpu", "cuda", "auto"] = "auto"
    # batch norm over the global batch when a cell trains on several devices (launch.tasks_per_node,
    # launch.nodes); with one device it changes nothing. false: each device normalises its own share.
    sync_bn: bool = True

    _amp_alias = field_validator("amp", mode="before")(canonical)  # `none`, the first spelling, is fp32


class ProfileConfig(_Frozen):
    # None: 3 x data.size
    input: tuple[Annotated[int, Field(ge=1, le=64)], Side, Side] | None = Field(None, examples=[(3, 512, 512)])
    batch: int = Field(1, ge=1, le=4096)
    latency: bool = True
    threads: int | None = Field(None, ge=1, le=1024)
    # the theoretical receptive field at profile.input and the trained network's effective field
    # over 16 validation images (bench.profile.receptive), recorded with the profile
    receptive: bool = True


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


# Mappings whose keys belong to a registered builder rather than to the config schema: any
# `<section>.<name>` is accepted here, and checked against the builder when the config resolves.
OPEN_SECTIONS = ("model.context_options",)


def is_config_key(key: str, keys: list[str] | None = None) -> bool:
    """A dotted key a config may set: a schema key, or one name under an open section
    (`model.context_options.growth`)."""
    if key in (keys if keys is not None else config_keys()):
        return True
    section, _, name = key.rpartition(".")
    return section in OPEN_SECTIONS and name.isidentifier()


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
    """'model.rates=[3,6,9]' -> ('model.rates', [3, 6, 9]); the value is parsed as YAML (bounded:
    `load_yaml_text`)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise UserError(f"--set {clip(item)!r}: expected key=value, e.g. --set model.rates=[6,12,18]")
    value = load_yaml_text(raw, f"--set {clip(key.strip())}") if raw.strip() else None
    return key.strip(), value


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any], *, source: str = "--set") -> dict[str, Any]:
    """Set dotted keys in a nested dict (a copy); a key that is no config field is an error."""
    keys = config_keys()
    out = _deep_copy(data)
    for key, value in overrides.items():
        if not is_config_key(key, keys):
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
        raise UserError(explain(e, model=RunConfig, source=source, keys=config_keys())) from None


# What a config or sweep file may hold: a real one is a few kB with a few hundred nodes. The bounds
# stop a hostile file (a YAML alias bomb: 1 kB expanding to billions of nodes) before it costs memory.
MAX_TEXT_BYTES = 1 << 20
MAX_YAML_NODES = 100_000
MAX_YAML_DEPTH = 64


def read_text_file(path: str | Path, what: str, *, limit: int = MAX_TEXT_BYTES) -> str:
    """The UTF-8 text of a small input file; a folder, a missing file, a file too large, binary or
    not UTF-8 is a UserError naming the file and the fix."""
    p = Path(path)
    if p.is_dir():
        raise UserError(f"{p}: is a folder, not a {what} file; give the path of the {what} file itself")
    if not p.is_file():
        raise UserError(f"{p}: {what} file not found" + (" (it is not a regular file)" if p.exists() else ""))
    try:
        with open(p, "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise UserError(f"{p}: the {what} file cannot be read ({e.strerror or e})") from None
    if len(data) > limit:
        raise UserError(f"{p}: larger than {limit // 1024} KiB; a {what} file is a few kB: is it the right file?")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in data:
        kind = "UTF-16 text" if data.startswith((b"\xff\xfe", b"\xfe\xff")) else "binary (it holds NUL bytes)"
        raise UserError(f"{p}: the {what} file is {kind}, not UTF-8 text; save it as UTF-8")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise UserError(
            f"{p}: the {what} file is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); save it as UTF-8"
        ) from None


def _check_unique_keys(node: yaml.MappingNode, source: str) -> None:
    """Refuse a mapping that names one key twice (PyYAML keeps the last silently, so a file that
    sets model.arch twice ran the second without a word)."""
    seen: dict[str, int] = {}
    for k, _ in node.value:
        if isinstance(k, yaml.ScalarNode) and k.tag != "tag:yaml.org,2002:merge":
            if k.value in seen:
                raise UserError(
                    f"{source}: key {clip(repr(k.value))} appears twice in one mapping (lines {seen[k.value] + 1} and "
                    f"{k.start_mark.line + 1}); a YAML file keeps only the last, so remove the one you do not mean"
                )
            seen[k.value] = k.start_mark.line


def _check_yaml_graph(root: yaml.Node, source: str) -> None:
    """Refuse a composed YAML document whose aliases expand past MAX_YAML_NODES nodes, that nests
    deeper than MAX_YAML_DEPTH, or that refers to itself; sizes are counted once per shared node."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        if done:
            on_path.discard(key)
            size[key] = min(1 + sum(size[id(c)] for c in children), MAX_YAML_NODES + 1)
            depth[key] = 1 + max((depth[id(c)] for c in children), default=0)
            if size[key] > MAX_YAML_NODES:
                raise UserError(
                    f"{source}: the YAML expands to more than {MAX_YAML_NODES} values (through its aliases, "
                    "'*name'); a sweep or config needs a few hundred. Refused before expanding it"
                )
            if depth[key] > MAX_YAML_DEPTH:
                raise UserError(f"{source}: the YAML nests deeper than {MAX_YAML_DEPTH} levels; configs nest 3 deep")
            continue
        if key in size:
            continue
        if isinstance(node, yaml.MappingNode):
            _check_unique_keys(node, source)
        if key in on_path:
            raise UserError(f"{source}: the YAML refers to itself (an alias inside its own anchor); remove the loop")
        on_path.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in size)


def load_yaml_text(text: str, source: str) -> Any:
    """yaml.safe_load with bounds: the document is composed, its expanded size and depth checked
    (`_check_yaml_graph`), and only then built into Python objects."""
    if len(text) > MAX_TEXT_BYTES:
        raise UserError(f"{source}: {len(text)} characters of YAML; at most {MAX_TEXT_BYTES} are read")
    loader = None
    try:
        loader = yaml.SafeLoader(text)  # its reader refuses control characters here already
        node = loader.get_single_node()
        if node is None:
            return None
        _check_yaml_graph(node, source)
        return loader.construct_document(node)
    except UserError:
        raise
    except yaml.YAMLError as e:
        raise UserError(f"{source}: not valid YAML ({clip(e, 600)})") from None
    except RecursionError:
        raise UserError(f"{source}: the YAML nests deeper than {MAX_YAML_DEPTH} levels; configs nest 3 deep") from None
    except ValueError as e:  # e.g. an integer of more digits than Python converts
        raise UserError(f"{source}: a value cannot be read ({clip(e)})") from None
    finally:
        if loader is not None:
            loader.dispose()


def read_yaml_mapping(path: str | Path, what: str) -> dict[str, Any]:
    """A YAML file that must hold a mapping; every problem is a UserError naming the file."""
    p = Path(path)
    loaded = load_yaml_text(read_text_file(p, what), str(p)) or {}
    if not isinstance(loaded, dict):
        raise UserError(f"{p}: expected a mapping at the top of the {what} file, got {type(loaded).__name__}")
    bad = [k for k in _all_keys(loaded) if not isinstance(k, str)]
    if bad:
        raise UserError(f"{p}: key {clip(repr(bad[0]))} is not text; every key of a {what} file is a name")
    return loaded


def _all_keys(d: dict[Any, Any]) -> list[Any]:
    out: list[Any] = []
    for k, v in d.items():
        out.append(k)
        if isinstance(v, dict):
            out += _all_keys(v)
    return out


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


# How a table cell holds a list (rates, a crop size): its items joined by this, '3,6,9,12'. The
# flattener writes it, naming shows it, the results table reads it back (`list_items`).
LIST_SEP = ","


def list_items(text: str) -> list[str]:
    """The items of a list as a table cell holds it ('3,6,9,12' -> ['3', '6', '9', '12'])."""
    return [p.strip() for p in text.split(LIST_SEP)]


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
            out[key] = LIST_SEP.join(str(x) for x in v)
        else:
            out[key] = v
    return out
