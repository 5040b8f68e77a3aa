#!/usr/bin/env python3
"""Training speed: the library's CIFAR-10 loop against the ordinary way, side by side, same run.

The yardstick is ../shared/bench/naive_reference.py (PIL transforms in DataLoader workers, fp32,
NCHW, eager). Ours is resnet_lib's step as ``fit`` runs it: the uint8 set held in memory, the
paper's pad-crop-flip and per-pixel mean as batched tensor ops, bf16 autocast and channels_last
where the device has fast bf16, and for a run of the paper's length on a CPU the step through
``torch.compile`` (``engine.compiled``; its path for short runs, eager, is measured too, and the
compilation is among the untimed warm-up steps). Both train ResNet-20 (option A) with SGD on the same CIFAR-10
training images, batch 128, on this machine, one after the other, each in its own process.

Prints one JSON line per implementation and a final line with the ratio of images per second, and
which path ours took (oneDNN's ISA as oneDNN reports it, precision, memory format, threads, malloc
settings); ``--out FILE`` also stores all of it as JSON with provenance (results/bench/ holds the
committed ones). The yardstick runs under the same environment, so ``ONEDNN_MAX_CPU_ISA=AVX2`` caps
both: on a bf16 CPU that stands in for an AVX2-only one (fp32 is then chosen by itself). On a CPU it
ends with the compute ceiling (``ceiling``): FLOPs per image against this CPU's fp32 matrix-product
rate, which bounds what any fp32 implementation can reach against the yardstick.
  python bench/bench_cifar.py [--iters 40] [--depth 20] [--repeats 2] [--out results/bench/cpu.json]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def time_steps(step, batches_of_epoch, warmup: int, iters: int, sync) -> float:
    """Seconds per step of ``step(x, y)`` over ``iters`` batches (after ``warmup`` untimed ones), taking
    batches epoch after epoch from ``batches_of_epoch(epoch)``; ``sync`` waits for the device."""
    def batches():
        epoch = 0
        while True:
            yield from batches_of_epoch(epoch)
            epoch += 1

    it = batches()
    for _ in range(warmup):
        step(*next(it))
    sync()
    t0 = time.perf_counter()
    for _ in range(iters):
        step(*next(it))
    sync()
    return (time.perf_counter() - t0) / iters


def ours(depth: int, iters: int, warmup: int, device: str, cuda_graph: str = "auto", compile: str = "auto") -> dict:
    import torch

    from resnet_lib.base.device import cpu_path, pick_device
    from resnet_lib.data.cifar import load_cifar10, make_loaders
    from resnet_lib.engine.compiled import CompiledStep, use_compile
    from resnet_lib.engine.config import TrainConfig
    from resnet_lib.engine.cuda_graph import CudaGraphStep, use_cuda_graph
    from resnet_lib.engine.step import make_optimizer, resolve_formats, train_step
    from resnet_lib.models.cifar import cifar_resnet

    dev = pick_device(device)
    cfg = TrainConfig(cuda_graph=cuda_graph, compile=compile)  # the paper's 64k iterations: fit's path for long runs
    bf16, cl = resolve_formats(dev, cfg)
    train, _ = make_loaders(load_cifar10(), batch_size=128, device=dev, channels_last=cl)
    torch.manual_seed(0)
    net = cifar_resnet(depth).to(dev, memory_format=torch.channels_last if cl else torch.contiguous_format)
    opt = make_optimizer(net, cfg)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    graphed = use_cuda_graph(dev, cfg, 1)
    compiled = use_compile(dev, cfg, 1)
    # as fit steps: on a GPU the whole step replayed from a CUDA graph, nothing read back per step; on a CPU
    # through torch.compile for long runs (compile="auto"), the first warm-up step compiling
    if graphed:
        step = CudaGraphStep(net, opt, dev, bf16)
    elif compiled:
        cstep = CompiledStep(net)

        def step(x, y):
            opt.zero_grad(set_to_none=True)
            return cstep(opt, x, y, dev, bf16)
    else:
        step = lambda x, y: train_step(net, opt, x, y, dev, bf16)  # noqa: E731

    dt = time_steps(step, train.batches, warmup, iters, sync)  # augmentation inside the timed loop, as in fit
    return {"impl": "resnet_lib", "depth": depth, "device": str(dev), "precision": "bf16" if bf16 else "fp32",
            "cuda_graph": graphed, "compiled": compiled and cstep.state == "compiled",
            "channels_last": cl, "threads": torch.get_num_threads(), "img_per_s": round(128 / dt, 1),
            "ms_per_iter": round(1000 * dt, 2), **({"cpu_path": cpu_path(bf16, cl)} if dev.type == "cpu" else {})}


def naive(reference: Path, cache: Path, depth: int, iters: int, warmup: int, device: str) -> dict:
    cmd = [sys.executable, str(reference), "--npz", str(cache), "--depth", str(depth), "--iters", str(iters),
           "--warmup", str(warmup)]
    if device != "auto":
        cmd += ["--device", device]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=os.environ.copy())
    return json.loads(out.stdout.strip().splitlines()[-1])


def ceiling(depth: int, seconds: float = 3.0) -> dict:
    """The compute ceiling of this CPU for the yardstick's arithmetic: FLOPs of one training image
    (forward and backward, ``torch.utils.flop_counter``) and the rate of a large fp32 matrix product, the
    best case for dense arithmetic in fp32. Their quotient bounds the images/s of *any* fp32 implementation,
    so ``ceiling / naive`` bounds the ratio reachable without leaving fp32. Under ``ONEDNN_MAX_CPU_ISA=AVX2``
    MKL is capped to AVX2 as well (``MKL_ENABLE_INSTRUCTIONS``), as the caller sets it."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from resnet_lib.models.cifar import cifar_resnet
    net = cifar_resnet(depth)
    x = torch.randn(8, 3, 32, 32)
    with FlopCounterMode(display=False) as fc:
        torch.nn.functional.cross_entropy(net(x), torch.zeros(8, dtype=torch.long)).backward()
    flops_per_img = fc.get_total_flops() / 8
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        n += 1
    gflops = n * 2 * 2048**3 / (time.perf_counter() - t0) / 1e9
    return {"flops_per_img": flops_per_img, "fp32_matmul_gflops": round(gflops, 1),
            "fp32_ceiling_img_per_s": round(gflops * 1e9 / flops_per_img, 1)}


