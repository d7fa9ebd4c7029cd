"""Run identity: the resolved config, its hash (run_id), and how two configs differ.

`resolve(cfg)` fills everything a config leaves to someone else, without touching any data:
the architecture's own defaults for unset model knobs, the dataset's class count and ignore
label, the dataset's own defaults (`void_as_class`, `classes`), the loss's and optimiser's
implied values (weighted_ce's median-frequency weights, SGD's momentum, poly's power). It drops
what is ignored (`rates` of a context without atrous branches, `momentum` of Adam, `power` of a
non-poly schedule, `epochs` when `iters` is set) and the context options at the variant's own
default (`model.context_options`, kept only where they differ), and an architecture the zoo
declares equal to another at some knob values is named as that other (aspp_unet with context
none is atrous_unet). Two spellings of one network and protocol
resolve to one config, so they hash to one `run_id`. Resolution is idempotent:
resolve(resolve(c)) == resolve(c), so the config.yaml a run writes hashes to its own folder.

`run_id` leaves out what does not change the experiment (train.device and data.root: where it runs
and where its data lies, like the launcher's settings; train.eval_every and train.checkpoint_every:
how often it is observed); the data's content is in it, as data.fingerprint (bench.data.fingerprint:
the files the run reads, by path below the root and size), filled here where the data is readable;
`config_id` also leaves out the seed (one configuration, many seeds).
"""

from __future__ import annotations

import hashlib
import inspect
import json
from typing import Any

import bench.losses  # noqa: F401  (registers the losses)
import bench.models  # noqa: F401  (registers the zoo)
import bench.optim  # noqa: F401  (registers the optimisers and schedules)
from bench.configure.config import (
    DataConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    TrainConfig,
    flatten,
    validate,
)
from bench.data import dataset_facts, fingerprint
from bench.errors import KnobError, UserError, clip
from bench.models.blocks import check_rates
from bench.models.context import check_context_options, context_option_defaults
from bench.registry import architectures, contexts, datasets, losses, optimizers, schedulers

__all__ = [
    "NOT_IDENTITY",
    "config_diff",
    "config_id",
    "earlier_run_ids",
    "identity_of_dict",
    "resolve",
    "run_id",
]

# What does not change the experiment: where it runs (recorded in the result's environment) and
# how often it is evaluated or checkpointed (neither touches the weights: bit-equal training for
# any eval_every/checkpoint_every, tested), so a grid can switch learning curves on and still
# match its baseline.
NOT_IDENTITY = ("train.device", "data.root", "train.eval_every", "train.checkpoint_every")
# Keys added after identities were first written: left out of the hash while at their default, so
# every run_id written before they existed stays the run's id (a key at another value hashes as usual).
ADDED_LATER = {
    ("train", "channels_last"): False,
    ("train", "compile"): False,
    ("train", "sync_bn"): True,
    ("model", "context_options"): None,
    ("profile", "receptive"): True,
    ("data", "fingerprint"): None,
}
# Values renamed after identities were first written: hashed under their first spelling, so a
# run_id written before the rename stays the run's id (train.amp fp32 was spelled `none`).
HASHED_AS = {("train", "amp"): {"fp32": "none"}}
# Keys left out of identity after identities were first written while unset: hashed as null
# whatever they hold, so every run that never set one (the synthetic data's root) keeps its run_id.
HASHED_AS_NULL = ("data.root",)
_EMPTY = inspect.Parameter.empty


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
    data = _resolve_data(cfg.data)
    num_classes, ignore = dataset_facts(data)
    out = cfg.model_copy(
        update={
            "model": _one_name(
                _resolve_context(_resolve_model(cfg.model, num_classes, data.name)), num_classes, data.name
            ),
            "data": data,
            "loss": _resolve_loss(cfg.loss, num_classes, ignore, data.name),
            "optim": _resolve_optim(cfg.optim),
            "train": _resolve_train(cfg.train),
            "profile": cfg.profile
            if cfg.profile.input is not None
            else cfg.profile.model_copy(update={"input": (3, *data.size)}),
        }
    )
    # model_copy skips validation: round-trip once so the resolved config is a valid RunConfig
    return validate(json.loads(out.model_dump_json()), source="resolved config")


