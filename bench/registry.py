"""One generic name -> builder registry, and the suite's registries.

Sweeps, result tables and baselines refer to models by name, so names are stable,
unique (a duplicate raises at import time) and builders take keyword-only arguments:
an unknown keyword is an error that lists the valid ones instead of being swallowed.
"""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from bench.errors import UserError, did_you_mean

__all__ = [
    "Entry",
    "Registry",
    "architectures",
    "backbones",
    "contexts",
    "datasets",
    "losses",
    "optimizers",
    "schedulers",
]

_EMPTY = inspect.Parameter.empty


@dataclass(frozen=True)
class Entry:
    """A registered builder and what `aspp-bench models` says about it."""

    name: str
    builder: Callable[..., Any]
    description: str
    paper: str
    meta: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def knobs(self) -> dict[str, Any]:
        """Keyword arguments the builder accepts, with their defaults (`_EMPTY` if required)."""
        return {
            p.name: p.default
            for p in inspect.signature(self.builder).parameters.values()
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        }


class Registry:
    """Name -> builder. `register` decorates, `build` validates keywords then calls."""

    def __init__(self, kind: str, *, plural: str | None = None, key: str | None = None) -> None:
        self.kind = kind
        self.plural = plural or f"{kind}s"
        self.key = key  # the config key that names an entry (model.arch, loss.name, ...)
        self._entries: dict[str, Entry] = {}

    def register(
        self, name: str, *, paper: str = "", **meta: Any
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Register a builder under `name`; its docstring's first line is its description."""

        def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._entries:
                raise KeyError(f"{self.kind} '{name}' is already registered")
            doc = inspect.getdoc(fn) or ""
            description = doc.splitlines()[0] if doc else ""
            self._entries[name] = Entry(name, fn, description, paper, MappingProxyType(dict(meta)))
            return fn

        return deco

    def get(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            where = f"{self.key}: " if self.key else ""
            listing = "; 'aspp-bench models' describes each (paper, knobs)" if self.key else ""
            raise UserError(
                f"{where}unknown {self.kind} '{name}'{did_you_mean(name, self._entries)}; "
                f"registered {self.plural}: {', '.join(self.names())}{listing}"
            ) from None

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching a shell-style pattern, sorted."""
        return sorted(n for n in self._entries if fnmatch.fnmatchcase(n, pattern))

    def check_kwargs(self, name: str, kwargs: Mapping[str, Any]) -> None:
        """Raise UserError for keywords the builder does not take or required ones missing."""
        entry = self.get(name)
        knobs = entry.knobs
        for key in kwargs:
            if key not in knobs:
                hint = self._hint(name, key)
                where = f"{self.key.rsplit('.', 1)[0]}.{key}: " if self.key else ""
                raise UserError(
                    f"{where}{self.kind} '{name}' has no knob '{key}'{did_you_mean(key, knobs)}"
                    f"{hint}; its knobs are: {', '.join(knobs) or '(none)'}"
                )
        missing = [k for k, d in knobs.items() if d is _EMPTY and k not in kwargs]
        if missing:
            raise UserError(f"{self.kind} '{name}' needs {', '.join(missing)}")

    def _hint(self, name: str, key: str) -> str:
        with_knob = [n for n, e in self._entries.items() if key in e.knobs]
        if not with_knob:
            return ""
        return f"; {self.plural} with '{key}': {', '.join(sorted(with_knob))}, or drop '{key}'"

    def build(self, name: str, /, **kwargs: Any) -> Any:
        self.check_kwargs(name, kwargs)
        return self._entries[name].builder(**kwargs)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries[n] for n in self.names())

    def __len__(self) -> int:
        return len(self._entries)


backbones = Registry("backbone", key="model.backbone")
contexts = Registry("context", key="model.context")
architectures = Registry("architecture", key="model.arch")
datasets = Registry("dataset", key="data.name")
losses = Registry("loss", plural="losses", key="loss.name")
optimizers = Registry("optimizer", key="optim.name")
schedulers = Registry("schedule", key="optim.schedule")
