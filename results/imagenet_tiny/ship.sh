#!/usr/bin/env bash
# Ship what each finished run wrote (no checkpoints): its result, its tests, its identity and the command's
# summary line (the last line of its log, progress bars stripped). Usage: bash results/imagenet_tiny/ship.sh [RUNS]
set -euo pipefail
OUT=${1:-outputs/imagenet_tiny}
for d in "$OUT"/*_s*/; do
  name=$(basename "$d"); [[ -f "$d/result.json" && -f "$d/tests.json" ]] || continue
  mkdir -p "results/imagenet_tiny/$name"
  cp "$d"/result.json "$d"/tests.json "$d"/identity.json "results/imagenet_tiny/$name/"
  tr '\r' '\n' < "$OUT/$name.log" | tail -n 1 > "results/imagenet_tiny/$name/summary.json"
done
