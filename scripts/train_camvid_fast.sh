#!/usr/bin/env bash
# Real CamVid (SegNet layout, $ASPP_BENCH_DATA/camvid), 180x240, 11 classes with void ignored:
# aspp_unet (width 16) from scratch on the training fast path (bf16 autocast + channels_last),
# as many epochs as fit in 20 minutes of wall time on 2 cores. The README's accuracy figure.
#   bash scripts/train_camvid_fast.sh [OUT_DIR] [CAMVID_ROOT] [EPOCHS]
set -euo pipefail
out=${1:-results/camvid_aspp_unet_fast}
root=${2:-${ASPP_BENCH_DATA:-data}/camvid}
epochs=${3:-60}
exec aspp-bench train --out "$out" --set \
  model.arch=aspp_unet model.width=16 \
  data.name=camvid "data.root=$root" 'data.size=[180,240]' \
  'data.augment.scale=[0.8,1.25]' data.batch_size=8 \
  optim.lr=0.003 optim.schedule=poly \
  train.amp=bf16 train.channels_last=true \
  "train.epochs=$epochs" train.eval_every=5 train.checkpoint_every=5 \
  profile.threads=2
