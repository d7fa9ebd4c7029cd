"""Run identity: the resolved config, its hash (run_id), and how two configs differ.

`resolve(cfg)` fills everything a config leaves to someone else, without touching any data:
the architecture's own defaults for unset model knobs, the dataset's class count and ignore
label, the dataset's own defaults (`void_as_class`, `classes`), the loss's and optimiser's
implied values (weighted_ce's median-frequency weights, SGD's momentum, poly's power). It drops
what is ignored (`rates` of a context without atrous branches, `momentum` of Adam, `power` of a
non-poly schedule, `epochs` when `iters` is set). Two spellings of one network and protocol
resolve to one config, so they hash to one `run_id`. Resolution is idempotent:
resolve(resolve(c)) == resolve(c), so the config.yaml a run writes hashes to its own folder.

`run_id` leaves out what does not change the experiment (train.device: where it runs, like the
launcher's settings; train.eval_every and train.checkpoint_every: how often it is observed);
`config_id` also leaves out the seed (one configuration, many seeds).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
from typing import Any

import bench.losses  # noqa: F401  (registers the losses)
import bench.models  # noqa: F401  (registers the zoo)
import bench.optim  # noqa: F401  (registers the optimisers and schedules)
from bench.config import RunConfig, config_keys, flatten, validate
from bench.data import dataset_facts
from bench.errors import UserError
from bench.models.blocks import check_rates
from bench.registry import architectures, contexts, datasets, losses, optimizers, schedulers

__all__ = [
    "NOT_IDENTITY",
    "config_diff",
    "config_id",
    "config_from_row",
    "identity_of_dict",
    "resolve",
    "run_id",
]

# What does not change the experiment: where it runs (recorded in the result's environment) and
# how often it is evaluated or checkpointed (neither touches the weights: bit-equal training for
# any eval_every/checkpoint_every, tested), so a grid can switch learning curves on and still
# match its baseline.
NOT_IDENTITY = ("train.device", "train.eval_every", "train.checkpoint_every")
# Keys added after identities were first written: left out of the hash while at their default, so
# every run_id written before they existed stays the run's id (a key at another value hashes as usual).
ADDED_LATER = {("train", "channels_last"): False, ("train", "compile"): False, ("train", "sync_bn"): True}
_EMPTY = inspect.Parameter.empty


def _registries():  # type: ignore[no-untyped-def]

    return architectures, contexts, datasets, losses


def _optim_registries():  # type: ignore[no-untyped-def]

    return optimizers, schedulers


def _applied(knobs: dict[str, Any], key: str, given: Any) -> Any:
    """A keyword's value as a builder takes it: its own default where none is given, and None
    where the builder declares it with no default of its own (it does not apply: adam's momentum,
    cosine's power)."""
    default = knobs.get(key, None)
    if default is None or default is _EMPTY:
        return None
    return default if given is None else given


def resolve(cfg: RunConfig) -> RunConfig:
    """The canonical form of `cfg` (see the module docstring). Raises UserError for a knob the
    architecture, context, dataset or loss does not take, or a class count the data contradicts."""
    architectures, contexts, datasets, losses = _registries()
    optimizers, schedulers = _optim_registries()

    # data: the dataset's own defaults for the keys it takes; keys it does not take stay unset
    dentry = datasets.get(cfg.data.name)
    dupd: dict[str, Any] = {}
    for key in ("void_as_class", "classes", "count", "root"):
        given = getattr(cfg.data, key)
        if key in dentry.knobs:
            default = dentry.knobs[key]
            if given is None and default is not _EMPTY and default is not None:
                dupd[key] = default
        elif given is not None:
            raise UserError(
                f"data.{key}={given!r}: dataset '{cfg.data.name}' has no '{key}'; "
                f"its keys are {', '.join(k for k in dentry.knobs if k not in ('split', 'size'))}"
            )
    data = cfg.data.model_copy(update=dupd)
    num_classes, ignore = dataset_facts(data)

    # model: the architecture's defaults, the data's class count, ignored knobs dropped
    m = cfg.model
    architectures.check_kwargs(m.arch, m.knobs())
    knobs = architectures.get(m.arch).knobs
    mupd: dict[str, Any] = {}
    for key in type(m).model_fields:
        if key in ("arch", "num_classes") or getattr(m, key) is not None or key not in knobs:
            continue
        default = knobs[key]
        if default is not _EMPTY and default is not None:
            mupd[key] = tuple(default) if isinstance(default, list | tuple) else default
    if m.num_classes is not None and m.num_classes != num_classes:
        raise UserError(
            f"model.num_classes={m.num_classes}: dataset '{cfg.data.name}' has {num_classes} classes "
            "(drop model.num_classes to take it from the data)"
        )
    if "num_classes" in knobs:
        mupd["num_classes"] = num_classes
    model = m.model_copy(update=mupd)
    if model.context is not None:
        centry = contexts.get(model.context)
        if not centry.meta.get("uses_rates", True):  # ppm, none: rates validated, never used
            check_rates(model.rates or (1,))
            upd: dict[str, Any] = {"rates": None}
            if model.rates2 is not None:
                check_rates(model.rates2, knob="rates2")
                upd["rates2"] = None
            model = model.model_copy(update=upd)
        if "image_pool" in knobs:
            if "image_pool" in centry.knobs:
                if model.image_pool is None:
                    model = model.model_copy(update={"image_pool": centry.knobs["image_pool"]})
            elif model.image_pool is not None:
                raise UserError(
                    f"model.image_pool={model.image_pool}: context '{model.context}' has no image-pooling "
                    "branch; drop model.image_pool"
                )

    # loss: the data's ignore label, weighted_ce's implied weights, weights only where taken
    lentry = losses.get(cfg.loss.name)
    lupd: dict[str, Any] = {}
    if cfg.loss.ignore_index is None:
        lupd["ignore_index"] = ignore
    if cfg.loss.name == "weighted_ce" and cfg.loss.class_weights == "none":
        lupd["class_weights"] = "median_freq"
    if cfg.loss.class_weights != "none" and "weight" not in lentry.knobs:
        raise UserError(
            f"loss.class_weights={cfg.loss.class_weights!r}: loss '{cfg.loss.name}' takes no class weights; "
            f"losses that do: {', '.join(n for n in losses.names() if 'weight' in losses.get(n).knobs)}"
        )
    if isinstance(cfg.loss.class_weights, tuple) and len(cfg.loss.class_weights) != num_classes:
        raise UserError(
            f"loss.class_weights: {len(cfg.loss.class_weights)} weights given, dataset '{cfg.data.name}' has "
            f"{num_classes} classes; give one weight per class"
        )
    loss = cfg.loss.model_copy(update=lupd)

    # optimiser and schedule: what each takes
    o = cfg.optim
    optim = o.model_copy(
        update={
            "momentum": _applied(optimizers.get(o.name).knobs, "momentum", o.momentum),
            "power": _applied(schedulers.get(o.schedule).knobs, "power", o.power),
        }
    )
    train = cfg.train
    if train.iters is not None and train.epochs is not None:
        train = train.model_copy(update={"epochs": None})
    if train.iters is None and train.epochs is None:
        raise UserError("train.epochs and train.iters are both unset; give one, e.g. train.epochs=5")
    profile = cfg.profile
    if profile.input is None:
        profile = profile.model_copy(update={"input": (3, *data.size)})
    out = cfg.model_copy(
        update={"model": model, "data": data, "loss": loss, "optim": optim, "train": train, "profile": profile}
    )
    # model_copy skips validation: round-trip once so the resolved config is a valid RunConfig
    return validate(json.loads(out.model_dump_json()), source="resolved config")


def _canonical(cfg: RunConfig, drop: tuple[str, ...]) -> str:
    d = json.loads(cfg.model_dump_json())
    for (section, key), default in ADDED_LATER.items():
        if d.get(section, {}).get(key, default) == default:
            d.get(section, {}).pop(key, None)
    for key in drop:
        *path, name = key.split(".")
        node = d
        for part in path:
            node = node.get(part, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(name, None)
    return json.dumps(d, sort_keys=True, separators=(",", ":"))


def run_id(cfg: RunConfig, *, resolved: bool = False) -> str:
    """Short hash of the canonical JSON of the resolved config, without where it runs."""
    r = cfg if resolved else resolve(cfg)
    return hashlib.sha256(_canonical(r, NOT_IDENTITY).encode()).hexdigest()[:12]


def config_id(cfg: RunConfig, *, resolved: bool = False, ignore: tuple[str, ...] = ()) -> str:
    """The configuration a run belongs to: its identity without the seed (seeds pool under it),
    and without the `ignore`d keys (to compare, say, a shorter schedule against the baseline)."""
    r = cfg if resolved else resolve(cfg)
    return hashlib.sha256(_canonical(r, (*NOT_IDENTITY, "train.seed", *ignore)).encode()).hexdigest()[:12]


def identity_of_dict(data: dict[str, Any], *, source: str) -> tuple[str, str, RunConfig]:
    """(run_id, config_id, resolved config) of a config mapping (a config.yaml, a result's config)."""
    r = resolve(validate(data, source=source))
    return run_id(r, resolved=True), config_id(r, resolved=True), r


def config_diff(a: RunConfig, b: RunConfig) -> list[str]:
    """'key: A -> B' for every resolved key whose value differs (identity keys only)."""
    fa, fb = flatten(json.loads(a.model_dump_json())), flatten(json.loads(b.model_dump_json()))
    return [
        f"{k}: {json.dumps(fa.get(k))} -> {json.dumps(fb.get(k))}"
        for k in sorted(set(fa) | set(fb))
        if fa.get(k) != fb.get(k) and k not in NOT_IDENTITY
    ]


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and v in ("", "nan", "None"))


def config_from_row(row: Any) -> dict[str, Any]:
    """A nested config mapping from a collected table row (dotted columns, lists as '3,6,9,12')."""
    out: dict[str, Any] = {}
    for key in config_keys():
        if key not in row or _missing(row[key]):
            continue
        v = row[key]
        if hasattr(v, "item"):  # numpy scalars from pandas
            v = v.item()
        if isinstance(v, str) and _is_tuple_field(key):
            parts = [p.strip() for p in v.split(",")]
            v = parts
            if key != "loss.class_weights" or v[0] not in ("none", "median_freq", "inverse_freq"):
                v = [_number(p) for p in parts]
            else:
                v = v[0]
        elif isinstance(v, int | float) and _is_tuple_field(key):
            v = [v]
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = v
    return out


def _number(s: str) -> int | float:
    try:
        return int(s)
    except ValueError:
        return float(s)


def _is_tuple_field(key: str) -> bool:
    from pydantic import BaseModel

    node: Any = RunConfig
    for part in key.split("."):
        info = node.model_fields[part]
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            node = ann
            continue
        return "tuple" in str(ann)
    return False
