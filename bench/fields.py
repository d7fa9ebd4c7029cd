"""What a config key takes, said to a person: every key with its type, default and allowed values
(`aspp-bench config --fields`), and the one formatter of validation errors (run configs and
sweep files), which names the key, what was given, what it takes and the form to write."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from bench.config import RunConfig, config_keys, load_run_config
from bench.errors import UserError, clip, did_you_mean

__all__ = ["FIELDS_HINT", "accepted_form", "describe_type", "explain", "field_rows"]


def explain(e: ValidationError, *, source: str, keys: list[str], allowed_at: Any = None, noun: str = "config") -> str:
    """One message for all of a ValidationError's problems. `allowed_at(key)` lists the keys
    allowed beside an unknown one (default: the config keys of its section)."""
    lines = []
    for err in e.errors():
        key = ".".join(str(p) for p in err["loc"])
        given = err.get("input")
        if err["type"] == "extra_forbidden":
            if allowed_at is not None:
                allowed = allowed_at(key)
                lines.append(f"'{key}' is not a {noun} field{did_you_mean(key.rsplit('.', 1)[-1], allowed)}; "
                             f"allowed: {', '.join(allowed)}")  # fmt: skip
                continue
            section = key.rsplit(".", 1)[0] if "." in key else ""
            allowed = [k for k in keys if k.startswith(section)]
            lines.append(f"'{key}' is not a config field{did_you_mean(key, allowed)}")
        elif err["type"] == "value_error":
            lines.append(f"{key}: {err['msg'].removeprefix('Value error, ')}")
        else:
            lines.append(accepted_form(key, given, err["msg"]))
    hint = "" if allowed_at is not None else f" ({FIELDS_HINT})"
    return f"{source}: " + "; ".join(lines) + hint


FIELDS_HINT = "'aspp-bench config --fields' lists every key with its type, default and allowed values"


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
    return str(value)


def _set_form(sets: list[str]) -> str:
    return " ".join(f"'{s}'" if " " in s or "[" in s else s for s in sets)


def _accepted(sets: list[str]) -> bool:
    """Whether these --set overrides resolve to a run config."""
    from bench.identity import resolve  # identity reads fields' error texts: a module-level import is a circle

    try:
        resolve(load_run_config(None, sets))
    except (UserError, ValueError):
        return False
    return True


def _example_sets(key: str, example: str) -> list[str]:
    """The --set overrides that show `key=example` accepted: the field's own companions
    (`example_with`), else, for a knob the default architecture or dataset does not take, the
    first one that takes it."""
    import bench.registry as reg

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


def _annotation(key: str) -> Any:
    """The declared type of a dotted config key (None for no such key)."""
    import typing

    model: Any = RunConfig
    for part in key.split("."):
        fields = getattr(model, "model_fields", None)
        if not fields or part not in fields:
            return None
        model = fields[part].annotation
    return model if model is not None else typing.Any


def describe_type(ann: Any) -> tuple[str, str]:
    """(what a value of this type is, an example of it as written after --set KEY=)."""
    import types
    import typing

    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is typing.Annotated:  # a bounded number: Field(ge=..., le=...)
        marks = [c for m in args[1:] for c in getattr(m, "metadata", [m])]  # FieldInfo holds Ge/Le marks
        base, bounds = args[0], {k: getattr(c, k) for c in marks for k in ("ge", "gt", "le") if hasattr(c, k)}
        what, example = describe_type(base)
        if bounds.get("ge") == 1 or bounds.get("gt") == 0:
            what, example = "positive integer", "64"
        if "le" in bounds:
            what += f" (at most {bounds['le']})"
        return what, example
    if origin in (typing.Union, types.UnionType):
        parts = [describe_type(a) for a in args if a is not type(None)]
        text = " or ".join(p[0] for p in parts) + (" or null (the default)" if type(None) in args else "")
        return text, parts[0][1] if parts else "null"
    if origin is typing.Literal:
        return "one of " + ", ".join(str(a) for a in args), str(args[0])
    if origin is tuple:
        inner = [a for a in args if a is not Ellipsis]
        what, example = describe_type(inner[0]) if inner else ("value", "1")
        n = "a list of" if Ellipsis in args else f"a list of {len(args)}"
        what, _, limit = what.partition(" (")
        noun = {"integer": "integers", "number": "numbers", "positive integer": "positive integers"}.get(what, what)
        noun += f" ({limit}" if limit else ""
        if Ellipsis in args and what == "integer":
            return f"{n} {noun}", "[6, 12, 18]"
        return f"{n} {noun}", "[" + ", ".join([example] * (2 if Ellipsis in args else len(args))) + "]"
    if ann is bool:
        return "true or false", "true"
    if ann is int:
        return "integer", "4"
    if ann is float:
        return "number", "0.01"
    if ann is str:
        return "text", "name"
    name = getattr(ann, "__name__", str(ann))
    if name == "PositiveInt" or "gt=0" in str(ann):
        return "positive integer", "64"
    return name, "..."


def accepted_form(key: str, given: Any, detail: str) -> str:
    """'model.rates='6,12': expects a list of integers; write model.rates=[6, 12]' (never pydantic's
    text alone): the key, what was given, what it takes and the form to write it in."""
    ann = _annotation(key)
    if ann is None:
        return f"{key}={clip(repr(given))}: {detail}"
    what, example = describe_type(ann)
    if isinstance(given, str) and "," in given and "list" in what:  # a comma list meant as a YAML list
        items = [x.strip() for x in given.strip("()[] ").split(",") if x.strip()]
        example = "[" + ", ".join(items) + "]"
    if isinstance(given, str) and what.startswith("one of "):
        choices = what.removeprefix("one of ").split(" or ")[0].split(", ")
        close = did_you_mean(given, choices)
        example = close.split("'")[1] if "'" in close else example
    form = f"'{key}={example}'" if " " in example or "[" in example else f"{key}={example}"
    return f"{key}={clip(repr(given))}: expects {what} ({detail.lower()}); write it as --set {form}"


# Keys whose allowed values are a registry's names (the registry is the list, not this file).
_REGISTRY_KEYS = {"model.arch": "architectures", "model.backbone": "backbones", "model.context": "contexts",
                  "data.name": "datasets", "loss.name": "losses"}  # fmt: skip


def field_rows() -> list[dict[str, Any]]:
    """Every config key: its type (as `describe_type` words it), default, allowed values (a
    Literal's, or a registry's names) and an example of the form --set takes."""
    import json

    import bench.data  # noqa: F401  (registers the datasets)
    import bench.losses  # noqa: F401  (registers the losses)
    import bench.models  # noqa: F401  (registers the zoo)
    import bench.registry as reg

    defaults = json.loads(RunConfig().model_dump_json())
    rows = []
    for key in config_keys():
        node: Any = defaults
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        what, example = describe_type(_annotation(key))
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
    return rows
