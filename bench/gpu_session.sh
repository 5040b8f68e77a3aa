#!/usr/bin/env bash
# One GPU session of the paper-scale campaign (issue #10), sized for the device tool: calls of at most
# ~9 minutes, at most 64 MiB travelling per call (tree + carry), at most 8 files of 16 MiB back. Works with
# PYTHONPATH alone (the GPU machines have torch but no registry).
#
# Here, once:   python bench/pack_cifar.py pack            # build/cifar_pack/{a,b}, ~57 MB each
#               mkdir -p build/ref && cp ../shared/bench/naive_reference.py build/ref/   # for BENCH=1
# Then, on a GPU machine, two calls back to back (it stays warm ~30 s between calls; the pieces and the
# campaign wait in /tmp/resnet_session there):
#   run(carry=[build/cifar_pack/a], command="SMOKE=1 bash bench/gpu_session.sh")   # stores; CUDA tests (~30 s)
#   run(carry=[build/cifar_pack/b, build/ref], timeout_s=590,
#       command="RESNET_GIT_REVISION=<commit> BENCH=1 bash bench/gpu_session.sh 540")
#       # rebuilds CIFAR-10, runs the bench, then the campaign until 540 s after the script started
# Sizing, as measured on 2026-11-27 (H100, 900 s of device time): the smoke call held the machine 51 s (its start
# included), the second call (`... 575`) 557 s, a third right after it (`... 190`, no carry) 179 s; 113 s were left,
# too little to start another machine. So: smoke; `... 575`; then a third call sized to what `lease` says is left
# minus ~60 s, then give_back.
# The table6 campaign continues from results/campaign/table6_state.tgz (committed, so it travels with the
# tree); a folder build/campaign, when carried, takes precedence. A later call on the same warm machine
# needs no pieces. Back here, from the last call's files:
#   cp campaign.tgz results/campaign/table6_state.tgz                            # where the next session goes on
#   tar xzf results_cifar10.tgz -C results/cifar10 && git add results           # finished runs, shipped
#   cp grad_precision_gpu.json results/cifar10/grad_precision_<gpu>.json          # shown beside the CPU's
#   tar xzf precision.tgz && cp precision/runs/* results/precision/runs/ &&         # the precision study (#25):
#     cp precision_cost_gpu.json results/precision/cost_<gpu>.json &&              # its records, the GPU's costs,
#     python -m resnet_lib readme                                                   # and docs/precision.md again
#   (then set base.precision.AUTO / campaign.sets.TABLE6_PRECISION as tests/test_precision_study.py says)
# Environment: CAMPAIGN (table6), SEEDS (1,2,3), BENCH (0), BENCH_ARGS (--k 2,5 --iters 200: the fused K the
# campaign uses, and the lanes groups), BENCH_S (200: the bench's time limit), SMOKE (0),
# GRADS (1: measure bf16 against fp32 gradients on the GPU first, python -m resnet_lib grad-precision),
# PRECISION_STUDY (1: then the precision study, issue #25, before the campaign),
# TOGETHER (auto: 4 runs at once on their own CUDA streams, or 1 when this session's smoke call ran the CUDA
# tests and the lanes test did not pass),
# WORKERS_CHECK (0: 1 runs bench/gpu_workers.py first, two campaign workers on this GPU against one worker,
# issue #30; its lines come back as gpu_workers.jsonl and gpu_workers.log; WORKERS_S its time limit, 300),
# STATE (/tmp/resnet_session), CAMPAIGN_ARGS (extra options of the campaign command, e.g. "--scale 0.001
# --subset 512" for a dry run on a CPU). The budget counts from the script's start, so the bench and the
# unpacking come out of it.
set -euo pipefail
START=$(date +%s)
BUDGET=${1:-0}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
STATE=${STATE:-/tmp/resnet_session}
CAMPAIGN=${CAMPAIGN:-table6}
SEEDS=${SEEDS:-1,2,3}
OUT=${OUT:-$STATE/out}
PY=${PYTHON:-python3}
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
export RESNET_DATA=${RESNET_DATA:-$STATE/data}
export TQDM_MININTERVAL=${TQDM_MININTERVAL:-20}
cd "$ROOT"
mkdir -p "$STATE/pack" "$OUT"

