#!/usr/bin/env bash
# Table 2 / Fig. 4 at this project's scale: plain-18/34 and ResNet-18/34 trained alike on Tiny ImageNet
# (first CLASSES classes (default 10), 90 training images each + 10 held out for the plateau rule, 50 validation images each),
# Section 3.4's recipe shape: SGD, momentum 0.9, weight decay 1e-4, lr 0.1 per 256 images (0.025 at batch 64)
# divided by 10 when the held-out error plateaus (patience 3 epochs), sizes / 4 for 64x64 images.
# Two lanes (one per seed) of one thread each, so the whole set fits 2 shared CPU cores.
# Usage: bash results/imagenet_tiny/run.sh [ITERS] [CLASSES]   (from the repository root; runs land in outputs/imagenet_tiny)
set -euo pipefail
ITERS=${1:-150}
CLASSES=${2:-10}
DATA=${TINY_IMAGENET:-../shared/data/tiny-imagenet-200}
OUT=outputs/imagenet_tiny
mkdir -p "$OUT"
lane() {
  local seed=$1
  for net in plain18 resnet18 plain34 resnet34; do
    local depth=${net: -2} plain=""
    [[ $net == plain* ]] && plain="--plain"
    OMP_NUM_THREADS=1 "${PYTHON:-python}" -m resnet_lib train-imagenet --data "$DATA" --classes "$CLASSES" --train-per-class 100 \
      --val-per-class 50 --depth "$depth" $plain --batch-size 64 --lr 0.025 --iters "$ITERS" --amp bf16 \
      --device cpu --seed "$seed" --out "$OUT/${net}_s${seed}" > "$OUT/${net}_s${seed}.log" 2>&1
  done
}
lane 0 & lane 1 & wait
bash results/imagenet_tiny/ship.sh "$OUT"
