#!/usr/bin/env python3
"""Many CIFAR nets at once on one GPU (issue #10): aggregate training throughput of K seeds fused into one
wide net, against the current one-net-at-a-time graphed engine and the naive reference, from one run.

  python bench/gpu_campaign.py [--depth 20] [--k 1,2,5,8] [--iters 200] [--device auto]
  python bench/gpu_campaign.py --device cpu --iters 3 --k 2 --lanes 8,14   # the script itself, on a CPU

Each measurement runs in a fresh process, one after another on this machine: the naive reference
(../shared/bench/naive_reference.py), the engine's step as ``fit`` runs it (bench_cifar.ours: on a GPU the
whole step replayed from a CUDA graph, bf16 autocast, channels-last), and for each K the fused step
(``campaign.fused_runs``: K seeds' own batches side by side, one SGD; CUDA-graphed on a GPU). Prints
one JSON line each and a last line of images per second ratios; the engine's aggregate for K nets one after
another is its single-net rate (K runs one after another take K times as long). Then ``--lanes``: groups of
nets of different depths trained at once as the campaign trains them (``engine.lanes``), ms per round
against the sum of each alone.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def fused(depth: int, k: int, iters: int, warmup: int, device: str) -> dict:
    import torch

    from resnet_lib.base.device import pick_device
    from resnet_lib.campaign.fused_runs import FusedGraphStep, build_nets, fused_batches, fused_step
    from resnet_lib.data.cifar import load_cifar10, make_loaders
    from resnet_lib.engine.config import TrainConfig
    from resnet_lib.engine.step import make_optimizer, resolve_formats
    from resnet_lib.experiments.cifar_runs import CifarRun
    from resnet_lib.models.fused import fuse

    dev = pick_device(device)
    cfg = TrainConfig()
    bf16, cl = resolve_formats(dev, cfg)
    runs = [CifarRun(depth, train=dataclasses.replace(cfg, seed=s)) for s in range(k)]
    data = load_cifar10()
    sources = [make_loaders(data, seed=s, device=dev, channels_last=cl)[0] for s in range(k)]
    net = fuse(build_nets(runs)).to(dev, memory_format=torch.channels_last if cl else torch.contiguous_format)
    opt = make_optimizer(net, cfg)
    graphed = dev.type == "cuda"
    if graphed:
        step = FusedGraphStep(net, opt, dev, bf16)
    else:
        def step(x, y):
            opt.zero_grad(set_to_none=True)
            return fused_step(net, opt, x, y, dev, bf16)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    sys.path.insert(0, str(HERE))
    from bench_cifar import time_steps  # the same timed loop as the one-net bench

    dt = time_steps(step, lambda epoch: fused_batches(sources, epoch), warmup, iters, sync)
    mem = torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None
    return {"impl": f"fused K={k}", "k": k, "depth": depth, "device": str(dev), "precision": "bf16" if bf16 else "fp32",
            "cuda_graph": graphed, "ms_per_iter": round(1000 * dt, 2), "img_per_s": round(k * 128 / dt, 1),
            "gpu_memory_mb": mem}


def lanes(groups: list[list[int]], iters: int, warmup: int, device: str) -> dict:
    """Nets of several depths trained at once as the campaign trains them (``engine.lanes``: each run's own
    graphed step on its own CUDA stream, a step of each in turn), against each alone: ms per round."""
    import torch

    from resnet_lib.base.device import pick_device
    from resnet_lib.data.cifar import load_cifar10, make_loaders
    from resnet_lib.engine.config import TrainConfig
    from resnet_lib.engine.lanes import Lanes
    from resnet_lib.engine.loop import Trainer
    from resnet_lib.engine.step import resolve_formats
    from resnet_lib.models.cifar import cifar_resnet

    dev = pick_device(device)
    data = load_cifar10()
    cfg = TrainConfig(iters=10**6, eval_every=10**6, checkpoint_every=0, compile="off")  # no evaluation, lr drop
    # or compilation while timed (on a GPU the step is graphed; compile matters only on a CPU)
    _, cl = resolve_formats(dev, cfg)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def trainer(depth: int, seed: int) -> Trainer:
        train, test = make_loaders(data, seed=seed, device=dev, channels_last=cl)
        torch.manual_seed(seed)
        return Trainer(cifar_resnet(depth), train, test, dataclasses.replace(cfg, seed=seed), device=dev,
                       progress=False)

    def timed(advance) -> float:
        for _ in range(warmup):
            advance()
        sync()
        t0 = time.perf_counter()
        for _ in range(iters):
            advance()
        sync()
        return 1000 * (time.perf_counter() - t0) / iters

    alone = {}
    for depth in sorted({d for g in groups for d in g}):
        steps = trainer(depth, 0).steps()
        alone[depth] = round(timed(lambda: next(steps)), 2)
    rows = []
    for group in groups:
        ln = Lanes(dev)
        for i, depth in enumerate(group):
            ln.add(str(i), trainer(depth, i))
        together = timed(ln.advance)
        one_after_another = sum(alone[d] for d in group)
        rows.append({"depths": group, "ms_per_round": round(together, 2), "ms_one_after_another": round(one_after_another, 2),
                     "speedup": round(one_after_another / together, 2)})
    return {"impl": "lanes", "device": str(dev), "iters": iters, "alone_ms_per_iter": alone, "groups": rows}


def _child(kind: str, opts: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, "--_child", kind, json.dumps(opts)], capture_output=True,
                         text=True)
    if out.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depth", type=int, default=20)
    ap.add_argument("--k", default="1,2,5,8", help="numbers of fused seeds to measure")
    ap.add_argument("--iters", type=int, default=200, help="timed iterations per measurement")
    ap.add_argument("--lanes", default="20,32,44,56,110;20,20,20,20",
                    help="groups of depths (';' between groups) to time trained at once on streams, as the campaign "
                         "does, against one after another ('' to skip)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: 10, 1 on a CPU)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--reference", default=str(ROOT.parent / "shared" / "bench" / "naive_reference.py"))
    a = ap.parse_args()
    sys.path.insert(0, str(HERE))
    from bench_cifar import naive

    from resnet_lib.data.cifar import fetch_cifar10
    ks = [int(k) for k in a.k.split(",")]
    warmup = a.warmup if a.warmup is not None else (1 if a.device == "cpu" else 10)
    ref = Path(a.reference)
    if not ref.exists():
        ap.error(f"the yardstick {ref} is missing; pass --reference PATH/TO/naive_reference.py")
    opts = {"depth": a.depth, "iters": a.iters, "warmup": warmup, "device": a.device}
    rows = {"naive": naive(ref, fetch_cifar10(), a.depth, a.iters, warmup, a.device)}
    print(json.dumps(rows["naive"]), flush=True)
    rows["engine"] = _child("engine", opts)
    print(json.dumps(rows["engine"]), flush=True)
    for k in ks:
        rows[k] = _child("fused", {**opts, "k": k})
        print(json.dumps(rows[k]), flush=True)
    eng, nai = rows["engine"]["img_per_s"], rows["naive"]["img_per_s"]
    print(json.dumps({"engine_vs_naive": round(eng / nai, 2),
                      **{f"fused{k}_vs_engine": round(rows[k]["img_per_s"] / eng, 2) for k in ks},
                      **{f"fused{k}_vs_naive": round(rows[k]["img_per_s"] / nai, 2) for k in ks},
                      **{f"fused{k}_time_vs_one_net": round(rows[k]["ms_per_iter"] / rows["engine"]["ms_per_iter"], 2)
                         for k in ks},
                      "depth": a.depth, "iters": a.iters, "device": rows["engine"]["device"]}), flush=True)
    groups = [[int(d) for d in g.split(",")] for g in a.lanes.split(";") if g.strip()]
    if groups:
        print(json.dumps(_child("lanes", {**opts, "groups": groups})), flush=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--_child":
        sys.path.insert(0, str(HERE))
        o = json.loads(sys.argv[3])
        if sys.argv[2] == "engine":
            from bench_cifar import ours
            print(json.dumps(ours(o["depth"], o["iters"], o["warmup"], o["device"])))
        elif sys.argv[2] == "lanes":
            print(json.dumps(lanes(o["groups"], o["iters"], o["warmup"], o["device"])))
        else:
            print(json.dumps(fused(o["depth"], o["k"], o["iters"], o["warmup"], o["device"])))
    else:
        sys.exit(main())
