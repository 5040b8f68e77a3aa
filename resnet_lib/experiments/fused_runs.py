"""K seeds of one CIFAR run trained at once as one fused wide network (``models.fused``).

Each run keeps everything it would have alone: ``torch.manual_seed(seed)`` before building its net
(as ``run_cifar`` does), its own training source (data order and augmentation drawn from its seed),
its own BN statistics, and its own share of one SGD whose momentum and weight decay are elementwise.
The step's loss is the sum of the K runs' losses (``models.fused.fused_loss``), so the K runs end
where K separate ``fit`` calls end, up to floating-point summation order (a CPU test checks it).

Not (yet) covered: the ResNet-110 warm-up, whose learning-rate switch depends on each run's own
training error, so K fused runs would need K learning rates; those runs train one at a time.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn

from ..base.device import autocast, pick_device
from ..data.cifar import Cifar10, make_loaders
from ..engine.config import StepSchedule
from ..engine.cuda_graph import CudaGraphStep
from ..engine.step import make_optimizer, resolve_formats
from ..models.cifar import cifar_resnet
from ..models.fused import fuse, fused_loss, unfuse
from .cifar_runs import CifarRun


def check_fusable(runs: list[CifarRun]) -> None:
    """K runs can share one fused net when only their seeds differ, and none needs the warm-up."""
    if not runs:
        raise ValueError("no runs to fuse")
    if len({dataclasses.replace(r, train=dataclasses.replace(r.train, seed=0)) for r in runs}) != 1:
        raise ValueError("fused runs must differ only in their seed (same net, data and recipe); "
                         "group the runs by everything but the seed first")
    if runs[0].train.warmup:
        raise ValueError(f"{runs[0].name} uses the warm-up (lr 0.01 until its own training error is below 80%), "
                         "which ends at a different iteration for each seed; train it alone with run_cifar")
    if len({r.train.seed for r in runs}) != len(runs):
        raise ValueError(f"two fused runs have the same seed: {[r.train.seed for r in runs]}")


def build_nets(runs: list[CifarRun]) -> list[nn.Module]:
    """Each run's net, initialised exactly as ``run_cifar`` initialises it."""
    nets = []
    for r in runs:
        torch.manual_seed(r.train.seed)
        nets.append(cifar_resnet(r.depth, r.shortcut, r.residual))
    return nets


def fused_batches(sources, epoch: int, start: int = 0):
    """The K sources' batches side by side: x (B, 3K, H, W), y (B, K)."""
    for pairs in zip(*(s.batches(epoch, start=start) for s in sources)):
        yield torch.cat([x for x, _ in pairs], 1), torch.stack([y for _, y in pairs], 1)


def fused_step(net, opt, x, y, dev, bf16, cache: bool = True):
    """Forward, backward and SGD update of the fused net (gradients already cleared); device tensors out:
    each run's loss (K,) and misclassified count (K,)."""
    with autocast(dev, bf16, cache):
        out = net(x)
        loss = fused_loss(out, y)
    loss.backward()
    opt.step()
    with torch.no_grad():
        b, k, c = out.shape
        per_run = torch.nn.functional.cross_entropy(out.float().reshape(b * k, c), y.reshape(-1), reduction="none")
        per_run = per_run.view(b, k).mean(0)
    return per_run, (out.argmax(2) != y).sum(0)


def FusedGraphStep(net, opt, dev, bf16, eager_steps: int = 3) -> CudaGraphStep:
    """``fused_step`` captured in a CUDA graph and replayed: the engine's ``CudaGraphStep`` with this step."""
    return CudaGraphStep(net, opt, dev, bf16, eager_steps, step_fn=fused_step)


def train_fused(runs: list[CifarRun], data: Cifar10, iters: int | None = None, device="auto",
                graph: bool | None = None, dtype: torch.dtype = torch.float32) -> tuple[list[nn.Module], dict]:
    """Train K seeds of one run together for ``iters`` iterations (default: the recipe's). Returns the
    K nets (``models.fused.unfuse``) and the per-run training loss and error of every step. ``dtype``
    float64 is for checking exactness (the tests); training uses float32 (with bf16 autocast by the recipe)."""
    check_fusable(runs)
    dev = pick_device(device)
    cfg = runs[0].train
    iters = cfg.iters if iters is None else iters
    bf16, cl = resolve_formats(dev, cfg)
    r0 = runs[0]
    sources = [make_loaders(data, batch_size=cfg.batch_size, subset=r0.subset, val_split=r0.val_split,
                            normalize=r0.normalize, seed=r.train.seed, device=dev, channels_last=cl)[0] for r in runs]
    net = fuse([n.to(dtype) for n in build_nets(runs)])
    net.to(dev, memory_format=torch.channels_last if cl else torch.contiguous_format)
    opt = make_optimizer(net, cfg)
    schedule = StepSchedule(cfg)
    graph = dev.type == "cuda" and cfg.cuda_graph != "off" if graph is None else graph
    step = FusedGraphStep(net, opt, dev, bf16) if graph else None
    losses, wrongs = [], []
    it, epoch = 0, 0
    net.train()
    while it < iters:
        for x, y in fused_batches(sources, epoch):
            x = x.to(dtype)
            lr = schedule.lr_at(it)
            for g in opt.param_groups:
                g["lr"] = lr
            if step is not None:
                loss, wrong = step(x, y)
            else:
                opt.zero_grad(set_to_none=True)
                loss, wrong = fused_step(net, opt, x, y, dev, bf16)
            losses.append(loss.detach().clone())
            wrongs.append(wrong.detach().clone())
            it += 1
            if it >= iters:
                break
        epoch += 1
    n = sources[0].batch_size
    hist = {"train_loss": torch.stack(losses).T.tolist(), "train_err": (torch.stack(wrongs).T / n).tolist()}
    return unfuse(net.cpu()), hist
