#!/usr/bin/env bash
# Real CamVid (SegNet layout, $ASPP_BENCH_DATA/camvid), 180x240, 11 classes with void ignored:
# CPU-scale aspp_unet (width 16) from scratch, the README's accuracy figure.
#   bash scripts/train_camvid.sh [OUT_DIR] [CAMVID_ROOT]
set -euo pipefail
out=${1:-results/camvid_aspp_unet}
root=${2:-${ASPP_BENCH_DATA:-data}/camvid}
exec aspp-bench train --out "$out" \
  --set model.arch=aspp_unet --set model.width=16 \
  --set data.name=camvid --set "data.root=$root" --set data.size=[180,240] \
  --set data.augment.scale=[0.8,1.25] --set data.batch_size=8 \
  --set optim.lr=0.003 --set optim.schedule=poly \
  --set train.epochs=18 --set train.eval_every=3 --set train.checkpoint_every=2
