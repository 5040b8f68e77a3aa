"""One SGD step and what it needs: the optimizer of the paper's recipe, the precision and memory
format a device gets, the step itself (forward, backward, update) returning device tensors, and one
evaluation pass over a batch source."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..base.device import autocast, pick_device, use_bf16
from .config import TrainConfig


def resolve_formats(dev: torch.device, cfg: TrainConfig) -> tuple[bool, bool]:
    bf16 = use_bf16(dev, cfg.precision)
    cl = {"on": True, "off": False}.get(cfg.channels_last, bf16)
    return bf16, cl



def sgd_step(net: nn.Module, opt: torch.optim.Optimizer, x, y, dev: torch.device, bf16: bool,
              cache: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward, backward and SGD update on a batch whose gradients were cleared; returns the mean loss
    and the misclassified count as tensors on the device (nothing waits for the GPU)."""
    with autocast(dev, bf16, cache):
        out = net(x)
        loss = F.cross_entropy(out.float(), y)
    loss.backward()
    opt.step()
    return loss.detach(), (out.argmax(1) != y).sum()


def train_step(net: nn.Module, opt: torch.optim.Optimizer, x, y, dev: torch.device, bf16: bool) -> tuple[float, int]:
    """One SGD step on a batch; returns (mean loss, misclassified count)."""
    x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
    opt.zero_grad(set_to_none=True)
    loss, wrong = sgd_step(net, opt, x, y, dev, bf16)
    return loss.item(), wrong.item()



def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.SGD:
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


@torch.no_grad()
def evaluate(model: nn.Module, source, device="auto", precision: str | bool = "auto",
             memory_format: torch.memory_format | None = None) -> dict:
    """Mean cross-entropy and top-1 error of ``model`` over every batch of ``source`` (each batch in
    ``memory_format`` where given: the model's, whatever the source's)."""
    dev = pick_device(device)
    was_training = model.training
    model.eval()
    # summed on the device and read once: no wait for the GPU per batch (runs beside it in other lanes go on)
    total_loss = torch.zeros((), dtype=torch.float64, device=dev)
    wrong, n = torch.zeros((), dtype=torch.long, device=dev), 0
    with autocast(dev, use_bf16(dev, precision)):
        for x, y in source.batches(0):
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            if memory_format is not None:
                x = x.contiguous(memory_format=memory_format)
            out = model(x).float()
            total_loss += F.cross_entropy(out, y, reduction="sum").double()
            wrong += (out.argmax(1) != y).sum()
            n += len(y)
    model.train(was_training)
    return {"loss": total_loss.item() / n, "err": wrong.item() / n}
