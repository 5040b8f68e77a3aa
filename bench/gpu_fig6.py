"""Fig. 6 on a GPU: plain and residual 20/56 on all of CIFAR-10 with the paper's schedule shape
(lr drops at 50% and 75%), ITERS iterations each; each result is copied flat into OUT as it ends.
    PYTHONPATH=. python bench/gpu_fig6.py OUT [ITERS]"""
import json
import sys
from pathlib import Path

from resnet_lib.experiments.cifar_grid import plan_runs, train_runs

out, iters = Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 16_000
out.mkdir(parents=True, exist_ok=True)
for run in plan_runs([20, 56], ["plain", "resnet"], iters=iters, evals=16):
    [r] = train_runs([run], "/tmp/fig6runs", progress=False)
    print(json.dumps({k: r.get(k) for k in ("name", "final", "wall_s", "img_per_s", "cuda_graph")}), flush=True)
    (out / f"{run.slug}.json").write_text(json.dumps(r))