def _resolve_data(d: DataConfig) -> DataConfig:
    """The dataset's own defaults for the keys it takes; a key it does not take stays unset."""
    dentry = datasets.get(d.name)
    dupd: dict[str, Any] = {}
    for key in ("void_as_class", "classes", "count", "root"):
        given = getattr(d, key)
        if key in dentry.knobs:
            default = dentry.knobs[key]
            if given is None and default is not _EMPTY and default is not None:
                dupd[key] = default
        elif given is not None:
            raise UserError(
                f"data.{key}={given!r}: dataset '{d.name}' has no '{key}'; "
                f"its keys are {', '.join(k for k in dentry.knobs if k not in ('split', 'size'))}"
            )
    if d.fingerprint is None:
        dupd["fingerprint"] = fingerprint(d.model_copy(update=dupd))
    return d.model_copy(update=dupd)


def _resolve_model(m: ModelConfig, num_classes: int, dataset: str) -> ModelConfig:
    """The architecture's defaults for unset knobs and the data's class count."""
    architectures.check_kwargs(m.arch, m.knobs())
    knobs = architectures.get(m.arch).knobs
    mupd: dict[str, Any] = {}
    for key in type(m).model_fields:
        if key in ("arch", "num_classes", "context_options") or getattr(m, key) is not None or key not in knobs:
            continue
        default = knobs[key]
        if default is not _EMPTY and default is not None:
            mupd[key] = tuple(default) if isinstance(default, list | tuple) else default
    if m.num_classes is not None and m.num_classes != num_classes:
        raise UserError(
            f"model.num_classes={m.num_classes}: dataset '{dataset}' has {num_classes} classes "
            "(drop model.num_classes to take it from the data)"
        )
    if "num_classes" in knobs:
        mupd["num_classes"] = num_classes
    return m.model_copy(update=mupd)


def _resolve_context(model: ModelConfig) -> ModelConfig:
    """What the context takes: rates dropped where it has no atrous branch, its image-pooling
    default filled, and its own options (`model.context_options`) checked against the variant,
    those at the variant's default dropped (so they hash as if never written)."""
    if model.context is None:
        if model.context_options:
            raise UserError(
                f"model.context_options={clip(model.context_options)}: architecture '{model.arch}' has no "
                "context module; drop model.context_options"
            )
        return model
    centry = contexts.get(model.context)
    upd: dict[str, Any] = {}
    if not centry.meta.get("uses_rates", True):  # ppm, none: rates validated, never used
        check_rates(model.rates or (1,))
        upd["rates"] = None
        if model.rates2 is not None:
            check_rates(model.rates2, knob="rates2")
            upd["rates2"] = None
    if "image_pool" in architectures.get(model.arch).knobs:
        if "image_pool" in centry.knobs:
            if model.image_pool is None:
                upd["image_pool"] = centry.knobs["image_pool"]
        elif model.image_pool is not None:
            raise UserError(
                f"model.image_pool={model.image_pool}: context '{model.context}' has no image-pooling "
                "branch; drop model.image_pool"
            )
    defaults = context_option_defaults(model.context)
    try:
        given = check_context_options(model.context, model.context_options)
    except KnobError as e:
        raise e.keyed("model") from None
    options = {k: v for k, v in given.items() if _plain(v) != _plain(defaults[k])}
    upd["context_options"] = options or None
    return model.model_copy(update=upd)


def _one_name(model: ModelConfig, num_classes: int, dataset: str) -> ModelConfig:
    """One network, one name: where the zoo declares that an architecture at some knob values is
    another one (`equals`, e.g. aspp_unet with context none is atrous_unet), the resolved config
    names the other, so both spellings are one run. A knob set that the other does not take keeps
    them apart (it would be a different network)."""
    for target, when in architectures.get(model.arch).meta.get("equals", {}).items():
        if any(getattr(model, k) != v for k, v in when.items()):
            continue
        takes = architectures.get(target).knobs
        rest = {k: v for k, v in model.knobs().items() if k not in when}
        if all(k in takes for k in rest):
            return _resolve_model(ModelConfig(arch=target, **rest), num_classes, dataset)
    return model


