#!/usr/bin/env bash
# The GPU check (scripts/gpu_check.py says what it runs): on a machine with one NVIDIA GPU, under
# 8 minutes, writes gpu_check.json and gpu_check.md to $OUT (the device tool's output folder) or
# ./gpu_check. Installs the suite first where it is not installed.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c "import bench, torch, pytest" 2>/dev/null || python3 -m pip install -q -e '.[test]'
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
exec python3 scripts/gpu_check.py --out "${OUT:-gpu_check}" "$@"
