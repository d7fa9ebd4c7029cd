"""What the suite takes, said to a person: every config key with its type, default, allowed values
and an example accepted as written (`aspp-bench config --fields`), and every registered name
with its knobs (`aspp-bench models`). It reads the whole zoo, so it sits above the registries and
identity; the validation-error formatter these texts share is bench.explain, below config."""

from __future__ import annotations

import inspect
import json
import typing
from typing import Any, Literal

import bench.data  # noqa: F401  (registers the datasets)
import bench.losses  # noqa: F401  (registers the losses)
import bench.models  # noqa: F401  (registers the zoo)
import bench.optim  # noqa: F401  (registers the optimisers and schedules)
from bench import registry as reg
from bench.configure.config import RunConfig, config_keys, load_run_config
from bench.configure.identity import resolve
from bench.errors import UserError
from bench.explain import annotation, describe_type
from bench.models.context import context_option_defaults, context_option_types

__all__ = ["context_option_rows", "field_rows", "registry_listing"]


def _field_info(key: str) -> Any:
    """The pydantic FieldInfo of a dotted config key (None for no such key)."""
    model: Any = RunConfig
    info = None
    for part in key.split("."):
        fields = getattr(model, "model_fields", None)
        if not fields or part not in fields:
            return None
        info = fields[part]
        model = info.annotation
    return info


def _as_set_value(value: Any) -> str:
    """A Python value as written after --set KEY= (YAML: lists in brackets, true/false)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_as_set_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_as_set_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def _set_form(sets: list[str]) -> str:
    return " ".join(f"'{s}'" if " " in s or "[" in s else s for s in sets)


def _accepted(sets: list[str]) -> bool:
    """Whether these --set overrides resolve to a run config."""
    try:
        resolve(load_run_config(None, sets))
    except (UserError, ValueError):
        return False
    return True


def _example_sets(key: str, example: str) -> list[str]:
    """The --set overrides that show `key=example` accepted: the field's own companions
    (`example_with`), else, for a knob the default architecture or dataset does not take, the
    first one that takes it."""
    info = _field_info(key)
    extra = getattr(info, "json_schema_extra", None) or {}
    sets = [*extra.get("example_with", []), f"{key}={example}"]
    if _accepted(sets):
        return sets
    section, _, knob = key.partition(".")
    owners = {"model": ("architectures", "model.arch"), "data": ("datasets", "data.name")}.get(section)
    if owners is not None:
        registry = getattr(reg, owners[0])
        for name in registry.names():
            if knob in registry.get(name).knobs and _accepted([f"{owners[1]}={name}", *sets]):
                return [f"{owners[1]}={name}", *sets]
    return sets


# Keys whose allowed values are a registry's names (the registry is the list, not this file).
_REGISTRY_KEYS = {"model.arch": "architectures", "model.backbone": "backbones", "model.context": "contexts",
                  "data.name": "datasets", "loss.name": "losses"}  # fmt: skip


def field_rows() -> list[dict[str, Any]]:
    """Every config key: its type (as `describe_type` words it), default, allowed values (a
    Literal's, or a registry's names) and an example of the form --set takes."""
    defaults = json.loads(RunConfig().model_dump_json())
    rows = []
    for key in config_keys():
        node: Any = defaults
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        what, example = describe_type(annotation(RunConfig, key))
        allowed = ""
        if key in _REGISTRY_KEYS:
            names = getattr(reg, _REGISTRY_KEYS[key]).names()
            allowed = ", ".join(names)
            example = str(node) if node is not None else names[0]
        elif what.startswith("one of "):
            allowed = what.removeprefix("one of ").split(" or ")[0]
        info = _field_info(key)
        if info is not None and info.examples:
            example = _as_set_value(info.examples[0])
        form = _set_form(_example_sets(key, example))
        rows.append({"key": key, "type": what, "default": node, "allowed": allowed, "example": form})
        if key == "model.context_options":
            rows += context_option_rows()
    return rows


def context_option_rows() -> list[dict[str, Any]]:
    """One row per context variant's own knob (`model.context_options.<knob>`): its type as the
    builder declares it (in `describe_type`'s words), the variant's default and an example off
    that default which the suite accepts (tested to resolve and build)."""
    rows = []
    for name in reg.contexts.names():
        types_ = context_option_types(name)
        for knob, default in context_option_defaults(name).items():
            what = describe_type(types_[knob])[0].replace(" (the default)", "")
            choices = (
                [str(c) for c in typing.get_args(types_[knob])] if typing.get_origin(types_[knob]) is Literal else []
            )
            sets = [f"model.context={name}", f"model.context_options.{knob}={_option_example(what, default, choices)}"]
            rows.append({"key": f"model.context_options.{knob}", "type": f"{what} (context {name})",
                         "default": list(default) if isinstance(default, tuple) else default,
                         "allowed": ", ".join(choices), "example": _set_form(sets)})  # fmt: skip
    return rows


def _option_example(what: str, default: Any, choices: list[str]) -> str:
    """A value other than the default, of the kind `what` names, as --set writes it."""
    if choices:
        return next((c for c in choices if c != default), choices[0])
    if what.startswith("a list of"):  # four levels, as the default four rates
        return "[1, 2, 4, 8]" if tuple(default or ()) != (1, 2, 4, 8) else "[1, 2, 3, 6]"
    if what.startswith("number"):
        return "0.1" if default != 0.1 else "0.2"
    if what.startswith(("integer", "positive integer")):
        return "8" if default != 8 else "16"
    if what.startswith("true or false"):
        return "false" if default else "true"
    return str(default)


def registry_listing(pattern: str = "*") -> list[dict[str, Any]]:
    """Every registered name (backbones, contexts, architectures, datasets, losses, optimisers,
    schedules) matching a shell-style pattern: kind, name, description, paper, knobs and their
    defaults."""
    rows: list[dict[str, Any]] = []
    kinds = (("backbone", reg.backbones), ("context", reg.contexts), ("architecture", reg.architectures),
             ("dataset", reg.datasets), ("loss", reg.losses), ("optimizer", reg.optimizers),
             ("schedule", reg.schedulers))  # fmt: skip
    for kind, registry in kinds:
        for name in registry.names(pattern):
            e = registry.get(name)
            knobs = {k: (None if d is inspect.Parameter.empty else d) for k, d in e.knobs.items()}
            rows.append({"kind": kind, "name": e.name, "description": e.description, "paper": e.paper, "knobs": knobs})
    return rows
