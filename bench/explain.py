"""Validation errors said to a person: one message for all of a pydantic ValidationError's
problems, naming each key, what was given, what it takes and the form to write it in (for run
configs and sweep files alike; the caller names the pydantic class)."""

from __future__ import annotations

import collections.abc
import types
import typing
from typing import Any

from pydantic import ValidationError

from bench.errors import clip, did_you_mean

__all__ = ["FIELDS_HINT", "accepted_form", "annotation", "describe_type", "explain"]


def explain(
    e: ValidationError, *, model: Any, source: str, keys: list[str], allowed_at: Any = None, noun: str = "config"
) -> str:
    """One message for all of a ValidationError's problems with a `model` (a pydantic class: the
    run config, a sweep file). `allowed_at(key)` lists the keys allowed beside an unknown one
    (default: the config keys of its section)."""
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
        elif err["type"] == "missing":  # `given` is the enclosing mapping, not a value of the key
            ann = annotation(model, key)
            what, example = describe_type(ann) if ann is not None else ("value", "...")
            lines.append(f"'{key}' is missing ({err['msg']}): it takes {what}; add a line '{key}: {example}'")
        else:
            lines.append(accepted_form(key, given, err["msg"], model=model, in_file=noun != "config"))
    hint = "" if allowed_at is not None else f" ({FIELDS_HINT})"
    return f"{source}: " + "; ".join(lines) + hint


FIELDS_HINT = "'aspp-bench config --fields' lists every key with its type, default and allowed values"


def annotation(model: Any, key: str) -> Any:
    """The declared type of a dotted key of a pydantic class (None for no such key)."""
    for part in key.split("."):
        fields = getattr(model, "model_fields", None)
        if not fields or part not in fields:
            return None
        model = fields[part].annotation
    return model if model is not None else typing.Any


def describe_type(ann: Any) -> tuple[str, str]:
    """(what a value of this type is, an example of it as written after --set KEY=)."""
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
    if origin in (list, collections.abc.Sequence):  # list[X], Sequence[X] read as tuple[X, ...]
        origin, args = tuple, (*args, Ellipsis)
    if origin is dict:
        return "a mapping", "{...}"
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


def accepted_form(key: str, given: Any, detail: str, *, model: Any, in_file: bool = False) -> str:
    """'model.rates='6,12': expects a list of integers; write model.rates=[6, 12]' (never pydantic's
    text alone): the key, what was given, what it takes and the form to write it in (a YAML line
    for a key of a sweep file, `in_file`)."""
    ann = annotation(model, key)
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
    if in_file:  # a sweep file's own key: there is no --set for it
        return f"{key}={clip(repr(given))}: expects {what} ({detail.lower()}); write it as '{key}: {example}'"
    form = f"'{key}={example}'" if " " in example or "[" in example else f"{key}={example}"
    return f"{key}={clip(repr(given))}: expects {what} ({detail.lower()}); write it as --set {form}"
