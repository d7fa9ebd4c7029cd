"""aspp-bench: a benchmarking and ablation suite for atrous-convolution / ASPP segmentation models."""

from bench.run.threads import apply_wait_policy

apply_wait_policy()  # before torch loads OpenMP (bench.run.threads says why)

__version__ = "0.1.0"
