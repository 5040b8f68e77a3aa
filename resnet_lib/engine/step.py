"""One SGD step and what it needs: the optimizer of the paper's recipe, the precision and memory
format a device gets, and the step itself (forward, backward, update) returning device tensors."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..base.device import autocast, use_bf16
from .config import TrainConfig


def resolve_formats(dev: torch.device, cfg: TrainConfig) -> tuple[bool, bool]:
    bf16 = use_bf16(dev, cfg.amp)
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
