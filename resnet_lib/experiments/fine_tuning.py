"""Pretraining and fine-tuning shared by localization (notebook 06) and detection (notebook 07): a Table 1 network
pretrained to classify the boxed images (``pretrain_classifier``, with the CIFAR engine's ``fit``), and one SGD
fine-tuning loop (``sgd_fine_tune``) that both tasks drive with their own losses."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..base.device import pick_device, use_bf16
from ..data import boxes as B
from ..data.cifar import TensorLoader
from ..engine.config import TrainConfig
from ..engine.loop import fit
from ..models.imagenet import imagenet_resnet


def channel_stats(images: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel mean and std of uint8 images, shaped (1, 3, 1, 1), for ``normalize``."""
    x = images.float().div(255.0)
    return x.mean((0, 2, 3), keepdim=True), x.std((0, 2, 3), keepdim=True)


@dataclass(frozen=True)
class PretrainConfig:
    """Classification pretraining before fine-tuning (Sec. 3.4's recipe, shortened for minutes on a CPU)."""
    depth: int = 18
    residual: bool = True
    epochs: int = 8
    batch_size: int = 32                # Sec. 3.4 uses 256
    lr: float = 0.0125                  # Sec. 3.4's 0.1 per 256 images, scaled to the batch; /10 at 50% and 75%
    pad: int = 8                        # random crops: pad by 8 and crop 64 back, with flips (Sec. 3.4)
    seed: int = 0
    precision: str = "auto"


def pretrain_classifier(train: B.BoxSet, val: B.BoxSet, cfg: PretrainConfig = PretrainConfig(), *,
                        mean: Tensor, std: Tensor, device="auto", progress: bool = True) -> tuple[nn.Module, dict]:
    """A Table 1 network (``models.imagenet``) trained to classify ``train``'s images with
    ``resnet_lib.engine.loop.fit``. Returns (model, fit's result)."""

    dev = pick_device(device)
    torch.manual_seed(cfg.seed)
    model = imagenet_resnet(cfg.depth, residual=cfg.residual, num_classes=len(train.classes))
    common = dict(mean=mean, std=std, device=dev, channels_last=use_bf16(dev, cfg.precision))
    src = TensorLoader(train.images, train.labels, cfg.batch_size, augment=True, shuffle=True, drop_last=True,
                       seed=cfg.seed, pad=cfg.pad, **common)
    ev = TensorLoader(val.images, val.labels, 256, **common)
    iters = max(1, cfg.epochs * len(src))
    tc = TrainConfig(batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed, precision=cfg.precision).with_iters(iters)
    tc = dataclasses.replace(tc, eval_every=len(src), checkpoint_every=0)  # evaluate once per epoch
    name = f"{'resnet' if cfg.residual else 'plain'}-{cfg.depth}"
    res = fit(model, src, ev, tc, device=dev, progress=progress, desc=f"pretrain {name}")
    return model.eval(), res


def sgd_fine_tune(model: nn.Module, n: int, cfg, batch_losses: Callable[[Tensor, torch.Generator], dict[str, Tensor]],
                  *, desc: str, progress: bool = True) -> dict:
    """SGD with momentum and weight decay on ``model``'s trainable parameters for ``cfg.epochs`` epochs over
    ``n`` examples in shuffled full batches of ``cfg.batch_size``; the lr is divided by 10 at 75% of the run.
    ``cfg`` has ``epochs, batch_size, lr, momentum, weight_decay, seed``. ``batch_losses(idx, g)`` computes
    the losses of the examples ``idx`` (drawing its random crops from ``g``); its ``"loss"`` is minimised.
    Returns ``{"epoch": [...], <each loss>: [per-epoch mean]}``."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    steps = max(1, n // cfg.batch_size)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [round(0.75 * cfg.epochs * steps)], gamma=0.1)
    g = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)  # the anchor and RoI samplers draw from the global generator
    hist: dict[str, list] = {"epoch": []}
    bar = tqdm(total=cfg.epochs * steps, desc=desc, disable=not progress, dynamic_ncols=True)
    for epoch in range(cfg.epochs):
        order = torch.randperm(n, generator=g)
        sums: dict[str, float] = {}
        for b in range(steps):
            losses = batch_losses(order[b * cfg.batch_size:(b + 1) * cfg.batch_size], g)
            opt.zero_grad(set_to_none=True)
            losses["loss"].backward()
            opt.step()
            sched.step()
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + v.item() / steps
            bar.update(1)
            bar.set_postfix(loss=f"{losses['loss'].item():.3f}")
        hist["epoch"].append(epoch + 1)
        for k, v in sums.items():
            hist.setdefault(k, []).append(v)
    bar.close()
    return hist
