"""aspp-bench: a benchmarking and ablation suite for atrous-convolution / ASPP segmentation models."""

from bench.run.threads import apply_wait_policy

apply_wait_policy()  # before torch loads OpenMP (bench.run.threads says why)

__version__ = "0.1.0"

_API = ("build_model", "compare", "load_config", "profile_arch", "read_results", "run_id", "train")  # bench.api


def __getattr__(name: str):  # type: ignore[no-untyped-def]
    """The Python API (bench.api), imported on first use so that `import bench` loads no torch."""
    if name in _API:
        import importlib

        return getattr(importlib.import_module("bench.api"), name)
    raise AttributeError(f"module 'bench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
