#!/usr/bin/env python3
"""Minor page faults and system-time share of a short notebook-03-style run (training, curve evaluations at
batch 1000, final test on 10k), in-process from getrusage. glibc's defaults against the library's settings:
    ONEDNN_MAX_CPU_ISA=AVX2 RESNET_MALLOC=system python bench/page_faults.py 20   # before
    ONEDNN_MAX_CPU_ISA=AVX2 python bench/page_faults.py 20                        # after
"""
import dataclasses
import json
import os
import resource
import sys
import tempfile
import time

import resnet_lib  # noqa: F401  (applies the malloc settings unless RESNET_MALLOC=system)
from resnet_lib.base.malloc import malloc_settings
from resnet_lib.data.cifar import load_cifar10
from resnet_lib.engine.config import TrainConfig
from resnet_lib.experiments.cifar_runs import CifarRun, run_cifar


def main(it: int) -> dict:
    data = load_cifar10()
    cfg = dataclasses.replace(TrainConfig().with_iters(it), lr=0.02, eval_every=it // 2, checkpoint_every=it // 2)
    run = CifarRun(20, False, "A", cfg, subset=10000, test_subset=1000)  # notebook 03's old defaults, shortened
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    res = run_cifar(run, tempfile.mkdtemp(), device="cpu", progress=False, data=data)
    r1, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - t0
    u, s = r1.ru_utime - r0.ru_utime, r1.ru_stime - r0.ru_stime
    return {"malloc": malloc_settings(), "isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "default"),
            "precision": res["precision"], "iters": it, "evals": "2 x 1000 + final 10000 test images",
            "minflt": r1.ru_minflt - r0.ru_minflt, "minflt_per_iter": round((r1.ru_minflt - r0.ru_minflt) / it),
            "sys_share": round(s / (u + s), 3), "user_s": round(u, 1), "sys_s": round(s, 1), "wall_s": round(wall, 1),
            "load": os.getloadavg()[0]}


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)))