for p in build/cifar_pack/*/; do  # keep each carried piece outside the tree, for the calls that follow
  [ -f "$p/manifest.json" ] && cp -r "$p" "$STATE/pack/" && echo "stored piece $(basename "$p")"
done
if [ -d build/campaign ] && [ ! -d "$STATE/campaign" ]; then
  cp -r build/campaign "$STATE/campaign" && echo "stored the campaign folder carried here"
elif [ "$CAMPAIGN" = table6 ] && [ -f results/campaign/table6_state.tgz ] && [ ! -d "$STATE/campaign" ]; then
  # the committed state travels with the tree: no carry needed to continue where the last session stopped
  mkdir -p "$STATE/campaign" && tar xzf results/campaign/table6_state.tgz -C "$STATE/campaign" &&
    echo "continuing the campaign from results/campaign/table6_state.tgz"
fi
if [ "${SMOKE:-0}" = 1 ]; then  # the CUDA-only tests, as a plain script (pytest may be missing there)
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  "$PY" tests/test_cuda_graph.py 2>&1 | tee "$OUT/smoke.log" || echo "!! the CUDA tests failed (above)"
  cp "$OUT/smoke.log" "$STATE/smoke.log"  # the campaign call reads it: no lanes unless their test passed here
fi
if [ ! -f "$RESNET_DATA/cifar10/cifar10_uint8.npz" ]; then
  have=$(ls "$STATE/pack" | tr '\n' ' ')
  if [ -d "$STATE/pack/a" ] && [ -d "$STATE/pack/b" ]; then
    "$PY" bench/pack_cifar.py unpack "$STATE/pack/a" "$STATE/pack/b"
  else
    echo "CIFAR-10 pieces here so far: ${have:-none}; carry the other (build/cifar_pack/a or b) in the next call"
    exit 0
  fi
fi
if [ "${WORKERS_CHECK:-0}" = 1 ]; then  # issue #30: two campaign workers on this GPU against one worker (~2 min)
  timeout "${WORKERS_S:-300}" "$PY" bench/gpu_workers.py --out "$STATE/gpu_workers" 2>&1 | tee "$OUT/gpu_workers.log" \
    || echo "!! the workers check failed or ran out of time (its log above)"
  cp "$STATE/gpu_workers/gpu_workers.jsonl" "$OUT/" 2>/dev/null || true
fi
[ "$BUDGET" = 0 ] && { echo "CIFAR-10 ready; give a budget in seconds to train"; exit 0; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
if [ "${GRADS:-1}" = 1 ] && [ ! -f "$STATE/grads_done" ]; then  # ~20 s, once a machine: bf16 vs fp32 gradients here
  timeout 120 "$PY" -m resnet_lib grad-precision --device "${GRADS_DEVICE:-cuda}" --out "$OUT/grad_precision_gpu.json" \
    && touch "$STATE/grads_done" || echo "!! grad-precision failed or ran out of time; the campaign goes on"
fi
if [ "${BENCH:-0}" = 1 ]; then
  REF=build/ref/naive_reference.py
  [ -f "$REF" ] || REF=../shared/bench/naive_reference.py
  timeout "${BENCH_S:-200}" "$PY" bench/gpu_campaign.py ${BENCH_ARGS:---k 2,5 --iters 200} --reference "$REF" \
    | tee "$OUT/bench_campaign.jsonl" || echo "!! the bench failed or ran out of time; the campaign goes on"
fi
# issue #25 first: the precision study decides the policy every later run trains in. Its runs live in the
# campaign's folder (those in Table 6's policy are the start of Table 6's own), ~2-8 min of a GPU for all of them.
if [ "${PRECISION_STUDY:-1}" = 1 ]; then
  timeout 60 "$PY" bench/precision_cost.py --rounds 2 --out "$OUT/precision_cost_gpu.json" \
    || echo "!! the precision cost bench failed or ran out of time"
  PS_LEFT=$(( BUDGET - ($(date +%s) - START) - ${RESERVE_S:-30} ))
  "$PY" -m resnet_lib precision-study --out "$STATE/campaign" --policies fp32 tf32 bf16 bf16-conv --seeds 1 2 \
    --budget-s "$PS_LEFT" --export "$OUT/precision/runs" 2>&1 | tee "$OUT/precision_study.log" \
    || echo "!! the precision study stopped with an error (its log above)"
  # the lead from the CPU (issue #25): the same seed in bf16 trained far worse graphed on an H100 than eager on a
  # CPU at 56 layers, not at 20; the same runs without the CUDA graph tell the graph's part
  PS_LEFT=$(( BUDGET - ($(date +%s) - START) - ${RESERVE_S:-30} ))
  "$PY" -m resnet_lib precision-study --out "$STATE/campaign" --policies bf16 fp32 --nets ResNet-20 ResNet-56 \
    --seeds 1 --step eager --budget-s "$PS_LEFT" --export "$OUT/precision/runs" 2>&1 | tee -a "$OUT/precision_study.log" \
    || echo "!! the eager precision runs stopped with an error (their log above)"
  tar czf "$OUT/precision.tgz" -C "$OUT" precision precision_cost_gpu.json 2>/dev/null && rm -rf "$OUT/precision"
fi
# the export (Fig. 7 responses, fp16 weights) and the packing need RESERVE_S seconds after the campaign stops
LEFT=$(( BUDGET - ($(date +%s) - START) - ${RESERVE_S:-30} ))
TOGETHER=${TOGETHER:-auto}  # runs at once, each on its own CUDA stream (the campaign's --together)
if [ "$TOGETHER" = auto ] && [ -f "$STATE/smoke.log" ] &&
   ! grep -q "runs in lanes (streams), stopped and resumed == runs alone: ok" "$STATE/smoke.log"; then
  echo "!! the lanes test did not pass in this session's smoke call: the campaign trains one job at a time"
  TOGETHER=1
fi
"$PY" -m resnet_lib campaign "$CAMPAIGN" --out "$STATE/campaign" --seeds "$SEEDS" --budget-s "$LEFT" --together "$TOGETHER" \
  ${CAMPAIGN_ARGS:-} --export "${EXPORT:-results/cifar10}" 2>&1 | tee "$OUT/campaign.log" \
  || echo "!! the campaign stopped with an error (its log above); packing what it left"

# back to the caller: the campaign's state (results, and checkpoints only of runs not finished) and the export
(cd "$STATE/campaign" && find . -name result.json -o -name campaign.json > "$STATE/keep" &&
 for d in runs/*/*/; do [ -f "$d/result.json" ] || { [ -f "$d/checkpoint.pt" ] && echo "$d/checkpoint.pt"; }; done >> "$STATE/keep" &&
 tar czf "$OUT/campaign.tgz" -T "$STATE/keep")
[ -d "${EXPORT:-results/cifar10}" ] && tar czf "$OUT/results_cifar10.tgz" -C "${EXPORT:-results/cifar10}" .
ls -la "$OUT"