def _ceiling_child(depth: int) -> dict:
    env = os.environ.copy()
    if env.get("ONEDNN_MAX_CPU_ISA", "").upper().startswith("AVX2"):
        env.setdefault("MKL_ENABLE_INSTRUCTIONS", "AVX2")
    out = subprocess.run([sys.executable, __file__, "--_ceiling", str(depth)], capture_output=True, text=True,
                         check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depth", type=int, default=20)
    ap.add_argument("--iters", type=int, default=40, help="timed iterations per measurement")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=2, help="measurements of each, interleaved; the best counts")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--cuda-graph", default="auto", choices=["auto", "on", "off"],
                    help="on a GPU: replay the whole step from a CUDA graph (auto) or launch it eagerly (off)")
    ap.add_argument("--reference", default=str(ROOT.parent / "shared" / "bench" / "naive_reference.py"))
    ap.add_argument("--out", default=None, help="also write everything as JSON with provenance to this file")
    a = ap.parse_args()
    ref = Path(a.reference)
    if not ref.exists():
        ap.error(f"the yardstick {ref} is missing; pass --reference PATH/TO/naive_reference.py")
    from resnet_lib.data.cifar import fetch_cifar10
    cache = fetch_cifar10()  # the cache npz holds x_train (N,32,32,3) uint8 and y_train: the reference reads it as is
    # resnet_lib: fit's path for a run of the paper's length (on a CPU through torch.compile where a C++
    # compiler is found); resnet_lib_short: its path for short runs (under engine.compiled.AUTO_MIN_ITERS)
    import torch
    cpu = a.device == "cpu" or (a.device == "auto" and not torch.cuda.is_available())
    runs = {"naive_reference": [], "resnet_lib": [], **({"resnet_lib_short": []} if cpu else {})}
    for _ in range(a.repeats):
        r = naive(ref, cache, a.depth, a.iters, a.warmup, a.device)
        print(json.dumps(r), flush=True)
        runs["naive_reference"].append(r)
        for key, compile_ in (("resnet_lib", "auto"), ("resnet_lib_short", "off")):
            if key not in runs:
                continue
            # ours in a fresh process too, so neither inherits the other's threads or allocator state
            out = subprocess.run([sys.executable, __file__, "--_ours", json.dumps({**vars(a), "compile": compile_})],
                                 capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(json.dumps({"run": key, **r}), flush=True)
            runs[key].append(r)
    best = {k: max(r["img_per_s"] for r in v) for k, v in runs.items()}
    ours_best = max(runs["resnet_lib"], key=lambda r: r["img_per_s"])
    summary = {"ratio_img_per_s": round(best["resnet_lib"] / best["naive_reference"], 2),
               "resnet_lib_img_per_s": best["resnet_lib"], "naive_img_per_s": best["naive_reference"],
               "path": ours_best.get("cpu_path") or {"device": ours_best["device"], "precision": ours_best["precision"]},
               "depth": a.depth, "iters": a.iters, "repeats": a.repeats, "cpus": os.cpu_count(),
               "compiled": ours_best.get("compiled", False), "load_avg_1min": round(os.getloadavg()[0], 2)}
    if cpu:
        summary["short_runs"] = {"resnet_lib_img_per_s": best["resnet_lib_short"],
                                 "ratio_img_per_s": round(best["resnet_lib_short"] / best["naive_reference"], 2)}
        c = _ceiling_child(a.depth)
        summary["compute"] = {**c, "naive_gflops": round(best["naive_reference"] * c["flops_per_img"] / 1e9, 1),
                              "resnet_lib_gflops": round(best["resnet_lib"] * c["flops_per_img"] / 1e9, 1),
                              "fp32_ratio_ceiling": round(c["fp32_ceiling_img_per_s"] / best["naive_reference"], 2)}
    print(json.dumps(summary))
    if a.out:
        from resnet_lib.base.io import atomic_write_json, provenance
        env = {k: os.environ[k] for k in ("ONEDNN_MAX_CPU_ISA", "OMP_NUM_THREADS", "ATEN_CPU_CAPABILITY") if k in os.environ}
        atomic_write_json(Path(a.out), {**summary, "environment": env, "runs": runs, "command": sys.argv,
                                        "provenance": provenance(ours_best["device"])})
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--_ceiling":
        print(json.dumps(ceiling(int(sys.argv[2]))))
    elif len(sys.argv) == 3 and sys.argv[1] == "--_ours":
        o = json.loads(sys.argv[2])
        print(json.dumps(ours(o["depth"], o["iters"], o["warmup"], o["device"], o["cuda_graph"], o.get("compile", "auto"))))
    else:
        sys.exit(main())