def _plain(v: Any) -> Any:
    """A value as JSON holds it (tuples as lists), to compare a given option with a default."""
    return json.loads(json.dumps(v, default=str))


def _resolve_loss(loss: LossConfig, num_classes: int, ignore: int | None, dataset: str) -> LossConfig:
    """The data's ignore label, weighted_ce's implied weights, weights only where taken."""
    lentry = losses.get(loss.name)
    lupd: dict[str, Any] = {}
    if loss.ignore_index is None:
        lupd["ignore_index"] = ignore
    if loss.name == "weighted_ce" and loss.class_weights == "none":
        lupd["class_weights"] = "median_freq"
    if loss.class_weights != "none" and "weight" not in lentry.knobs:
        raise UserError(
            f"loss.class_weights={loss.class_weights!r}: loss '{loss.name}' takes no class weights; "
            f"losses that do: {', '.join(n for n in losses.names() if 'weight' in losses.get(n).knobs)}"
        )
    if isinstance(loss.class_weights, tuple) and len(loss.class_weights) != num_classes:
        raise UserError(
            f"loss.class_weights: {len(loss.class_weights)} weights given, dataset '{dataset}' has "
            f"{num_classes} classes; give one weight per class"
        )
    return loss.model_copy(update=lupd)


def _resolve_optim(o: OptimConfig) -> OptimConfig:
    """What the optimiser and the schedule take, with their builders' own defaults."""
    return o.model_copy(
        update={
            "momentum": _applied(optimizers.get(o.name).knobs, "momentum", o.momentum),
            "power": _applied(schedulers.get(o.schedule).knobs, "power", o.power),
        }
    )


def _resolve_train(train: TrainConfig) -> TrainConfig:
    """iters over epochs where both are set; one of them is needed."""
    if train.iters is not None and train.epochs is not None:
        train = train.model_copy(update={"epochs": None})
    if train.iters is None and train.epochs is None:
        raise UserError("train.epochs and train.iters are both unset; give one, e.g. train.epochs=5")
    return train


def _canonical(cfg: RunConfig, drop: tuple[str, ...], *, before_fingerprint: bool = False) -> str:
    d = json.loads(cfg.model_dump_json())
    if before_fingerprint:  # the rule before 2026-12-07: data.root hashed as given, no fingerprint
        d.get("data", {}).pop("fingerprint", None)
        drop = tuple(k for k in drop if k != "data.root")
    for (section, key), default in ADDED_LATER.items():
        if d.get(section, {}).get(key, default) == default:
            d.get(section, {}).pop(key, None)
    for (section, key), first in HASHED_AS.items():
        if key in d.get(section, {}):
            d[section][key] = first.get(d[section][key], d[section][key])
    for key in drop:
        *path, name = key.split(".")
        node = d
        for part in path:
            node = node.get(part, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict) and name in node:
            if key in HASHED_AS_NULL:
                node[name] = None
            else:
                node.pop(name)
    return json.dumps(d, sort_keys=True, separators=(",", ":"))


def run_id(cfg: RunConfig, *, resolved: bool = False) -> str:
    """Short hash of the canonical JSON of the resolved config, without where it runs."""
    r = cfg if resolved else resolve(cfg)
    return hashlib.sha256(_canonical(r, NOT_IDENTITY).encode()).hexdigest()[:12]


def earlier_run_ids(cfg: RunConfig, *, resolved: bool = False) -> tuple[str, ...]:
    """The run_ids this config had under earlier identity rules, where they differ from today's: a
    checkpoint written before data.fingerprint replaced data.root (2026-12-07) is bound to one, and
    is still this run's (resume and evaluate accept it)."""
    r = cfg if resolved else resolve(cfg)
    if r.data.root is None:
        return ()
    old = hashlib.sha256(_canonical(r, NOT_IDENTITY, before_fingerprint=True).encode()).hexdigest()[:12]
    return (old,) if old != run_id(r, resolved=True) else ()


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
