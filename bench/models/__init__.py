"""The model zoo: importing this package registers every backbone, context and architecture,
then the variants of the modules named in ASPP_BENCH_PLUGINS (see `load_plugins`)."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import traceback
from pathlib import Path
from typing import Any

from torch import nn

from bench.errors import KnobError, UserError
from bench.models import backbones as _backbones  # noqa: F401  (registers)
from bench.models import context as _context  # noqa: F401
from bench.models import deeplab as _deeplab  # noqa: F401
from bench.models import dual_aspp as _dual_aspp  # noqa: F401
from bench.models import icnet as _icnet  # noqa: F401
from bench.models import resnet_heads as _resnet_heads  # noqa: F401
from bench.models import torchvision_ref as _torchvision_ref  # noqa: F401
from bench.models import unet as _unet  # noqa: F401
from bench.registry import architectures

__all__ = ["PLUGINS_ENV", "build_model", "load_plugins", "model_parts", "plugins"]


def build_model(arch: str, /, **knobs: Any) -> nn.Module:
    """Build a registered architecture; knobs left as None take the architecture's default.

    Errors name the config key (`model.rates=[]: ...`), so that a message printed for a
    sweep cell or a --set flag points at what to change.
    """
    knobs = {k: v for k, v in knobs.items() if v is not None}
    entry = architectures.get(arch)
    supported = entry.meta.get("backbones")
    if supported is not None and "backbone" in knobs and knobs["backbone"] not in supported:
        raise UserError(
            f"model.backbone={knobs['backbone']!r}: architecture '{arch}' supports the backbones {', '.join(supported)}"
        )
    try:
        return architectures.build(arch, **knobs)
    except KnobError as e:  # a knob of this architecture: named by its config key
        if e.knob.split(".", 1)[0] in entry.knobs:  # growth refused via context_options.growth too
            raise e.keyed("model") from None
        raise


def model_parts(model: nn.Module) -> dict[str, nn.Module]:
    """The named parts of a model (backbone, context, decoder/head, ...) for cost breakdowns."""
    parts = getattr(model, "parts", None)
    if callable(parts):
        return dict(parts())
    return {n: m for n, m in model.named_children() if m is not None}


PLUGINS_ENV = "ASPP_BENCH_PLUGINS"
_LOADED: list[str] = []  # the ASPP_BENCH_PLUGINS entries this process has loaded, in order


def load_plugins(spec: str | None = None) -> None:
    """Import the modules named in ASPP_BENCH_PLUGINS (or `spec`): comma-separated, each a path
    to a .py file or a dotted module name on sys.path. Each registers its own variants with the
    registries' decorators, exactly as the built-in modules do (docs/adding-a-variant.md); each
    loads once per process. The environment carries the variable to local and Slurm workers, so
    a sweep's cells see the variants its command line saw. A plugin that fails to load is a
    UserError naming the plugin, the error and its line."""
    spec = os.environ.get(PLUGINS_ENV, "") if spec is None else spec
    for item in (x.strip() for x in spec.split(",")):
        if not item or item in _LOADED:
            continue
        try:
            if item.endswith(".py"):
                path = Path(item).expanduser().resolve()
                if not path.is_file():
                    raise UserError(f"{PLUGINS_ENV}={spec}: no such file {path}; give a .py file or a module name")
                name = f"aspp_bench_plugin_{path.stem}"
                module_spec = importlib.util.spec_from_file_location(name, path)
                assert module_spec is not None and module_spec.loader is not None
                module = importlib.util.module_from_spec(module_spec)
                sys.modules[name] = module
                module_spec.loader.exec_module(module)
            else:
                importlib.import_module(item)
        except UserError:
            raise
        except Exception as e:  # the plugin's own error, said with where it happened
            frames = traceback.extract_tb(e.__traceback__)
            where = f" ({frames[-1].filename}:{frames[-1].lineno})" if frames else ""
            raise UserError(
                f"{PLUGINS_ENV}: plugin '{item}' failed to load: {type(e).__name__}: {e}{where}; fix the plugin "
                f"or remove it from {PLUGINS_ENV}"
            ) from None
        _LOADED.append(item)


def plugins() -> list[str]:
    """The plugins this process loaded (recorded in a run's environment)."""
    return list(_LOADED)


load_plugins()
