#!/usr/bin/env python3
"""Calibration of notebook 03's defaults: its four nets over seeds and precisions, stored with provenance.

Notebook 03 must show, on a 2-core CPU in a few minutes, that plain-56 trains worse than plain-20 while
ResNet-56 trains at least as well as ResNet-20. Which budget (subset, batch, iterations, lr) does that for
every seed and on both CPU paths (bf16 autocast + channels-last where the CPU has fast bf16, fp32
elsewhere) is measured here, not guessed; each setting's runs go to one JSON file under
``results/calibration/nb03/`` that the notebook renders (``cifar_grid.calibration_table``).

    python bench/calibrate_nb03.py --tag b32_lr0.02 --subset 5000 --batch 32 --iters 200 --lr 0.02 \\
        --seeds 0 1 --amp off auto --jobs 4

Each net trains in its own process (``--threads`` each, default 1: several one-thread processes share a
loaded machine better than one two-thread process). The precision is what counts for the numbers: fp32
on an AVX-512 CPU computes what fp32 on an AVX2 CPU computes, only faster, so ``--amp off`` calibrates the
slower machine's path; the file records which ISA oneDNN used for each run.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def one(a, seed: int, amp: str, depth: int, net: str) -> dict:
    import torch
    torch.set_num_threads(a.threads)
    from resnet_lib.base.device import cpu_path
    from resnet_lib.engine.step import resolve_formats
    from resnet_lib.experiments import cifar_grid as cx
    from resnet_lib.experiments.cifar_runs import run_cifar
    run, = cx.plan_runs([depth], [net], subset=a.subset, iters=a.iters, lr=a.lr, batch_size=a.batch, evals=a.evals,
                        seed=seed, test_subset=a.test_subset, final_on_subset=True, precision=amp, lr_drops=(0.5, 0.75))
    res = run_cifar(run, Path(a.runs) / amp, device="cpu", progress=False)
    bf16, cl = resolve_formats(torch.device("cpu"), run.train)
    # the path as the run recorded it when it trained (this process may only be gathering it)
    path = {**cpu_path(bf16, cl), **res["provenance"].get("cpu_path", {}), "precision": res["precision"],
            "memory_format": "channels_last" if res["channels_last"] else "NCHW"}
    return {"name": res["name"], "depth": depth, "net": net, "seed": seed, "amp": amp,
            "train_err": res["final"]["train_err"], "test_err": res["final"]["test_err"],
            "curve_train_err": res["history"]["train_err"], "wall_s": res["wall_s"], "img_per_s": res["img_per_s"],
            "trained_utc": res["provenance"]["time_utc"], "cpu_path": path}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tag", required=True, help="file name under results/calibration/nb03/")
    ap.add_argument("--subset", type=int, default=5000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--evals", type=int, default=5)
    ap.add_argument("--test-subset", type=int, default=500)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--amp", nargs="+", default=["off", "auto"], choices=["off", "auto", "bf16"])
    ap.add_argument("--jobs", type=int, default=4, help="processes at once")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--runs", default=str(ROOT / "outputs" / "calibration_nb03_runs"), help="run folders (not committed)")
    ap.add_argument("--out", default=str(ROOT / "results" / "calibration" / "nb03"))
    ap.add_argument("--only-stored", action="store_true", help="gather the finished runs only, train nothing")
    ap.add_argument("--_one", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a._one:
        print(json.dumps(one(a, *json.loads(a._one))))
        return 0
    jobs = [(s, amp, d, n) for amp in a.amp for s in a.seeds for d in (56, 20) for n in ("plain", "resnet")]
    argv = [x for x in sys.argv[1:]]

    if a.only_stored:
        from resnet_lib.experiments import cifar_grid as cx

        def stored(job):
            seed, amp, depth, net = job
            run, = cx.plan_runs([depth], [net], subset=a.subset, iters=a.iters, lr=a.lr, batch_size=a.batch,
                                evals=a.evals, seed=seed, test_subset=a.test_subset, final_on_subset=True, precision=amp)
            return (Path(a.runs) / amp / run.slug / "result.json").exists()
        jobs = [j for j in jobs if stored(j)]

    def launch(job):
        out = subprocess.run([sys.executable, __file__, *argv, "--_one", json.dumps(job)], capture_output=True,
                             text=True, env={**os.environ, "OMP_NUM_THREADS": str(a.threads)})
        if out.returncode:
            raise RuntimeError(f"{job} failed:\n{out.stderr[-3000:]}")
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(json.dumps({k: r[k] for k in ("name", "seed", "amp", "train_err", "test_err", "wall_s")}), flush=True)
        return r

    with ThreadPoolExecutor(a.jobs) as pool:
        rows = list(pool.map(launch, jobs))
    from resnet_lib.base.io import atomic_write_json, provenance
    setting = {k: getattr(a, k) for k in ("subset", "batch", "iters", "lr", "evals", "test_subset")}
    path = atomic_write_json(Path(a.out) / f"{a.tag}.json",
                             {"tag": a.tag, "setting": setting, "lr_drops": [0.5, 0.75], "runs": rows,
                              "threads_per_run": a.threads, "provenance": provenance("cpu")})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
