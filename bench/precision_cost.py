#!/usr/bin/env python3
"""The cost of each precision policy (issue #25): ms per SGD step and images/s of ResNet-20/56/110, batch 128,
on this device, every policy measured in the same run.

Each step is the training step as ``fit`` takes it: on a GPU replayed from a CUDA graph (``engine.cuda_graph``),
on a CPU eager (``--compile`` adds the ``torch.compile`` path that long CPU runs take). The policies are
measured round-robin, ``--rounds`` times, and each keeps its fastest round, so that other work on the machine
slows every policy alike and a burst of it is dropped; the load average at the end is recorded. Prints one JSON
line per (net, policy); ``--out FILE`` writes them all with provenance (results/precision/ keeps one per device
kind: ``cost_<kind>.json``). ``ONEDNN_MAX_CPU_ISA=AVX2`` makes a bf16 CPU stand in for an AVX2-only one.

    python bench/precision_cost.py [--depths 20 56 110] [--policies fp32 bf16 bf16-conv] [--iters 10]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from bench_cifar import time_steps  # noqa: E402


def measure(depth: int, policies: list[str], iters: int, warmup: int, rounds: int, device: str,
            compile: bool) -> list[dict]:
    import torch

    from resnet_lib.base.device import pick_device
    from resnet_lib.base.precision import attach, resolve, set_backends
    from resnet_lib.data.cifar import load_cifar10, make_loaders
    from resnet_lib.engine.compiled import CompiledStep
    from resnet_lib.engine.config import TrainConfig
    from resnet_lib.engine.cuda_graph import CudaGraphStep
    from resnet_lib.engine.step import make_optimizer, train_step
    from resnet_lib.models.cifar import cifar_resnet

    dev = pick_device(device)
    data = load_cifar10()
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    steps = {}
    for name in policies:
        policy = resolve(dev, name)
        train, _ = make_loaders(data, batch_size=128, device=dev, channels_last=policy.channels_last)
        torch.manual_seed(0)
        fmt = torch.channels_last if policy.channels_last else torch.contiguous_format
        net = attach(cifar_resnet(depth).to(dev, memory_format=fmt), policy)
        opt = make_optimizer(net, TrainConfig())
        if dev.type == "cuda":
            step = CudaGraphStep(net, opt, dev, policy.autocast)  # the backends are set before each policy's round
        elif compile:
            cstep = CompiledStep(net)

            def step(x, y, c=cstep, o=opt, p=policy):
                o.zero_grad(set_to_none=True)
                return c(o, x, y, dev, p.autocast)
        else:
            step = lambda x, y, n=net, o=opt, p=policy: train_step(n, o, x, y, dev, p.autocast)  # noqa: E731
        steps[name] = (step, train, policy)
    best = {}
    for r in range(rounds):
        for name, (step, train, policy) in steps.items():
            set_backends(dev, policy)
            dt = time_steps(step, train.batches, warmup if r == 0 else 1, iters, sync)
            best[name] = min(best.get(name, dt), dt)
    out = []
    for name, dt in best.items():
        out.append({"depth": depth, "net": f"ResNet-{depth}", "policy": name, "ms_per_iter": round(1000 * dt, 2),
                    "img_per_s": round(128 / dt, 1), "step": "cuda graph" if dev.type == "cuda" else
                    ("torch.compile" if compile else "eager"), "rounds": rounds, "iters": iters})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depths", nargs="+", type=int, default=[20, 56, 110])
    ap.add_argument("--policies", nargs="+", default=None, help="default: fp32 bf16 bf16-conv (and tf32 on a GPU)")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--compile", action="store_true", help="on a CPU, the torch.compile step of long runs")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    import torch

    from resnet_lib.base.device import cpu_path, pick_device
    from resnet_lib.base.io import atomic_write_json, provenance
    dev = pick_device(a.device)
    policies = a.policies or ["fp32", "bf16", "bf16-conv"] + (["tf32"] if dev.type == "cuda" else [])
    rows = []
    extra = {"cpu_path": cpu_path()} if dev.type == "cpu" else {"gpu": torch.cuda.get_device_name(dev)}
    for depth in a.depths:
        for row in measure(depth, policies, a.iters, a.warmup, a.rounds, a.device, a.compile):
            print(json.dumps(row), flush=True)
            rows.append(row)
        load = os.getloadavg()[0]
        if a.out:  # after each depth, so that a bench stopped part-way keeps what it measured
            atomic_write_json(Path(a.out), {"rows": rows, "load_average_1min_at_end": round(load, 2),
                                            "command": "python bench/precision_cost.py " + " ".join(sys.argv[1:]),
                                            **extra, **provenance(dev)})
    print(json.dumps({"load_average_1min_at_end": round(load, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
