"""Table 6's last row, ResNet-1202: what training it would cost on this machine, measured by a short run in a
fresh process (notebook 03 shows it; the net is not trained here)."""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ..base.device import pick_device
from ..models.cifar import CifarNetSpec, cifar_resnet

# The measuring process imports this module: it imports only what _measure needs (torch, the model), so
# the process starts in about 2.5 s rather than 4.5 (torchvision, the shipped results); resnet1202_cost and
# resnet1202_text import the rest when they run.


def _rss() -> tuple[int, int]:
    """(peak, current) resident bytes of this process; current from /proc where there is one."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    try:
        with open("/proc/self/statm") as f:
            return peak, int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return peak, peak


def _measure(depth: int, batch_size: int, iters: int, device: str) -> dict:
    """Runs in a fresh process (``resnet1202_cost``): ms per SGD step, and the memory the training takes:
    weights, gradients, momentum and activations (CUDA: peak allocated; CPU: growth of the process's resident
    size from before the net was built)."""
    dev = pick_device(device)
    base_peak, base_now = _rss()
    torch.manual_seed(0)
    net = cifar_resnet(depth).to(dev)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(batch_size, 3, 32, 32, device=dev)
    y = torch.randint(0, 10, (batch_size,), device=dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    times = []
    for _ in range(iters + 1):  # the first step warms up (allocations, kernel choice) and is not timed
        sync()
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
        sync()
        times.append(time.perf_counter() - t)
    if dev.type == "cuda":
        mem = torch.cuda.max_memory_allocated(dev)
    else:  # the peak can hide under an earlier, larger one (imports); what is held after the step cannot
        peak, now = _rss()
        mem = max(peak - base_peak, now - base_now)
    return {"ms_per_iter": 1000 * float(np.median(times[1:])), "memory_bytes": int(mem), "device": str(dev),
            "params": sum(p.numel() for p in net.parameters())}  # models.complexity would import torchvision


def resnet1202_cost(device="auto", iters: int | None = None, batch_size: int | None = None, depth: int = 1202,
                    cache=None) -> dict:
    """What training ResNet-1202 (Table 6's last row) would cost here, from a short measured run in a fresh
    process: ``iters`` timed SGD steps after one untimed, at ``batch_size`` (default 128 on a GPU, 2 on a CPU, scaled to 128 per
    image), fp32 eager. Returns ms per 128-image iteration, the hours for the paper's 64k iterations, and
    the memory measured (on a CPU, for the measured batch only). With ``cache`` (a JSON path), a measurement
    stored there for the same device and settings is reused, like a stored run."""
    from ..base.io import atomic_write_json, provenance

    dev = pick_device(device)
    batch_size = batch_size or (128 if dev.type == "cuda" else 2)
    iters = iters or (10 if dev.type == "cuda" else 1)
    if cache and Path(cache).exists():
        old = json.loads(Path(cache).read_text())
        if (old.get("device"), old.get("measured_batch"), old.get("measured_iters"), old.get("net")) == \
                (str(dev), batch_size, iters, CifarNetSpec(depth).name):
            return old
    code = ("import json,sys; from resnet_lib.experiments.cost1202 import _measure; "
            f"print(json.dumps(_measure({depth}, {batch_size}, {iters}, {str(dev)!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy())
    if out.returncode != 0:
        raise RuntimeError(f"measuring ResNet-{depth} failed: {out.stderr.strip()[-500:]}")
    m = json.loads(out.stdout.strip().splitlines()[-1])
    ms128 = round(m["ms_per_iter"] * 128 / batch_size, 1)  # the hours follow from the ms the record shows
    cost = {"net": CifarNetSpec(depth).name, "params": m["params"],
            "device": m["device"], "measured_batch": batch_size, "measured_iters": iters,
            "ms_per_iter_b128": ms128, "hours_for_64k": round(ms128 * 64_000 / 3.6e6, 1),
            "memory_mb_measured": round(m["memory_bytes"] / 2**20), "scaled_from_smaller_batch": batch_size != 128}
    if cache:
        atomic_write_json(cache, {**cost, "provenance": provenance(dev)})
    return cost


def resnet1202_text(cost: dict) -> str:
    """One sentence on what the measured run says ResNet-1202 would cost here (Table 6's last row)."""
    from .shipped import _paper_cell

    paper = _paper_cell(int(cost["net"].split("-")[1]))
    paper = f"{paper}% test error" if paper else "not in Table 6"
    n = cost["measured_iters"]
    steps = "one SGD step" if n == 1 else f"{n} SGD steps"
    batch = (f"timed at batch {cost['measured_batch']} and scaled to 128 images per step"
             if cost["scaled_from_smaller_batch"] else "timed at batch 128")
    ms = cost["ms_per_iter_b128"]
    per_iter = f"{ms:,.0f} ms" if ms < 10_000 else f"{ms / 1000:,.0f} s"
    return (f"**{cost['net']}** ({cost['params']:,} parameters; the paper: {paper}) would take **about "
            f"{cost['hours_for_64k']:,.0f} h** on {cost['device']}: {steps} extrapolated to the paper's 64k iterations, "
            f"fp32 (about {per_iter} per iteration, {batch}); an estimate, not a training run. The measured step took "
            f"{cost['memory_mb_measured']:,} MB of memory (weights, gradients, momentum and activations at batch "
            f"{cost['measured_batch']}). It is not trained here.")
