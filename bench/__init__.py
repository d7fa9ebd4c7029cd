"""aspp-bench: a benchmarking and ablation suite for atrous-convolution / ASPP segmentation models."""

__version__ = "0.1.0"
